/*
 * qbench: the Quest-RS / Linux benchmark program (`cargo xtask bench`).
 *
 * One static musl binary, the same on both systems. On Quest-RS it is /boot/qbench, started by
 * user_init from /boot/init.conf; on Linux it is the initramfs's /qbench, started as PID 1
 * (rdinit=/qbench, arguments after "--" on the kernel command line).
 *
 *   qbench [--quick] [--poweroff] [NAME...]     (no NAME: every benchmark but `parallel`)
 *
 * Timing: the TSC, read with rdtsc (lfence before and after). Under QEMU -icount shift=0 the TSC
 * advances one tick per guest nanosecond = one guest instruction, on both systems; the program
 * checks the TSC against CLOCK_MONOTONIC at start (@INFO tsc_per_ns) and converts ticks to ns.
 * CLOCK_MONOTONIC is not used per iteration because on Quest-RS it is a system call (no vDSO)
 * while on Linux it is not: per-iteration clock_gettime would tax Quest-RS only.
 *
 * Output, one line per result (parsed by xtask/src/bench.rs):
 *   @BENCH name unit median=X max=Y n=N        latency benchmarks: X, Y per operation
 *   @HIST name lo_ns:count ...                  histogram of a latency benchmark
 *   @INFO key=value                             facts about the run
 *   @SKIP name reason...                        a benchmark that could not run here
 *   @DONE
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
#define FUTEX_WAIT_SHARED 0
#define FUTEX_WAKE_SHARED 1

#include <shmcomm_user.h>

static uint64_t boot_tsc; /* TSC at the first instruction of main */
static int quick;
static double tsc_per_ns = 1.0;

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t ns(uint64_t ticks) { return (uint64_t)(ticks / tsc_per_ns + 0.5); }

static void die(const char *what)
{
    printf("@SKIP %s failed: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Operations the current benchmark ran, warm-up included (for `cargo xtask bench --profile`). */
static int total_ops;

/* Sorts `v` (ticks), prints the @BENCH line in ns. */
static void report(const char *name, uint64_t *v, int n)
{
    printf("@INFO %s_total_ops=%d\n", name, total_ops ? total_ops : n);
    total_ops = 0;
    qsort(v, n, sizeof *v, cmp_u64);
    printf("@BENCH %s ns median=%llu max=%llu n=%d\n", name, (unsigned long long)ns(v[n / 2]),
           (unsigned long long)ns(v[n - 1]), n);
    fflush(stdout);
}

/* Iteration counts: warm-up, measured. */
static int warm(void) { return quick ? 20 : 100; }
static int iters(void) { return quick ? 200 : 2000; }

/* ---------------------------------------------------------------- null syscall */
static void b_null_syscall(void)
{
    int n = iters() * 5;
    uint64_t *v = malloc(n * sizeof *v);
    for (int i = 0; i < warm(); i++)
        syscall(SYS_getppid);
    total_ops = n + warm();
    for (int i = 0; i < n; i++) {
        uint64_t t0 = rdtsc();
        syscall(SYS_getppid);
        v[i] = rdtsc() - t0;
    }
    report("null_syscall", v, n);
    free(v);
}

/* ---------------------------------------------------------------- pipe ping-pong */
/* Two processes, two pipes, one byte each way: a round trip is two context switches (lmbench
 * lat_ctx / lat_pipe style). */
static void b_pipe_pingpong(void)
{
    int a[2], b[2], n = iters(), w = warm();
    if (pipe(a) || pipe(b))
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    char c = 'x';
    if (pid == 0) {
        for (int i = 0; i < n + w; i++) {
            if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1)
                _exit(1);
        }
        _exit(0);
    }
    uint64_t *v = malloc(n * sizeof *v);
    total_ops = n + w;
    for (int i = 0; i < n + w; i++) {
        uint64_t t0 = rdtsc();
        if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
            die("pipe_pingpong");
        if (i >= w)
            v[i - w] = rdtsc() - t0;
    }
    waitpid(pid, NULL, 0);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    report("pipe_pingpong", v, n);
    free(v);
}

/* ---------------------------------------------------------------- fork + exit + wait */
static void b_fork_exit_wait(void)
{
    int n = iters() / 4, w = warm() / 4;
    uint64_t *v = malloc(n * sizeof *v);
    total_ops = n + w;
    for (int i = 0; i < n + w; i++) {
        uint64_t t0 = rdtsc();
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0)
            die("fork");
        waitpid(pid, NULL, 0);
        if (i >= w)
            v[i - w] = rdtsc() - t0;
    }
    report("fork_exit_wait", v, n);
    free(v);
}

