/* shmcomm.c: <shmcomm_user.h> over the raw calls of <shmcomm_internal.h> — the marshal and
 * unmarshal callbacks, and the packet a call carries. One file for both systems that run the
 * seed's shmcomm programs:
 *
 *   - on Quest-RS, the raw calls are system calls (user/libquest/c/quest.c): the kernel runs
 *     the channel protocol;
 *   - in a Quest-V Linux sandbox, they are user/linux/shmcomm (a Rust static library over
 *     /dev/mem on the monitor's channel windows, running the same crates/channels protocol).
 *
 * `cargo xtask cc` links it into every C program; Linux-side programs get it with the Linux
 * library (xtask/src/cc.rs, `linux_programs`).
 */
#define _GNU_SOURCE
#include <unistd.h>

#include <errno.h>
#include <string.h>

#include <shmcomm_user.h>
#include <shmcomm_internal.h>

#define SHMCOMM_FDS 256

/* Per descriptor: the callbacks and the packet size (the raw calls check sizes themselves). */
static struct {
    shmcomm_marshal_fn marshal;
    shmcomm_unmarshal_fn unmarshal;
    int packet_size;
    int async;
} shmcomm_fd[SHMCOMM_FDS];

static int shmcomm_remember(int fd, shmcomm_marshal_fn m, shmcomm_unmarshal_fn u, int packet_size, int flags)
{
    if (fd >= 0 && fd < SHMCOMM_FDS) {
        shmcomm_fd[fd].marshal = m;
        shmcomm_fd[fd].unmarshal = u;
        shmcomm_fd[fd].packet_size = packet_size;
        shmcomm_fd[fd].async = (flags & SHMCOMM_ASYNC_CH) != 0;
    }
    return fd;
}

int shmcomm_open_send(unsigned key, int flags, shmcomm_marshal_fn marshal, int packet_size,
                      int buffer_len, shmcomm_channel_t *channel)
{
    if (packet_size <= 0) {
        errno = EINVAL;
        return -1;
    }
    int fd = (int)shmcomm_sys_open(1, key, (unsigned)flags, (unsigned long)packet_size, buffer_len);
    if (fd < 0)
        return -1;
    shmcomm_remember(fd, marshal, NULL, packet_size, flags);
    if (channel)
        *channel = fd;
    return 0;
}

int shmcomm_open_receive(unsigned key, int flags, shmcomm_unmarshal_fn unmarshal, int packet_size,
                         int buffer_len)
{
    if (packet_size <= 0) {
        errno = EINVAL;
        return -1;
    }
    int fd = (int)shmcomm_sys_open(0, key, (unsigned)flags, (unsigned long)packet_size, buffer_len);
    if (fd < 0)
        return -1;
    return shmcomm_remember(fd, NULL, unmarshal, packet_size, flags);
}

int shmcomm_write(int channel, const void *data, size_t len)
{
    if (channel < 0 || channel >= SHMCOMM_FDS || shmcomm_fd[channel].packet_size <= 0) {
        errno = EBADF;
        return -1;
    }
    if (shmcomm_fd[channel].marshal) {
        size_t ps = (size_t)shmcomm_fd[channel].packet_size;
        unsigned char packet[ps];
        memset(packet, 0, ps);
        int n = shmcomm_fd[channel].marshal(packet, ps, data, len);
        if (n < 0 || (size_t)n > ps) {
            errno = EINVAL;
            return -1;
        }
        long r = shmcomm_sys_write(channel, packet, shmcomm_fd[channel].async ? ps : (size_t)n);
        return r < 0 ? -1 : (int)len;
    }
    long r = shmcomm_sys_write(channel, data, len);
    return r < 0 ? -1 : (int)r;
}

int shmcomm_read(int channel, void *data, size_t len)
{
    if (channel < 0 || channel >= SHMCOMM_FDS || shmcomm_fd[channel].packet_size <= 0) {
        errno = EBADF;
        return -1;
    }
    size_t ps = (size_t)shmcomm_fd[channel].packet_size;
    unsigned char packet[ps];
    long n = shmcomm_sys_read(channel, packet, ps);
    if (n <= 0)
        return (int)n; /* -1 (errno set), or 0: end of stream (packets are never empty) */
    if (shmcomm_fd[channel].unmarshal) {
        int r = shmcomm_fd[channel].unmarshal(data, len, packet, (size_t)n);
        if (r < 0) {
            errno = EINVAL;
            return -1;
        }
        return r;
    }
    size_t m = (size_t)n < len ? (size_t)n : len;
    memcpy(data, packet, m);
    return (int)m;
}

int shmcomm_close(int channel)
{
    int r = (int)shmcomm_sys_close(channel);
    if (r == 0 && channel >= 0 && channel < SHMCOMM_FDS)
        memset(&shmcomm_fd[channel], 0, sizeof shmcomm_fd[channel]);
    return r;
}

unsigned get_vshm_key(int channel)
{
    return (unsigned)shmcomm_sys_key(channel);
}

