/* shmcomm_fast: the user-level shmcomm data path (issue 21) between processes.
 *
 *   shmcomm_fast            every case below, one line each, then a summary
 *
 * 1. path: a sync channel's sides run in user space (the region is mapped), unless the
 *    process set QUEST_SHMCOMM_SYSCALL=1 before opening (the kernel's path).
 * 2. kill: a writer process streams numbered packets into a sync channel and is killed (kill
 *    -9) while it writes; the reader gets every packet the writer completed, in order, none
 *    torn, then end of stream (0) — never a partial packet, never a hang. Run three ways:
 *    both sides in user space, the writer on the kernel's path (the crate's Rust protocol)
 *    with a user-level reader, and the reverse: the C port and the Rust crate interoperate.
 * 3. scribble: garbage written over a mapped region (as a buggy or hostile peer would) gives
 *    errors or garbage data on that channel only, never a fault or a hang; the kernel still
 *    closes it and other channels still work.
 * 4. async: a four-slot channel in user space delivers the latest value between processes.
 *
 * Lines: "fast: CASE: ok ..." or "fast: CASE: UNEXPECTED ...", then
 * "fast: N of N as expected". */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <shmcomm_user.h>
#include <shmcomm_internal.h>

#define PACKET 64
static int total, good;

static void report(const char *name, int ok, const char *detail)
{
    total++;
    good += ok;
    printf("fast: %s: %s%s%s\n", name, ok ? "ok" : "UNEXPECTED", *detail ? " " : "", detail);
    fflush(stdout);
}

static void fill(unsigned char *p, uint64_t n)
{
    memcpy(p, &n, 8);
    for (int i = 8; i < PACKET; i++)
        p[i] = (unsigned char)(n * 31 + (uint64_t)i);
}

static int intact(const unsigned char *p, uint64_t n)
{
    uint64_t got;
    memcpy(&got, p, 8);
    if (got != n)
        return 0;
    for (int i = 8; i < PACKET; i++)
        if (p[i] != (unsigned char)(n * 31 + (uint64_t)i))
            return 0;
    return 1;
}

static void path_case(void)
{
    shmcomm_channel_t tx;
    int ok = shmcomm_open_send(900, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, NULL, PACKET, 8, &tx) == 0;
    int rx = shmcomm_open_receive(900, SHMCOMM_CONNECT_CH, NULL, PACKET, 8);
    unsigned long len = 0;
    int user = ok && rx >= 0 && shmcomm_sys_region(tx, &len) && shmcomm_sys_region(rx, NULL) && len >= 4096;
    char d[80];
    snprintf(d, sizeof d, "(both sides mapped: %s, %lu bytes)", user ? "yes" : "no", len);
    report("path", user, d);
    shmcomm_close(tx);
    shmcomm_close(rx);
}

/* Writer child: streams packets 0, 1, 2 ... into `key` until killed. */
static void writer(unsigned key, int syscall_path)
{
    if (syscall_path)
        setenv("QUEST_SHMCOMM_SYSCALL", "1", 1);
    shmcomm_channel_t tx;
    if (shmcomm_open_send(key, SHMCOMM_CONNECT_CH, NULL, PACKET, 16, &tx))
        _exit(2);
    if ((shmcomm_sys_region(tx, NULL) != NULL) == syscall_path)
        _exit(3); /* not on the path this case is about */
    unsigned char p[PACKET];
    for (uint64_t n = 0;; n++) {
        fill(p, n);
        if (shmcomm_write(tx, p, PACKET) != PACKET)
            _exit(4);
    }
}

