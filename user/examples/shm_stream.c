/* shm_stream: a stream of numbered packets over a synchronous shmcomm channel, checked end to
 * end. The same source runs on Quest-RS and, built with the Linux library, in a Quest-V Linux
 * sandbox, so it tests a channel between the two.
 *
 *   shm_stream send KEY COUNT [PACKET [SLOTS]]   creates the channel (sync, PACKET bytes,
 *                                                SLOTS packets) and sends COUNT packets
 *   shm_stream recv KEY COUNT [PACKET]           connects (waiting up to 60 s for the channel
 *                                                to exist) and reads until the sender closes
 *
 * Packet n carries n (4 bytes, little-endian) and then bytes (n * 31 + i) & 0xff. The receiver
 * checks every packet: in order, not duplicated, not corrupted; it prints one summary line:
 *   shm_stream: received COUNT packets in order, none lost, duplicated or corrupted (T ms)
 * or what went wrong (and exits 1). Times are CLOCK_MONOTONIC. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <shmcomm_user.h>

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static void fill(unsigned char *p, int size, unsigned n)
{
    memcpy(p, &n, 4);
    for (int i = 4; i < size; i++)
        p[i] = (unsigned char)((n * 31u + (unsigned)i) & 0xff);
}

static int usage(void)
{
    printf("usage: shm_stream send KEY COUNT [PACKET [SLOTS]] | recv KEY COUNT [PACKET]\n");
    return 2;
}

int main(int argc, char *argv[])
{
    if (argc < 4)
        return usage();
    int send = strcmp(argv[1], "send") == 0;
    if (!send && strcmp(argv[1], "recv") != 0)
        return usage();
    unsigned key = (unsigned)atoi(argv[2]);
    long count = atol(argv[3]);
    int size = argc > 4 ? atoi(argv[4]) : 64;
    int slots = argc > 5 ? atoi(argv[5]) : 64;
    if (count < 0 || size < 4 || size > 65536 || slots < 1) {
        printf("shm_stream: bad COUNT, PACKET or SLOTS\n");
        return 2;
    }
    unsigned char *p = malloc((size_t)size), *want = malloc((size_t)size);
    if (!p || !want)
        return 1;
    long long t0 = now_ms();
    if (send) {
        shmcomm_channel_t ch;
        if (shmcomm_open_send(key, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, NULL, size, slots, &ch) < 0) {
            printf("shm_stream: open_send %u: %s\n", key, strerror(errno));
            return 1;
        }
        for (long n = 0; n < count; n++) {
            fill(p, size, (unsigned)n);
            if (shmcomm_write(ch, p, (size_t)size) != size) {
                printf("shm_stream: write %ld: %s\n", n, strerror(errno));
                return 1;
            }
        }
        shmcomm_close(ch);
        printf("shm_stream: sent %ld packets of %d bytes (%lld ms)\n", count, size, now_ms() - t0);
        return 0;
    }
    int fd = -1;
    while ((fd = shmcomm_open_receive(key, SHMCOMM_CONNECT_CH | SHMCOMM_SYNC_CH, NULL, size, -1)) < 0) {
        if (errno != ENOENT || now_ms() - t0 > 60000) {
            printf("shm_stream: open_receive %u: %s\n", key, strerror(errno));
            return 1;
        }
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    long got = 0;
    for (;;) {
        int r = shmcomm_read(fd, p, (size_t)size);
        if (r == 0)
            break; /* the sender closed and everything is read */
        if (r < 0) {
            printf("shm_stream: read after %ld packets: %s\n", got, strerror(errno));
            return 1;
        }
        fill(want, size, (unsigned)got);
        if (r != size || memcmp(p, want, (size_t)size) != 0) {
            unsigned n;
            memcpy(&n, p, 4);
            printf("shm_stream: packet %ld is wrong (%d bytes, number %u)\n", got, r, n);
            return 1;
        }
        got++;
    }
    shmcomm_close(fd);
    if (got != count) {
        printf("shm_stream: received %ld packets, expected %ld\n", got, count);
        return 1;
    }
    printf("shm_stream: received %ld packets in order, none lost, duplicated or corrupted (%lld ms)\n", got, now_ms() - t0);
    return 0;
}
