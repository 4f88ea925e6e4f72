/* shmcomm_bench: cost of shmcomm calls (guest CLOCK_MONOTONIC; under -icount shift=0 a
 * nanosecond is one instruction). Async: write + read of a 4-byte and a 4 KiB packet in one
 * process. Sync: 16 writes then 16 reads of 64-byte packets. Prints ns per operation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <shmcomm_user.h>

#define ROUNDS 2000

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void async_pair(unsigned key, int size)
{
    static char buf[4096];
    shmcomm_channel_t tx;
    if (shmcomm_open_send(key, SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, NULL, size, -1, &tx) < 0) {
        perror("bench: open");
        return;
    }
    int rx = shmcomm_open_receive(key, SHMCOMM_CONNECT_CH, NULL, size, -1);
    uint64_t t0 = now_ns();
    for (int i = 0; i < ROUNDS; i++) {
        shmcomm_write(tx, buf, size);
        shmcomm_read(rx, buf, size);
    }
    uint64_t t = now_ns() - t0;
    printf("bench: async %d B write+read: %llu ns\n", size, (unsigned long long)(t / ROUNDS));
    shmcomm_close(tx);
    shmcomm_close(rx);
}

int main(void)
{
    async_pair(900, 4);
    async_pair(901, 4096);
    char buf[64] = {0};
    shmcomm_channel_t tx;
    if (shmcomm_open_send(902, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, NULL, 64, 16, &tx) < 0) {
        perror("bench: open sync");
        return 1;
    }
    int rx = shmcomm_open_receive(902, SHMCOMM_CONNECT_CH, NULL, 64, -1);
    uint64_t t0 = now_ns();
    for (int i = 0; i < ROUNDS / 16; i++) {
        for (int j = 0; j < 16; j++)
            shmcomm_write(tx, buf, 64);
        for (int j = 0; j < 16; j++)
            shmcomm_read(rx, buf, 64);
    }
    uint64_t t = now_ns() - t0;
    printf("bench: sync 64 B write+read: %llu ns\n", (unsigned long long)(t / (ROUNDS / 16 * 16)));
    shmcomm_close(tx);
    shmcomm_close(rx);
    return 0;
}