/* ---------------------------------------------------------------- thread create + join */
static void *nop_thread(void *arg) { return arg; }

static void b_thread_create_join(void)
{
    int n = iters() / 2, w = warm() / 2;
    uint64_t *v = malloc(n * sizeof *v);
    total_ops = n + w;
    for (int i = 0; i < n + w; i++) {
        pthread_t t;
        uint64_t t0 = rdtsc();
        if (pthread_create(&t, NULL, nop_thread, NULL))
            die("pthread_create");
        pthread_join(t, NULL);
        if (i >= w)
            v[i - w] = rdtsc() - t0;
    }
    report("thread_create_join", v, n);
    free(v);
}

/* ---------------------------------------------------------------- futex ping-pong */
static volatile int fword; /* 0: main's turn, 1: the partner's turn */
static int fx_rounds;

static void fwait(volatile int *addr, int val)
{
    while (*addr == val)
        syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void fwake(volatile int *addr) { syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

static void *futex_partner(void *arg)
{
    for (int i = 0; i < fx_rounds; i++) {
        fwait(&fword, 0);
        fword = 0;
        fwake(&fword);
    }
    return arg;
}

static void b_futex_pingpong(void)
{
    int n = iters(), w = warm();
    fx_rounds = n + w;
    total_ops = n + w;
    fword = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, futex_partner, NULL))
        die("pthread_create");
    uint64_t *v = malloc(n * sizeof *v);
    total_ops = n + w;
    for (int i = 0; i < n + w; i++) {
        uint64_t t0 = rdtsc();
        fword = 1;
        fwake(&fword);
        fwait(&fword, 1);
        if (i >= w)
            v[i - w] = rdtsc() - t0;
    }
    pthread_join(t, NULL);
    report("futex_pingpong", v, n);
    free(v);
}

/* ---------------------------------------------------------------- message passing: pipe */
/* A stream of 64-byte messages from one process to another through a pipe; the receiver
 * answers each batch of 16 with one byte (flow control). Reported: time per message. */
#define MSG 64
#define BATCH 16
/* One way of moving MSG-byte messages between the two processes of msg_run: `child` prepares
 * the receiving side after fork (may be NULL), `recv` returns 0 or -1. */
struct transport {
    const char *name;
    void (*child)(void *ctx);
    void (*send)(void *ctx, const char *m);
    int (*recv)(void *ctx, char *m);
    void *ctx;
};

/* BATCH messages parent -> child through `t`, one byte back through a pipe per batch; reports
 * the time per message. */
static void msg_run(const struct transport *t)
{
    int b[2], n = iters() / 4, w = warm() / 4;
    if (pipe(b))
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    char m[MSG];
    memset(m, 'm', sizeof m);
    if (pid == 0) {
        if (t->child)
            t->child(t->ctx);
        for (int i = 0; i < n + w; i++) {
            for (int k = 0; k < BATCH; k++)
                if (t->recv(t->ctx, m))
                    _exit(1);
            if (write(b[1], m, 1) != 1)
                _exit(1);
        }
        _exit(0);
    }
    uint64_t *v = malloc(n * sizeof *v);
    total_ops = (n + w) * BATCH;
    for (int i = 0; i < n + w; i++) {
        uint64_t t0 = rdtsc();
        for (int k = 0; k < BATCH; k++)
            t->send(t->ctx, m);
        if (read(b[0], m, 1) != 1)
            die("msg ack read");
        if (i >= w)
            v[i - w] = (rdtsc() - t0) / BATCH;
    }
    waitpid(pid, NULL, 0);
    close(b[0]);
    close(b[1]);
    report(t->name, v, n);
    free(v);
}

static void pipe_send(void *ctx, const char *m)
{
    if (write(((int *)ctx)[1], m, MSG) != MSG)
        die("msg_pipe write");
}

