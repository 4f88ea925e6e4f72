/* evtest: event loops and real-time start-up calls (issue 25), one line per check:
 * "evtest: NAME ok" or "evtest: NAME FAILED: why", then "evtest: N checks, M failed".
 * epoll (level, edge, one-shot, nesting, errors, over pipes, socket pairs, eventfd and
 * timerfd), eventfd, timerfd, O_NONBLOCK pipes and socket pairs, clock_getres, the mlock
 * family, getrusage, times, sysinfo and prctl. The same static binary runs on Linux as init
 * (the QEMU test) and must pass there too.
 *
 * `evtest named`: names its main thread "evloop-main" and a second thread "evloop-worker"
 * with prctl(PR_SET_NAME), says "evtest: named", and sleeps 30 s (for `ps -t`).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK_PROGRAM "evtest"
#include <checklist.h>

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&t, &t) < 0 && errno == EINTR) {
    }
}

/* errno of a call that should fail (0 if it succeeded). */
#define ERR(call) ((call) < 0 ? errno : 0)

static uint64_t rd64(int fd, ssize_t *n)
{
    uint64_t v = 0;
    *n = read(fd, &v, sizeof v);
    return v;
}

/* errno of an 8-byte read that should fail (0 if it read). */
static int rd_err(int fd)
{
    uint64_t v;
    return read(fd, &v, sizeof v) < 0 ? errno : 0;
}

static void wr64(int fd, uint64_t v)
{
    if (write(fd, &v, sizeof v) != sizeof v)
        printf("evtest: write of %llu to %d: %s\n", (unsigned long long)v, fd, strerror(errno));
}

static void test_eventfd(void)
{
    ssize_t n;
    int e = eventfd(3, EFD_NONBLOCK | EFD_CLOEXEC);
    wr64(e, 4);
    uint64_t v = rd64(e, &n);
    int again = rd_err(e);
    int fdflags = fcntl(e, F_GETFD), flflags = fcntl(e, F_GETFL);
    check("eventfd_counter", e >= 0 && v == 7 && n == 8 && again == EAGAIN && (fdflags & FD_CLOEXEC) && (flflags & O_NONBLOCK),
          "fd %d read %llu (%zd), then %s, fd flags %#x fl %#x", e, (unsigned long long)v, n, strerror(again), fdflags, flflags);
    close(e);

    e = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    ssize_t n1, n2, n3;
    uint64_t a = rd64(e, &n1), b = rd64(e, &n2);
    rd64(e, &n3);
    int eagain = errno;
    uint64_t all = UINT64_MAX;
    int einval_max = ERR(write(e, &all, 8));
    uint32_t small = 1;
    int einval_short = ERR(write(e, &small, 4));
    int einval_rshort = ERR(read(e, &small, 4));
    check("eventfd_semaphore", a == 1 && b == 1 && n1 == 8 && n2 == 8 && n3 < 0 && eagain == EAGAIN && einval_max == EINVAL &&
                                   einval_short == EINVAL && einval_rshort == EINVAL,
          "reads %llu %llu (%zd %zd %zd, %s), write ~0: %s, short write %s, short read %s", (unsigned long long)a,
          (unsigned long long)b, n1, n2, n3, strerror(eagain), strerror(einval_max), strerror(einval_short),
          strerror(einval_rshort));
    close(e);

    /* The counter's top: 2^64 - 2 fits, one more does not (EAGAIN); poll shows it. */
    e = eventfd(0, EFD_NONBLOCK);
    wr64(e, UINT64_MAX - 1);
    uint64_t one = 1;
    int full = ERR(write(e, &one, 8));
    struct pollfd p = {e, POLLIN | POLLOUT, 0};
    int pr = poll(&p, 1, 0);
    check("eventfd_full", full == EAGAIN && pr == 1 && p.revents == POLLIN, "write at the top: %s, poll %d revents %#x",
          strerror(full), pr, p.revents);
    close(e);
}

