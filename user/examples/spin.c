/* spin: a CPU-bound program that makes no system call while it spins.
 *
 *     spin        prints "spin: spinning" and spins forever (ctrl-c must end it)
 *     spin kill   forks a child that spins (for (;;);), kills it with SIGKILL and reaps it:
 *                 "spin: child killed by signal 9 after N ms"
 *
 * Regression test of issue 22: a kill was noticed only at system-call boundaries, so a child
 * spinning in user mode was never reaped (the same child calling getpid() in its loop was).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static volatile unsigned long counter;

static void spin_forever(void)
{
    for (;;)
        counter++;
}

int main(int argc, char *argv[])
{
    if (argc > 1 && !strcmp(argv[1], "kill")) {
        pid_t c = fork();
        if (c < 0) {
            perror("spin: fork");
            return 1;
        }
        if (c == 0)
            spin_forever();
        struct timespec ts = {0, 50 * 1000000}; /* let it spin */
        nanosleep(&ts, NULL);
        long long t0 = now_ns();
        if (kill(c, SIGKILL) < 0) {
            perror("spin: kill");
            return 1;
        }
        int st = 0;
        if (waitpid(c, &st, 0) != c) {
            perror("spin: waitpid");
            return 1;
        }
        printf("spin: child killed by signal %d after %lld ms\n", WIFSIGNALED(st) ? WTERMSIG(st) : -1,
               (now_ns() - t0) / 1000000);
        return 0;
    }
    printf("spin: spinning\n");
    fflush(stdout);
    spin_forever();
}
