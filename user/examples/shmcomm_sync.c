/* shmcomm_sync: a synchronous (FIFO) channel blocks its reader while empty and its writer
 * while full. The parent writes, a forked child reads; marshal/unmarshal callbacks turn a
 * struct into a text packet and back. Times are the guest's CLOCK_MONOTONIC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <shmcomm_user.h>

#define KEY 700
#define PACKET 32
#define SLOTS 2

struct msg { int seq; int value; };

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static int marshal(void *packet, size_t ps, const void *data, size_t len)
{
    const struct msg *m = data;
    if (len != sizeof *m)
        return -1;
    return snprintf(packet, ps, "%d:%d", m->seq, m->value) + 1;
}

static int unmarshal(void *data, size_t len, const void *packet, size_t plen)
{
    struct msg *m = data;
    if (len < sizeof *m || plen == 0 || sscanf(packet, "%d:%d", &m->seq, &m->value) != 2)
        return -1;
    return sizeof *m;
}

int main(void)
{
    shmcomm_channel_t tx;
    if (shmcomm_open_send(KEY, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, marshal, PACKET, SLOTS, &tx) < 0) {
        perror("sync: open_send");
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        shmcomm_close(tx); /* the child only receives */
        int rx = shmcomm_open_receive(KEY, SHMCOMM_CONNECT_CH, unmarshal, PACKET, -1);
        if (rx < 0) {
            perror("sync: open_receive");
            _exit(1);
        }
        struct msg m = {0, 0};
        long long t0 = now_ms();
        int n = shmcomm_read(rx, &m, sizeof m); /* empty: blocks until the writer writes */
        printf("sync: reader blocked %lld ms, read %d bytes: seq %d value %d\n", now_ms() - t0, n, m.seq, m.value);
        usleep(300000); /* meanwhile the writer fills the buffer and blocks */
        for (int i = 1; i <= 4; i++) {
            n = shmcomm_read(rx, &m, sizeof m);
            printf("sync: read %d bytes: seq %d value %d\n", n, m.seq, m.value);
        }
        n = shmcomm_read(rx, &m, sizeof m);
        printf("sync: read after the writer closed returned %d\n", n);
        shmcomm_close(rx);
        _exit(0);
    }
    usleep(300000);
    struct msg m = {0, 100};
    shmcomm_write(tx, &m, sizeof m);
    long long t0 = now_ms();
    for (int i = 1; i <= 3; i++) {
        m.seq = i;
        m.value = 100 + i;
        if (shmcomm_write(tx, &m, sizeof m) < 0)
            perror("sync: write");
    }
    printf("sync: writer blocked %lld ms writing 3 packets into a %d-packet buffer\n", now_ms() - t0, SLOTS);
    m.seq = 4;
    m.value = 104;
    shmcomm_write(tx, &m, sizeof m);
    shmcomm_close(tx);
    int st = 0;
    waitpid(pid, &st, 0);
    printf("sync: done, child status %d\n", st);
    return 0;
}
