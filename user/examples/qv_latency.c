/* qv_latency send|recv [COUNT [KEY]]: one-way message latency between two Quest-V sandboxes
 * over shmcomm channel KEY (default 154, a four-slot channel window of configs/two-quest.toml
 * and configs/quest-linux.toml). Built for Linux too: in a Linux sandbox there is no Main VCPU
 * to poll on (the receiver says so and polls as an ordinary process).
 *
 * The sender creates the channel and writes COUNT messages {sequence, TSC at send}, 8 ms
 * apart; the receiver polls (shmcomm_read returns the latest value) and, for each new
 * sequence number, takes TSC now - TSC at send. The receiver polls on its own Main VCPU
 * (C = 4 ms, T = 10 ms) and sleeps 6 ms after each message, so it polls only around the next
 * message's arrival (2 ms of every 8) and never runs out of budget while waiting: the latency
 * measured is the channel's. Both sandboxes run on cores of one machine,
 * so their TSCs agree. Prints the median and maximum in TSC cycles and microseconds (the TSC
 * rate is calibrated against CLOCK_MONOTONIC over the run). Start the two in either order. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmcomm_user.h>
#include <vcpu.h>

#define DEFAULT_KEY 154

struct msg {
    uint64_t seq;
    uint64_t tsc;
};

static uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &t, &t) == EINTR)
        ;
}

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char *argv[])
{
    int count = argc > 2 ? atoi(argv[2]) : 100;
    unsigned key = argc > 3 ? (unsigned)atoi(argv[3]) : DEFAULT_KEY;
    if (argc < 2 || count <= 0 || count > 100000 || (strcmp(argv[1], "send") && strcmp(argv[1], "recv"))) {
        printf("usage: qv_latency send|recv [COUNT [KEY]]\n");
        return 2;
    }
    if (!strcmp(argv[1], "send")) {
        shmcomm_channel_t ch;
        if (shmcomm_open_send(key, SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, NULL, sizeof(struct msg), -1, &ch) < 0) {
            printf("qv_latency: cannot create channel %u: %s\n", key, strerror(errno));
            return 1;
        }
        sleep_ms(500); /* give the receiver time to connect */
        for (int i = 1; i <= count; i++) {
            struct msg m = {.seq = (uint64_t)i, .tsc = rdtsc()};
            shmcomm_write(ch, &m, sizeof m);
            sleep_ms(8);
        }
        printf("qv_latency: sent %d messages\n", count);
        shmcomm_close(ch);
        return 0;
    }
    struct sched_param sp = {.type = MAIN_VCPU, .C = 4000, .T = 10000};
    int v = vcpu_create(&sp);
    if (v < 0 || vcpu_bind_task(v) < 0)
        printf("qv_latency: no Main VCPU of its own (%s): polling on the default VCPU\n", strerror(errno));
    int fd = -1;
    for (int tries = 0; tries < 5000 && fd < 0; tries++) {
        fd = shmcomm_open_receive(key, SHMCOMM_CONNECT_CH, NULL, sizeof(struct msg), -1);
        if (fd < 0)
            sleep_ms(1);
    }
    if (fd < 0) {
        printf("qv_latency: no channel %u after 5 s: %s\n", key, strerror(errno));
        return 1;
    }
    uint64_t *lat = calloc((size_t)count, sizeof *lat);
    uint64_t t0 = now_ns(), c0 = rdtsc(), last = 0;
    int got = 0, missed = 0;
    while (got < count && now_ns() - t0 < 60ull * 1000000000ull) {
        struct msg m;
        if (shmcomm_read(fd, &m, sizeof m) < 0 || m.seq == last)
            continue;
        uint64_t c = rdtsc();
        if (m.seq != last + 1)
            missed += (int)(m.seq - last - 1);
        last = m.seq;
        lat[got++] = c - m.tsc;
        if (m.seq == (uint64_t)count)
            break;
        /* The next message comes 8 ms after this one: sleep through most of the gap (keeping
         * the VCPU's budget for polling), so the latency measured is the channel's, not the
         * receiver's time out of budget. */
        sleep_ms(6);
    }
    uint64_t t1 = now_ns(), c1 = rdtsc();
    shmcomm_close(fd);
    if (got == 0) {
        printf("qv_latency: no message arrived\n");
        return 1;
    }
    double cycles_per_us = (double)(c1 - c0) / ((double)(t1 - t0) / 1000.0);
    qsort(lat, (size_t)got, sizeof *lat, cmp);
    uint64_t med = lat[got / 2], max = lat[got - 1];
    printf("qv_latency: %d messages (%d overwritten before read), one-way latency median %llu cycles (%.1f us), max %llu cycles (%.1f us)\n",
           got, missed, (unsigned long long)med, med / cycles_per_us, (unsigned long long)max, max / cycles_per_us);
    return 0;
}
