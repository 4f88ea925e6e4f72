/* cdc_read [DEVICE [COUNT]]: the seed's USB data-transfer example. Opens a USB serial device
 * (default /dev/ttyUSB0), writes "cdc_read: ready\n" to it (the sender starts on that), then
 * reads until COUNT bytes (default 4096) have arrived and prints their count, FNV-1a 64-bit
 * hash, the number of read() calls and the guest time from the first byte to the last.
 *
 * cdc_read -l N [DEVICE]: latency with the adapter looped back (its output fed to its input,
 * e.g. QEMU's udp chardev sending to itself): N times, writes one byte, waits for it to come
 * back, and prints min/median/max of write-to-read time (guest clock), the delays between
 * rounds varied so rounds meet the driver's polling at different phases.
 * Exit status 1 on an error (printed with its reason). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int latency(int n, const char *dev)
{
    int fd = open(dev, O_RDWR);
    if (fd < 0) {
        printf("cdc_read: %s: %s\n", dev, strerror(errno));
        return 1;
    }
    static uint64_t lat[1000];
    if (n < 1 || n > 1000)
        n = 1000;
    for (int i = 0; i < n; i++) {
        unsigned char b = (unsigned char)(i * 37 + 1), c = 0;
        uint64_t t0 = now_us();
        if (write(fd, &b, 1) != 1) {
            printf("cdc_read: write %s: %s\n", dev, strerror(errno));
            return 1;
        }
        ssize_t r;
        while ((r = read(fd, &c, 1)) == 0)
            ;
        if (r < 0) {
            printf("cdc_read: read %s: %s\n", dev, strerror(errno));
            return 1;
        }
        lat[i] = now_us() - t0;
        if (c != b) {
            printf("cdc_read: round %d: sent %u, got %u\n", i, b, c);
            return 1;
        }
        struct timespec d = {0, (long)(1000000 + (i * 3700) % 9000 * 1000)};
        nanosleep(&d, 0);
    }
    qsort(lat, (size_t)n, sizeof lat[0], cmp);
    printf("cdc_read: latency %d rounds: min %llu us, median %llu us, max %llu us\n", n, (unsigned long long)lat[0],
           (unsigned long long)lat[n / 2], (unsigned long long)lat[n - 1]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "-l"))
        return latency(atoi(argv[2]), argc > 3 ? argv[3] : "/dev/ttyUSB0");
    const char *dev = argc > 1 ? argv[1] : "/dev/ttyUSB0";
    long want = argc > 2 ? atol(argv[2]) : 4096;
    int fd = open(dev, O_RDWR);
    if (fd < 0) {
        printf("cdc_read: %s: %s\n", dev, strerror(errno));
        return 1;
    }
    const char hello[] = "cdc_read: ready\n";
    if (write(fd, hello, sizeof hello - 1) != (ssize_t)(sizeof hello - 1)) {
        printf("cdc_read: write %s: %s\n", dev, strerror(errno));
        return 1;
    }
    static unsigned char buf[4096];
    uint64_t h = 0xcbf29ce484222325ull, first = 0, last = 0;
    long got = 0, reads = 0;
    while (got < want) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            printf("cdc_read: read %s after %ld bytes: %s\n", dev, got, strerror(errno));
            return 1;
        }
        if (n == 0)
            continue;
        if (!first)
            first = now_us();
        last = now_us();
        reads++;
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 0x100000001b3ull;
        got += n;
    }
    printf("cdc_read: %ld bytes, fnv %016llx, %ld reads, %llu us first to last\n", got, (unsigned long long)h, reads,
           (unsigned long long)(last - first));
    close(fd);
    return 0;
}
