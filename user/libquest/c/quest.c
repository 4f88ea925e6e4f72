#define _GNU_SOURCE
/* quest.c: the C wrappers of the Quest-RS system calls declared in <vcpu.h> and <quest.h>.
 *
 * `cargo xtask cc` links this file into every C program. Each wrapper is musl's syscall(),
 * which returns the result, or sets errno and returns -1 for a result in -4095..-1 — the libc
 * convention, and what the seed's `if (new_vcpu < 0)` expects.
 */
#include <unistd.h>

#include <quest.h>
#include <vcpu.h>

int vcpu_create(struct sched_param *param)
{
    return (int)syscall(QUEST_NR_VCPU_CREATE, param);
}

int vcpu_bind_task(int vcpu)
{
    return (int)syscall(QUEST_NR_VCPU_BIND_TASK, vcpu);
}

int vcpu_getparams(struct sched_param *param)
{
    return (int)syscall(QUEST_NR_VCPU_GETPARAMS, param);
}

int vcpu_destroy(int vcpu, int force)
{
    return (int)syscall(QUEST_NR_VCPU_DESTROY, vcpu, force);
}

int ps_tasks(struct task_info *buf, int max)
{
    return (int)syscall(QUEST_NR_PS_TASKS, buf, max);
}

int ps_vcpus(struct vcpu_info *buf, int max)
{
    return (int)syscall(QUEST_NR_PS_VCPUS, buf, max);
}

int task_kill(int task)
{
    return (int)syscall(QUEST_NR_TASK_KILL, task);
}

long questv_exits(void *buf, unsigned long len)
{
    return syscall(QUEST_NR_QUESTV_EXITS, buf, len);
}

/* ---- shmcomm (<shmcomm_user.h>): marshalling here, one packet per system call ---- */

#include <errno.h>
#include <string.h>

#include <shmcomm_user.h>
#include <shmcomm_internal.h>

#define SHMCOMM_FDS 256

/* Per descriptor: the callbacks and the packet size (the kernel checks sizes itself). */
static struct {
    shmcomm_marshal_fn marshal;
    shmcomm_unmarshal_fn unmarshal;
    int packet_size;
    int async;
} shmcomm_fd[SHMCOMM_FDS];

long shmcomm_sys_open(int send, unsigned key, unsigned flags, unsigned long packet_size, long buffer_len)
{
    return syscall(send ? QUEST_NR_SHMCOMM_OPEN_SEND : QUEST_NR_SHMCOMM_OPEN_RECEIVE, key, flags,
                   packet_size, buffer_len);
}

long shmcomm_sys_write(int fd, const void *packet, unsigned long len)
{
    return syscall(QUEST_NR_SHMCOMM_WRITE, fd, packet, len);
}

long shmcomm_sys_read(int fd, void *packet, unsigned long len)
{
    return syscall(QUEST_NR_SHMCOMM_READ, fd, packet, len);
}

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
    int r = (int)syscall(QUEST_NR_SHMCOMM_CLOSE, channel);
    if (r == 0 && channel >= 0 && channel < SHMCOMM_FDS)
        memset(&shmcomm_fd[channel], 0, sizeof shmcomm_fd[channel]);
    return r;
}

unsigned get_vshm_key(int channel)
{
    return (unsigned)syscall(QUEST_NR_SHMCOMM_GET_KEY, channel);
}

/* ---- tuned pipes (<tpipe.h>) ---- */

#include <tpipe.h>

int tpipe_open(const struct tpipe_qos *qos, int fds[2], struct tpipe_guarantee *g)
{
    return (int)syscall(QUEST_NR_TPIPE_OPEN, qos, fds, g);
}

ssize_t tpipe_write(int fd, const void *buf, size_t len)
{
    return (ssize_t)syscall(QUEST_NR_TPIPE_WRITE, fd, buf, len);
}

ssize_t tpipe_read(int fd, void *buf, size_t len)
{
    return (ssize_t)syscall(QUEST_NR_TPIPE_READ, fd, buf, len);
}

int tpipe_close(int fd)
{
    return (int)syscall(QUEST_NR_TPIPE_CLOSE, fd);
}
