#define _GNU_SOURCE
#include "CGavelShims.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static uint32_t table[8][256];
static int table_ready = 0;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc32c_table(uint32_t crc, const uint8_t *p, size_t n) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) build_table();
    while (n >= 8) {
        uint64_t v;
        __builtin_memcpy(&v, p, 8);
        v ^= crc;
        crc = table[7][v & 0xFF] ^ table[6][(v >> 8) & 0xFF] ^ table[5][(v >> 16) & 0xFF] ^
              table[4][(v >> 24) & 0xFF] ^ table[3][(v >> 32) & 0xFF] ^ table[2][(v >> 40) & 0xFF] ^
              table[1][(v >> 48) & 0xFF] ^ table[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        __builtin_memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

uint32_t gavel_crc32c(uint32_t crc, const void *data, size_t length) {
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc32c_hw(crc, (const uint8_t *)data, length);
#endif
    return ~crc32c_table(crc, (const uint8_t *)data, length);
}

int gavel_fdatasync(int fd) { return fdatasync(fd); }

int gavel_allowed_cpu_count(void) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
    return CPU_COUNT(&set);
#else
    return 0;
#endif
}

int gavel_thread_io_idle(int tid, int idle) {
#if defined(__linux__) && defined(SYS_ioprio_set)
    // ioprio_set(IOPRIO_WHO_PROCESS, a thread id or 0 for the caller, class << 13): class 3 is idle, 0 "none" (the
    // default: from the CPU nice value).
    int value = idle ? (3 << 13) : 0;
    return syscall(SYS_ioprio_set, 1, tid, value) == 0 ? 0 : -1;
#else
    (void)tid;
    (void)idle;
    return -1;
#endif
}

int gavel_thread_io_class(int tid) {
#if defined(__linux__) && defined(SYS_ioprio_get)
    long value = syscall(SYS_ioprio_get, 1, tid);
    return value < 0 ? -1 : (int)(value >> 13);
#else
    (void)tid;
    return -1;
#endif
}

int gavel_lower_thread_priority(int increment) {
#if defined(__linux__)
    if (increment <= 0) {
        // Back to the normal class (and nice value) of the process.
        struct sched_param param = {0};
        return pthread_setschedparam(pthread_self(), SCHED_OTHER, &param) == 0 ? 0 : -1;
    }
    if (increment >= 20) {
        // The lowest class: the thread runs only on a core nothing else wants.
        struct sched_param param = {0};
        return pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) == 0 ? 0 : -1;
    }
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int current = getpriority(PRIO_PROCESS, (id_t)tid);
    if (current == -1 && errno != 0) return -1;
    return setpriority(PRIO_PROCESS, (id_t)tid, current + increment);
#else
    (void)increment;
    return 0;
#endif
}

int gavel_thread_id(void) {
#if defined(__linux__)
    return (int)syscall(SYS_gettid);
#else
    return 0;
#endif
}

int gavel_thread_to_nice(int tid, int nice) {
#if defined(__linux__)
    struct sched_param param = {0};
    if (sched_setscheduler((pid_t)tid, SCHED_OTHER, &param) != 0) return -1;
    return setpriority(PRIO_PROCESS, (id_t)tid, nice);
#else
    (void)tid;
    (void)nice;
    return 0;
#endif
}

int gavel_writeback(int fd, int64_t offset, int64_t length, int wait) {
#if defined(__linux__)
    unsigned int flags = SYNC_FILE_RANGE_WRITE;
    if (wait) flags |= SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER;
    return sync_file_range(fd, (off64_t)offset, (off64_t)length, flags);
#else
    (void)fd; (void)offset; (void)length; (void)wait;
    return 0;
#endif
}

int gavel_name_thread(const char *name) {
#if defined(__linux__)
    return prctl(PR_SET_NAME, name, 0, 0, 0);
#else
    (void)name;
    return -1;
#endif
}

int gavel_preallocate(int fd, int64_t length) {
#if defined(__linux__)
    return fallocate(fd, 0, 0, (off_t)length);
#else
    (void)fd; (void)length;
    errno = EOPNOTSUPP;
    return -1;
#endif
}

/* Zeros written from one shared page-aligned block, pointed at as often as a call needs. */
static const uint8_t zero_block[64 * 1024] __attribute__((aligned(4096)));

int gavel_write_zeros(int fd, int64_t offset, int64_t length) {
    enum { pieces = 16 };
    struct iovec iov[pieces];
    while (length > 0) {
        int count = 0;
        int64_t asked = 0;
        while (count < pieces && asked < length) {
            int64_t piece = length - asked < (int64_t)sizeof zero_block ? length - asked : (int64_t)sizeof zero_block;
            iov[count].iov_base = (void *)zero_block;
            iov[count].iov_len = (size_t)piece;
            asked += piece;
            count++;
        }
        ssize_t written = pwritev(fd, iov, count, (off_t)offset);
        if (written < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (written == 0) {
            errno = EIO;
            return -1;
        }
        offset += written;
        length -= written;
    }
    return 0;
}
