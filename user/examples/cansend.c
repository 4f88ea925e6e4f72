/* cansend (can-utils syntax): cansend [-b BITRATE] <device> <can_frame>
 * <device> is can0, can1, ... (/dev/canN); <can_frame> is ID#DATA: 3 hex digits for a standard
 * identifier, 8 for an extended one, data as hex bytes (optional '.' between them), or R for a
 * remote request. -b sets the controller's bit rate first (SocketCAN does that with `ip link`). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <can_text.h>

int main(int argc, char **argv)
{
    unsigned long bitrate = 0;
    int a = 1;
    if (a + 1 < argc && !strcmp(argv[a], "-b")) {
        bitrate = strtoul(argv[a + 1], NULL, 10);
        a += 2;
    }
    if (argc - a != 2) {
        fprintf(stderr, "usage: cansend [-b BITRATE] <device> <can_id>#{data}|R\n");
        return 1;
    }
    struct can_frame f;
    if (can_parse_frame(argv[a + 1], &f) != 0) {
        fprintf(stderr, "cansend: bad CAN frame '%s' (expected ID#DATA: 3 or 8 hex digits, up to 8 data bytes)\n", argv[a + 1]);
        return 1;
    }
    char path[32];
    snprintf(path, sizeof path, "/dev/%s", argv[a]);
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "cansend: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (bitrate && ioctl(fd, QUEST_CAN_SET_BITRATE, bitrate) != 0) {
        fprintf(stderr, "cansend: bit rate %lu: %s\n", bitrate, strerror(errno));
        return 1;
    }
    if (write(fd, &f, sizeof f) != sizeof f) {
        fprintf(stderr, "cansend: write: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
