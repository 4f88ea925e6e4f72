/* shmcomm_sys.c: the raw shmcomm calls of <shmcomm_internal.h> on Quest-RS, and the user-level
 * data path (issue 21).
 *
 * Open is a system call (the kernel keeps creating, keying, permissions and the argument
 * checks of crates/channels' OpenRequest), followed by QUEST_NR_SHMCOMM_MAP, which maps the
 * channel's region into this process. From then on write and read run the crates/channels
 * protocol (Simpson's four-slot, the Lamport FIFO; layout in <shmcomm_internal.h>) on the
 * mapped words and enter the kernel only
 *   - to sleep: a sync side that finds the ring empty (full) sets its waiter word, fences, looks
 *     once more, and calls QUEST_NR_SHMCOMM_WAIT with the peer's counter value; the kernel
 *     sleeps only while that word still holds the value (futex-like), or returns EPIPE once
 *     the peer side is closed by its own record;
 *   - to wake: after a push (pop) a side fences and reads the peer's waiter word, and calls
 *     QUEST_NR_SHMCOMM_WAKE only if it is set.
 * The orderings are the crate's (FifoProducer::prepare_sleep explains why no wake-up is lost,
 * FifoProducer::peer_sleeping why one wake per sleep token is enough;
 * crates/channels/tests/loom.rs model-checks the protocol). This is a C port of those few
 * functions rather than a Rust library linked into every C program: programs built with
 * `cargo xtask cc` are plain musl C and stay so. The port is checked against the Rust crate by
 * the QEMU tests, which run each implementation against the other on one channel
 * (QUEST_SHMCOMM_SYSCALL=1 makes one process use the kernel's, tests/tests/channels.rs).
 *
 * The region is shared with the peer process, which may write anything into it: the geometry
 * is validated once at open (magic, check word, version, kind, limits, size within the
 * mapping) and kept privately; slot numbers are computed modulo the private slot count, tag
 * lengths are clamped to the slot size, and a counter claiming an impossible fill level is
 * EIO. No loop depends on a value read from the region (each sleep is a system call that
 * returns when the word changes or the peer closes), so garbage costs an error, never a
 * fault or a hang. A process that dies mid-write never published the packet (the counter is
 * stored last): the reader sees the packets completed before, then end of stream (0) once the
 * kernel closed the dead side, or EPIPE on a write to a dead reader.
 *
 * Sharing: threads of one process take turns on a descriptor (a mutex per side). Two
 * processes using one side at once (a descriptor inherited by fork and used by both) race on
 * the side's private counters as they would on any shared-memory ring; the kernel path
 * (QUEST_SHMCOMM_SYSCALL=1) serialises them instead.
 *
 * Linked into every Quest program with shmcomm.c (the marshalling layer above these calls); a
 * Quest-V Linux sandbox's programs get user/linux/shmcomm instead. boomerang_stage
 * (<boomerang.h>) is here for the same reason: Linux's is in user/linux/shmcomm
 * (SCHED_DEADLINE). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <quest.h>

#include <shmcomm_internal.h>
#include <boomerang.h>

#define SHM_FDS 256

/* One side on the user-level path. */
struct uside {
    pthread_mutex_t lock;
    volatile uint64_t *w;    /* the mapped region */
    uint64_t map_len;        /* bytes mapped */
    int fd, kind, writer, nonblock;
    uint64_t slot_size, count, stride;
    uint64_t pos;            /* FIFO: own counter (tail / head) */
    uint64_t cache;          /* FIFO: last peer counter seen (head_cache / tail_cache) */
    uint64_t rejected;       /* FIFO producer: pushes refused */
    uint64_t woken;          /* FIFO: the peer's last sleep token this side woke */
    uint64_t my_slot[2], seq;                        /* four-slot writer */
    uint64_t last_seq, baseline, n_reads, n_overruns; /* four-slot reader */
};

static struct uside *usides[SHM_FDS];

