#define _GNU_SOURCE
#include "CGavelShims.h"
#include <errno.h>
#include <limits.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

// An io_uring used for one thing: many `send`s, each to a different socket, made by one system call. Raw system
// calls, no liburing: three of them are all it takes. One thread owns a batch (the ring is created single-issuer).

struct gavel_send_batch {
    int fd;
    unsigned entries;
    void *sq_ring;
    size_t sq_ring_size;
    void *cq_ring;
    size_t cq_ring_size;
    struct io_uring_sqe *sqes;
    size_t sqes_size;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    unsigned queued;
};

static int setup(unsigned entries, struct io_uring_params *params, unsigned flags) {
    memset(params, 0, sizeof *params);
    params->flags = flags;
    return (int)syscall(__NR_io_uring_setup, entries, params);
}

gavel_send_batch *gavel_send_batch_create(unsigned entries) {
    struct io_uring_params p;
    int fd = -1;
#if defined(IORING_SETUP_SINGLE_ISSUER) && defined(IORING_SETUP_DEFER_TASKRUN)
    fd = setup(entries, &p, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
#endif
    if (fd < 0) fd = setup(entries, &p, 0);
    if (fd < 0) return NULL;
    gavel_send_batch *b = calloc(1, sizeof *b);
    if (!b) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    b->fd = fd;
    b->entries = p.sq_entries;
    b->sq_ring_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    b->cq_ring_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) {
        if (b->cq_ring_size > b->sq_ring_size) b->sq_ring_size = b->cq_ring_size;
        b->cq_ring_size = b->sq_ring_size;
    }
    b->sq_ring = mmap(NULL, b->sq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (b->sq_ring == MAP_FAILED) goto fail;
    if (single) {
        b->cq_ring = b->sq_ring;
    } else {
        b->cq_ring =
            mmap(NULL, b->cq_ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
        if (b->cq_ring == MAP_FAILED) goto fail;
    }
    b->sqes_size = p.sq_entries * sizeof(struct io_uring_sqe);
    b->sqes = mmap(NULL, b->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (b->sqes == MAP_FAILED) goto fail;
    char *sq = b->sq_ring, *cq = b->cq_ring;
    b->sq_head = (unsigned *)(sq + p.sq_off.head);
    b->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    b->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    b->sq_array = (unsigned *)(sq + p.sq_off.array);
    b->cq_head = (unsigned *)(cq + p.cq_off.head);
    b->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    b->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    b->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return b;
fail: {
    int saved = errno;
    gavel_send_batch_destroy(b);
    errno = saved;
    return NULL;
}
}

void gavel_send_batch_destroy(gavel_send_batch *b) {
    if (!b) return;
    if (b->sqes && b->sqes != MAP_FAILED) munmap(b->sqes, b->sqes_size);
    if (b->cq_ring && b->cq_ring != MAP_FAILED && b->cq_ring != b->sq_ring) munmap(b->cq_ring, b->cq_ring_size);
    if (b->sq_ring && b->sq_ring != MAP_FAILED) munmap(b->sq_ring, b->sq_ring_size);
    close(b->fd);
    free(b);
}

unsigned gavel_send_batch_capacity(const gavel_send_batch *b) { return b->entries; }

int gavel_send_batch_add(gavel_send_batch *b, int fd, const void *bytes, size_t length) {
    if (b->queued >= b->entries || length > UINT_MAX) return -1;
    unsigned tail = *b->sq_tail;
    unsigned index = tail & *b->sq_mask;
    struct io_uring_sqe *sqe = &b->sqes[index];
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = IORING_OP_SEND;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)bytes;
    sqe->len = (uint32_t)length;
    // MSG_DONTWAIT: a socket that cannot take anything completes at once with -EAGAIN (io_uring does not wait for
    // it to become writable), and one that takes part completes with the part.
    sqe->msg_flags = MSG_NOSIGNAL | MSG_DONTWAIT;
    sqe->user_data = b->queued;
    b->sq_array[index] = index;
    __atomic_store_n(b->sq_tail, tail + 1, __ATOMIC_RELEASE);
    return (int)b->queued++;
}

static unsigned reap(gavel_send_batch *b, int32_t *results, unsigned count) {
    unsigned head = *b->cq_head;
    unsigned tail = __atomic_load_n(b->cq_tail, __ATOMIC_ACQUIRE);
    unsigned reaped = 0;
    while (head != tail) {
        struct io_uring_cqe *cqe = &b->cqes[head & *b->cq_mask];
        if (cqe->user_data < count) results[cqe->user_data] = cqe->res;
        head++;
        reaped++;
    }
    __atomic_store_n(b->cq_head, head, __ATOMIC_RELEASE);
    return reaped;
}

int gavel_send_batch_send(gavel_send_batch *b, int32_t *results, unsigned count) {
    unsigned queued = b->queued;
    b->queued = 0;
    if (queued == 0) return 0;
    for (unsigned i = 0; i < count; i++) results[i] = INT32_MIN;
    unsigned before = __atomic_load_n(b->sq_head, __ATOMIC_ACQUIRE);
    int rc;
    do {
        rc = (int)syscall(__NR_io_uring_enter, b->fd, queued, queued, IORING_ENTER_GETEVENTS, NULL, 0);
    } while (rc < 0 && errno == EINTR && __atomic_load_n(b->sq_head, __ATOMIC_ACQUIRE) == before);
    int failure = rc < 0 ? errno : 0;
    // What the kernel took is what its head moved past; what it did not take is withdrawn (the tail is this
    // thread's), so that no later call submits a send of bytes its caller no longer holds.
    unsigned head = __atomic_load_n(b->sq_head, __ATOMIC_ACQUIRE);
    unsigned submitted = head - before;
    __atomic_store_n(b->sq_tail, head, __ATOMIC_RELEASE);
    unsigned reaped = reap(b, results, count);
    int failures = 0;
    while (reaped < submitted) {
        int waited = (int)syscall(__NR_io_uring_enter, b->fd, 0, submitted - reaped, IORING_ENTER_GETEVENTS, NULL, 0);
        if (waited < 0 && errno != EINTR && ++failures >= 3) {
            // Sends taken and never answered: what they sent is unknown, and they may still read their bytes.
            int saved = errno;
            for (unsigned i = 0; i < count && i < submitted; i++) {
                if (results[i] == INT32_MIN) results[i] = GAVEL_SEND_UNKNOWN;
            }
            return -saved;
        }
        reaped += reap(b, results, count);
    }
    if (submitted == 0 && failure) return -failure;
    return (int)submitted;
}
