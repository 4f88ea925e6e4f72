/* sigtest: signals as programs use them (issue 22), one line per check:
 * "sigtest: NAME ok" or "sigtest: NAME FAILED: why", then "sigtest: N checks, M failed".
 * The same static binary runs on Linux (the QEMU test boots Debian's kernel with it as init)
 * and must pass there too.
 *
 *     sigtest           every check
 *     sigtest ctrlc     waits in pause() with a SIGINT handler: "sigtest: caught SIGINT"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK_PROGRAM "sigtest"
#include <checklist.h>

static void set_handler(int sig, void (*h)(int, siginfo_t *, void *), int flags, const sigset_t *mask)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h;
    sa.sa_flags = flags | SA_SIGINFO;
    if (mask)
        sa.sa_mask = *mask;
    else
        sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) < 0) {
        printf("sigtest: sigaction(%d): %s\n", sig, strerror(errno));
    }
}

static void set_default(int sig)
{
    signal(sig, SIG_DFL);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* --- handler, siginfo, masks ------------------------------------------------------------- */

static volatile sig_atomic_t got_sig, got_code, got_pid, order[8], norder, depth, maxdepth, calls;
static volatile uintptr_t handler_sp;

static void h_info(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    got_sig = sig;
    got_code = si->si_code;
    got_pid = si->si_pid;
    if (norder < 8)
        order[norder++] = sig;
}

static void h_usr1_raises_usr2(int sig, siginfo_t *si, void *uc)
{
    h_info(sig, si, uc);
    raise(SIGUSR2); /* blocked by sa_mask: runs after this handler returns */
    if (norder < 8)
        order[norder++] = 100;
}

static void h_nodefer(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    depth++;
    calls++;
    if (depth > maxdepth)
        maxdepth = depth;
    if (calls < 3)
        raise(sig); /* re-enters at once with SA_NODEFER, after this return without */
    depth--;
}

static void h_stack(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    int local;
    handler_sp = (uintptr_t)&local;
    stack_t cur;
    sigaltstack(NULL, &cur);
    got_code = cur.ss_flags;
}

static void test_basics(void)
{
    set_handler(SIGUSR1, h_info, 0, NULL);
    got_sig = 0;
    raise(SIGUSR1);
    check("raise_runs_the_handler", got_sig == SIGUSR1 && got_code == SI_TKILL && got_pid == getpid(),
          "sig %d code %d pid %d", got_sig, got_code, got_pid);
    got_sig = 0;
    kill(getpid(), SIGUSR1);
    check("kill_siginfo", got_sig == SIGUSR1 && got_code == SI_USER && got_pid == getpid(), "sig %d code %d pid %d",
          got_sig, got_code, got_pid);

    /* Blocked: pending, then delivered when unblocked (before sigprocmask returns). */
    sigset_t s, old, pend;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_BLOCK, &s, &old);
    got_sig = 0;
    raise(SIGUSR1);
    sigpending(&pend);
    int was_pending = sigismember(&pend, SIGUSR1), ran_early = got_sig;
    sigprocmask(SIG_SETMASK, &old, NULL);
    check("blocked_signal_waits_until_unblocked", was_pending && !ran_early && got_sig == SIGUSR1,
          "pending %d early %d after %d", was_pending, ran_early, got_sig);

    /* sa_mask blocks SIGUSR2 during the SIGUSR1 handler. */
    set_handler(SIGUSR2, h_info, 0, NULL);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    set_handler(SIGUSR1, h_usr1_raises_usr2, 0, &m);
    norder = 0;
    raise(SIGUSR1);
    check("sa_mask_defers_a_signal", norder == 3 && order[0] == SIGUSR1 && order[1] == 100 && order[2] == SIGUSR2,
          "order %d: %d %d %d", norder, order[0], order[1], order[2]);

    /* SA_NODEFER: the handler is re-entered. Without it: not. */
    set_handler(SIGUSR1, h_nodefer, SA_NODEFER, NULL);
    depth = maxdepth = calls = 0;
    raise(SIGUSR1);
    check("sa_nodefer_reenters", maxdepth == 3 && calls == 3, "depth %d calls %d", maxdepth, calls);
    set_handler(SIGUSR1, h_nodefer, 0, NULL);
    depth = maxdepth = calls = 0;
    raise(SIGUSR1);
    check("without_sa_nodefer_no_reentry", maxdepth == 1 && calls == 3, "depth %d calls %d", maxdepth, calls);

    /* SA_RESETHAND: back to SIG_DFL after one delivery. */
    set_handler(SIGUSR2, h_info, SA_RESETHAND, NULL);
    raise(SIGUSR2);
    struct sigaction cur;
    sigaction(SIGUSR2, NULL, &cur);
    check("sa_resethand", cur.sa_handler == SIG_DFL, "handler %p", (void *)cur.sa_handler);

    /* sigaltstack and SA_ONSTACK. */
    static char alt[65536];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
    int r = sigaltstack(&ss, NULL);
    set_handler(SIGUSR1, h_stack, SA_ONSTACK, NULL);
    handler_sp = 0;
    got_code = -1;
    raise(SIGUSR1);
    check("sigaltstack_onstack", r == 0 && handler_sp > (uintptr_t)alt && handler_sp < (uintptr_t)alt + sizeof alt &&
                                     got_code == SS_ONSTACK,
          "r %d sp %#lx alt %p flags %d", r, (unsigned long)handler_sp, (void *)alt, got_code);
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);
    set_default(SIGUSR1);
    set_default(SIGUSR2);
}

