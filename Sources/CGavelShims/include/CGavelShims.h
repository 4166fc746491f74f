#ifndef GAVEL_SHIMS_H
#define GAVEL_SHIMS_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/// CRC-32C (Castagnoli) of `length` bytes, continuing from `crc` (0 to start). Uses the SSE4.2 instruction when the
/// CPU has it, a table otherwise.
uint32_t gavel_crc32c(uint32_t crc, const void *data, size_t length);

/// Asks the CPU to bring the cache line at `address` in for writing, without waiting for it (and without faulting:
/// an unmapped address is ignored). Inlined where Swift calls it.
static inline void gavel_prefetch_for_write(const void *address) { __builtin_prefetch(address, 1, 3); }
/// The same for reading.
static inline void gavel_prefetch_for_read(const void *address) { __builtin_prefetch(address, 0, 3); }

/// Whether the `length` bytes at `a` and `b` are equal (memcmp, inlined where Swift calls it).
static inline int gavel_bytes_equal(const void *a, const void *b, size_t length) { return memcmp(a, b, length) == 0; }

/// fdatasync(2), exposed because Glibc's module map does not always carry it.
int gavel_fdatasync(int fd);
/// The number of CPUs the calling thread may run on (its affinity mask, as `taskset` sets it); 0 when unknown.
int gavel_allowed_cpu_count(void);

/// Lowers the calling thread's scheduling priority by `increment` nice steps (Linux: per thread); 20 or more puts it
/// in the idle class (`SCHED_IDLE`), 0 or less back in the normal class. Returns 0 or -1.
/// The calling thread's kernel id (gettid), for ``gavel_thread_to_nice``.
int gavel_thread_id(void);
/// Moves thread `tid` of the process (a kernel id from ``gavel_thread_id``) to the normal scheduling class at
/// nice value `nice` (-20 to 19: 10 gets about a tenth of a core that normal threads keep busy). Returns 0 or -1.
int gavel_thread_to_nice(int tid, int nice);
int gavel_lower_thread_priority(int increment);
/// Puts the disk I/O of thread `tid` (0: the calling thread) in the idle class (`idle` != 0: served when no other
/// I/O waits, by schedulers that honour priorities, such as mq-deadline and bfq) or back to the default (0).
/// 0 on success, -1 where refused.
int gavel_thread_io_idle(int tid, int idle);
/// The I/O class of thread `tid` (0: none, 1: real time, 2: best effort, 3: idle), or -1 where it cannot be read.
int gavel_thread_io_class(int tid);

/// Names the calling thread (Linux keeps the first 15 bytes; `top -H`, `ps -L` and `perf` show it). Returns 0 or -1.
int gavel_name_thread(const char *name);

/// Starts writeback of `length` bytes of `fd` at `offset` (Linux `sync_file_range`, `WRITE`); with `wait` non-zero,
/// also waits until the range is written back. Returns 0 or -1.
int gavel_writeback(int fd, int64_t offset, int64_t length, int wait);

/// Reserves the blocks of `fd` up to `length` bytes and makes the file that long (`fallocate`, mode 0: what was
/// written stays, the rest reads as zeros). Returns 0, or -1 with errno (`EOPNOTSUPP` where the file system cannot).
int gavel_preallocate(int fd, int64_t length);

/// Writes `length` zero bytes to `fd` at `offset` (`pwritev` of one shared zero block, repeated; `EINTR` retried).
/// Returns 0, or -1 with errno.
int gavel_write_zeros(int fd, int64_t offset, int64_t length);

/// An io_uring that makes many `send`s (each `MSG_NOSIGNAL | MSG_DONTWAIT`) with one system call; owned by one
/// thread. `NULL` with errno when the kernel has none (or forbids it: `ENOSYS`, `EPERM`).
typedef struct gavel_send_batch gavel_send_batch;
gavel_send_batch *gavel_send_batch_create(unsigned entries);
void gavel_send_batch_destroy(gavel_send_batch *batch);
/// How many sends one call can make.
unsigned gavel_send_batch_capacity(const gavel_send_batch *batch);
/// Queues a send of `length` bytes at `bytes` to socket `fd`; returns its index in the batch, or -1 when the batch
/// is full. The bytes must stay where they are until ``gavel_send_batch_send`` returns.
int gavel_send_batch_add(gavel_send_batch *batch, int fd, const void *bytes, size_t length);
/// What a send taken by the kernel and never answered returned (the ring failed while waiting): how much it sent
/// is unknown, and its bytes may still be read.
#define GAVEL_SEND_UNKNOWN (INT32_MIN + 1)

/// Makes the queued sends and waits for all of them (a socket that cannot take its bytes answers at once):
/// `results[i]` (for `i` < `count`) is what send `i` returned (bytes sent, or -errno), INT32_MIN for one the
/// kernel did not take (then it was not made), or ``GAVEL_SEND_UNKNOWN``. Returns how many the kernel took, or
/// -errno when it took none or could not be waited for.
int gavel_send_batch_send(gavel_send_batch *batch, int32_t *results, unsigned count);

#endif