static int pipe_recv(void *ctx, char *m)
{
    size_t got = 0;
    while (got < MSG) {
        ssize_t r = read(((int *)ctx)[0], m + got, MSG - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void b_msg_pipe(void)
{
    int a[2];
    if (pipe(a))
        die("pipe");
    struct transport t = {"msg_pipe", NULL, pipe_send, pipe_recv, a};
    msg_run(&t);
    close(a[0]);
    close(a[1]);
}

/* ---------------------------------------------------------------- shared-memory messages */
/* The same traffic as msg_pipe (BATCH 64-byte messages, then a one-byte ack through a pipe),
 * through each system's shared-memory channel: on Quest-RS a shmcomm synchronous channel
 * (SHMCOMM_SYNC_CH, 64 packets); on Linux, where shmcomm does not exist (ENOSYS), a
 * single-producer single-consumer ring of 64 slots in MAP_SHARED memory with futex waits. */
#define RING 64
struct shm_ring {
    volatile uint32_t head, tail; /* written by producer / consumer */
    char slot[RING][MSG];
};

static void ring_wait(volatile uint32_t *w, uint32_t seen)
{
    syscall(SYS_futex, w, FUTEX_WAIT_SHARED, seen, NULL, NULL, 0);
}
static void ring_wake(volatile uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE_SHARED, 1, NULL, NULL, 0); }

static void ring_put(struct shm_ring *r, const char *m)
{
    uint32_t h = r->head, t;
    while (h - (t = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE)) == RING)
        ring_wait(&r->tail, t);
    memcpy(r->slot[h % RING], m, MSG);
    __atomic_store_n(&r->head, h + 1, __ATOMIC_RELEASE);
    if (h == t) /* was empty: the consumer may sleep */
        ring_wake(&r->head);
}

static void ring_get(struct shm_ring *r, char *m)
{
    uint32_t t = r->tail, h;
    while ((h = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE)) == t)
        ring_wait(&r->head, h);
    memcpy(m, r->slot[t % RING], MSG);
    __atomic_store_n(&r->tail, t + 1, __ATOMIC_RELEASE);
    if (h - t == RING) /* was full: the producer may sleep */
        ring_wake(&r->tail);
}

/* msg_shm's channel: a shmcomm sync channel on Quest-RS, the MAP_SHARED ring on Linux. */
struct shm_chan {
    int quest;
    unsigned key;
    shmcomm_channel_t tx;
    int rx;
    struct shm_ring *ring;
};

static void shm_child(void *ctx)
{
    struct shm_chan *c = ctx;
    if (!c->quest)
        return;
    shmcomm_close(c->tx);
    c->rx = shmcomm_open_receive(c->key, SHMCOMM_CONNECT_CH, NULL, MSG, RING);
    if (c->rx < 0)
        _exit(1);
}

static void shm_send(void *ctx, const char *m)
{
    struct shm_chan *c = ctx;
    if (!c->quest)
        ring_put(c->ring, m);
    else if (shmcomm_write(c->tx, m, MSG) != MSG)
        die("msg_shm write");
}

static int shm_recv(void *ctx, char *m)
{
    struct shm_chan *c = ctx;
    if (!c->quest) {
        ring_get(c->ring, m);
        return 0;
    }
    return shmcomm_read(c->rx, m, MSG) == MSG ? 0 : -1;
}