/* --- real-time signals, sigqueue, sigtimedwait --------------------------------------------- */

static volatile int rt_vals[8], nrt;

static void h_rt(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (nrt < 8)
        rt_vals[nrt++] = sig * 1000 + si->si_value.sival_int;
}

static void test_realtime(void)
{
    int a = SIGRTMIN + 1, b = SIGRTMIN + 2;
    set_handler(a, h_rt, 0, NULL);
    set_handler(b, h_rt, 0, NULL);
    sigset_t s, old;
    sigemptyset(&s);
    sigaddset(&s, a);
    sigaddset(&s, b);
    sigprocmask(SIG_BLOCK, &s, &old);
    nrt = 0;
    for (int i = 1; i <= 3; i++) {
        union sigval v = {.sival_int = i};
        sigqueue(getpid(), b, v);
        sigqueue(getpid(), a, v);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    /* Every instance arrives, each signal's in the order sent (which signal's handlers run
     * first depends on how the kernel nests the frames). */
    int ok = nrt == 6, na = 0, nb = 0;
    for (int i = 0; i < nrt && ok; i++) {
        if (rt_vals[i] / 1000 == a)
            ok = rt_vals[i] == a * 1000 + ++na;
        else
            ok = rt_vals[i] == b * 1000 + ++nb;
    }
    check("realtime_signals_queue_in_order", ok && na == 3 && nb == 3, "n %d: %d %d %d %d %d %d", nrt, rt_vals[0],
          rt_vals[1], rt_vals[2], rt_vals[3], rt_vals[4], rt_vals[5]);
    set_default(a);
    set_default(b);

    /* sigtimedwait takes a blocked pending signal; times out with EAGAIN. */
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_BLOCK, &s, &old);
    raise(SIGUSR1);
    siginfo_t si;
    struct timespec to = {0, 20 * 1000000};
    int r1 = sigtimedwait(&s, &si, &to);
    int r2 = sigtimedwait(&s, &si, &to);
    int e2 = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    check("sigtimedwait", r1 == SIGUSR1 && si.si_signo == SIGUSR1 && r2 < 0 && e2 == EAGAIN, "r1 %d r2 %d errno %d",
          r1, r2, e2);
}

/* --- children: SIGCHLD, default actions, ignoring --------------------------------------- */

static volatile sig_atomic_t chld_pid, chld_status, chld_code;

static void h_chld(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    chld_pid = si->si_pid;
    chld_status = si->si_status;
    chld_code = si->si_code;
}

static int child_status(void (*body)(void))
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        body();
        _exit(0);
    }
    int st = -1;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
    }
    return st;
}

static void raise_term(void) { raise(SIGTERM); }
static void ignore_term(void)
{
    signal(SIGTERM, SIG_IGN);
    raise(SIGTERM);
    _exit(7);
}
static void rt_default(void) { raise(SIGRTMIN + 5); }
static void broken_pipe(void)
{
    int p[2];
    pipe(p);
    close(p[0]);
    write(p[1], "x", 1);
    _exit(9);
}
static void ignored_pipe(void)
{
    int p[2];
    pipe(p);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    _exit(write(p[1], "x", 1) < 0 && errno == EPIPE ? 11 : 12);
}

