#ifndef C_ALLOCATION_COUNTER_H
#define C_ALLOCATION_COUNTER_H

/// Whether this platform counts allocations (Linux with glibc): elsewhere the functions below count nothing.
int gavel_allocation_counting_available(void);

/// Starts counting the calling thread's heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc,
/// memalign) from zero.
void gavel_allocation_counting_start(void);

/// Stops counting and returns how many allocations the calling thread made since the start.
long gavel_allocation_counting_stop(void);

#endif
