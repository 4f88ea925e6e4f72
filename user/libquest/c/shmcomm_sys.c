/* shmcomm_sys.c: the raw shmcomm calls of <shmcomm_internal.h> on Quest-RS: system calls (the
 * kernel runs the channel protocol and copies one packet per call). Linked into every Quest
 * program with shmcomm.c (the marshalling layer above them); a Quest-V Linux sandbox's programs
 * get user/linux/shmcomm instead. boomerang_stage (<boomerang.h>) is here for the same reason:
 * Linux's is in user/linux/shmcomm (SCHED_DEADLINE). */
#define _GNU_SOURCE
#include <unistd.h>
#include <quest.h>

#include <shmcomm_internal.h>
#include <boomerang.h>

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

long shmcomm_sys_close(int fd)
{
    return syscall(QUEST_NR_SHMCOMM_CLOSE, fd);
}

long shmcomm_sys_key(int fd)
{
    return syscall(QUEST_NR_SHMCOMM_GET_KEY, fd);
}


int boomerang_stage(const struct boomerang_qos *qos, struct boomerang_plan *plan)
{
    return (int)syscall(QUEST_NR_BOOMERANG_STAGE, qos, plan);
}
