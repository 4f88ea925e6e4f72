/* cpu_hog: a hostile program — binds itself to a small Main VCPU (default C = 2000 us every
 * T = 20000 us) and spins, while a forked child, bound to another Main VCPU (default 5000 us
 * every 20000 us), spins too. The scheduler must hold the hog to its budget and give the other
 * VCPU all of its own; the test checks both in the kernel's schedule trace.
 *
 *     cpu_hog [MS [HOG_C HOG_T [OTHER_C OTHER_T]]]    (times in microseconds; MS of spinning)
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

static int bind_new(const char *who, int c, int t)
{
    struct sched_param p = {.type = MAIN_VCPU, .C = c, .T = t};
    int v = vcpu_create(&p);
    if (v < 0 || vcpu_bind_task(v) < 0) {
        printf("cpu_hog: %s: cannot get a (%d, %d) VCPU\n", who, c, t);
        return -1;
    }
    return v;
}

static unsigned long spin(long long until)
{
    unsigned long n = 0;
    while (now_ns() < until)
        n++;
    return n;
}

int main(int argc, char *argv[])
{
    long ms = argc > 1 ? atol(argv[1]) : 200;
    int hc = argc > 3 ? atoi(argv[2]) : 2000, ht = argc > 3 ? atoi(argv[3]) : 20000;
    int oc = argc > 5 ? atoi(argv[4]) : 5000, ot = argc > 5 ? atoi(argv[5]) : 20000;
    long long end = now_ns() + ms * 1000000LL;
    pid_t child = fork();
    if (child == 0) {
        if (bind_new("other", oc, ot) < 0)
            _exit(1);
        spin(end);
        _exit(0);
    }
    int v = bind_new("hog", hc, ht);
    if (v < 0)
        return 1;
    printf("cpu_hog: hog on VCPU %d (C=%d T=%d) for %ld ms beside a (%d, %d) VCPU\n", v, hc, ht, ms, oc, ot);
    fflush(stdout);
    spin(end);
    int st = 0;
    waitpid(child, &st, 0);
    printf("cpu_hog: done, other exited with %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
