/* tpipe_test: a producer writes MSG-byte messages at lambda through a tuned pipe, a consumer
 * reads them, and a CPU hog on a higher-priority VCPU runs beside them. The consumer checks
 * that no message is lost or reordered and that every message's delay (guest CLOCK_MONOTONIC,
 * stamped just before the write, measured when its last byte is read) is within the bound the
 * kernel reported. Also shows the QoS errors: EINVAL (C > T) and EBUSY (admission).
 *
 *     tpipe_test [MESSAGES]     (default 200)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <tpipe.h>
#include <vcpu.h>

#define MSG 256
#define LAMBDA 102400   /* bytes/s: one 256-byte message every 2.5 ms */
#define BUF 4096        /* buffer: a 2 KiB chunk every T = 20 ms */
#define C_US 2000

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void sleep_until(uint64_t ns)
{
    struct timespec t = {.tv_sec = ns / 1000000000ull, .tv_nsec = ns % 1000000000ull};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
        ;
}

struct msg {
    uint32_t seq;
    uint32_t pad;
    uint64_t stamp;
    unsigned char fill[MSG - 16];
};

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    struct tpipe_guarantee g;
    int fds[2];

    /* QoS errors first. */
    struct tpipe_qos bad = {.C = 30000, .lambda = LAMBDA, .B = BUF}; /* C > T = 20 ms */
    errno = 0;
    int r = tpipe_open(&bad, fds, &g);
    printf("tpipe: C > T: %d errno %s\n", r, errno == EINVAL ? "EINVAL" : strerror(errno));
    struct tpipe_qos big = {.C = 15000, .lambda = LAMBDA, .B = BUF}; /* 2 x 75% of a CPU */
    errno = 0;
    r = tpipe_open(&big, fds, &g);
    printf("tpipe: 2 x 75%% utilisation: %d errno %s\n", r, errno == EBUSY ? "EBUSY" : strerror(errno));

    struct tpipe_qos q = {.C = C_US, .lambda = LAMBDA, .B = BUF};
    if (tpipe_open(&q, fds, &g) < 0) {
        perror("tpipe: tpipe_open");
        return 1;
    }
    printf("tpipe: guarantee throughput %u B/s delay %u us (writer VCPU %u, reader VCPU %u: C=%u T=%u, B=%u)\n",
           g.throughput, g.delay_us, g.writer_vcpu, g.reader_vcpu, g.C, g.T, g.B);

    uint64_t period = 1000000000ull * MSG / LAMBDA;
    uint64_t start = now_ns() + 50000000ull;
    uint64_t end = start + (uint64_t)n * period;

    /* The hogs, spinning until after the end: one on a higher-priority Main VCPU (1.5 ms
     * every 10 ms: it preempts the pipe's endpoints), one on the default best-effort VCPU. */
    pid_t hog = fork();
    if (hog == 0) {
        close(fds[0]);
        close(fds[1]);
        int v = -1;
        if (fork() != 0) {
            struct sched_param sp = {.type = MAIN_VCPU, .C = 1500, .T = 10000};
            v = vcpu_create(&sp);
            if (v >= 0)
                vcpu_bind_task(v);
            else
                printf("tpipe: hog VCPU refused (%s), hogging on the default VCPU\n", strerror(errno));
        }
        volatile uint64_t spin = 0;
        while (now_ns() < end + 100000000ull)
            spin++;
        if (v >= 0)
            vcpu_destroy(v, 1); /* VCPUs outlive their creators: give it back */
        _exit(0);
    }

    pid_t consumer = fork();
    if (consumer == 0) {
        tpipe_close(fds[1]);
        struct msg m;
        uint64_t max = 0, sum = 0;
        uint32_t expect = 0, lost = 0, over = 0;
        for (;;) {
            size_t got = 0;
            while (got < sizeof m) {
                ssize_t k = tpipe_read(fds[0], (char *)&m + got, sizeof m - got);
                if (k <= 0)
                    break;
                got += (size_t)k;
            }
            if (got < sizeof m)
                break;
            uint64_t d = (now_ns() - m.stamp) / 1000;
            if (m.seq == 0) {
                struct sched_param sp;
                vcpu_getparams(&sp);
                printf("tpipe: consumer runs on C=%d T=%d\n", sp.C, sp.T);
            }
            if (m.seq != expect)
                lost += m.seq > expect ? m.seq - expect : 1;
            expect = m.seq + 1;
            if (d > max)
                max = d;
            if (d > g.delay_us)
                over++;
            sum += d;
        }
        if (expect != (uint32_t)n)
            lost += (uint32_t)n - expect;
        printf("tpipe: %u messages, lost %u, over the bound %u, max delay %llu us, mean %llu us, bound %u us\n",
               expect, lost, over, (unsigned long long)max, (unsigned long long)(expect ? sum / expect : 0), g.delay_us);
        printf(lost == 0 && over == 0 && expect == (uint32_t)n ? "tpipe: every message met the bound\n"
                                                               : "tpipe: FAILED\n");
        _exit(0);
    }

    tpipe_close(fds[0]);
    struct msg m;
    memset(&m, 0xa5, sizeof m);
    for (int i = 0; i < n; i++) {
        sleep_until(start + (uint64_t)i * period);
        m.seq = (uint32_t)i;
        m.stamp = now_ns();
        if (tpipe_write(fds[1], &m, sizeof m) != (ssize_t)sizeof m) {
            perror("tpipe: write");
            break;
        }
        if (i == 0) {
            struct sched_param sp;
            vcpu_getparams(&sp);
            printf("tpipe: producer runs on C=%d T=%d\n", sp.C, sp.T);
        }
    }
    tpipe_close(fds[1]);
    waitpid(consumer, NULL, 0);
    waitpid(hog, NULL, 0);
    printf("tpipe: done\n");
    return 0;
}
