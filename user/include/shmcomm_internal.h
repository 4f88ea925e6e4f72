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

/* The channel region's layout (crates/channels/src/layout.rs, checked by that crate's
 * c_layout test): word indices of the 192-byte header, then the slots from word
 * SHMCOMM_HEADER_WORDS, each a tag word and ceil(slot_size / 8) payload words. The user-level
 * data path (shmcomm_sys.c) runs the four-slot and FIFO protocols on these words. */
#define SHMCOMM_MAGIC          0x4e48435453455551ull /* "QUESTCHN", little-endian */
#define SHMCOMM_VERSION        1
#define SHMCOMM_CHECK_SALT     0x9e3779b97f4a7c15ull
#define SHMCOMM_KIND_FOUR_SLOT 1
#define SHMCOMM_KIND_FIFO      2
#define SHMCOMM_MAX_SLOT_SIZE  (1u<<20)
#define SHMCOMM_MAX_FIFO_SLOTS (1u<<16)
#define SHMCOMM_STATE_CLOSED   2
#define SHMCOMM_HEADER_WORDS   24
#define SHMCOMM_W_MAGIC        0
#define SHMCOMM_W_VERSION_KIND 1
#define SHMCOMM_W_GEOMETRY     2
#define SHMCOMM_W_CHECK        3
#define SHMCOMM_W_WRITER_STATE 8
#define SHMCOMM_W_WRITER_POS   9
#define SHMCOMM_W_SLOT0        10
#define SHMCOMM_W_SLOT1        11
#define SHMCOMM_W_WRITES       12
#define SHMCOMM_W_REJECTED     13
#define SHMCOMM_W_WRITER_WAIT  14
#define SHMCOMM_W_READER_STATE 16
#define SHMCOMM_W_READER_POS   17
#define SHMCOMM_W_READS        18
#define SHMCOMM_W_OVERRUNS     19
#define SHMCOMM_W_READER_WAIT  20

/* The raw calls (no marshalling), one packet per call; each returns the result or -1 with
 * errno. On Quest-RS (user/libquest/c/shmcomm_sys.c) open is a system call that also maps the
 * channel's region into the process; write and read then run the channel protocol in user
 * space and enter the kernel only to sleep or to wake a sleeping peer (a channel that cannot
 * be mapped — a Quest-V window — or a process started with QUEST_SHMCOMM_SYSCALL=1 in its
 * environment uses the system calls, which copy the packet in the kernel). In a Quest-V Linux
 * sandbox, user/linux/shmcomm implements them over /dev/mem. */
long shmcomm_sys_open(int send, unsigned key, unsigned flags, unsigned long packet_size,
                      long buffer_len);
long shmcomm_sys_write(int fd, const void *packet, unsigned long len);
long shmcomm_sys_read(int fd, void *packet, unsigned long len);
long shmcomm_sys_close(int fd);
long shmcomm_sys_key(int fd);
/* Quest-RS: the region descriptor `fd` runs on in user space (its length in *len), or NULL on
 * the system-call path (tests, and tools that inspect a channel). */
volatile void *shmcomm_sys_region(int fd, unsigned long *len);

#endif /* QUEST_SHMCOMM_INTERNAL_H */
