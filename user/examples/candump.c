/* candump (can-utils style): candump [-L] [-n COUNT] [-b BITRATE] [-s] <device>[,ID:MASK]
 * Prints every frame received on /dev/<device>: can-utils' default format, or with -L its log
 * format "(seconds.micros) can0 123#DEADBEEF" (what canplayer replays). ID:MASK installs one
 * filter (hex; an 8-digit ID or a mask with bit 31 set selects extended frames, as in
 * can-utils). -n exits after COUNT frames; -s prints the controller's counters at exit. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <can_text.h>

static const char *state_name(unsigned s)
{
    static const char *n[] = {"error-active", "error-warning", "error-passive", "bus-off"};
    return s < 4 ? n[s] : "?";
}

int main(int argc, char **argv)
{
    int log = 0, stats = 0;
    long count = -1;
    unsigned long bitrate = 0;
    const char *spec = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-L")) log = 1;
        else if (!strcmp(argv[i], "-s")) stats = 1;
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) count = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "-b") && i + 1 < argc) bitrate = strtoul(argv[++i], NULL, 10);
        else spec = argv[i];
    }
    if (!spec) {
        fprintf(stderr, "usage: candump [-L] [-n COUNT] [-b BITRATE] [-s] <device>[,ID:MASK]\n");
        return 1;
    }
    char ifname[16], path[32];
    const char *comma = strchr(spec, ',');
    size_t n = comma ? (size_t)(comma - spec) : strlen(spec);
    if (n >= sizeof ifname) n = sizeof ifname - 1;
    memcpy(ifname, spec, n);
    ifname[n] = 0;
    snprintf(path, sizeof path, "/dev/%s", ifname);
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "candump: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (bitrate && ioctl(fd, QUEST_CAN_SET_BITRATE, bitrate) != 0) {
        fprintf(stderr, "candump: bit rate %lu: %s\n", bitrate, strerror(errno));
        return 1;
    }
    /* The filter is the controller's (one per controller, not per descriptor): set or clear it. */
    if (!comma && ioctl(fd, QUEST_CAN_SET_FILTER, (void *)0) != 0) {
        fprintf(stderr, "candump: filter: %s\n", strerror(errno));
        return 1;
    }
    if (comma) {
        struct can_filter flt;
        char *end;
        const char *idtxt = comma + 1;
        flt.can_id = (uint32_t)strtoul(idtxt, &end, 16);
        size_t idlen = (size_t)(end - idtxt);
        if (*end != ':') {
            fprintf(stderr, "candump: bad filter '%s' (expected ID:MASK)\n", comma + 1);
            return 1;
        }
        flt.can_mask = (uint32_t)strtoul(end + 1, NULL, 16);
        if (idlen == 8 || (flt.can_mask & CAN_EFF_FLAG)) {
            flt.can_id = (flt.can_id & CAN_EFF_MASK) | CAN_EFF_FLAG;
            flt.can_mask = (flt.can_mask & CAN_EFF_MASK) | CAN_EFF_FLAG;
        } else {
            flt.can_mask = (flt.can_mask & CAN_SFF_MASK) | CAN_EFF_FLAG;
        }
        if (ioctl(fd, QUEST_CAN_SET_FILTER, &flt) != 0) {
            fprintf(stderr, "candump: filter: %s\n", strerror(errno));
            return 1;
        }
    }
    printf("candump: listening on %s\n", ifname);
    fflush(stdout);
    struct can_frame frames[32];
    long got = 0;
    while (count < 0 || got < count) {
        ssize_t r = read(fd, frames, sizeof frames);
        if (r < 0) {
            fprintf(stderr, "candump: read: %s\n", strerror(errno));
            return 1;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (ssize_t i = 0; i < r / (ssize_t)sizeof(struct can_frame); i++) {
            char buf[96];
            if (log) {
                can_format_compact(&frames[i], buf);
                printf("(%010lld.%06ld) %s %s\n", (long long)ts.tv_sec, ts.tv_nsec / 1000, ifname, buf);
            } else {
                can_format_default(ifname, &frames[i], buf);
                printf("%s\n", buf);
            }
            got++;
        }
        fflush(stdout);
    }
    if (stats) {
        struct quest_can_stats s;
        if (ioctl(fd, QUEST_CAN_GET_STATS, &s) == 0)
            printf("candump: %s %u bit/s %s: rx %llu, filtered %llu, overruns %llu, dropped %llu, tx %llu, "
                   "bus-off %llu, restarts %llu, tx errors %u, rx errors %u\n",
                   ifname, s.bitrate, state_name(s.state), (unsigned long long)s.rx_frames,
                   (unsigned long long)s.rx_filtered, (unsigned long long)s.rx_overruns,
                   (unsigned long long)s.rx_dropped, (unsigned long long)s.tx_frames,
                   (unsigned long long)s.bus_off, (unsigned long long)s.restarts, s.tx_errors, s.rx_errors);
    }
    return 0;
}
