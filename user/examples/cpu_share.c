/* cpu_share: how much of the CPU a CPU-bound program started from the shell gets.
 *
 *     cpu_share MS [C T E]
 *
 * Spins for MS milliseconds of monotonic time, reading the clock in a tight loop; any step
 * between two readings longer than 20 us is time the program did not run (another task, the
 * idle loop waiting for a replenishment). Prints the share it ran. With C, T and E
 * (microseconds), a forked child binds itself to a new (C, T) Main VCPU and runs a periodic
 * task beside it for the same time: a job of E us of spinning released every T us (E <= C),
 * and reports how late its jobs finished.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vcpu.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char *argv[])
{
    long ms = argc > 1 ? atol(argv[1]) : 1000;
    int c = argc > 4 ? atoi(argv[2]) : 0, t = argc > 4 ? atoi(argv[3]) : 0, e = argc > 4 ? atoi(argv[4]) : 0;
    pid_t child = -1;
    long long start = now_ns(), end = start + ms * 1000000LL;
    if (c > 0) {
        child = fork();
        if (child == 0) {
            struct sched_param p = {.type = MAIN_VCPU, .C = c, .T = t};
            int v = vcpu_create(&p);
            if (v < 0 || vcpu_bind_task(v) < 0) {
                printf("cpu_share: cannot get a (%d, %d) VCPU\n", c, t);
                _exit(1);
            }
            /* Periodic jobs: released every T from now, E of spinning each. */
            long long rel = now_ns(), worst = 0;
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
            printf("cpu_share: periodic task on a (%d, %d) VCPU: %d jobs of %d us, worst response %lld us, %d late\n", c, t,
                   jobs, e, worst / 1000, late);
            _exit(0);
        }
    }
    long long prev = now_ns(), off = 0, gap = 0;
    for (;;) {
        long long n = now_ns();
        long long d = n - prev;
        if (d > 20000) {
            off += d;
            if (d > gap)
                gap = d;
        }
        prev = n;
        if (n >= end)
            break;
    }
    long long total = prev - start;
    long long on = total - off;
    long permille = (long)(on * 100000 / (total > 0 ? total : 1));
    printf("cpu_share: ran %ld.%03ld%% of %lld ms (longest gap %lld us)%s\n", permille / 1000, permille % 1000,
           total / 1000000, gap / 1000, c > 0 ? ", beside a reserved VCPU" : "");
    if (child > 0) {
        int st = 0;
        waitpid(child, &st, 0);
        printf("cpu_share: the (%d, %d) VCPU's task exited with %d\n", c, t, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    return 0;
}