#define LD(i) __atomic_load_n(&s->w[i], __ATOMIC_RELAXED)
#define LDA(i) __atomic_load_n(&s->w[i], __ATOMIC_ACQUIRE)
#define ST(i, v) __atomic_store_n(&s->w[i], (v), __ATOMIC_RELAXED)
#define STR(i, v) __atomic_store_n(&s->w[i], (v), __ATOMIC_RELEASE)

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Validates the header of the mapped region (crates/channels' layout::validate) and fills
 * the private geometry. 0 or -1. */
static int validate(struct uside *s)
{
    if (s->map_len < SHMCOMM_HEADER_WORDS * 8)
        return -1;
    uint64_t magic = LDA(SHMCOMM_W_MAGIC), vk = LD(SHMCOMM_W_VERSION_KIND), g = LD(SHMCOMM_W_GEOMETRY);
    if (magic != SHMCOMM_MAGIC || LD(SHMCOMM_W_CHECK) != (magic ^ rotl(vk, 21) ^ rotl(g, 42) ^ SHMCOMM_CHECK_SALT))
        return -1;
    if ((uint32_t)vk != SHMCOMM_VERSION)
        return -1;
    s->kind = (int)(vk >> 32);
    s->slot_size = g & 0xffffffffu;
    s->count = g >> 32;
    if (s->slot_size == 0 || s->slot_size > SHMCOMM_MAX_SLOT_SIZE)
        return -1;
    if (!(s->kind == SHMCOMM_KIND_FOUR_SLOT && s->count == 4) &&
        !(s->kind == SHMCOMM_KIND_FIFO && s->count >= 1 && s->count <= SHMCOMM_MAX_FIFO_SLOTS))
        return -1;
    s->stride = 1 + (s->slot_size + 7) / 8;
    uint64_t total = SHMCOMM_HEADER_WORDS + s->stride * s->count; /* < 2^38: no overflow */
    return total * 8 <= s->map_len ? 0 : -1;
}

/* The words of slot `n` (< count): its tag word's index. */
static uint64_t slot_at(const struct uside *s, uint64_t n) { return SHMCOMM_HEADER_WORDS + n * s->stride; }

static void store_bytes(struct uside *s, uint64_t at, const unsigned char *src, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8, at++) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        ST(at, v);
    }
    if (i < len) {
        uint64_t v = 0;
        memcpy(&v, src + i, len - i);
        ST(at, v);
    }
}

static void load_bytes(struct uside *s, uint64_t at, unsigned char *dst, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8, at++) {
        uint64_t v = LD(at);
        memcpy(dst + i, &v, 8);
    }
    if (i < len) {
        uint64_t v = LD(at);
        memcpy(dst + i, &v, len - i);
    }
}

/* ---- FIFO (crates/channels/src/fifo.rs) ---------------------------------------------- */

/* try_push: 0, -EAGAIN (full), -EPIPE (full and the consumer closed), -EIO (corrupt). */
static int fifo_push(struct uside *s, const void *m, size_t len)
{
    uint64_t n = s->count;
    if (s->pos - s->cache >= n) {
        uint64_t head = LDA(SHMCOMM_W_READER_POS), used = s->pos - head;
        if (used > n) {
            s->cache = s->pos - n;
            return -EIO;
        }
        s->cache = head;
        if (used == n) {
            ST(SHMCOMM_W_REJECTED, ++s->rejected);
            return LDA(SHMCOMM_W_READER_STATE) == SHMCOMM_STATE_CLOSED ? -EPIPE : -EAGAIN;
        }
    }
    uint64_t at = slot_at(s, s->pos % n);
    ST(at, (uint64_t)len);
    store_bytes(s, at + 1, m, len);
    s->pos++;
    STR(SHMCOMM_W_WRITER_POS, s->pos);
    return 0;
}

/* try_pop: bytes (> 0), 0 (the producer closed and all is read), -EAGAIN (empty), -EIO. */
static long fifo_pop(struct uside *s, void *buf)
{
    if (s->pos == s->cache) {
        for (int look = 0;; look++) {
            uint64_t tail = LDA(SHMCOMM_W_WRITER_POS), avail = tail - s->pos;
            if (avail > s->count) {
                s->cache = s->pos;
                return -EIO;
            }
            s->cache = tail;
            if (avail)
                break;
            /* Empty. A closed producer published everything before its state word
             * (Release/Acquire): one more look at tail sees it. */
            if (look || LDA(SHMCOMM_W_WRITER_STATE) != SHMCOMM_STATE_CLOSED)
                return look ? 0 : -EAGAIN;
        }
    }
    uint64_t at = slot_at(s, s->pos % s->count);
    uint64_t len = LD(at);
    if (len > s->slot_size)
        len = s->slot_size; /* the peer's tag: clamped to the slot */
    load_bytes(s, at + 1, buf, (size_t)len);
    s->pos++;
    STR(SHMCOMM_W_READER_POS, s->pos);
    return (long)len;
}

/* The waiter word of a side sleeping until the peer's counter leaves `expected`. */
static uint64_t sleep_token(uint64_t expected) { return expected + 1 ? expected + 1 : 1; }

/* After a push or pop: wake the peer if its waiter word holds a sleep token that our counter
 * has moved past and that this side has not woken yet: one wake per sleep, not one per packet
 * (crates/channels' FifoProducer::peer_sleeping). */