static void msg_shm_as(const char *name)
{
    struct shm_chan c = {.key = 7000 + (unsigned)getpid(), .rx = -1};
    c.quest = shmcomm_open_send(c.key, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, NULL, MSG, RING, &c.tx) >= 0;
    if (!c.quest) {
        if (errno != ENOSYS)
            die("shmcomm_open_send");
        c.ring = mmap(NULL, sizeof *c.ring, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (c.ring == MAP_FAILED)
            die("mmap MAP_SHARED");
        c.ring->head = c.ring->tail = 0;
    }
    printf("@INFO msg_shm=%s\n", c.quest ? "shmcomm_sync" : "mmap_shared_ring");
    struct transport t = {name, shm_child, shm_send, shm_recv, &c};
    msg_run(&t);
    if (c.quest)
        shmcomm_close(c.tx);
    else
        munmap(c.ring, sizeof *c.ring);
}

/* msg_shm: on Quest-RS the user-level data path (the region mapped, a system call only to
 * sleep or wake); msg_shm_sys: the same channel through the system-call path (the kernel runs
 * the protocol and copies each packet; QUEST_SHMCOMM_SYSCALL=1), the "before" of issue 21. */
static void b_msg_shm(void) { msg_shm_as("msg_shm"); }
static void b_msg_shm_sys(void)
{
    setenv("QUEST_SHMCOMM_SYSCALL", "1", 1);
    msg_shm_as("msg_shm_sys");
    unsetenv("QUEST_SHMCOMM_SYSCALL");
}

/* ---------------------------------------------------------------- periodic wake-up */
/* cyclictest style: clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) every 1 ms; latency = time
 * of wake-up (clock_gettime) - programmed time. Histogram in 1 us buckets up to 100 us. */
static void b_wakeup(void)
{
    int n = quick ? 200 : 1000, w = 10;
    const uint64_t period = 1000000;
    uint64_t *v = malloc(n * sizeof *v);
    static unsigned hist[101];
    memset(hist, 0, sizeof hist);
    /* Linux adds a 50 us timer slack to every sleep of a normal task (cyclictest avoids it
     * with SCHED_FIFO); ask for none. Quest-RS has no slack (and no prctl: ENOSYS). */
    printf("@INFO timerslack_prctl=%d\n", prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0));
    uint64_t next = mono_ns() + period;
    for (int i = 0; i < n + w; i++) {
        struct timespec ts = {.tv_sec = next / 1000000000ull, .tv_nsec = next % 1000000000ull};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        uint64_t now = mono_ns();
        uint64_t lat = now > next ? now - next : 0;
        if (i >= w) {
            v[i - w] = lat; /* already ns */
            hist[lat / 1000 > 100 ? 100 : lat / 1000]++;
        }
        next += period;
        while (next <= now) /* overrun: skip periods, like cyclictest */
            next += period;
    }
    qsort(v, n, sizeof *v, cmp_u64);
    printf("@BENCH wakeup_latency ns median=%llu max=%llu n=%d\n", (unsigned long long)v[n / 2],
           (unsigned long long)v[n - 1], n);
    printf("@HIST wakeup_latency");
    for (int i = 0; i <= 100; i++)
        if (hist[i])
            printf(" %dus:%u", i, hist[i]);
    printf("\n");
    uint64_t jitter = v[n - 1] - v[0];
    printf("@BENCH wakeup_jitter ns median=%llu max=%llu n=%d\n",
           (unsigned long long)(v[(n * 99) / 100] - v[n / 100]), (unsigned long long)jitter, n);
    fflush(stdout);
    free(v);
}

/* ---------------------------------------------------------------- timerfd periodic loop */
/* An event loop's timer (issue 25): a CLOCK_MONOTONIC timerfd armed every 1 ms from an
 * absolute start; each blocking read() returns the expirations since the last one; lateness =
 * the time read() returned (clock_gettime) - the latest expiry it counted (start + (total - 1)
 * * period). Histogram in 1 us buckets, as for wakeup; expirations a read found more than one
 * of are reported as overruns. */
static void b_timerfd(void)
{
    int n = quick ? 200 : 1000, w = 10;
    const uint64_t period = 1000000;
    static unsigned hist[101];
    memset(hist, 0, sizeof hist);
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (fd < 0) {
        printf("@SKIP timerfd_latency timerfd_create: %s\n", strerror(errno));
        return;
    }
    uint64_t *v = malloc(n * sizeof *v);
    uint64_t start = mono_ns() + period, total = 0, overruns = 0;
    struct itimerspec its = {.it_interval = {0, (long)period},
                             .it_value = {(time_t)(start / 1000000000ull), (long)(start % 1000000000ull)}};
    if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        die("timerfd_settime");
    for (int i = 0; i < n + w; i++) {
        uint64_t k;
        if (read(fd, &k, sizeof k) != sizeof k) {
            if (errno == EINTR) {
                i--;
                continue;
            }
            die("timerfd read");
        }
        uint64_t now = mono_ns();
        total += k;
        uint64_t due = start + (total - 1) * period;
        uint64_t lat = now > due ? now - due : 0;
        if (i >= w) {
            v[i - w] = lat;
            hist[lat / 1000 > 100 ? 100 : lat / 1000]++;
            overruns += k - 1;
        }
    }
    close(fd);
    qsort(v, n, sizeof *v, cmp_u64);
    printf("@INFO timerfd_overruns=%llu\n", (unsigned long long)overruns);
    printf("@BENCH timerfd_latency ns median=%llu max=%llu n=%d\n", (unsigned long long)v[n / 2],
           (unsigned long long)v[n - 1], n);
    printf("@HIST timerfd_latency");
    for (int i = 0; i <= 100; i++)
        if (hist[i])
            printf(" %dus:%u", i, hist[i]);
    printf("\n");
    printf("@BENCH timerfd_p99 ns median=%llu max=%llu n=%d\n", (unsigned long long)v[(n * 99) / 100],
           (unsigned long long)v[(n * 99) / 100], n);
    fflush(stdout);
    free(v);
}

