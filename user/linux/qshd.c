/* qshd: the Linux half of queshe, started by the Linux sandbox's /init.
 *
 * For each Quest sandbox n this Linux sandbox shares queshe channels with (keys 5000 + 2n:
 * console input to Quest, 5001 + 2n: Quest's console output; quest_abi::questv::queshe_keys),
 * qshd makes a pseudo-terminal, links /dev/qSB<n> to its slave side (kept in raw mode, so bytes
 * pass unchanged: ctrl-c stays 0x03) and copies bytes both ways:
 *   written to /dev/qSB<n>  ->  channel 5000 + 2n  ->  Quest's console input (the shell, ctrl-c)
 *   Quest's console output  ->  channel 5001 + 2n  ->  read from /dev/qSB<n>
 * So `echo "kill -c" > /dev/qSB0` types a line at Quest's shell, `echo $'\cc' > /dev/qSB0` ends
 * its foreground task, and `queshe /dev/qSB0` is an interactive session. Quest's output while
 * nobody reads /dev/qSB<n> is dropped once the terminal's buffer is full (its newest part is
 * what a session sees first). The channels are Quest's to format: qshd connects, retrying
 * every 100 ms until Quest has booted.
 *
 * qshd is also the sandbox's shmcomm janitor: every 50 ms it closes, in the window, any
 * channel side whose Linux process ended without closing it (killed mid-write, say), so the
 * Quest peer sees end of file or EPIPE instead of waiting forever (user/linux/shmcomm:
 * shmcomm_janitor_sweep). */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <shmcomm_user.h>

#define KEY_BASE 5000u
#define IN_PACKET 64
#define OUT_PACKET 256
#define LEAF_SIGNATURE 0x40000000u
#define LEAF_PLATFORM 0x40000002u
#define LEAF_CHANNEL 0x40000003u

/* Whether the monitor gives this sandbox a channel window with this key (CPUID, as the
 * shmcomm library finds windows). */
static int has_window(unsigned key)
{
    unsigned a, b, c, d;
    __cpuid(LEAF_SIGNATURE, a, b, c, d);
    if (b != 0x73657551u) /* "Ques" */
        return 0;
    __cpuid(LEAF_PLATFORM, a, b, c, d);
    unsigned n = a;
    for (unsigned i = 0; i < n && i < 256; i++) {
        __cpuid_count(LEAF_CHANNEL, i, a, b, c, d);
        if (a == key)
            return 1;
    }
    return 0;
}

struct bridge {
    int n, master, in_ch, out_ch;
};

static void pause_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* /dev/qSB<n> → Quest's console input. */
static void *to_quest(void *arg)
{
    struct bridge *br = arg;
    unsigned char buf[IN_PACKET];
    for (;;) {
        ssize_t r = read(br->master, buf, sizeof buf);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0 && errno == EIO) { /* no slave open: cannot happen, qshd keeps one */
            pause_ms(10);
            continue;
        }
        if (r <= 0)
            break;
        if (shmcomm_write(br->in_ch, buf, (size_t)r) < 0) {
            fprintf(stderr, "qshd: qSB%d input: %s\n", br->n, strerror(errno));
            pause_ms(100);
        }
    }
    return NULL;
}

/* Quest's console output → /dev/qSB<n>. */
static void *from_quest(void *arg)
{
    struct bridge *br = arg;
    unsigned char buf[OUT_PACKET];
    for (;;) {
        int r = shmcomm_read(br->out_ch, buf, sizeof buf);
        if (r <= 0) {
            if (r < 0)
                fprintf(stderr, "qshd: qSB%d output: %s\n", br->n, strerror(errno));
            pause_ms(100);
            continue;
        }
        struct pollfd p = {br->master, POLLOUT, 0};
        if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT))
            if (write(br->master, buf, (size_t)r) < 0)
                pause_ms(10);
    }
    return NULL;
}

static void *serve(void *arg)
{
    struct bridge *br = arg;
    unsigned in_key = KEY_BASE + 2u * (unsigned)br->n, out_key = in_key + 1;
    shmcomm_channel_t in_ch;
    while (shmcomm_open_send(in_key, SHMCOMM_CONNECT_CH | SHMCOMM_SYNC_CH, NULL, IN_PACKET, -1, &in_ch) < 0)
        pause_ms(100); /* Quest formats its channels when it boots */
    int out_ch;
    while ((out_ch = shmcomm_open_receive(out_key, SHMCOMM_CONNECT_CH | SHMCOMM_SYNC_CH, NULL, OUT_PACKET, -1)) < 0)
        pause_ms(100);
    br->in_ch = in_ch;
    br->out_ch = out_ch;
    br->master = posix_openpt(O_RDWR | O_NOCTTY);
    if (br->master < 0 || grantpt(br->master) < 0 || unlockpt(br->master) < 0) {
        fprintf(stderr, "qshd: qSB%d: no pseudo-terminal: %s\n", br->n, strerror(errno));
        return NULL;
    }
    const char *slave_name = ptsname(br->master);
    int slave = slave_name ? open(slave_name, O_RDWR | O_NOCTTY) : -1;
    struct termios t;
    if (slave < 0 || tcgetattr(slave, &t) < 0) {
        fprintf(stderr, "qshd: qSB%d: %s: %s\n", br->n, slave_name ? slave_name : "?", strerror(errno));
        return NULL;
    }
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t); /* kept open: the terminal lives while qshd does */
    char link[32];
    snprintf(link, sizeof link, "/dev/qSB%d", br->n);
    unlink(link);
    if (symlink(slave_name, link) < 0) {
        fprintf(stderr, "qshd: %s: %s\n", link, strerror(errno));
        return NULL;
    }
    printf("qshd: %s is the console of Quest sandbox %d (channels %u and %u, %s)\n", link, br->n, in_key, out_key, slave_name);
    fflush(stdout);
    pthread_t a;
    pthread_create(&a, NULL, to_quest, br);
    from_quest(br);
    return NULL;
}

/* user/linux/shmcomm: closes the sides of Linux processes that died holding them. */
long shmcomm_janitor_sweep(void);

int main(void)
{
    pthread_t th[16];
    int started = 0;
    for (int n = 0; n < 16; n++) {
        unsigned k = KEY_BASE + 2u * (unsigned)n;
        if (!has_window(k) || !has_window(k + 1))
            continue;
        struct bridge *br = calloc(1, sizeof *br);
        if (!br)
            return 1;
        br->n = n;
        if (pthread_create(&th[started], NULL, serve, br) == 0)
            started++;
    }
    if (started == 0)
        printf("qshd: no queshe channels (keys %u + 2n, %u + 2n) in this sandbox\n", KEY_BASE, KEY_BASE + 1);
    fflush(stdout);
    for (;;) {
        if (shmcomm_janitor_sweep() < 0 && errno == ENODEV)
            break; /* not in a Quest-V sandbox: no windows to look after */
        struct timespec t = {0, 50 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    return 0;
}
