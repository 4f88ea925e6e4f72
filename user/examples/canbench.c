/* canbench: CAN receive latency and loss-free frame rate, for `cargo xtask bench` (run under
 * -icount with two kvaser_pci on one bus). Both controllers at 1 Mbit/s; a child receives on
 * can1 and checks a sequence number in every frame, the parent sends 8-byte standard frames
 * on can0 paced at a rate (frames/s, from absolute deadlines). For each rate in increasing
 * order it reports whether every frame arrived, in order, with no overrun; the highest
 * loss-free rate is the result (a 1 Mbit/s bus carries at most ~8,900 such frames/s). The
 * latency is the kernel's interrupt-to-read time (QUEST_CAN_GET_STATS) over the runs.
 * Output: qbench's @BENCH records.   canbench [--quick] */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <quest_can.h>

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int open_can(const char *p)
{
    int fd = open(p, O_RDWR);
    if (fd < 0) {
        printf("@SKIP can_rx_latency %s: %s\n@SKIP can_rate_1mbit %s: %s\n", p, strerror(errno), p, strerror(errno));
        exit(0);
    }
    if (ioctl(fd, QUEST_CAN_SET_BITRATE, 1000000UL) != 0 || ioctl(fd, QUEST_CAN_SET_FILTER, (void *)0) != 0) {
        fprintf(stderr, "canbench: %s: configure: %s\n", p, strerror(errno));
        exit(1);
    }
    return fd;
}

/* Receives n frames with sequence numbers 0..n-1; exit status 0 when all arrived in order. */
static int receive(int fd, int n)
{
    struct can_frame f[32];
    int next = 0;
    while (next < n) {
        ssize_t r = read(fd, f, sizeof f);
        if (r <= 0) return 2;
        for (int i = 0; i < r / (int)sizeof f[0]; i++) {
            uint32_t seq;
            memcpy(&seq, f[i].data, 4);
            if (seq != (uint32_t)next) return 1; /* a frame was lost */
            next++;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    int tx = open_can("/dev/can0"), rx = open_can("/dev/can1");
    static const int rates[] = {1000, 2000, 4000, 6000, 8000, 8900};
    int best = 0;
    uint64_t lat_med = 0, lat_max = 0, lat_n = 0;
    printf("@START can\n");
    for (unsigned k = 0; k < sizeof rates / sizeof rates[0]; k++) {
        int rate = rates[k];
        int n = rate / (quick ? 20 : 4); /* 50 ms or 250 ms of traffic */
        struct quest_can_stats before, after;
        ioctl(rx, QUEST_CAN_GET_STATS, &before);
        pid_t pid = fork();
        if (pid == 0) _exit(receive(rx, n));
        /* Let the receiver block first. */
        struct timespec settle = {0, 2000000};
        nanosleep(&settle, NULL);
        uint64_t period = 1000000000ull / (uint64_t)rate, t0 = now_ns();
        for (int i = 0; i < n; i++) {
            uint64_t due = t0 + (uint64_t)i * period, t = now_ns();
            if (due > t) {
                struct timespec d = {(time_t)((due - t) / 1000000000ull), (long)((due - t) % 1000000000ull)};
                nanosleep(&d, NULL);
            }
            struct can_frame f = {.can_id = 0x100, .len = 8};
            uint32_t seq = (uint32_t)i;
            memcpy(f.data, &seq, 4);
            if (write(tx, &f, sizeof f) != sizeof f) {
                fprintf(stderr, "canbench: write: %s\n", strerror(errno));
                return 1;
            }
        }
        /* The receiver ends when all arrived; a lost frame leaves it waiting: give it 100 ms. */
        int status = -1;
        uint64_t end = now_ns() + 100000000ull;
        while (now_ns() < end) {
            if (waitpid(pid, &status, WNOHANG) == pid) break;
            struct timespec d = {0, 1000000};
            nanosleep(&d, NULL);
        }
        if (status == -1) {
            kill(pid, 9);
            waitpid(pid, &status, 0);
        }
        ioctl(rx, QUEST_CAN_GET_STATS, &after);
        int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && after.rx_overruns == before.rx_overruns;
        printf("canbench: %d frames/s (%d frames): %s (overruns %llu, dropped %llu)\n", rate, n, ok ? "no loss" : "LOSS",
               (unsigned long long)(after.rx_overruns - before.rx_overruns),
               (unsigned long long)(after.rx_dropped - before.rx_dropped));
        if (!ok) break;
        best = rate;
        lat_med = after.latency_median_ns;
        lat_max = after.latency_max_ns;
        lat_n = after.latency_samples;
    }
    printf("@BENCH can_rx_latency ns median=%llu max=%llu n=%llu\n", (unsigned long long)lat_med,
           (unsigned long long)lat_max, (unsigned long long)lat_n);
    printf("@BENCH can_rate_1mbit ops/1000ms median=%d max=%d n=1\n", best, best);
    printf("@DONE\n");
    return 0;
}