/* ---------------------------------------------------------------- Thread-Metric style suite */
/* After the published description of Express Logic's Thread-Metric: each test counts the
 * operations completed in a fixed interval (here of guest time, measured with CLOCK_MONOTONIC;
 * under -icount a fixed number of guest instructions). The main thread sleeps through each
 * interval and samples the counters; worker threads do the work. @BENCH tm_* ops lines report
 * the median and the max over the intervals. Every test runs on pthreads and POSIX semaphores
 * (musl: futex), which is also Quest-RS's thread API (threads run on VCPU 0). */
static volatile int tm_stop;
static volatile uint64_t tm_count[5];

static uint64_t tm_total(int k)
{
    uint64_t s = 0;
    for (int i = 0; i < k; i++)
        s += tm_count[i];
    return s;
}

static void tm_run(const char *name, void *(*fn)(void *), int nthreads)
{
    int intervals = quick ? 3 : 5;
    uint64_t interval = quick ? 20000000ull : 100000000ull; /* ns */
    pthread_t t[5];
    tm_stop = 0;
    memset((void *)tm_count, 0, sizeof tm_count);
    for (long i = 0; i < nthreads; i++)
        if (pthread_create(&t[i], NULL, fn, (void *)i))
            die("pthread_create");
    uint64_t v[8];
    struct timespec warmup = {.tv_sec = 0, .tv_nsec = (long)(interval / 4)};
    nanosleep(&warmup, NULL);
    for (int k = 0; k < intervals; k++) {
        uint64_t c0 = tm_total(nthreads), t0 = mono_ns();
        struct timespec ts = {.tv_sec = interval / 1000000000ull, .tv_nsec = interval % 1000000000ull};
        nanosleep(&ts, NULL);
        uint64_t c1 = tm_total(nthreads), t1 = mono_ns();
        /* Normalise to exactly one interval (the sleep may overrun a little). */
        v[k] = (uint64_t)((double)(c1 - c0) * interval / (double)(t1 - t0) + 0.5);
    }
    tm_stop = 1;
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    qsort(v, intervals, sizeof v[0], cmp_u64);
    printf("@BENCH %s ops/%llums median=%llu max=%llu n=%d\n", name,
           (unsigned long long)(interval / 1000000), (unsigned long long)v[intervals / 2],
           (unsigned long long)v[intervals - 1], intervals);
    fflush(stdout);
}

/* Basic processing: no kernel calls at all (sanity row: should be ~1.0). */
static void *tm_basic(void *arg)
{
    volatile uint32_t a[64];
    while (!tm_stop) {
        for (int i = 0; i < 64; i++)
            a[i] = i;
        for (int i = 0; i < 64; i++)
            a[i] = a[i] + a[(i + 1) & 63];
        tm_count[0]++;
    }
    return arg;
}

/* Cooperative context switch: 5 threads, each increments its counter and yields. */
static void *tm_coop(void *arg)
{
    long me = (long)arg;
    while (!tm_stop) {
        tm_count[me]++;
        sched_yield();
    }
    return arg;
}

/* Preemptive context switch: 5 threads in a ring, each blocked on its own semaphore; a thread
 * wakes the next and blocks. Thread-Metric uses priorities (a resumed higher-priority thread
 * preempts); neither system gives these threads priorities here, so every step is a wake-up
 * and a switch through the scheduler. */
static sem_t ring[5];
static void *tm_preempt(void *arg)
{
    long me = (long)arg;
    for (;;) {
        sem_wait(&ring[me]);
        if (tm_stop) {
            sem_post(&ring[(me + 1) % 5]);
            break;
        }
        tm_count[me]++;
        sem_post(&ring[(me + 1) % 5]);
    }
    return arg;
}

/* Interrupt processing: the thread raises a "software interrupt" — a trap into the kernel
 * (the getppid system call: user code has no self-IPI on either system and Quest-RS delivers
 * no signals) — the "handler" posts a semaphore and the thread takes it. */
static sem_t isr_sem;
static void *tm_interrupt(void *arg)
{
    while (!tm_stop) {
        syscall(SYS_getppid);
        sem_post(&isr_sem);
        sem_wait(&isr_sem);
        tm_count[0]++;
    }
    return arg;
}

