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
