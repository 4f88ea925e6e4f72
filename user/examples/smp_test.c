/* smp_test: threads on several CPUs, affinity, and Linux's scheduling-policy API (issue 24).
 *
 *     smp_test par N ITERS [CPU] N threads, ITERS units of fixed work each (all confined to
 *                               CPU if given); prints the CPUs they ran on (sched_getcpu),
 *                               the time it took, the threads' CPU time (the scheduler's
 *                               account, CLOCK_THREAD_CPUTIME_ID) and their ratio: how many
 *                               CPUs worked at once
 *     smp_test pin CPU MS       a thread pinned to CPU (sched_setaffinity) spins MS ms
 *                               checking sched_getcpu; prints where it ran
 *     smp_test deadline C T MS [HOGS [CPU [FLOOD [FILE]]]]  with HOGS CPU-bound threads beside it, the
 *                               calling thread (confined to CPU if given) asks SCHED_DEADLINE (runtime C us, period = deadline
 *                               T us) and spins MS ms; prints sched_getattr. With FLOOD, the
 *                               hogs write FLOOD bytes (a line of dots) to stdout in one
 *                               write every 2 ms of spinning (with FILE: write them into
 *                               FILE and read them back; the count is printed)
 *     smp_test overload         SCHED_DEADLINE requests that cannot fit get EBUSY, bad ones
 *                               EINVAL
 *     smp_test beside C T E MS UNITS   two programs of two threads (UNITS of work each) beside a
 *                               periodic task (E us every T us) on a (C, T) Main VCPU
 *     smp_test unmap            a page read on CPU 1 and unmapped on CPU 0 faults on CPU 1
 *     smp_test policy           sched_setscheduler/getscheduler/getparam, priority ranges,
 *                               nice/getpriority, getaffinity
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vcpu.h> /* after it, `struct sched_param` is Quest's: POSIX's is passed as an int */

struct sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
};

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int setattr(uint32_t policy, uint64_t c_ns, uint64_t d_ns, uint64_t t_ns)
{
    struct sched_attr a = {.size = sizeof a, .sched_policy = policy, .sched_runtime = c_ns, .sched_deadline = d_ns, .sched_period = t_ns};
    return syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0;
}

/* One unit of fixed work: a few thousand dependent integer operations. */
static uint64_t work(uint64_t x, long units)
{
    for (long u = 0; u < units; u++)
        for (int i = 0; i < 1000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x;
}

struct job {
    long units;
    int first_cpu, last_cpu, moves;
    uint64_t result;
    long long cpu_ns;
};

static long long thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *par_thread(void *arg)
{
    struct job *j = arg;
    j->first_cpu = j->last_cpu = sched_getcpu();
    long long c0 = thread_cpu_ns();
    uint64_t x = (uintptr_t)arg;
    /* sched_getcpu every 1000 units (~4 ms): a system call takes a global kernel lock, and
     * under -icount QEMU runs the vCPUs in turn, so a vCPU stopped while holding it stalls the
     * other for a whole time slice (milliseconds of guest time). */
    for (long done = 0; done < j->units; done += 1000) {
        x = work(x, j->units - done < 1000 ? j->units - done : 1000);
        int c = sched_getcpu();
        if (c != j->last_cpu)
            j->moves++;
        j->last_cpu = c;
    }
    j->result = x;
    j->cpu_ns = thread_cpu_ns() - c0;
    return NULL;
}

static int par(int n, long units, int cpu)
{
    pthread_t t[64];
    struct job jobs[64];
    if (n < 1 || n > 64)
        return 2;
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) {
            printf("smp_test: sched_setaffinity(%d): %s\n", cpu, strerror(errno));
            return 1;
        }
    }
    long long start = now_ns();
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct job){.units = units};
        if (pthread_create(&t[i], NULL, par_thread, &jobs[i]) != 0) {
            printf("smp_test: pthread_create failed\n");
            return 1;
        }
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    long long us = (now_ns() - start) / 1000;
    int seen[256] = {0}, distinct = 0, moves = 0;
    long long cpu_ns = 0;
    printf("smp_test: par %d threads of %ld units: cpus", n, units);
    for (int i = 0; i < n; i++) {
        printf(" %d", jobs[i].first_cpu);
        if (jobs[i].first_cpu >= 0 && jobs[i].first_cpu < 256 && !seen[jobs[i].first_cpu]++)
            distinct++;
        moves += jobs[i].moves;
        cpu_ns += jobs[i].cpu_ns;
    }
    long long par100 = us > 0 ? cpu_ns / 10 / us : 0;
    printf(", %d distinct, %d moves, %lld us, cpu time %lld us, parallelism %lld.%02lld\n", distinct, moves, us, cpu_ns / 1000,
           par100 / 100, par100 % 100);
    return 0;
}

