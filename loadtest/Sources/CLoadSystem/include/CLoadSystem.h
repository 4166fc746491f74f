// What the closed loop and --cpu need from Linux that Swift's Glibc module leaves out: epoll and the CPU
// affinity calls (declared only with _GNU_SOURCE or in headers the module does not include). The header itself
// includes no system header that _GNU_SOURCE changes, so its module agrees with Glibc's; the definitions in
// CLoadSystem.c see the full declarations.
#ifndef C_LOAD_SYSTEM_H
#define C_LOAD_SYSTEM_H

#include <stdint.h>
#include <sys/types.h>

/// A new epoll instance (close-on-exec), or -1 with errno.
int cload_epoll_create(void);

/// Adds `fd` to `epoll` (or changes it, `modify` non-zero) for reading, and for writing when `writable` is
/// non-zero, with `token` as the event's data.
int cload_epoll_watch(int epoll, int fd, int modify, int writable, uint64_t token);

/// Waits up to `timeout_ms` for events; fills `tokens` and `flags` (bit 0: readable or error/hang-up, bit 1:
/// writable) and returns how many, or -1 with errno.
int cload_epoll_wait(int epoll, uint64_t *tokens, uint32_t *flags, int capacity, int timeout_ms);

/// The same, waiting up to `timeout_ns` nanoseconds (epoll_pwait2; where the kernel lacks it, rounded up to whole
/// milliseconds).
int cload_epoll_wait_ns(int epoll, uint64_t *tokens, uint32_t *flags, int capacity, int64_t timeout_ns);

/// Pins thread `tid` (0: the calling thread) to the CPUs whose numbers are in `cpus`; 0 or -1 with errno.
int cload_set_affinity(pid_t tid, const int *cpus, int count);

/// The CPUs the calling thread may run on, written to `cpus` (at most `capacity`); their count or -1.
int cload_get_affinity(int *cpus, int capacity);

#endif
