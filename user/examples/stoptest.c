/* stoptest: stopping and continuing processes (issue 22): SIGSTOP and SIGTSTP stop a process —
 * one spinning in user mode included — until SIGCONT; wait4 reports both (WUNTRACED,
 * WCONTINUED) and the parent gets SIGCHLD with CLD_STOPPED / CLD_CONTINUED; SIGKILL ends a
 * stopped process; a SIGTSTP handler runs instead of a stop. One line per check, then
 * "stoptest: N checks, M failed". The same static binary runs on Linux as init (the reference).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK_PROGRAM "stoptest"
#include <checklist.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int wait_for(pid_t c, int *st, int options)
{
    int r;
    while ((r = waitpid(c, st, options)) < 0 && errno == EINTR) {
    }
    return r;
}

static volatile sig_atomic_t tstp_seen;
static void on_tstp(int s)
{
    (void)s;
    tstp_seen = 1;
}

static int run(int argc, char *argv[])
{
    (void)argc;
    (void)argv;
    int st = 0;
    /* A child stops itself; the parent sees the stop, continues it, sees that, reaps it. */
    pid_t c = fork();
    if (c == 0) {
        raise(SIGSTOP);
        _exit(7);
    }
    int r1 = wait_for(c, &st, WUNTRACED);
    int stopped = r1 == c && WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP;
    int none = waitpid(c, &st, WNOHANG | WUNTRACED); /* reported once */
    kill(c, SIGCONT);
    int r2 = wait_for(c, &st, WCONTINUED);
    int cont = r2 == c && WIFCONTINUED(st);
    int r3 = wait_for(c, &st, 0);
    check("raise_sigstop_is_reported_by_wuntraced", stopped && none == 0, "wait %d status %#x again %d", r1, st, none);
    check("sigcont_is_reported_by_wcontinued", cont, "wait %d", r2);
    check("continued_child_runs_on", r3 == c && WIFEXITED(st) && WEXITSTATUS(st) == 7, "wait %d status %#x", r3, st);

    /* A child spinning in user mode makes no progress while stopped. */
    volatile unsigned long *n = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    c = fork();
    if (c == 0) {
        for (;;)
            (*n)++;
    }
    sleep_ms(50);
    kill(c, SIGSTOP);
    int rs = wait_for(c, &st, WUNTRACED);
    unsigned long v1 = *n;
    sleep_ms(150);
    unsigned long v2 = *n;
    kill(c, SIGCONT);
    sleep_ms(100);
    unsigned long v3 = *n;
    kill(c, SIGKILL);
    int rk = wait_for(c, &st, 0);
    check("stopped_spinner_makes_no_progress", rs == c && v1 > 0 && v2 == v1 && v3 > v2, "wait %d counts %lu %lu %lu", rs, v1, v2, v3);
    check("sigkill_ends_a_continued_spinner", rk == c && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %#x", st);

    /* SIGKILL ends a stopped process; SIGCHLD tells the parent of stops and continues. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    c = fork();
    if (c == 0) {
        for (;;)
            pause();
    }
    kill(c, SIGSTOP);
    struct timespec two = {2, 0};
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int g1 = sigtimedwait(&chld, &si, &two);
    int stop_info = g1 == SIGCHLD && si.si_code == CLD_STOPPED && si.si_pid == c && si.si_status == SIGSTOP;
    kill(c, SIGCONT);
    memset(&si, 0, sizeof si);
    int g2 = sigtimedwait(&chld, &si, &two);
    int cont_info = g2 == SIGCHLD && si.si_code == CLD_CONTINUED && si.si_pid == c;
    check("sigchld_cld_stopped_and_continued", stop_info && cont_info, "first %d code %d", g1, si.si_code);
    kill(c, SIGSTOP);
    wait_for(c, &st, WUNTRACED);
    kill(c, SIGKILL);
    int rk2 = wait_for(c, &st, 0);
    check("sigkill_ends_a_stopped_process", rk2 == c && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %#x", st);
    sigtimedwait(&chld, &si, &(struct timespec){0, 0}); /* the pending SIGCHLDs */
    sigtimedwait(&chld, &si, &(struct timespec){0, 0});
    sigprocmask(SIG_UNBLOCK, &chld, NULL);

    /* SIGTSTP with a handler does not stop; with the default action it stops. */
    c = fork();
    if (c == 0) {
        /* Its own process group, with the parent outside it: not orphaned, so the terminal
         * stop signals keep their default action (Linux discards them in orphaned groups). */
        setpgid(0, 0);
        signal(SIGTSTP, on_tstp);
        while (!tstp_seen)
            pause();
        signal(SIGTSTP, SIG_DFL);
        raise(SIGTSTP);
        _exit(3);
    }
    sleep_ms(50);
    kill(c, SIGTSTP);
    int rt = wait_for(c, &st, WUNTRACED);
    int tstp_stop = rt == c && WIFSTOPPED(st) && WSTOPSIG(st) == SIGTSTP;
    kill(c, SIGCONT);
    int rt2 = wait_for(c, &st, 0);
    check("sigtstp_handler_then_default_stop", tstp_stop && rt2 == c && WIFEXITED(st) && WEXITSTATUS(st) == 3, "stop %d, exit status %#x", tstp_stop, st);

    /* A sleeping child stopped and continued finishes its sleep. */
    c = fork();
    if (c == 0) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        sleep_ms(200);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        _exit(ms >= 200 ? 0 : 1);
    }
    sleep_ms(50);
    kill(c, SIGSTOP);
    wait_for(c, &st, WUNTRACED);
    sleep_ms(50);
    kill(c, SIGCONT);
    int rz = wait_for(c, &st, 0);
    check("stopped_sleep_is_finished_after_sigcont", rz == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);

    printf("stoptest: %d checks, %d failed\n", checks, failed);
    fflush(stdout);
    return failed != 0;
}

int main(int argc, char *argv[])
{
    return check_main(argc, argv, run);
}