struct pin {
    int cpu;
    long ms;
    long samples, elsewhere;
    int err;
};

static void *pin_thread(void *arg)
{
    struct pin *p = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(p->cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        p->err = errno;
        return NULL;
    }
    cpu_set_t got;
    CPU_ZERO(&got);
    if (sched_getaffinity(0, sizeof got, &got) != 0 || !CPU_EQUAL(&got, &set))
        p->err = -1;
    long long end = now_ns() + p->ms * 1000000LL;
    while (now_ns() < end) {
        p->samples++;
        if (sched_getcpu() != p->cpu)
            p->elsewhere++;
        work(p->samples, 1);
    }
    return NULL;
}

static int pin(int cpu, long ms)
{
    struct pin p = {.cpu = cpu, .ms = ms};
    pthread_t t;
    pthread_create(&t, NULL, pin_thread, &p);
    pthread_join(t, NULL);
    if (p.err) {
        printf("smp_test: pin to %d failed: %s\n", cpu, p.err > 0 ? strerror(p.err) : "getaffinity differs");
        return 1;
    }
    printf("smp_test: pinned to cpu %d: %ld samples, %ld elsewhere\n", cpu, p.samples, p.elsewhere);
    return 0;
}

static volatile int hogs_stop;

static long flood_bytes;
static char flood_buf[1 << 20];
static volatile long flood_writes;

static const char *flood_path;

static void *hog(void *arg)
{
    uint64_t x = (uintptr_t)arg;
    int fd = 1;
    if (flood_bytes > 0 && flood_path && (fd = open(flood_path, O_RDWR | O_CREAT, 0644)) < 0)
        return (void *)2;
    while (!hogs_stop) {
        if (flood_bytes > 0) {
            /* To stdout, or into the file and back. */
            if (flood_path && lseek(fd, 0, SEEK_SET) != 0)
                return (void *)2;
            if (write(fd, flood_buf, flood_bytes) != flood_bytes)
                return (void *)2;
            if (flood_path && (lseek(fd, 0, SEEK_SET) != 0 || read(fd, flood_buf, flood_bytes) != flood_bytes))
                return (void *)2;
            if (flood_path)
                flood_writes++;
            for (long long until = now_ns() + 2000000; now_ns() < until && !hogs_stop;)
                x = work(x, 1);
        } else {
            x = work(x, 1);
        }
    }
    return (void *)(uintptr_t)(x & 1);
}

static int deadline(long c_us, long t_us, long ms, int hogs, int cpu, long flood, const char *path)
{
    flood_path = path;
    pthread_t h[16];
    hogs = hogs < 0 ? 0 : hogs > 16 ? 16 : hogs;
    flood_bytes = flood < 0 ? 0 : flood > (long)sizeof flood_buf ? (long)sizeof flood_buf : flood;
    if (flood_bytes > 0) {
        memset(flood_buf, '.', flood_bytes - 1);
        flood_buf[flood_bytes - 1] = '\n';
    }
    for (int i = 0; i < hogs; i++)
        pthread_create(&h[i], NULL, hog, NULL);
    if (cpu >= 0) {
        /* The reservation is then admitted on that CPU only. */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    int r = setattr(SCHED_DEADLINE, c_us * 1000ULL, t_us * 1000ULL, t_us * 1000ULL);
    if (r) {
        printf("smp_test: SCHED_DEADLINE (%ld, %ld) refused: %s\n", c_us, t_us, strerror(-r));
        hogs_stop = 1;
        for (int i = 0; i < hogs; i++)
            pthread_join(h[i], NULL);
        return 1;
    }
    struct sched_attr a;
    memset(&a, 0, sizeof a);
    if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) != 0) {
        printf("smp_test: sched_getattr: %s\n", strerror(errno));
        return 1;
    }
    printf("smp_test: deadline thread on cpu %d: policy %u runtime %llu deadline %llu period %llu\n", sched_getcpu(), a.sched_policy,
           (unsigned long long)a.sched_runtime, (unsigned long long)a.sched_deadline, (unsigned long long)a.sched_period);
    long long end = now_ns() + ms * 1000000LL;
    uint64_t x = 1;
    while (now_ns() < end)
        x = work(x, 1);
    /* Back to SCHED_OTHER: the reservation goes. */
    int prio = 0;
    r = syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &prio) < 0 ? -errno : 0;
    printf("smp_test: deadline done (%llu), back to SCHED_OTHER: %s, policy now %ld\n", (unsigned long long)(x & 1), r ? strerror(-r) : "ok",
           syscall(SYS_sched_getscheduler, 0));
    hogs_stop = 1;
    int bad = 0;
    for (int i = 0; i < hogs; i++) {
        void *ret;
        pthread_join(h[i], &ret);
        bad += ret == (void *)2;
    }
    if (flood_path)
        printf("smp_test: %ld round trips of %ld bytes through %s, %d failed\n", flood_writes, flood_bytes, flood_path, bad);
    return 0;
}