static void wake_peer(struct uside *s)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint64_t t = LD(s->writer ? SHMCOMM_W_READER_WAIT : SHMCOMM_W_WRITER_WAIT);
    if (t && t != s->woken && t != sleep_token(s->pos)) {
        s->woken = t;
        syscall(QUEST_NR_SHMCOMM_WAKE, s->fd);
    }
}

/* A blocked side sleeps until the peer moves or closes: 0 (look again) or -EPIPE (the kernel
 * says the peer closed). */
static int sleep_on_peer(struct uside *s)
{
    int mine = s->writer ? SHMCOMM_W_WRITER_WAIT : SHMCOMM_W_READER_WAIT;
    int peer_pos = s->writer ? SHMCOMM_W_READER_POS : SHMCOMM_W_WRITER_POS;
    int peer_state = s->writer ? SHMCOMM_W_READER_STATE : SHMCOMM_W_WRITER_STATE;
    ST(mine, sleep_token(s->writer ? s->pos - s->count : s->pos));
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint64_t v = LDA(peer_pos);
    int blocked = s->writer ? v + s->count == s->pos : v == s->pos;
    int r = 0;
    if (blocked && LDA(peer_state) != SHMCOMM_STATE_CLOSED) {
        long k = syscall(QUEST_NR_SHMCOMM_WAIT, s->fd, v);
        if (k < 0 && errno == EPIPE)
            r = -EPIPE;
        /* EINTR: a signal was handled (a kill never returns here); look again. */
    }
    ST(mine, 0);
    return r;
}

static long fifo_write(struct uside *s, const void *m, size_t len)
{
    if (len == 0 || len > s->slot_size)
        return -EINVAL;
    for (int closed = 0;;) {
        int r = fifo_push(s, m, len);
        if (r == 0) {
            wake_peer(s);
            return (long)len;
        }
        if (r != -EAGAIN)
            return r;
        if (closed)
            return -EPIPE; /* the kernel's record says the reader is gone: nobody makes room */
        if (s->nonblock)
            return -EAGAIN;
        closed = sleep_on_peer(s) == -EPIPE;
    }
}

static long fifo_read(struct uside *s, void *buf, size_t len)
{
    if (len < s->slot_size)
        return -EINVAL;
    for (int closed = 0;;) {
        long r = fifo_pop(s, buf);
        if (r > 0) {
            wake_peer(s);
            return r;
        }
        if (r != -EAGAIN)
            return r;
        if (closed)
            return 0; /* the writer is gone (the kernel's record) and nothing is left */
        if (s->nonblock)
            return -EAGAIN;
        closed = sleep_on_peer(s) == -EPIPE;
    }
}

/* ---- Four-slot (crates/channels/src/four_slot.rs) ---------------------------------------- */

static long four_write(struct uside *s, const void *m, size_t len)
{
    if (len != s->slot_size)
        return -EINVAL;
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* F_W */
    uint64_t pair = (LDA(SHMCOMM_W_READER_POS) & 1) ^ 1;
    uint64_t index = s->my_slot[pair] ^ 1;
    s->seq = s->seq + 1 ? s->seq + 1 : 1; /* 0 marks a never-written slot */
    uint64_t at = slot_at(s, pair * 2 + index);
    ST(at, s->seq);
    store_bytes(s, at + 1, m, len);
    STR(SHMCOMM_W_SLOT0 + pair, index);
    s->my_slot[pair] = index;
    STR(SHMCOMM_W_WRITER_POS, pair);
    ST(SHMCOMM_W_WRITES, s->seq);
    return (long)len;
}

static long four_read(struct uside *s, void *buf, size_t len)
{
    if (len < s->slot_size)
        return -EINVAL;
    uint64_t pair = LDA(SHMCOMM_W_WRITER_POS) & 1;
    STR(SHMCOMM_W_READER_POS, pair);
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* F_R */
    uint64_t index = LDA(SHMCOMM_W_SLOT0 + pair) & 1;
    uint64_t at = slot_at(s, pair * 2 + index);
    uint64_t seq = LD(at);
    if (seq == 0)
        return -EAGAIN; /* never written */
    load_bytes(s, at + 1, buf, (size_t)s->slot_size);
    if (seq != s->last_seq) {
        uint64_t prev = s->last_seq ? s->last_seq : s->baseline;
        if (seq > prev) {
            s->n_overruns += seq - prev - 1;
            ST(SHMCOMM_W_OVERRUNS, s->n_overruns);
        }
    }
    s->last_seq = seq;
    ST(SHMCOMM_W_READS, ++s->n_reads);
    return (long)s->slot_size;
}

/* ---- The raw calls -------------------------------------------------------------------- */

