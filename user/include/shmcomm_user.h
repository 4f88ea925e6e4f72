/* shmcomm_user.h: Quest's shared-memory channels (the seed's API).
 *
 *     shmcomm_channel_t ch;
 *     shmcomm_open_send (153, SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, NULL, sizeof(int), -1, &ch);
 *     shmcomm_write (ch, &X, sizeof(int));
 *     ...
 *     int fd = shmcomm_open_receive (153, SHMCOMM_CONNECT_CH, NULL, sizeof(int), -1);
 *     shmcomm_read (fd, &X, sizeof(int));
 *
 * A channel is a kernel object named by an integer key. SHMCOMM_ASYNC_CH: Simpson's four-slot
 * (the reader always gets the latest complete packet; nothing blocks). SHMCOMM_SYNC_CH: a FIFO
 * of buffer_len packets (a read blocks while it is empty, a write while it is full; buffer_len
 * is ignored for async channels and on connect may be -1). Connecting infers the type.
 * Errors (-1 and errno): EEXIST (create: the key exists), ENOENT (connect: no such key),
 * EINVAL (bad flags/sizes, a channel over 1 MiB, or a size or type different from the
 * channel's), EAGAIN (SHMCOMM_NONBLOCK_CH: nothing to read / no room), EBUSY (that side
 * is open already), ENOSPC (64 channels), ENOMEM (16 MiB of
 * channels), EBADF, EPIPE (sync write: the receiver closed).
 *
 * Flag values mirror crates/quest-abi (quest_abi::shm), checked by its c_header test.
 * Implementation: user/libquest/c/shmcomm.c over the raw calls of user/libquest/c/
 * shmcomm_sys.c, linked into every program: open is a system call that also maps the channel
 * into the process, and write/read run the channel protocol in user space, entering the kernel
 * only to sleep or wake a sleeping peer (QUEST_SHMCOMM_SYSCALL=1 in the environment at open:
 * the kernel copies each packet instead). In a Quest-V Linux sandbox over user/linux/shmcomm
 * (the channel windows the monitor maps, through /dev/mem; keys are the configuration's
 * channels only).
 */
#ifndef QUEST_SHMCOMM_USER_H
#define QUEST_SHMCOMM_USER_H

#include <stddef.h>

#define SHMCOMM_CREATE_CH  0x1  /* create the channel */
#define SHMCOMM_CONNECT_CH 0x2  /* connect to an existing channel */
#define SHMCOMM_ASYNC_CH   0x4  /* four-slot: latest value wins, never blocks */
#define SHMCOMM_SYNC_CH    0x8  /* FIFO of buffer_len packets: blocking read/write */
/* Quest-RS extension: on this descriptor a sync read of an empty channel or a write to a full
 * one fails with EAGAIN instead of waiting (Boomerang's periodic stages, <boomerang.h>). */
#define SHMCOMM_NONBLOCK_CH 0x10

/* A channel as shmcomm_open_send returns it: a descriptor, like shmcomm_open_receive's. */
typedef int shmcomm_channel_t;

/* Marshal: called by shmcomm_write before the packet goes out: turn the application's `len`
 * bytes at `data` into a packet of at most `packet_size` bytes at `packet` (zeroed first);
 * return the packet's length (async channels always send packet_size bytes) or < 0 to fail
 * the write (errno EINVAL). NULL: the data is the packet. */
typedef int (*shmcomm_marshal_fn)(void *packet, size_t packet_size, const void *data, size_t len);
/* Unmarshal: called by shmcomm_read after a packet of `packet_len` bytes arrived: fill the
 * application's buffer (`data`, `len` bytes); return the bytes produced (what shmcomm_read
 * returns) or < 0 to fail the read (errno EINVAL). NULL: the packet is copied. */
typedef int (*shmcomm_unmarshal_fn)(void *data, size_t len, const void *packet, size_t packet_len);

/* Opens the sending side of channel `key`; stores its descriptor in *channel. 0, or -1 and
 * errno. */
int shmcomm_open_send(unsigned key, int flags, shmcomm_marshal_fn marshal, int packet_size,
                      int buffer_len, shmcomm_channel_t *channel);
/* Opens the receiving side of channel `key`: returns its descriptor, or -1 and errno. */
int shmcomm_open_receive(unsigned key, int flags, shmcomm_unmarshal_fn unmarshal,
                         int packet_size, int buffer_len);
/* Sends `len` bytes (one packet). Returns len, or -1 and errno. */
int shmcomm_write(int channel, const void *data, size_t len);
/* Receives one packet into `data` (at most `len` bytes). Returns the bytes received; 0 on a
 * sync channel whose sender closed once all its packets are read; -1 and errno (EAGAIN: async
 * channel never written yet). */
int shmcomm_read(int channel, void *data, size_t len);
/* Closes this side; the other side keeps its view. 0, or -1 and errno (EBADF). */
int shmcomm_close(int channel);
/* The key of a channel descriptor, or (unsigned)-1 with errno EBADF. */
unsigned get_vshm_key(int channel);

#endif /* QUEST_SHMCOMM_USER_H */