static int blocking_efd;
static void *write_later(void *arg)
{
    sleep_ms(30);
    wr64(blocking_efd, (uint64_t)(uintptr_t)arg);
    return NULL;
}

static void test_eventfd_blocking(void)
{
    blocking_efd = eventfd(0, 0);
    pthread_t t;
    int64_t t0 = now_ns();
    pthread_create(&t, NULL, write_later, (void *)(uintptr_t)5);
    ssize_t n;
    uint64_t v = rd64(blocking_efd, &n);
    int64_t waited = now_ns() - t0;
    pthread_join(t, NULL);
    check("eventfd_blocking_read", n == 8 && v == 5 && waited >= 25000000, "read %zd value %llu after %lld ns", n,
          (unsigned long long)v, (long long)waited);
    close(blocking_efd);
}

static void test_timerfd(void)
{
    ssize_t n;
    /* Periodic, relative: 10 ms then every 10 ms; after about 55 ms, the expirations that fit
     * between the earliest and the latest start and read times (the emulator may be slowed
     * down by its host at any point, so the bounds come from the clock, not the sleep). */
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = {{0, 10000000}, {0, 10000000}};
    int64_t before = now_ns();
    int st = timerfd_settime(t, 0, &its, NULL);
    int64_t armed = now_ns();
    int early = rd_err(t);
    sleep_ms(55);
    int64_t reading = now_ns();
    uint64_t k = rd64(t, &n);
    int64_t read_done = now_ns();
    int64_t kmin = (reading - armed) / 10000000, kmax = (read_done - before) / 10000000;
    check("timerfd_periodic", t >= 0 && st == 0 && (early == EAGAIN || armed - before >= 10000000) && n == 8 &&
                                  (int64_t)k >= kmin && (int64_t)k <= kmax && k >= 5,
          "fd %d settime %d, first read %s, after %lld ns %llu expirations (%zd; between %lld and %lld)", t, st,
          strerror(early), (long long)(reading - armed), (unsigned long long)k, n, (long long)kmin, (long long)kmax);

    /* gettime: the time left and the interval; disarming. */
    struct itimerspec a = {{0, 500000000}, {1, 0}}, cur, old;
    timerfd_settime(t, 0, &a, NULL);
    timerfd_gettime(t, &cur);
    struct itimerspec zero = {{0, 0}, {0, 0}};
    timerfd_settime(t, 0, &zero, &old);
    struct itimerspec after;
    timerfd_gettime(t, &after);
    int disarmed = rd_err(t);
    check("timerfd_gettime", cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 500000000 &&
                                 (cur.it_value.tv_sec == 1 || (cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 500000000)) &&
                                 old.it_interval.tv_nsec == 500000000 && after.it_value.tv_sec == 0 &&
                                 after.it_value.tv_nsec == 0 && disarmed == EAGAIN,
          "cur %ld.%09ld / %ld.%09ld, old interval %ld, after %ld.%09ld, read %s", (long)cur.it_value.tv_sec,
          cur.it_value.tv_nsec, (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec, old.it_interval.tv_nsec,
          (long)after.it_value.tv_sec, after.it_value.tv_nsec, strerror(disarmed));
    close(t);

    /* Blocking read of a one-shot, relative and absolute, on both clocks. */
    int ok = 1;
    char why[200] = "";
    const clockid_t clocks[2] = {CLOCK_MONOTONIC, CLOCK_REALTIME};
    for (int c = 0; c < 2; c++) {
        for (int absolute = 0; absolute < 2; absolute++) {
            int b = timerfd_create(clocks[c], 0);
            struct itimerspec s = {{0, 0}, {0, 20000000}};
            if (absolute) {
                struct timespec nw;
                clock_gettime(clocks[c], &nw);
                s.it_value.tv_sec = nw.tv_sec;
                s.it_value.tv_nsec = nw.tv_nsec + 20000000;
                if (s.it_value.tv_nsec >= 1000000000) {
                    s.it_value.tv_sec++;
                    s.it_value.tv_nsec -= 1000000000;
                }
            }
            int64_t t0 = now_ns();
            timerfd_settime(b, absolute ? TFD_TIMER_ABSTIME : 0, &s, NULL);
            uint64_t v = rd64(b, &n);
            int64_t waited = now_ns() - t0;
            if (n != 8 || v != 1 || waited < 19000000) {
                ok = 0;
                snprintf(why, sizeof why, "clock %d absolute %d: read %zd value %llu after %lld ns", (int)clocks[c], absolute,
                         n, (unsigned long long)v, (long long)waited);
            }
            close(b);
        }
    }
    check("timerfd_blocking_read", ok, "%s", why);

    /* A periodic timerfd in poll: readable after its first expiry. */
    int pt = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec ps = {{0, 0}, {0, 20000000}};
    timerfd_settime(pt, 0, &ps, NULL);
    int64_t t0 = now_ns();
    struct pollfd p = {pt, POLLIN, 0};
    int pr = poll(&p, 1, 10000);
    int64_t waited = now_ns() - t0;
    check("timerfd_in_poll", pr == 1 && p.revents == POLLIN && waited >= 19000000 && waited < 9000000000ll,
          "poll %d revents %#x after %lld ns", pr, p.revents, (long long)waited);
    close(pt);

    int e = eventfd(0, 0);
    struct itimerspec bad = {{0, 0}, {0, 1000000000}};
    int tt = timerfd_create(CLOCK_MONOTONIC, 0);
    int e_clock = ERR(timerfd_create(12345, 0)), e_flags = ERR(timerfd_create(CLOCK_MONOTONIC, 0x40));
    int e_nsec = ERR(timerfd_settime(tt, 0, &bad, NULL)), e_notimer = ERR(timerfd_settime(e, 0, &ps, NULL));
    int e_write = ERR(write(tt, "12345678", 8));
    check("timerfd_errors", e_clock == EINVAL && e_flags == EINVAL && e_nsec == EINVAL && e_notimer == EINVAL && e_write == EINVAL,
          "bad clock %s, flags %s, nsec %s, not a timerfd %s, write %s", strerror(e_clock), strerror(e_flags),
          strerror(e_nsec), strerror(e_notimer), strerror(e_write));
    close(tt);
    close(e);
}

static int ew(int ep, struct epoll_event *evs, int max, int ms)
{
    int r;
    while ((r = epoll_wait(ep, evs, max, ms)) < 0 && errno == EINTR) {
    }
    return r;
}

static void test_epoll(void)
{
    struct epoll_event ev, out[8];
    int p[2];
    char buf[64];

    /* Level-triggered: reported while readable. */
    pipe(p);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.u64 = 0x1122334455667788ull;
    int add = epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    int r0 = ew(ep, out, 8, 0);
    write(p[1], "x", 1);
    int r1 = ew(ep, out, 8, 0);
    uint64_t d = out[0].data.u64;
    uint32_t e1 = out[0].events;
    int r2 = ew(ep, out, 8, 0);
    check("epoll_level", ep >= 0 && add == 0 && r0 == 0 && r1 == 1 && d == 0x1122334455667788ull && e1 == EPOLLIN && r2 == 1,
          "ep %d add %d, waits %d %d %d, data %#llx events %#x", ep, add, r0, r1, r2, (unsigned long long)d, e1);

    /* Edge-triggered: once per change. */
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = p[0];
    int mod = epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
    int a1 = ew(ep, out, 8, 0);
    int a2 = ew(ep, out, 8, 0);
    write(p[1], "y", 1);
    int a3 = ew(ep, out, 8, 0);
    int a4 = ew(ep, out, 8, 0);
    check("epoll_edge", mod == 0 && a1 == 1 && a2 == 0 && a3 == 1 && a4 == 0, "mod %d, waits %d %d (write) %d %d", mod, a1, a2,
          a3, a4);

    /* One-shot: one report until EPOLL_CTL_MOD re-arms it. */
    ev.events = EPOLLIN | EPOLLONESHOT;
    epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
    int o1 = ew(ep, out, 8, 0);
    write(p[1], "z", 1);
    int o2 = ew(ep, out, 8, 0);
    epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
    int o3 = ew(ep, out, 8, 0);
    check("epoll_oneshot", o1 == 1 && o2 == 0 && o3 == 1, "waits %d, (write) %d, (mod) %d", o1, o2, o3);
    read(p[0], buf, sizeof buf);

    /* The last writer gone: EPOLLHUP without asking; the read end closed: the item goes. */
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
    close(p[1]);
    int h = ew(ep, out, 8, 0);
    uint32_t hev = out[0].events;
    close(p[0]);
    int gone = ew(ep, out, 8, 0);
    int del = ERR(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
    check("epoll_hangup_and_close", h == 1 && (hev & EPOLLHUP) && gone == 0 && del == EBADF,
          "wait %d events %#x, after close %d, del %s", h, hev, gone, strerror(del));

    /* A timeout with nothing ready. */
    int64_t t0 = now_ns();
    int to = ew(ep, out, 8, 30);
    int64_t waited = now_ns() - t0;
    check("epoll_timeout", to == 0 && waited >= 29000000, "wait %d after %lld ns", to, (long long)waited);
    close(ep);

    /* Errors. */
    ep = epoll_create1(0);
    pipe(p);
    int f = open("/tmp/evtest.file", O_RDWR | O_CREAT | O_TRUNC, 0600);
    ev.events = EPOLLIN;
    int e_add2 = (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), ERR(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev)));
    int e_mod = ERR(epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev));
    int e_del = ERR(epoll_ctl(ep, EPOLL_CTL_DEL, p[1], &ev));
    int e_self = ERR(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev));
    int e_file = ERR(epoll_ctl(ep, EPOLL_CTL_ADD, f, &ev));
    int e_op = ERR(epoll_ctl(ep, 99, p[1], &ev));
    int e_notep = ERR(epoll_ctl(p[0], EPOLL_CTL_ADD, p[1], &ev));
    int e_badfd = ERR(epoll_ctl(ep, EPOLL_CTL_ADD, 999, &ev));
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    int ex_add = epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev);
    int e_exmod = ERR(epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev));
    int e_max = ERR(epoll_wait(ep, out, 0, 0));
    int e_flags = ERR(epoll_create1(1));
    int e_size = ERR(syscall(SYS_epoll_create, 0)); /* musl 1.2.3 does not check the size itself */
    check("epoll_errors", e_add2 == EEXIST && e_mod == ENOENT && e_del == ENOENT && e_self == EINVAL && e_file == EPERM &&
                              e_op == EINVAL && e_notep == EINVAL && e_badfd == EBADF && ex_add == 0 && e_exmod == EINVAL &&
                              e_max == EINVAL && e_flags == EINVAL && e_size == EINVAL,
          "add twice %s, mod %s, del %s, self %s, file %s, op %s, not epoll %s, bad fd %s, exclusive %d/%s, max 0 %s, "
          "flags %s, size %s",
          strerror(e_add2), strerror(e_mod), strerror(e_del), strerror(e_self), strerror(e_file), strerror(e_op),
          strerror(e_notep), strerror(e_badfd), ex_add, strerror(e_exmod), strerror(e_max), strerror(e_flags),
          strerror(e_size));
    close(f);
    unlink("/tmp/evtest.file");
    close(p[0]);
    close(p[1]);
    close(ep);

    /* eventfd, timerfd and a socket pair in one set: who is ready is told by the data. */
    ep = epoll_create1(0);
    int efd = eventfd(0, EFD_NONBLOCK), tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    ev.events = EPOLLIN;
    ev.data.u32 = 1;
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    ev.data.u32 = 2;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    ev.data.u32 = 3;
    epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev);
    ev.events = EPOLLOUT;
    ev.data.u32 = 4;
    epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
    int w0 = ew(ep, out, 8, 0);
    uint32_t d0 = out[0].data.u32, ev0 = out[0].events;
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_MOD, sv[0], &ev);
    struct itimerspec its = {{0, 0}, {0, 20000000}};
    timerfd_settime(tfd, 0, &its, NULL);
    t0 = now_ns();
    int w1 = ew(ep, out, 8, 1000);
    int64_t tw = now_ns() - t0;
    uint32_t d1 = out[0].data.u32;
    ssize_t n;
    rd64(tfd, &n);
    wr64(efd, 9);
    write(sv[0], "hello", 5);
    int w2 = ew(ep, out, 8, 0);
    uint32_t seen = 0;
    for (int i = 0; i < w2 && i < 8; i++)
        seen |= 1u << out[i].data.u32;
    check("epoll_mixed", w0 == 1 && d0 == 4 && ev0 == EPOLLOUT && w1 == 1 && d1 == 2 && tw >= 19000000 && w2 == 2 &&
                             seen == ((1u << 1) | (1u << 3)),
          "writable %d (data %u events %#x), timer %d (data %u) after %lld ns, then %d ready (mask %#x)", w0, d0, ev0, w1, d1,
          (long long)tw, w2, seen);

    /* maxevents 1: the two ready items take turns. */
    int m1 = ew(ep, out, 1, 0);
    uint32_t first = out[0].data.u32;
    int m2 = ew(ep, out, 1, 0);
    uint32_t second = out[0].data.u32;
    check("epoll_maxevents_fair", m1 == 1 && m2 == 1 && first != second, "%d (data %u), %d (data %u)", m1, first, m2, second);

    /* Nested: a set holding this set; and the loop back is refused. */
    int outer = epoll_create1(0);
    ev.events = EPOLLIN;
    ev.data.u32 = 7;
    int nadd = epoll_ctl(outer, EPOLL_CTL_ADD, ep, &ev);
    int nw = ew(outer, out, 8, 0);
    uint32_t nd = out[0].data.u32;
    int e_loop = ERR(epoll_ctl(ep, EPOLL_CTL_ADD, outer, &ev));
    check("epoll_nested", nadd == 0 && nw == 1 && nd == 7 && e_loop == ELOOP, "add %d, wait %d data %u, loop %s", nadd, nw, nd,
          strerror(e_loop));
    close(outer);
    close(ep);
    close(efd);
    close(tfd);
    close(sv[0]);
    close(sv[1]);
}