static int use_syscalls(void)
{
    const char *e = getenv("QUEST_SHMCOMM_SYSCALL");
    return e && *e && strcmp(e, "0") != 0;
}

/* Maps descriptor fd's region and attaches this process's private state to it; on any
 * failure the descriptor stays on the system-call path. */
static void attach_user(int fd, unsigned flags, int send)
{
    if (fd < 0 || fd >= SHM_FDS || use_syscalls())
        return;
    uint64_t len = 0;
    long a = syscall(QUEST_NR_SHMCOMM_MAP, fd, &len);
    if (a < 0)
        return; /* a Quest-V window (EOPNOTSUPP), or no memory: the kernel path */
    struct uside *s = calloc(1, sizeof *s);
    if (!s) {
        munmap((void *)a, len);
        return;
    }
    s->w = (volatile uint64_t *)a;
    s->map_len = len;
    s->fd = fd;
    s->writer = send;
    s->nonblock = (flags & SHMCOMM_NONBLOCK_CH) != 0;
    if (validate(s)) {
        munmap((void *)a, len);
        free(s);
        return;
    }
    /* The kernel attached the side at open; take its counters as the crate's attach does. */
    if (s->kind == SHMCOMM_KIND_FIFO) {
        s->pos = LDA(send ? SHMCOMM_W_WRITER_POS : SHMCOMM_W_READER_POS);
        s->cache = send ? s->pos - s->count : s->pos; /* looks full / empty: re-read first */
        s->rejected = LD(SHMCOMM_W_REJECTED);
    } else if (send) {
        s->my_slot[0] = LDA(SHMCOMM_W_SLOT0) & 1;
        s->my_slot[1] = LDA(SHMCOMM_W_SLOT1) & 1;
        s->seq = LD(SHMCOMM_W_WRITES);
    } else {
        s->baseline = LDA(SHMCOMM_W_WRITES);
        s->n_reads = LD(SHMCOMM_W_READS);
        s->n_overruns = LD(SHMCOMM_W_OVERRUNS);
    }
    pthread_mutex_init(&s->lock, NULL);
    usides[fd] = s;
}

long shmcomm_sys_open(int send, unsigned key, unsigned flags, unsigned long packet_size, long buffer_len)
{
    long fd = syscall(send ? QUEST_NR_SHMCOMM_OPEN_SEND : QUEST_NR_SHMCOMM_OPEN_RECEIVE, key, flags,
                      packet_size, buffer_len);
    if (fd >= 0)
        attach_user((int)fd, flags, send);
    return fd;
}

static struct uside *uside_of(int fd) { return fd >= 0 && fd < SHM_FDS ? usides[fd] : NULL; }

static long ret(long r)
{
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

long shmcomm_sys_write(int fd, const void *packet, unsigned long len)
{
    struct uside *s = uside_of(fd);
    if (!s)
        return syscall(QUEST_NR_SHMCOMM_WRITE, fd, packet, len);
    if (!s->writer)
        return ret(-EBADF);
    pthread_mutex_lock(&s->lock);
    long r = s->kind == SHMCOMM_KIND_FIFO ? fifo_write(s, packet, len) : four_write(s, packet, len);
    pthread_mutex_unlock(&s->lock);
    return ret(r);
}

long shmcomm_sys_read(int fd, void *packet, unsigned long len)
{
    struct uside *s = uside_of(fd);
    if (!s)
        return syscall(QUEST_NR_SHMCOMM_READ, fd, packet, len);
    if (s->writer)
        return ret(-EBADF);
    pthread_mutex_lock(&s->lock);
    long r = s->kind == SHMCOMM_KIND_FIFO ? fifo_read(s, packet, len) : four_read(s, packet, len);
    pthread_mutex_unlock(&s->lock);
    return ret(r);
}

long shmcomm_sys_close(int fd)
{
    struct uside *s = uside_of(fd);
    long r = syscall(QUEST_NR_SHMCOMM_CLOSE, fd);
    if (r == 0 && s) {
        usides[fd] = NULL;
        munmap((void *)(uintptr_t)s->w, s->map_len);
        pthread_mutex_destroy(&s->lock);
        free(s);
    }
    return r;
}

volatile void *shmcomm_sys_region(int fd, unsigned long *len)
{
    struct uside *s = uside_of(fd);
    if (len)
        *len = s ? s->map_len : 0;
    return s ? s->w : NULL;
}

long shmcomm_sys_key(int fd)
{
    return syscall(QUEST_NR_SHMCOMM_GET_KEY, fd);
}


int boomerang_stage(const struct boomerang_qos *qos, struct boomerang_plan *plan)
{
    return (int)syscall(QUEST_NR_BOOMERANG_STAGE, qos, plan);
}