/* Message processing: a thread sends a 16-byte message to a queue and receives it back
 * (a mutex-protected ring of 10 messages). */
struct msgq {
    pthread_mutex_t m;
    uint32_t buf[10][4];
    int head, tail;
};
static struct msgq q = {.m = PTHREAD_MUTEX_INITIALIZER};
static void *tm_msgq(void *arg)
{
    uint32_t msg[4] = {1, 2, 3, 4}, in[4];
    while (!tm_stop) {
        pthread_mutex_lock(&q.m);
        memcpy(q.buf[q.tail], msg, sizeof msg);
        q.tail = (q.tail + 1) % 10;
        pthread_mutex_unlock(&q.m);
        pthread_mutex_lock(&q.m);
        memcpy(in, q.buf[q.head], sizeof in);
        q.head = (q.head + 1) % 10;
        pthread_mutex_unlock(&q.m);
        if (in[3] != 4)
            abort();
        msg[0]++;
        tm_count[0]++;
    }
    return arg;
}

/* Synchronization processing: get and put a semaphore. */
static sem_t sync_sem;
static void *tm_sem(void *arg)
{
    while (!tm_stop) {
        sem_wait(&sync_sem);
        sem_post(&sync_sem);
        tm_count[0]++;
    }
    return arg;
}

/* Memory allocation: allocate and free a 128-byte block. */
static void *tm_malloc(void *arg)
{
    while (!tm_stop) {
        void *volatile p = malloc(128);
        free(p);
        tm_count[0]++;
    }
    return arg;
}

static void b_tm(void)
{
    tm_run("tm_basic", tm_basic, 1);
    tm_run("tm_coop", tm_coop, 5);
    for (int i = 0; i < 5; i++)
        sem_init(&ring[i], 0, i == 0);
    tm_run("tm_preempt", tm_preempt, 5);
    sem_init(&isr_sem, 0, 0);
    tm_run("tm_interrupt", tm_interrupt, 1);
    tm_run("tm_msgq", tm_msgq, 1);
    sem_init(&sync_sem, 0, 1);
    tm_run("tm_sem", tm_sem, 1);
    tm_run("tm_malloc", tm_malloc, 1);
}

/* ---------------------------------------------------------------- parallel (issue 24) */
/* N threads of fixed work on an SMP machine (run only when named: `qbench parallel`; xtask
 * boots both systems with -smp 4 for it). Under -icount QEMU runs the vCPUs in turn and counts
 * every vCPU's instructions on the one guest clock, so N busy CPUs each run at 1/N speed in
 * guest time: N threads of W units take N times one thread's elapsed time whether or not they
 * ran in parallel. Two honest figures instead, per N = 1, 2, 4:
 *   parallel_N     elapsed guest time per unit of work done (all threads' units), which under
 *                  -icount is the guest instructions every CPU executed per unit: the work plus
 *                  the kernel's (placement, balancing, switches, timer ticks, idle wake-ups);
 *   parallelism_N  the threads' CPU time summed (CLOCK_THREAD_CPUTIME_ID: each kernel's own
 *                  account) over the elapsed time, in %: how many ran at once (400 % = four
 *                  CPUs busy all the time; on real hardware the speed-up).
 * The threads are started together and each does W units; distinct CPUs (sched_getcpu at
 * start) are reported as @INFO. */
