/* tpipe.h: tuned pipes — POSIX-pipe-like byte streams with a throughput and delay guarantee.
 *
 *     struct tpipe_qos q = {.C = 2000, .lambda = 102400, .B = 4096};
 *     struct tpipe_guarantee g;
 *     int fds[2];
 *     if (tpipe_open(&q, fds, &g) < 0) ...   // EBUSY: admission control refused
 *     // g.throughput >= q.lambda bytes/s, g.delay_us: worst-case write-to-read delay
 *     fork: the writer uses fds[1] (tpipe_write / write), the reader fds[0] (tpipe_read / read)
 *
 * The kernel derives a Main VCPU (C, T) for the writer and one for the reader by rate
 * matching (docs/channels.md: T = (B/2) / lambda, both endpoints get C every T, the buffer
 * holds B bytes), runs admission control on both, and binds the first task that writes to the
 * writer VCPU and the first that reads to the reader VCPU. The VCPUs go away with the pipe.
 *
 * Records mirror crates/quest-abi (quest_abi::TpipeQos, TpipeGuarantee), checked by its
 * c_header test. Implementation: user/libquest/c/quest.c.
 */
#ifndef QUEST_TPIPE_H
#define QUEST_TPIPE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The request (12 bytes). */
struct tpipe_qos {
    uint32_t C;       /* CPU time (us) each endpoint needs per B/2 bytes it moves */
    uint32_t lambda;  /* throughput, bytes per second */
    uint32_t B;       /* buffer size, bytes (even, >= 2) */
};

/* What the kernel guarantees (28 bytes). */
struct tpipe_guarantee {
    uint32_t throughput;  /* bytes per second, >= lambda */
    uint32_t delay_us;    /* worst-case delay from write to read, us */
    uint32_t C;           /* budget of both endpoint VCPUs, us */
    uint32_t T;           /* period of both endpoint VCPUs, us */
    uint32_t writer_vcpu; /* VCPU the first writing task is bound to */
    uint32_t reader_vcpu; /* VCPU the first reading task is bound to */
    uint32_t B;           /* buffer size, bytes */
};

/* Creates a tuned pipe: fds[0] reads, fds[1] writes. 0, or -1 and errno: EINVAL (bad QoS, or
 * C larger than the derived period), EBUSY (admission control), EFAULT, EMFILE, ENOMEM. */
int tpipe_open(const struct tpipe_qos *qos, int fds[2], struct tpipe_guarantee *g);
/* write/read on a tuned pipe end (EBADF on any other descriptor). */
ssize_t tpipe_write(int fd, const void *buf, size_t len);
ssize_t tpipe_read(int fd, void *buf, size_t len);
/* close, on a tuned pipe end only. */
int tpipe_close(int fd);

#endif /* QUEST_TPIPE_H */