static int wake_ep, wake_efd;
static void *wait_in_epoll(void *arg)
{
    (void)arg;
    struct epoll_event out;
    int r = ew(wake_ep, &out, 1, 5000);
    return (void *)(intptr_t)(r == 1 ? (int)out.data.u32 : -1);
}

static volatile sig_atomic_t got_usr1;
static void on_usr1(int s)
{
    (void)s;
    got_usr1 = 1;
}

static void test_epoll_threads(void)
{
    /* A thread blocked in epoll_wait is woken by another thread's eventfd write. */
    wake_ep = epoll_create1(0);
    wake_efd = eventfd(0, EFD_NONBLOCK);
    struct epoll_event ev = {EPOLLIN, {.u32 = 11}};
    epoll_ctl(wake_ep, EPOLL_CTL_ADD, wake_efd, &ev);
    pthread_t t;
    pthread_create(&t, NULL, wait_in_epoll, NULL);
    sleep_ms(20);
    wr64(wake_efd, 1);
    void *res;
    pthread_join(t, &res);
    check("epoll_wakes_a_blocked_thread", (intptr_t)res == 11, "thread got %ld", (long)(intptr_t)res);

    /* epoll_pwait: the signal blocked outside is let in during the wait and ends it (EINTR). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t block, during;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, NULL);
    kill(getpid(), SIGUSR1); /* pending, blocked */
    sigemptyset(&during);
    struct epoll_event out;
    rd_err(wake_efd); /* nothing ready: only the signal can end the wait */
    int r = epoll_pwait(wake_ep, &out, 1, 5000, &during);
    int err = errno;
    check("epoll_pwait_signal_mask", got_usr1 && r < 0 && err == EINTR, "pwait %d (%s), handler ran %d", r, strerror(err),
          (int)got_usr1);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    close(wake_ep);
    close(wake_efd);
}

