#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "CLoadSystem.h"

int cload_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cload_epoll_watch(int epoll, int fd, int modify, int writable, uint64_t token) {
    struct epoll_event event;
    event.events = EPOLLIN | (writable ? EPOLLOUT : 0);
    event.data.u64 = token;
    return epoll_ctl(epoll, modify ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &event);
}

/* The `ready` events' tokens and flags, as the wait functions below return them. */
static int copy_events(const struct epoll_event *events, int ready, uint64_t *tokens, uint32_t *flags) {
    for (int i = 0; i < ready; i++) {
        tokens[i] = events[i].data.u64;
        flags[i] = ((events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? 1u : 0u) |
                   ((events[i].events & EPOLLOUT) ? 2u : 0u);
    }
    return ready;
}

int cload_epoll_wait(int epoll, uint64_t *tokens, uint32_t *flags, int capacity, int timeout_ms) {
    struct epoll_event events[256];
    if (capacity > 256) capacity = 256;
    return copy_events(events, epoll_wait(epoll, events, capacity, timeout_ms), tokens, flags);
}

int cload_epoll_wait_ns(int epoll, uint64_t *tokens, uint32_t *flags, int capacity, int64_t timeout_ns) {
#ifdef SYS_epoll_pwait2
    struct epoll_event events[256];
    if (capacity > 256) capacity = 256;
    if (timeout_ns < 0) timeout_ns = 0;
    struct timespec timeout = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    int ready = (int)syscall(SYS_epoll_pwait2, epoll, events, capacity, &timeout, NULL, 0);
    if (ready >= 0 || errno != ENOSYS) return copy_events(events, ready, tokens, flags);
#endif
    return cload_epoll_wait(epoll, tokens, flags, capacity, (int)((timeout_ns + 999999) / 1000000));
}

int cload_set_affinity(pid_t tid, const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return -1;
        CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity(tid, sizeof set, &set);
}

int cload_get_affinity(int *cpus, int capacity) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < capacity; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    }
    return count;
}
