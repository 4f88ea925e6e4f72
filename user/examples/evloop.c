/* evloop: an event-loop program of the usual shape (issue 25): one epoll set over a periodic
 * timerfd, an eventfd and a non-blocking pipe (edge-triggered, read until EAGAIN), and a
 * worker thread that takes jobs from another pipe.
 *
 * Each round waits for the timer, sends job k to the worker, and waits until both the
 * worker's eventfd signal and its answer on the result pipe have arrived. The output (lines
 * starting "evloop:") depends only on the protocol, not on timing, so it is the same on every
 * kernel: the QEMU test compares Quest's with Linux's. Usage: evloop [ROUNDS] (default 10).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

enum { TIMER = 1, DONE = 2, RESULTS = 3 };

static int jobs[2], results[2], done_efd;

static void die(const char *what)
{
    printf("evloop: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* The worker: a job is a number; the answer is "k*k" on the result pipe, announced by +1 on
 * the eventfd. End of file on the job pipe ends it. */
static void *worker(void *arg)
{
    (void)arg;
    long k;
    while (read(jobs[0], &k, sizeof k) == sizeof k) {
        char line[64];
        int n = snprintf(line, sizeof line, "job %ld -> %ld\n", k, k * k);
        if (write(results[1], line, n) != n)
            die("write result");
        uint64_t one = 1;
        if (write(done_efd, &one, sizeof one) != sizeof one)
            die("write eventfd");
    }
    close(results[1]);
    return NULL;
}

static int run(int rounds)
{
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    done_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (tfd < 0 || done_efd < 0 || ep < 0)
        die("timerfd/eventfd/epoll");
    if (pipe(jobs) < 0 || pipe2(results, O_NONBLOCK | O_CLOEXEC) < 0)
        die("pipe");
    struct epoll_event ev = {EPOLLIN, {.u32 = TIMER}};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    ev.data.u32 = DONE;
    epoll_ctl(ep, EPOLL_CTL_ADD, done_efd, &ev);
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u32 = RESULTS;
    epoll_ctl(ep, EPOLL_CTL_ADD, results[0], &ev);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);

    struct itimerspec its = {{0, 2000000}, {0, 2000000}}; /* every 2 ms */
    timerfd_settime(tfd, 0, &its, NULL);
    printf("evloop: %d rounds, a 2 ms timerfd, an eventfd and two pipes in one epoll set\n", rounds);
    uint64_t expirations = 0, signals = 0;
    char text[4096];
    size_t have = 0;
    int eof = 0;
    for (int k = 1; k <= rounds; k++) {
        int ticked = 0, answered = 0;
        uint64_t signalled = 0;
        while (!(ticked && answered && signalled)) {
            struct epoll_event out[4];
            int n = epoll_wait(ep, out, 4, 5000);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                printf("evloop: round %d: epoll_wait gave %d (%s)\n", k, n, n ? strerror(errno) : "timed out");
                return 1;
            }
            for (int i = 0; i < n; i++) {
                uint64_t v;
                switch (out[i].data.u32) {
                case TIMER:
                    if (read(tfd, &v, sizeof v) == sizeof v) {
                        expirations += v;
                        if (!ticked) {
                            ticked = 1;
                            long job = k;
                            if (write(jobs[1], &job, sizeof job) != sizeof job)
                                die("write job");
                        }
                    }
                    break;
                case DONE:
                    if (read(done_efd, &v, sizeof v) == sizeof v) {
                        signalled += v;
                        signals += v;
                    }
                    break;
                case RESULTS:
                    /* Edge-triggered: read until EAGAIN. */
                    for (;;) {
                        ssize_t r = read(results[0], text + have, sizeof text - 1 - have);
                        if (r > 0) {
                            have += (size_t)r;
                            continue;
                        }
                        if (r == 0)
                            eof = 1;
                        else if (errno != EAGAIN)
                            die("read results");
                        break;
                    }
                    char *nl;
                    while ((nl = memchr(text, '\n', have))) {
                        *nl = 0;
                        printf("evloop: round %d: %s\n", k, text);
                        answered = 1;
                        have -= (size_t)(nl + 1 - text);
                        memmove(text, nl + 1, have);
                    }
                    break;
                }
            }
        }
    }
    close(jobs[1]);
    /* The worker ends: end of file on the result pipe (EPOLLHUP with EPOLLIN). */
    while (!eof) {
        struct epoll_event out[4];
        int n = epoll_wait(ep, out, 4, 5000);
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++)
            if (out[i].data.u32 == RESULTS && read(results[0], text, sizeof text) == 0)
                eof = 1;
            else if (out[i].data.u32 == TIMER)
                expirations += read(tfd, text, 8) == 8 ? *(uint64_t *)text : 0;
    }
    pthread_join(t, NULL);
    printf("evloop: worker signalled %llu times, result pipe at end of file: %s\n", (unsigned long long)signals,
           eof ? "yes" : "no");
    printf("evloop: timer expirations >= rounds: %s\n", expirations >= (uint64_t)rounds ? "yes" : "no");
    printf("evloop: done\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char *argv[])
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rounds = argc > 1 ? atoi(argv[1]) : 10;
    if (getpid() == 1) {
        /* init of Debian's kernel (the QEMU test's reference run). */
        mknod("/dev/console", S_IFCHR | 0600, makedev(5, 1));
        int fd = open("/dev/console", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        pid_t c = fork();
        if (c == 0)
            _exit(run(rounds));
        int st;
        while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
        }
        sync();
        reboot(RB_POWER_OFF);
        return 0;
    }
    return run(rounds);
}