static uint64_t par_work(uint64_t x, long units)
{
    for (long u = 0; u < units; u++)
        for (int i = 0; i < 1000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x;
}

struct par_job {
    long units;
    int cpu;
    uint64_t result, cpu_ns;
};

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *par_thread(void *arg)
{
    struct par_job *j = arg;
    j->cpu = sched_getcpu();
    uint64_t c0 = thread_cpu_ns();
    j->result = par_work((uintptr_t)arg, j->units);
    j->cpu_ns = thread_cpu_ns() - c0;
    return NULL;
}

static void b_parallel(void)
{
    const int ns_[] = {1, 2, 4};
    /* Per thread; one unit ~ 4,000 instructions, so 16 ms of guest time alone. Not fewer with
     * --quick: with 4 ms, -icount's round-robin turns (docs/benchmarks.md) decide the overlap. */
    const long units = 4000;
    const int reps = quick ? 3 : 5;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("@INFO parallel_cpus_online=%ld\n", ncpu);
    par_work(1, units / 10); /* warm-up */
    for (size_t k = 0; k < sizeof ns_ / sizeof ns_[0]; k++) {
        int n = ns_[k];
        uint64_t per_unit[8], par[8];
        int distinct = 0;
        for (int r = 0; r < reps; r++) {
            pthread_t t[4];
            struct par_job jobs[4];
            uint64_t t0 = rdtsc();
            for (int i = 0; i < n; i++) {
                jobs[i] = (struct par_job){.units = units};
                if (pthread_create(&t[i], NULL, par_thread, &jobs[i]))
                    die("pthread_create");
            }
            uint64_t cpu = 0;
            int seen[64] = {0};
            distinct = 0;
            for (int i = 0; i < n; i++) {
                pthread_join(t[i], NULL);
                cpu += jobs[i].cpu_ns;
                if (jobs[i].cpu >= 0 && jobs[i].cpu < 64 && !seen[jobs[i].cpu]++)
                    distinct++;
            }
            uint64_t el = ns(rdtsc() - t0);
            per_unit[r] = el / (uint64_t)(n * units);
            par[r] = el ? cpu * 100 / el : 0;
        }
        qsort(per_unit, reps, sizeof per_unit[0], cmp_u64);
        qsort(par, reps, sizeof par[0], cmp_u64);
        printf("@INFO parallel_%d_distinct_cpus=%d\n", n, distinct);
        printf("@BENCH parallel_%d ns median=%llu max=%llu n=%d\n", n, (unsigned long long)per_unit[reps / 2],
               (unsigned long long)per_unit[reps - 1], reps);
        printf("@BENCH parallelism_%d %% median=%llu max=%llu n=%d\n", n, (unsigned long long)par[reps / 2],
               (unsigned long long)par[reps - 1], reps);
        fflush(stdout);
    }
}

/* ---------------------------------------------------------------- main */
static void calibrate(void)
{
    uint64_t m0 = mono_ns(), t0 = rdtsc();
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 5000000};
    nanosleep(&ts, NULL);
    uint64_t m1 = mono_ns(), t1 = rdtsc();
    if (m1 > m0 && t1 > t0)
        tsc_per_ns = (double)(t1 - t0) / (double)(m1 - m0);
    printf("@INFO tsc_per_ns=%.4f\n", tsc_per_ns);
}

static const struct {
    const char *name;
    void (*fn)(void);
    int named_only; /* run only when named (needs a machine set up for it) */
} benches[] = {
    {"null_syscall", b_null_syscall},       {"pipe_pingpong", b_pipe_pingpong},
    {"fork_exit_wait", b_fork_exit_wait},   {"thread_create_join", b_thread_create_join},
    {"futex_pingpong", b_futex_pingpong},   {"msg_pipe", b_msg_pipe},
    {"msg_shm", b_msg_shm},                 {"msg_shm_sys", b_msg_shm_sys},
    {"wakeup", b_wakeup},                   {"timerfd", b_timerfd},
    {"tm", b_tm},                           {"parallel", b_parallel, 1},
};

int main(int argc, char **argv)
{
    boot_tsc = rdtsc();
    int poweroff = 0, any = 0;
    if (getpid() == 1 && fcntl(1, F_GETFD) < 0) {
        /* Linux init without a console: make one. */
        mknod("/dev/console", S_IFCHR | 0600, makedev(5, 1));
        int fd = open("/dev/console", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0); dup2(fd, 1); dup2(fd, 2);
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("@INFO boot_tsc=%llu\n", (unsigned long long)boot_tsc);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--poweroff"))
            poweroff = 1;
    }
    calibrate();
    printf("@INFO quick=%d\n", quick);
    /* Boot to the first instruction of this program, in ns (= instructions under icount). */
    printf("@BENCH boot_to_user ns median=%llu max=%llu n=1\n", (unsigned long long)ns(boot_tsc),
           (unsigned long long)ns(boot_tsc));
    for (size_t b = 0; b < sizeof benches / sizeof benches[0]; b++) {
        int run = !benches[b].named_only;
        for (int i = 1; i < argc; i++)
            if (argv[i][0] != '-') {
                any = 1;
                run = 0;
            }
        if (any)
            for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], benches[b].name))
                    run = 1;
        if (run) {
            printf("@START %s\n", benches[b].name);
            benches[b].fn();
        }
    }
    printf("@DONE\n");
    fflush(stdout);
    if (poweroff) {
        sync();
        reboot(RB_POWER_OFF);
    }
    return 0;
}