static void test_nonblock(void)
{
    int p[2];
    char buf[4096];
    pipe2(p, O_NONBLOCK);
    int e_empty = ERR(read(p[0], buf, sizeof buf));
    int fl = fcntl(p[0], F_GETFL);
    memset(buf, 'a', sizeof buf);
    long total = 0;
    ssize_t w;
    while ((w = write(p[1], buf, sizeof buf)) > 0)
        total += w;
    int e_full = errno;
    struct pollfd pf = {p[1], POLLOUT, 0};
    int pr = poll(&pf, 1, 0);
    check("nonblock_pipe", e_empty == EAGAIN && (fl & O_NONBLOCK) && total == 65536 && e_full == EAGAIN && pr == 0,
          "empty read %s, F_GETFL %#x, wrote %ld then %s, poll POLLOUT %d", strerror(e_empty), fl, total, strerror(e_full),
          pr);
    close(p[0]);
    close(p[1]);

    /* F_SETFL and FIONBIO switch a blocking socket pair. */
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    int on = fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    int e_a = ERR(read(sv[0], buf, 1));
    int one = 1;
    int io = ioctl(sv[1], FIONBIO, &one);
    int e_b = ERR(recv(sv[1], buf, 1, 0));
    write(sv[0], "q", 1);
    ssize_t got = read(sv[1], buf, 10);
    check("nonblock_socketpair", on == 0 && e_a == EAGAIN && io == 0 && e_b == EAGAIN && got == 1,
          "F_SETFL %d, read %s, FIONBIO %d, recv %s, then read %zd", on, strerror(e_a), io, strerror(e_b), got);
    close(sv[0]);
    close(sv[1]);
}