static void test_children(void)
{
    set_handler(SIGCHLD, h_chld, SA_RESTART, NULL);
    chld_pid = 0;
    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(3);
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
    }
    check("sigchld_siginfo", chld_pid == c && chld_status == 3 && chld_code == CLD_EXITED && WIFEXITED(st) &&
                                 WEXITSTATUS(st) == 3,
          "pid %d/%d status %d code %d", chld_pid, c, chld_status, chld_code);
    set_default(SIGCHLD);

    st = child_status(raise_term);
    check("sigterm_default_terminates", WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "status %#x", st);
    st = child_status(ignore_term);
    check("sig_ign_ignores", WIFEXITED(st) && WEXITSTATUS(st) == 7, "status %#x", st);
    st = child_status(rt_default);
    check("realtime_default_terminates", WIFSIGNALED(st) && WTERMSIG(st) == SIGRTMIN + 5, "status %#x", st);
    st = child_status(broken_pipe);
    check("sigpipe_default_terminates", WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE, "status %#x", st);
    st = child_status(ignored_pipe);
    check("sigpipe_ignored_gives_epipe", WIFEXITED(st) && WEXITSTATUS(st) == 11, "status %#x", st);

    /* SIGCHLD ignored: children are reaped by the kernel; wait finds none. */
    signal(SIGCHLD, SIG_IGN);
    fflush(stdout);
    c = fork();
    if (c == 0)
        _exit(0);
    sleep_ms(50);
    int w = waitpid(c, &st, 0);
    int e = errno;
    signal(SIGCHLD, SIG_DFL);
    check("sigchld_ignored_reaps", w < 0 && e == ECHILD, "waitpid %d errno %d", w, e);
}

/* --- faults delivered to handlers ----------------------------------------------------------- */

static sigjmp_buf jb;
static volatile uintptr_t fault_addr;
static volatile int fault_sig, fault_code;

static void h_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    fault_sig = sig;
    fault_code = si->si_code;
    fault_addr = (uintptr_t)si->si_addr;
    siglongjmp(jb, 1);
}

static volatile int zero;

static void test_faults(void)
{
    set_handler(SIGSEGV, h_fault, 0, NULL);
    set_handler(SIGFPE, h_fault, 0, NULL);
    set_handler(SIGILL, h_fault, 0, NULL);
    fault_sig = 0;
    if (!sigsetjmp(jb, 1))
        *(volatile int *)16 = 1;
    check("sigsegv_handler", fault_sig == SIGSEGV && fault_addr == 16 && fault_code == SEGV_MAPERR,
          "sig %d addr %#lx code %d", fault_sig, (unsigned long)fault_addr, fault_code);
    fault_sig = 0;
    if (!sigsetjmp(jb, 1)) {
        int q, r, d = zero;
        __asm__ volatile("idivl %2" : "=a"(q), "=d"(r) : "r"(d), "a"(1), "d"(0));
        (void)q;
        (void)r;
    }
    check("sigfpe_handler", fault_sig == SIGFPE && fault_code == FPE_INTDIV, "sig %d code %d", fault_sig, fault_code);
    fault_sig = 0;
    if (!sigsetjmp(jb, 1))
        __asm__ volatile("ud2");
    check("sigill_handler", fault_sig == SIGILL, "sig %d", fault_sig);
    /* The handler's mask (SIGSEGV blocked inside it) was undone by siglongjmp. */
    fault_sig = 0;
    if (!sigsetjmp(jb, 1))
        *(volatile int *)16 = 1;
    check("sigsegv_handler_twice", fault_sig == SIGSEGV, "sig %d", fault_sig);
    set_default(SIGSEGV);
    set_default(SIGFPE);
    set_default(SIGILL);
}

/* --- timers, EINTR, restart, sigsuspend ------------------------------------------------------ */

static volatile sig_atomic_t alarms;

static void h_alarm(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    alarms++;
    /* Trash the SSE registers: the interrupted code must not notice. */
    volatile double d = 3.0;
    for (int i = 0; i < 10; i++)
        d = d * 1.7 + 0.3;
}

