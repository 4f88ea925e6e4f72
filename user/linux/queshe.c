/* queshe /dev/qSB<n>: an interactive session with Quest sandbox n's shell, from Linux (the
 * seed's `queshe /dev/qSB<sandbox-number>`). What you type goes to Quest's console (ctrl-c
 * included: it ends Quest's foreground task); what Quest prints comes back. The terminal is
 * raw meanwhile; ctrl-] ends the session. /dev/qSB<n> is qshd's (user/linux/qshd.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define CTRL_RIGHT_BRACKET 0x1d

int main(int argc, char *argv[])
{
    if (argc != 2) {
        fprintf(stderr, "usage: queshe /dev/qSB<sandbox-number>\n");
        return 2;
    }
    int dev = open(argv[1], O_RDWR | O_NOCTTY);
    if (dev < 0) {
        fprintf(stderr, "queshe: %s: %s%s\n", argv[1], strerror(errno),
                errno == ENOENT ? " (is qshd running, and does the configuration give this sandbox queshe channels?)" : "");
        return 1;
    }
    struct termios saved, raw;
    int tty = isatty(0) && tcgetattr(0, &saved) == 0;
    if (tty) {
        raw = saved;
        cfmakeraw(&raw);
        raw.c_oflag |= OPOST | ONLCR; /* Quest prints \n: keep lines apart on this terminal */
        tcsetattr(0, TCSANOW, &raw);
    }
    printf("queshe: connected to %s; ctrl-] ends the session\n", argv[1]);
    fflush(stdout);
    unsigned char buf[256];
    int done = 0;
    while (!done) {
        struct pollfd p[2] = {{0, POLLIN, 0}, {dev, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents & (POLLIN | POLLHUP)) {
            ssize_t r = read(0, buf, sizeof buf);
            if (r <= 0)
                break;
            void *end = memchr(buf, CTRL_RIGHT_BRACKET, (size_t)r);
            if (end) {
                r = (unsigned char *)end - buf;
                done = 1;
            }
            if (r > 0 && write(dev, buf, (size_t)r) < 0)
                break;
        }
        if (p[1].revents & POLLIN) {
            ssize_t r = read(dev, buf, sizeof buf);
            if (r <= 0)
                break;
            if (write(1, buf, (size_t)r) < 0)
                break;
        }
    }
    if (tty)
        tcsetattr(0, TCSANOW, &saved);
    printf("\nqueshe: session ended\n");
    return 0;
}
