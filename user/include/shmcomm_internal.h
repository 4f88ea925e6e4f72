/* shmcomm_internal.h: limits and the raw calls under <shmcomm_user.h>.
 *
 * Mirrors crates/quest-abi (quest_abi::shm, quest_abi::nr), checked by
 * crates/quest-abi/tests/c_header.rs. The seed's async_send.c includes it; programs need
 * only <shmcomm_user.h>.
 */
#ifndef QUEST_SHMCOMM_INTERNAL_H
#define QUEST_SHMCOMM_INTERNAL_H

#include <quest.h>

#define SHMCOMM_MAX_PACKET   65536  /* largest packet_size, bytes */
#define SHMCOMM_MAX_BUFFER   1024   /* most packets in a synchronous channel */
#define SHMCOMM_MAX_CHANNELS 64     /* channels that may exist at once (ENOSPC beyond) */

/* The raw calls (no marshalling), one packet per call; each returns the result or -1 with
 * errno. On Quest-RS they are system calls (the kernel copies the packet, user/libquest/c/
 * quest.c); in a Quest-V Linux sandbox, user/linux/shmcomm implements them over /dev/mem. */
long shmcomm_sys_open(int send, unsigned key, unsigned flags, unsigned long packet_size,
                      long buffer_len);
long shmcomm_sys_write(int fd, const void *packet, unsigned long len);
long shmcomm_sys_read(int fd, void *packet, unsigned long len);
long shmcomm_sys_close(int fd);
long shmcomm_sys_key(int fd);

#endif /* QUEST_SHMCOMM_INTERNAL_H */