static void itimer_ms(long first, long every)
{
    struct itimerval it = {{every / 1000, (every % 1000) * 1000}, {first / 1000, (first % 1000) * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void test_timers(void)
{
    set_handler(SIGALRM, h_alarm, 0, NULL);
    alarms = 0;
    itimer_ms(30, 0);
    int r = pause();
    check("setitimer_ends_pause_with_eintr", r < 0 && errno == EINTR && alarms == 1, "r %d errno %d alarms %d", r, errno,
          alarms);

    /* A read interrupted by a handler without SA_RESTART: EINTR. */
    int p[2];
    pipe(p);
    alarms = 0;
    itimer_ms(30, 0);
    char c;
    ssize_t n = read(p[0], &c, 1);
    check("read_interrupted_eintr", n < 0 && errno == EINTR && alarms == 1, "n %zd errno %d", n, errno);

    /* With SA_RESTART the read goes on and gets the byte a child writes later. */
    set_handler(SIGALRM, h_alarm, SA_RESTART, NULL);
    alarms = 0;
    fflush(stdout);
    pid_t w = fork();
    if (w == 0) {
        sleep_ms(150);
        write(p[1], "z", 1);
        _exit(0);
    }
    itimer_ms(30, 0);
    n = read(p[0], &c, 1);
    check("read_restarted_sa_restart", n == 1 && c == 'z' && alarms == 1, "n %zd errno %d alarms %d", n, errno, alarms);
    waitpid(w, NULL, 0);
    close(p[0]);
    close(p[1]);

    /* Asynchronous signals into a floating-point loop (timer interrupts): the sums stay exact. */
    alarms = 0;
    itimer_ms(2, 2);
    volatile double sum = 0;
    double acc = 0;
    long i;
    for (i = 0; alarms < 20 && i < 400000000L; i++)
        acc += 0.5;
    sum = acc;
    itimer_ms(0, 0);
    check("handlers_keep_fpu_state", sum == 0.5 * (double)i && alarms >= 20, "sum %f i %ld alarms %d", sum, i, alarms);

    /* alarm() returns the seconds left of the previous alarm. */
    alarm(5);
    unsigned left = alarm(0);
    check("alarm_returns_time_left", left >= 4 && left <= 5, "left %u", left);

    /* nanosleep interrupted: EINTR and the time left. */
    alarms = 0;
    itimer_ms(30, 0);
    struct timespec ts = {2, 0}, rem = {0, 0};
    r = nanosleep(&ts, &rem);
    check("nanosleep_eintr_with_remaining", r < 0 && errno == EINTR && rem.tv_sec >= 1 && rem.tv_sec <= 2,
          "r %d errno %d rem %ld", r, errno, (long)rem.tv_sec);

    /* sigsuspend: SIGUSR1 blocked, a child sends it, sigsuspend with an empty mask takes it. */
    set_handler(SIGUSR1, h_info, 0, NULL);
    sigset_t s, old, empty, now;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_BLOCK, &s, &old);
    got_sig = 0;
    fflush(stdout);
    pid_t k = fork();
    if (k == 0) {
        sleep_ms(30);
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    sigemptyset(&empty);
    r = sigsuspend(&empty);
    int e = errno;
    sigprocmask(SIG_SETMASK, NULL, &now);
    check("sigsuspend", r < 0 && e == EINTR && got_sig == SIGUSR1 && sigismember(&now, SIGUSR1), "r %d errno %d sig %d",
          r, e, got_sig);
    sigprocmask(SIG_SETMASK, &old, NULL);
    waitpid(k, NULL, 0);
    set_default(SIGUSR1);
    set_default(SIGALRM);
}

/* --- POSIX timers ------------------------------------------------------------------------- */

static volatile int timer_hits, timer_val, timer_code;

static void h_timer(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    timer_hits++;
    timer_val = si->si_value.sival_int;
    timer_code = si->si_code;
}

static void test_posix_timers(void)
{
    set_handler(SIGUSR2, h_timer, SA_RESTART, NULL);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR2;
    sev.sigev_value.sival_int = 42;
    timer_t t;
    int r = timer_create(CLOCK_MONOTONIC, &sev, &t);
    struct itimerspec its = {{0, 0}, {0, 20 * 1000000}};
    timer_hits = 0;
    if (r == 0)
        timer_settime(t, 0, &its, NULL);
    for (int i = 0; i < 1000 && !timer_hits; i++)
        sleep_ms(1);
    check("posix_timer_one_shot", r == 0 && timer_hits == 1 && timer_val == 42 && timer_code == SI_TIMER,
          "r %d hits %d value %d code %d", r, timer_hits, timer_val, timer_code);
    struct itimerspec per = {{0, 5 * 1000000}, {0, 5 * 1000000}}, cur;
    timer_hits = 0;
    timer_settime(t, 0, &per, NULL);
    for (int i = 0; i < 2000 && timer_hits < 5; i++)
        sleep_ms(1);
    timer_gettime(t, &cur);
    int hits = timer_hits, d = timer_delete(t);
    int again = timer_settime(t, 0, &per, NULL);
    check("posix_timer_periodic_and_delete",
          hits >= 5 && cur.it_interval.tv_nsec == 5 * 1000000 && d == 0 && again < 0 && errno == EINVAL,
          "hits %d interval %ld delete %d again %d", hits, (long)cur.it_interval.tv_nsec, d, again);
    set_default(SIGUSR2);
}

/* --- threads: per-thread masks, pthread_kill, cancellation ---------------------------------- */

static volatile pthread_t handled_on;
static volatile int thread_ready;

static void h_thread(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    handled_on = pthread_self();
}

static void *waiter(void *arg)
{
    (void)arg;
    thread_ready = 1;
    for (;;)
        pause();
    return NULL;
}

static void *spinner(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    thread_ready = 1;
    while (!handled_on)
        ;
    return NULL;
}

static void test_threads(void)
{
    set_handler(SIGUSR1, h_thread, 0, NULL);
    pthread_t t;
    thread_ready = 0;
    handled_on = 0;
    pthread_create(&t, NULL, waiter, NULL);
    while (!thread_ready)
        sleep_ms(1);
    pthread_kill(t, SIGUSR1);
    for (int i = 0; i < 1000 && !handled_on; i++)
        sleep_ms(1);
    check("pthread_kill_reaches_that_thread", handled_on == t, "handled on %#lx, want %#lx", (unsigned long)handled_on,
          (unsigned long)t);
    int rc = pthread_cancel(t);
    void *res = NULL;
    int jc = pthread_join(t, &res);
    check("pthread_cancel_of_a_waiting_thread", rc == 0 && jc == 0 && res == PTHREAD_CANCELED, "cancel %d join %d res %p",
          rc, jc, res);

    /* A process-directed signal goes to the thread that does not block it (a spinning one). */
    set_handler(SIGUSR2, h_thread, 0, NULL);
    sigset_t s, old;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, &old);
    thread_ready = 0;
    handled_on = 0;
    pthread_create(&t, NULL, spinner, NULL);
    while (!thread_ready)
        sleep_ms(1);
    kill(getpid(), SIGUSR2);
    pthread_join(t, NULL);
    check("process_signal_goes_to_an_unblocking_thread", handled_on == t, "handled on %#lx", (unsigned long)handled_on);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    set_default(SIGUSR1);
    set_default(SIGUSR2);
}

static volatile sig_atomic_t got_int;
static void h_int(int sig)
{
    (void)sig;
    got_int = 1;
}

static int run_all(void)
{
    test_basics();
    test_realtime();
    test_children();
    test_faults();
    test_timers();
    test_posix_timers();
    test_threads();
    printf("sigtest: %d checks, %d failed\n", checks, failed);
    fflush(stdout);
    return failed != 0;
}

int main(int argc, char *argv[])
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && !strcmp(argv[1], "ctrlc")) {
        signal(SIGINT, h_int);
        printf("sigtest: waiting for SIGINT\n");
        fflush(stdout);
        while (!got_int)
            pause();
        printf("sigtest: caught SIGINT\n");
        return 0;
    }
    if (getpid() == 1) {
        /* Linux, as init (the QEMU test's reference run): a console, the checks in a child
         * (init ignores default-action signals), then power off. */
        mknod("/dev/console", S_IFCHR | 0600, makedev(5, 1));
        int fd = open("/dev/console", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        printf("sigtest: on Linux as init\n");
        fflush(stdout);
        pid_t c = fork();
        if (c == 0)
            _exit(run_all());
        int st;
        while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
        }
        printf("sigtest: done\n");
        fflush(stdout);
        sync();
        reboot(RB_POWER_OFF);
        return 0;
    }
    return run_all();
}
