/* boomerang.h: Boomerang pipelines — rate-matched chains of periodic stages across Quest and
 * Linux sandboxes, joined by synchronous shmcomm channels (the seed's Boomerang I/O path:
 * "rate match tasks in pipeline to avoid blocking or missed data").
 *
 *     struct boomerang_qos q = {.C = 1000, .lambda = 12800, .B = 384, .packet = 32, .stages = 3};
 *     struct boomerang_plan p;
 *     if (boomerang_stage(&q, &p) < 0) ...   // EBUSY: admission control refused
 *     int out; boomerang_open_out(158, &q, &p, &out);   // this stage's output hop
 *     struct timespec next; boomerang_start(&next);
 *     for (;;) {                             // one job per period T = p.T
 *         ... read at most p.packets packets from the input hop (EAGAIN: nothing yet),
 *         ... write what the job produced to the output hop (never full, by the plan)
 *         boomerang_next(&p, &next);         // sleep to the next release
 *     }
 *
 * Every stage of a pipeline asks with the same qos. Rate matching (docs/channels.md,
 * crates/channels/src/boomerang.rs): chunk = floor(B / 3 / packet) packets' bytes, T = chunk /
 * lambda, each hop holds 3 chunks (p.slots packets); each stage gets C every T — on Quest a
 * Main VCPU the caller is bound to, on Linux SCHED_DEADLINE (runtime C, deadline = period = T),
 * each through its kernel's admission control. Guarantees, for jobs that need at most C to move
 * one chunk: throughput >= lambda at every stage, no stage ever blocks or finds a hop full, and
 * a packet written into the pipeline is out of it within p.delay_us = 4T (stages - 1)
 * (p.hop_delay_us = 4T per hop).
 *
 * Records mirror crates/quest-abi (quest_abi::BoomerangQos, BoomerangPlan), checked by its
 * c_header test. boomerang_stage: user/libquest/c/quest.c on Quest (a system call), the
 * Linux sandbox's library user/linux/shmcomm on Linux; the rest is inline here.
 */
#ifndef QUEST_BOOMERANG_H
#define QUEST_BOOMERANG_H

#include <stdint.h>
#include <time.h>
#include <shmcomm_user.h>

/* The pipeline's request (20 bytes); the same for every stage. */
struct boomerang_qos {
    uint32_t C;       /* CPU time (us) a stage's job needs to move one chunk */
    uint32_t lambda;  /* throughput, bytes per second */
    uint32_t B;       /* buffer of each hop, bytes (three chunks) */
    uint32_t packet;  /* packet size, bytes */
    uint32_t stages;  /* stages in the pipeline, 2..16 */
};

/* What the stage gets (36 bytes). */
struct boomerang_plan {
    uint32_t C;            /* budget, us */
    uint32_t T;            /* period of every stage, us */
    uint32_t chunk;        /* bytes a stage moves per job */
    uint32_t packets;      /* packets a stage moves per job */
    uint32_t slots;        /* packets a hop holds (the sync channel's buffer_len) */
    uint32_t throughput;   /* bytes per second, >= lambda */
    uint32_t hop_delay_us; /* bound on one hop's delay */
    uint32_t delay_us;     /* bound on the end-to-end delay */
    int32_t vcpu;          /* Quest: the stage's Main VCPU; Linux: -1 (SCHED_DEADLINE) */
};

/* Makes the calling thread a stage: reserves C every T for it and fills *plan. 0, or -1 and
 * errno: EINVAL (bad qos: see docs/channels.md), EBUSY (admission control), EFAULT, EPERM
 * (Linux: SCHED_DEADLINE needs root), ENOSPC, ENOMEM. */
int boomerang_stage(const struct boomerang_qos *qos, struct boomerang_plan *plan);

/* Opens this stage's output hop: creates sync channel `key` of plan->slots packets, non-blocking.
 * 0, or -1 and errno (shmcomm_open_send's). */
static inline int boomerang_open_out(unsigned key, const struct boomerang_qos *q, const struct boomerang_plan *p, shmcomm_channel_t *out)
{
    return shmcomm_open_send(key, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH | SHMCOMM_NONBLOCK_CH, NULL, (int)q->packet, (int)p->slots, out);
}

/* Opens this stage's input hop (connects to channel `key`, non-blocking): a descriptor, or -1
 * and errno (ENOENT: the previous stage has not created it yet). */
static inline int boomerang_open_in(unsigned key, const struct boomerang_qos *q, const struct boomerang_plan *p)
{
    return shmcomm_open_receive(key, SHMCOMM_CONNECT_CH | SHMCOMM_SYNC_CH | SHMCOMM_NONBLOCK_CH, NULL, (int)q->packet, (int)p->slots);
}

/* The first release: now (CLOCK_MONOTONIC). */
static inline void boomerang_start(struct timespec *next)
{
    clock_gettime(CLOCK_MONOTONIC, next);
}

/* Ends this job: advances *next by T and sleeps until then (absolute, so releases do not drift). */
static inline void boomerang_next(const struct boomerang_plan *p, struct timespec *next)
{
    next->tv_nsec += (long)p->T * 1000L;
    while (next->tv_nsec >= 1000000000L) {
        next->tv_nsec -= 1000000000L;
        next->tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL) != 0) {
    }
}

#endif /* QUEST_BOOMERANG_H */