static int overload(void)
{
    int ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    /* Each CPU admits one (6 ms, 10 ms) reservation beside its best-effort VCPU (10 %) under
     * the utilization bound, never two: the first ncpu requests (each from its own thread)
     * fit, the next one does not. */
    int ok = 0, busy = 0;
    for (int i = 0; i <= ncpu; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            int r = setattr(SCHED_DEADLINE, 6000000, 10000000, 10000000);
            if (r == 0) {
                /* Hold it while the others ask. */
                struct timespec ts = {.tv_sec = 0, .tv_nsec = 300000000};
                nanosleep(&ts, NULL);
                _exit(0);
            }
            _exit(r == -EBUSY ? 3 : 4);
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 20000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i <= ncpu; i++) {
        int st;
        wait(&st);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
            ok++;
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
            busy++;
    }
    int full = setattr(SCHED_DEADLINE, 10000000, 10000000, 10000000);
    int bad1 = setattr(SCHED_DEADLINE, 5000000, 1000000, 10000000);
    int bad2 = setattr(SCHED_DEADLINE, 100, 1000000, 1000000);
    int bad3 = setattr(SCHED_DEADLINE, 2000000, 1000000, 0);
    printf("smp_test: overload: %d admitted, %d EBUSY of %d; full CPU: %s; runtime > deadline: %s; runtime < 1024 ns: %s; "
           "deadline < runtime, period 0: %s\n",
           ok, busy, ncpu + 1, strerror(-full), strerror(-bad1), strerror(-bad2), strerror(-bad3));
    return 0;
}

/* Two programs of two CPU-bound threads each (forked children running `par 2 UNITS`) beside a
 * periodic task on a (C, T) Main VCPU placed by admission (affinity "any"): a job of E us of
 * spinning released every T us for MS ms. Prints the task's jobs and lateness. */
static int beside(int c, int t, int e, long ms, long units)
{
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        if (kids[i] == 0)
            _exit(par(2, units, -1));
    }
    struct sched_param p = {.type = MAIN_VCPU, .C = c, .T = t, .affinity = VCPU_AFFINITY_ANY};
    int v = vcpu_create(&p);
    if (v < 0 || vcpu_bind_task(v) < 0) {
        printf("smp_test: cannot get a (%d, %d) VCPU\n", c, t);
        return 1;
    }
    long long start = now_ns(), end = start + ms * 1000000LL, rel = start, worst = 0;
    int jobs = 0, late = 0;
    while (rel + t * 1000LL <= end) {
        long long s = now_ns();
        while (now_ns() < s + e * 1000LL)
            ;
        long long r = now_ns() - rel;
        if (r > worst)
            worst = r;
        if (r > t * 1000LL)
            late++;
        jobs++;
        rel += t * 1000LL;
        struct timespec ts = {.tv_sec = rel / 1000000000LL, .tv_nsec = rel % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    printf("smp_test: periodic task on VCPU %d (%d, %d) on cpu %d: %d jobs of %d us, worst response %lld us, %d late\n", v, c, t,
           sched_getcpu(), jobs, e, worst / 1000, late);
    for (int i = 0; i < 2; i++) {
        int st;
        waitpid(kids[i], &st, 0);
    }
    return 0;
}

/* TLB shootdown: a thread on CPU 1 keeps reading a page (its translation cached there) while
 * the main thread on CPU 0 unmaps it; once munmap has returned, the reader's next read must
 * fault (SIGSEGV), never reach the old frame through a stale translation. */
static volatile int *shared_page;
static volatile int reading, unmapped;
static sigjmp_buf segv_jump;

static void on_segv(int sig)
{
    (void)sig;
    siglongjmp(segv_jump, 1);
}

static void *reader(void *arg)
{
    long *result = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    sched_setaffinity(0, sizeof set, &set);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, NULL);
    volatile long sum = 0;
    if (sigsetjmp(segv_jump, 1) == 0) {
        /* A fault in this loop is the unmap taking effect before the flag was seen. */
        while (!unmapped) {
            sum += *shared_page;
            reading = 1;
        }
        sum += *shared_page; /* munmap has returned on CPU 0 */
        *result = 1;         /* read through a stale translation */
    } else {
        *result = 2; /* faulted */
    }
    return (void *)(long)sum;
}

