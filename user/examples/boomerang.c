/* boomerang: a three-stage Boomerang pipeline across sandboxes — a producer and a consumer on
 * Quest, a relay stage in between (on Linux in a Quest-V machine, or anywhere else), joined by
 * two synchronous shmcomm channels and rate-matched by <boomerang.h>. The same source is built
 * for Quest and for the Linux sandbox.
 *
 *   boomerang relay IN OUT [C LAMBDA B PACKET]   the middle stage: reads hop IN, works on each
 *                                                packet, writes hop OUT; ends when IN's sender
 *                                                has closed and everything is forwarded
 *   boomerang ends OUT IN COUNT [C LAMBDA B PACKET]
 *                                                two threads, two stages: the producer writes
 *                                                COUNT packets into hop OUT, the consumer reads
 *                                                hop IN and checks every packet and its delay
 *
 * Defaults: C 1000 us, LAMBDA 12800 B/s, B 384 bytes, PACKET 32 bytes: T = 10 ms, 4 packets a
 * job, hops of 12 packets, end-to-end bound 80 ms. Each stage runs one job per period and never
 * blocks (non-blocking channel sides); a packet the next hop had no room for (the plan says it
 * cannot happen) is kept for the next job and counted as "hop full".
 *
 * Packet: sequence number, the producer's CLOCK_MONOTONIC time at its write, a value the relay
 * transforms (v -> 3v + 1, so the consumer knows the relay worked on it) and a check word. The
 * consumer's verdict, one line:
 *   boomerang: COUNT packets through 3 stages, none lost, duplicated or corrupted; delay median
 *   M us, max X us, bound D us (T P us): within the bound; hop full 0 times
 * or what went wrong (exit 1). Times are measured on the ends' clock (both on one system). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <boomerang.h>

struct packet {
    uint32_t seq;
    uint32_t relayed;
    uint64_t born_ns;
    uint64_t value;
    uint64_t check;
};

#define MAGIC 0x426f6f6d6572616eull /* "Boomeran" */

static struct boomerang_qos qos = {.C = 1000, .lambda = 12800, .B = 384, .packet = 32, .stages = 3};

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t check_of(const struct packet *p)
{
    return MAGIC ^ ((uint64_t)p->seq * 0x9e3779b97f4a7c15ull) ^ p->born_ns;
}

static int stage(const char *who, struct boomerang_plan *p)
{
    if (boomerang_stage(&qos, p) < 0) {
        printf("boomerang %s: boomerang_stage: %s\n", who, strerror(errno));
        return -1;
    }
    return 0;
}

/* Connects to hop `key`, one try per period until its writer has created it (60 s at most). */
static int connect_in(const char *who, unsigned key, struct boomerang_plan *p, struct timespec *next)
{
    for (int tries = 0;; tries++) {
        int fd = boomerang_open_in(key, &qos, p);
        if (fd >= 0)
            return fd;
        if (errno != ENOENT || (uint64_t)tries * p->T > 60000000ull) {
            printf("boomerang %s: open hop %u: %s\n", who, key, strerror(errno));
            return -1;
        }
        boomerang_next(p, next);
    }
}

/* ---- the relay ---- */

static int relay(unsigned in_key, unsigned out_key)
{
    struct boomerang_plan p;
    if (stage("relay", &p) < 0)
        return 1;
    shmcomm_channel_t out;
    if (boomerang_open_out(out_key, &qos, &p, &out) < 0) {
        printf("boomerang relay: create hop %u: %s\n", out_key, strerror(errno));
        return 1;
    }
    printf("boomerang relay: stage of C %u us every T %u us, %u packets a job, hops of %u packets (%s)\n", p.C, p.T,
           p.packets, p.slots, p.vcpu >= 0 ? "a Quest Main VCPU" : "SCHED_DEADLINE");
    fflush(stdout);
    struct timespec next;
    boomerang_start(&next);
    int in = connect_in("relay", in_key, &p, &next);
    if (in < 0)
        return 1;
    struct packet *held = calloc(p.packets, sizeof *held);
    if (!held)
        return 1;
    unsigned nheld = 0;
    long forwarded = 0, full = 0;
    int closed = 0;
    uint64_t longest = 0;
    while (!closed || nheld > 0) {
        uint64_t t0 = now_ns();
        /* Read at most one chunk (what the previous job could not pass on counts in it). */
        while (!closed && nheld < p.packets) {
            int r = shmcomm_read(in, &held[nheld], sizeof held[nheld]);
            if (r == 0) {
                closed = 1;
            } else if (r < 0) {
                if (errno == EAGAIN)
                    break;
                printf("boomerang relay: read hop %u: %s\n", in_key, strerror(errno));
                return 1;
            } else {
                held[nheld].value = held[nheld].value * 3 + 1;
                held[nheld].relayed = 1;
                nheld++;
            }
        }
        unsigned sent = 0;
        while (sent < nheld) {
            if (shmcomm_write(out, &held[sent], sizeof held[sent]) < 0) {
                if (errno == EAGAIN) {
                    full++;
                    break;
                }
                printf("boomerang relay: write hop %u: %s\n", out_key, strerror(errno));
                return 1;
            }
            sent++;
        }
        memmove(held, held + sent, (nheld - sent) * sizeof *held);
        nheld -= sent;
        forwarded += sent;
        uint64_t job = now_ns() - t0;
        if (job > longest)
            longest = job;
        boomerang_next(&p, &next);
    }
    shmcomm_close(out);
    shmcomm_close(in);
    printf("boomerang relay: forwarded %ld packets; hop full %ld times; longest job %llu us\n", forwarded, full,
           (unsigned long long)(longest / 1000));
    return 0;
}

/* ---- the two ends ---- */