static void spin_ms(int ms)
{
    int64_t end = now_ns() + (int64_t)ms * 1000000;
    while (now_ns() < end) {
    }
}

static void test_startup_calls(void)
{
    struct timespec res = {-1, -1};
    int g1 = clock_getres(CLOCK_MONOTONIC, &res);
    struct timespec rr = {-1, -1};
    int g2 = clock_getres(CLOCK_REALTIME, &rr);
    int e_clock = ERR(clock_getres(12345, &res));
    check("clock_getres", g1 == 0 && g2 == 0 && res.tv_sec == 0 && res.tv_nsec > 0 && res.tv_nsec <= 1000000 &&
                              rr.tv_sec == 0 && rr.tv_nsec > 0 && e_clock == EINVAL,
          "monotonic %d %ld.%09ld, realtime %d %ld.%09ld, bad clock %s", g1, (long)res.tv_sec, res.tv_nsec, g2,
          (long)rr.tv_sec, rr.tv_nsec, strerror(e_clock));

    char *mem = malloc(1 << 20);
    int la = mlockall(MCL_CURRENT | MCL_FUTURE);
    int l1 = mlock(mem, 1 << 20), u1 = munlock(mem, 1 << 20), ua = munlockall();
    int e_zero = ERR(mlockall(0));
    char *gap = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(gap, 8192);
    int e_unmapped = ERR(mlock(gap, 4096));
    check("mlock", la == 0 && l1 == 0 && u1 == 0 && ua == 0 && e_zero == EINVAL && e_unmapped == ENOMEM,
          "mlockall %d (%s), mlock %d, munlock %d, munlockall %d, mlockall(0) %s, unmapped %s", la, strerror(errno), l1, u1, ua,
          strerror(e_zero), strerror(e_unmapped));
    free(mem);

    /* CPU time: 60 ms of spinning shows (at least 5 ms of it, however busy the host is; at
     * most the time that passed); a child's after it is waited for. */
    struct rusage before, after, thr, ch;
    getrusage(RUSAGE_SELF, &before);
    int64_t spin0 = now_ns();
    spin_ms(60);
    getrusage(RUSAGE_SELF, &after);
    long wall_us = (long)((now_ns() - spin0) / 1000);
    int gt = getrusage(RUSAGE_THREAD, &thr);
    long used = (after.ru_utime.tv_sec - before.ru_utime.tv_sec) * 1000000 + (after.ru_utime.tv_usec - before.ru_utime.tv_usec) +
                (after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1000000 + (after.ru_stime.tv_usec - before.ru_stime.tv_usec);
    struct tms t0, t1;
    times(&t0);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        spin_ms(60);
        _exit(0);
    }
    waitpid(c, NULL, 0);
    getrusage(RUSAGE_CHILDREN, &ch);
    clock_t ticks = times(&t1);
    long child = ch.ru_utime.tv_sec * 1000000 + ch.ru_utime.tv_usec + ch.ru_stime.tv_sec * 1000000 + ch.ru_stime.tv_usec;
    int e_who = ERR(getrusage(5, &ch));
    check("getrusage", used >= 5000 && used <= wall_us + 20000 && gt == 0 && child >= 5000 && e_who == EINVAL,
          "self +%ld us over a %ld us spin, thread %d, children %ld us, bad who %s", used, wall_us, gt, child,
          strerror(e_who));
    long cticks = (t1.tms_cutime + t1.tms_cstime) - (t0.tms_cutime + t0.tms_cstime);
    check("times", ticks != (clock_t)-1 && cticks >= 1 && sysconf(_SC_CLK_TCK) == 100,
          "returned %ld, children +%ld ticks, CLK_TCK %ld", (long)ticks, cticks, sysconf(_SC_CLK_TCK));

    struct sysinfo si;
    int s = sysinfo(&si);
    check("sysinfo", s == 0 && si.totalram > 0 && si.freeram <= si.totalram && si.mem_unit >= 1 && si.procs >= 1,
          "%d: total %lu free %lu unit %u procs %u", s, si.totalram, si.freeram, si.mem_unit, si.procs);

    char name[32] = "";
    int p1 = prctl(PR_SET_NAME, "evtest-renamed");
    int p2 = prctl(PR_GET_NAME, name);
    char longname[32] = "";
    prctl(PR_SET_NAME, "a-name-longer-than-fifteen");
    prctl(PR_GET_NAME, longname);
    int e_opt = ERR(prctl(9999, 0, 0, 0, 0));
    check("prctl_name", p1 == 0 && p2 == 0 && !strcmp(name, "evtest-renamed") && !strcmp(longname, "a-name-longer-t") &&
                            e_opt == EINVAL,
          "set %d get %d '%s', long '%s', unknown option %s", p1, p2, name, longname, strerror(e_opt));
}

static void *named_worker(void *arg)
{
    (void)arg;
    prctl(PR_SET_NAME, "evloop-worker");
    sleep(30);
    return NULL;
}

static void run(void)
{
    test_eventfd();
    test_eventfd_blocking();
    test_timerfd();
    test_epoll();
    test_epoll_threads();
    test_nonblock();
    test_startup_calls();
    printf("evtest: %d checks, %d failed\n", checks, failed);
    fflush(stdout);
}

int main(int argc, char *argv[])
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && !strcmp(argv[1], "named")) {
        pthread_t t;
        prctl(PR_SET_NAME, "evloop-main");
        pthread_create(&t, NULL, named_worker, NULL);
        sleep_ms(50);
        printf("evtest: named\n");
        fflush(stdout);
        pthread_join(t, NULL);
        return 0;
    }
    if (getpid() == 1) {
        mknod("/dev/console", S_IFCHR | 0600, makedev(5, 1));
        int fd = open("/dev/console", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        printf("evtest: on Linux as init\n");
        fflush(stdout);
        pid_t c = fork();
        if (c == 0) {
            run();
            _exit(0);
        }
        int st;
        while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
        }
        sync();
        reboot(RB_POWER_OFF);
        return 0;
    }
    run();
    return failed != 0;
}