static int unmap_test(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof set, &set);
    /* The middle page of three: no thread stack is next to it (a fault beside the stack
     * pointer is reported as a stack overflow). */
    char *area = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return 1;
    int *p = (int *)(area + 4096);
    *p = 42;
    shared_page = p;
    long result = 0;
    pthread_t t;
    pthread_create(&t, NULL, reader, &result);
    while (!reading)
        ;
    munmap(p, 4096);
    unmapped = 1;
    pthread_join(t, NULL);
    printf("smp_test: unmap: reader on cpu 1 after munmap on cpu 0: %s\n",
           result == 2 ? "faulted" : result == 1 ? "read a stale translation" : "?");
    return result == 2 ? 0 : 1;
}

static int policy(void)
{
    int sp = 50;
    long r = syscall(SYS_sched_setscheduler, 0, SCHED_FIFO, &sp);
    long pol = syscall(SYS_sched_getscheduler, 0);
    int got = 0;
    syscall(SYS_sched_getparam, 0, &got);
    printf("smp_test: policy: setscheduler(FIFO, 50) = %ld, getscheduler = %ld, priority %d, fifo range %d..%d, other range %d..%d\n", r,
           pol, got, sched_get_priority_min(SCHED_FIFO), sched_get_priority_max(SCHED_FIFO),
           sched_get_priority_min(SCHED_OTHER), sched_get_priority_max(SCHED_OTHER));
    sp = 100;
    r = syscall(SYS_sched_setscheduler, 0, SCHED_RR, &sp) < 0 ? errno : 0;
    sp = 0;
    long back = syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, &sp);
    errno = 0;
    int n0 = getpriority(PRIO_PROCESS, 0);
    int n = nice(5);
    int n1 = getpriority(PRIO_PROCESS, 0);
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    printf("smp_test: policy: RR 100: %s; back to OTHER: %ld; nice %d, nice(5) = %d, now %d; %d CPUs allowed of %ld\n", strerror(r), back,
           n0, n, n1, CPU_COUNT(&set), sysconf(_SC_NPROCESSORS_ONLN));
    return 0;
}

int main(int argc, char *argv[])
{
    if (argc >= 4 && !strcmp(argv[1], "par"))
        return par(atoi(argv[2]), atol(argv[3]), argc >= 5 ? atoi(argv[4]) : -1);
    if (argc >= 4 && !strcmp(argv[1], "pin"))
        return pin(atoi(argv[2]), atol(argv[3]));
    if (argc >= 5 && !strcmp(argv[1], "deadline"))
        return deadline(atol(argv[2]), atol(argv[3]), atol(argv[4]), argc >= 6 ? atoi(argv[5]) : 0, argc >= 7 ? atoi(argv[6]) : -1,
                        argc >= 8 ? atol(argv[7]) : 0, argc >= 9 ? argv[8] : NULL);
    if (argc >= 2 && !strcmp(argv[1], "overload"))
        return overload();
    if (argc >= 7 && !strcmp(argv[1], "beside"))
        return beside(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atol(argv[5]), atol(argv[6]));
    if (argc >= 2 && !strcmp(argv[1], "unmap"))
        return unmap_test();
    if (argc >= 2 && !strcmp(argv[1], "policy"))
        return policy();
    fprintf(stderr, "usage: smp_test par N ITERS [CPU] | pin CPU MS | deadline C_US T_US MS [HOGS [CPU [FLOOD [FILE]]]] | beside C T E MS UNITS | overload | unmap | policy\n");
    return 2;
}
