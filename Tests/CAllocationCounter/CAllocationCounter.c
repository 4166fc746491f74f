// Counts the heap allocations of one thread, for tests that assert allocation counts (the production binary never
// links this). On Linux with glibc the allocation functions are defined here and forward to glibc's own
// (__libc_malloc and its siblings), so every allocation of the test process, the Swift runtime's included, passes
// through a thread-local counter that is only read while a test counts.
#include "CAllocationCounter.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#if defined(__linux__) && defined(__GLIBC__)

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *pointer);

static __thread int counting;
static __thread long allocations;

static inline void count_one(void) {
    if (counting) allocations += 1;
}

void *malloc(size_t size) {
    count_one();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    count_one();
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    count_one();
    return __libc_realloc(pointer, size);
}

void free(void *pointer) { __libc_free(pointer); }

void *memalign(size_t alignment, size_t size) {
    count_one();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    count_one();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    count_one();
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *result = pointer;
    return 0;
}

int gavel_allocation_counting_available(void) { return 1; }

void gavel_allocation_counting_start(void) {
    allocations = 0;
    counting = 1;
}

long gavel_allocation_counting_stop(void) {
    counting = 0;
    return allocations;
}

#else

int gavel_allocation_counting_available(void) { return 0; }
void gavel_allocation_counting_start(void) {}
long gavel_allocation_counting_stop(void) { return 0; }

#endif