static void kill_case(const char *name, unsigned key, int writer_sys, int reader_sys)
{
    /* The reader creates the channel, so it exists before the writer connects. */
    if (reader_sys)
        setenv("QUEST_SHMCOMM_SYSCALL", "1", 1);
    int rx = shmcomm_open_receive(key, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, NULL, PACKET, 16);
    unsetenv("QUEST_SHMCOMM_SYSCALL");
    char d[160];
    if (rx < 0 || (shmcomm_sys_region(rx, NULL) != NULL) == reader_sys) {
        snprintf(d, sizeof d, "open: %d errno %d", rx, errno);
        report(name, 0, d);
        return;
    }
    pid_t pid = fork();
    if (pid == 0)
        writer(key, writer_sys);
    unsigned char p[PACKET];
    uint64_t n = 0;
    int bad = 0, r = 0;
    /* Read a while, then kill the writer mid-stream and drain. */
    for (; n < 3000; n++) {
        r = shmcomm_read(rx, p, PACKET);
        if (r != PACKET || !intact(p, n)) {
            bad = 1;
            break;
        }
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    uint64_t before = n;
    while (!bad && (r = shmcomm_read(rx, p, PACKET)) == PACKET) {
        if (!intact(p, n)) {
            bad = 1;
            break;
        }
        n++;
    }
    int killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    snprintf(d, sizeof d, "(%llu packets before the kill, %llu after, then read returned %d; writer killed: %s)",
             (unsigned long long)before, (unsigned long long)(n - before), r, killed ? "yes" : "no");
    report(name, !bad && r == 0 && killed && n - before <= 16, d);
    shmcomm_close(rx);
}

static void scribble_case(void)
{
    shmcomm_channel_t tx;
    char d[160];
    if (shmcomm_open_send(901, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH | SHMCOMM_NONBLOCK_CH, NULL, PACKET, 4, &tx)) {
        report("scribble", 0, "open");
        return;
    }
    int rx = shmcomm_open_receive(901, SHMCOMM_CONNECT_CH | SHMCOMM_NONBLOCK_CH, NULL, PACKET, 4);
    unsigned long len = 0;
    volatile uint64_t *w = shmcomm_sys_region(tx, &len);
    if (rx < 0 || !w) {
        report("scribble", 0, "not mapped");
        return;
    }
    unsigned char p[PACKET];
    fill(p, 1);
    int errors = 0, data = 0;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 64; round++) {
        /* Everything after the header, then (from round 8) the header's counters and tags
         * too: huge counters, lengths beyond the slot, indices beyond the ring. */
        for (unsigned long i = round < 8 ? SHMCOMM_HEADER_WORDS : 8; i < len / 8; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            w[i] = round & 1 ? x : ~0ull - (uint64_t)i;
        }
        int a = shmcomm_write(tx, p, PACKET);
        int b = shmcomm_read(rx, p, PACKET);
        errors += (a < 0) + (b < 0);
        data += (a == PACKET) + (b > 0 && b <= PACKET);
    }
    /* The kernel closes the scribbled channel, and a fresh one works. */
    int c1 = shmcomm_close(tx), c2 = shmcomm_close(rx);
    shmcomm_channel_t t2;
    int ok2 = shmcomm_open_send(902, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, NULL, PACKET, 4, &t2) == 0;
    int r2 = shmcomm_open_receive(902, SHMCOMM_CONNECT_CH, NULL, PACKET, 4);
    fill(p, 7);
    int wr = ok2 ? shmcomm_write(t2, p, PACKET) : -1;
    int rd = r2 >= 0 ? shmcomm_read(r2, p, PACKET) : -1;
    int fresh = wr == PACKET && rd == PACKET && intact(p, 7);
    shmcomm_close(t2);
    shmcomm_close(r2);
    snprintf(d, sizeof d, "(64 rounds: %d errors, %d garbage transfers, closes %d %d, a fresh channel works: %s)", errors, data,
             c1, c2, fresh ? "yes" : "no");
    report("scribble", errors > 0 && c1 == 0 && c2 == 0 && fresh, d);
}

static void async_case(void)
{
    shmcomm_channel_t tx;
    char d[120];
    if (shmcomm_open_send(903, SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, NULL, PACKET, -1, &tx)) {
        report("async", 0, "open");
        return;
    }
    int user = shmcomm_sys_region(tx, NULL) != NULL;
    unsigned char p[PACKET];
    pid_t pid = fork();
    if (pid == 0) {
        int rx = shmcomm_open_receive(903, SHMCOMM_CONNECT_CH, NULL, PACKET, -1);
        if (rx < 0 || !shmcomm_sys_region(rx, NULL))
            _exit(2);
        /* Wait for value 500, checking every value read is whole and never goes back. */
        uint64_t last = 0;
        for (;;) {
            int r = shmcomm_read(rx, p, PACKET);
            if (r == -1 && errno == EAGAIN)
                continue;
            uint64_t n;
            memcpy(&n, p, 8);
            if (r != PACKET || !intact(p, n) || n < last)
                _exit(3);
            last = n;
            if (n == 500)
                _exit(0);
        }
    }
    for (uint64_t n = 1; n <= 500; n++) {
        fill(p, n);
        shmcomm_write(tx, p, PACKET);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    shmcomm_close(tx);
    snprintf(d, sizeof d, "(user path: %s, reader exit %d)", user ? "yes" : "no", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    report("async", user && WIFEXITED(status) && WEXITSTATUS(status) == 0, d);
}

int main(void)
{
    path_case();
    kill_case("kill, both in user space", 910, 0, 0);
    kill_case("kill, kernel-path writer", 911, 1, 0);
    kill_case("kill, kernel-path reader", 912, 0, 1);
    scribble_case();
    async_case();
    printf("fast: %d of %d as expected\n", good, total);
    return good == total ? 0 : 1;
}
