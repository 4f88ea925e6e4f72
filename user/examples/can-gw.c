/* can-gw: the seed's CAN logger/gateway example (a Teensy CAN data logger on the original
 * Quest), on /dev/canN: every frame received on SRC is logged in candump's log format and
 * forwarded to DST, optionally only those matching ID:MASK and with the identifier rewritten
 * by XOR.  can-gw [-n COUNT] [-f ID:MASK] [-x XOR] SRC DST */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <can_text.h>

int main(int argc, char **argv)
{
    long count = -1;
    uint32_t xor_id = 0;
    int have_filter = 0;
    struct can_filter flt = {0, 0};
    int a = 1;
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (!strcmp(argv[a], "-n") && a + 1 < argc) count = strtol(argv[++a], NULL, 10);
        else if (!strcmp(argv[a], "-x") && a + 1 < argc) xor_id = (uint32_t)strtoul(argv[++a], NULL, 16);
        else if (!strcmp(argv[a], "-f") && a + 1 < argc) {
            char *end;
            flt.can_id = (uint32_t)strtoul(argv[++a], &end, 16);
            if (*end != ':') break;
            flt.can_mask = (uint32_t)strtoul(end + 1, NULL, 16);
            have_filter = 1;
        } else break;
    }
    if (argc - a != 2) {
        fprintf(stderr, "usage: can-gw [-n COUNT] [-f ID:MASK] [-x XOR] SRC DST\n");
        return 1;
    }
    char sp[32], dp[32];
    snprintf(sp, sizeof sp, "/dev/%s", argv[a]);
    snprintf(dp, sizeof dp, "/dev/%s", argv[a + 1]);
    int in = open(sp, O_RDWR), out = open(dp, O_RDWR);
    if (in < 0 || out < 0) {
        fprintf(stderr, "can-gw: %s: %s\n", in < 0 ? sp : dp, strerror(errno));
        return 1;
    }
    if (ioctl(in, QUEST_CAN_SET_FILTER, have_filter ? &flt : (void *)0) != 0) {
        fprintf(stderr, "can-gw: filter: %s\n", strerror(errno));
        return 1;
    }
    printf("can-gw: %s -> %s\n", argv[a], argv[a + 1]);
    fflush(stdout);
    long n = 0;
    struct can_frame frames[16];
    while (count < 0 || n < count) {
        ssize_t r = read(in, frames, sizeof frames);
        if (r < 0) {
            fprintf(stderr, "can-gw: read: %s\n", strerror(errno));
            return 1;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (ssize_t i = 0; i < r / (ssize_t)sizeof(struct can_frame); i++) {
            struct can_frame *f = &frames[i];
            char buf[64];
            can_format_compact(f, buf);
            printf("(%010lld.%06ld) %s %s\n", (long long)ts.tv_sec, ts.tv_nsec / 1000, argv[a], buf);
            if (xor_id) {
                uint32_t mask = (f->can_id & CAN_EFF_FLAG) ? CAN_EFF_MASK : CAN_SFF_MASK;
                f->can_id = (f->can_id & ~mask) | ((f->can_id ^ xor_id) & mask);
            }
            if (write(out, f, sizeof *f) != sizeof *f) fprintf(stderr, "can-gw: write to %s: %s\n", argv[a + 1], strerror(errno));
            n++;
        }
        fflush(stdout);
    }
    printf("can-gw: %ld frame(s) forwarded\n", n);
    return 0;
}