struct ends {
    unsigned out_key, in_key;
    long count;
    struct boomerang_plan plan;
    int failed;
    long full;
    /* consumer results */
    long got;
    uint32_t *delays_us;
    char error[160];
};

static void *producer(void *arg)
{
    struct ends *e = arg;
    struct boomerang_plan p;
    if (stage("producer", &p) < 0) {
        e->failed = 1;
        return NULL;
    }
    e->plan = p;
    shmcomm_channel_t out;
    if (boomerang_open_out(e->out_key, &qos, &p, &out) < 0) {
        printf("boomerang producer: create hop %u: %s\n", e->out_key, strerror(errno));
        e->failed = 1;
        return NULL;
    }
    struct timespec next;
    boomerang_start(&next);
    long seq = 0;
    while (seq < e->count) {
        for (unsigned i = 0; i < p.packets && seq < e->count; i++) {
            struct packet k = {.seq = (uint32_t)seq, .born_ns = now_ns(), .value = (uint64_t)seq * 7 + 3};
            k.check = check_of(&k);
            if (shmcomm_write(out, &k, sizeof k) < 0) {
                if (errno == EAGAIN) {
                    e->full++;
                    break; /* the same packet again next job, with a new time */
                }
                printf("boomerang producer: write hop %u: %s\n", e->out_key, strerror(errno));
                e->failed = 1;
                return NULL;
            }
            seq++;
        }
        boomerang_next(&p, &next);
    }
    shmcomm_close(out);
    return NULL;
}

static void *consumer(void *arg)
{
    struct ends *e = arg;
    struct boomerang_plan p;
    if (stage("consumer", &p) < 0) {
        e->failed = 1;
        return NULL;
    }
    struct timespec next;
    boomerang_start(&next);
    int in = connect_in("consumer", e->in_key, &p, &next);
    if (in < 0) {
        e->failed = 1;
        return NULL;
    }
    for (;;) {
        for (unsigned i = 0; i < p.packets; i++) {
            struct packet k;
            int r = shmcomm_read(in, &k, sizeof k);
            if (r == 0) {
                shmcomm_close(in);
                return NULL;
            }
            if (r < 0) {
                if (errno == EAGAIN)
                    break;
                snprintf(e->error, sizeof e->error, "read hop %u after %ld packets: %s", e->in_key, e->got, strerror(errno));
                return NULL;
            }
            uint64_t t = now_ns();
            if (r != (int)sizeof k || k.seq != (uint32_t)e->got || k.check != check_of(&k) || !k.relayed ||
                k.value != ((uint64_t)k.seq * 7 + 3) * 3 + 1) {
                snprintf(e->error, sizeof e->error, "packet %ld is wrong (%d bytes, number %u, relayed %u)", e->got, r, k.seq,
                         k.relayed);
                return NULL;
            }
            if (e->got < e->count)
                e->delays_us[e->got] = (uint32_t)((t - k.born_ns) / 1000);
            e->got++;
        }
        boomerang_next(&p, &next);
    }
}

static int by_value(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int ends(unsigned out_key, unsigned in_key, long count)
{
    struct ends e = {.out_key = out_key, .in_key = in_key, .count = count};
    e.delays_us = calloc((size_t)count + 1, sizeof *e.delays_us);
    if (!e.delays_us)
        return 1;
    pthread_t prod, cons;
    if (pthread_create(&cons, NULL, consumer, &e) != 0 || pthread_create(&prod, NULL, producer, &e) != 0) {
        printf("boomerang: pthread_create failed\n");
        return 1;
    }
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    if (e.failed)
        return 1;
    if (e.error[0]) {
        printf("boomerang: %s\n", e.error);
        return 1;
    }
    if (e.got != count) {
        printf("boomerang: received %ld packets, expected %ld\n", e.got, count);
        return 1;
    }
    qsort(e.delays_us, (size_t)count, sizeof *e.delays_us, by_value);
    uint32_t median = count ? e.delays_us[count / 2] : 0, max = count ? e.delays_us[count - 1] : 0;
    int within = max < e.plan.delay_us;
    printf("boomerang: %ld packets through %u stages, none lost, duplicated or corrupted; delay median %u us, max %u us, "
           "bound %u us (T %u us): %s; hop full %ld times\n",
           count, qos.stages, median, max, e.plan.delay_us, e.plan.T, within ? "within the bound" : "EXCEEDS the bound",
           e.full);
    return within && e.full == 0 ? 0 : 1;
}

static int usage(void)
{
    printf("usage: boomerang relay IN OUT [C LAMBDA B PACKET] | ends OUT IN COUNT [C LAMBDA B PACKET]\n");
    return 2;
}

int main(int argc, char *argv[])
{
    if (argc < 4)
        return usage();
    int is_relay = strcmp(argv[1], "relay") == 0;
    if (!is_relay && strcmp(argv[1], "ends") != 0)
        return usage();
    int q = is_relay ? 4 : 5;
    if (argc > q) {
        if (argc != q + 4)
            return usage();
        qos.C = (uint32_t)atol(argv[q]);
        qos.lambda = (uint32_t)atol(argv[q + 1]);
        qos.B = (uint32_t)atol(argv[q + 2]);
        qos.packet = (uint32_t)atol(argv[q + 3]);
    }
    if (qos.packet != sizeof(struct packet)) {
        printf("boomerang: PACKET must be %zu bytes (this program's packet)\n", sizeof(struct packet));
        return 2;
    }
    unsigned a = (unsigned)atoi(argv[2]), b = (unsigned)atoi(argv[3]);
    if (is_relay)
        return relay(a, b);
    long count = atol(argv[4]);
    if (count < 1 || count > 10000000) {
        printf("boomerang: COUNT must be 1..10000000\n");
        return 2;
    }
    return ends(a, b, count);
}
