/* shmcomm_errors: every error case of shmcomm_open_* and what closing one side does.
 * Prints one "errors: CASE: RESULT" line per case, then "errors: N of N as expected". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <shmcomm_user.h>

static int ok, total;

static const char *ename(int e)
{
    switch (e) {
    case 0: return "OK";
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    case EPIPE: return "EPIPE";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    default: return strerror(e);
    }
}

static void check(const char *what, int r, int want)
{
    int got = r < 0 ? errno : 0;
    total++;
    if (got == want)
        ok++;
    printf("errors: %s: %s%s\n", what, ename(got), got == want ? "" : " (UNEXPECTED)");
}

int main(void)
{
    shmcomm_channel_t a, b;
    int r, x;
    errno = 0;
    r = shmcomm_open_send(800, SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, NULL, sizeof(int), -1, &a);
    check("create 800", r, 0);
    r = shmcomm_open_send(800, SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, NULL, sizeof(int), -1, &b);
    check("second create of 800", r, EEXIST);
    r = shmcomm_open_receive(801, SHMCOMM_CONNECT_CH, NULL, sizeof(int), -1);
    check("connect to missing 801", r, ENOENT);
    r = shmcomm_open_receive(800, SHMCOMM_CONNECT_CH, NULL, 8, -1);
    check("connect with size 8 to a 4-byte channel", r, EINVAL);
    r = shmcomm_open_receive(800, SHMCOMM_CONNECT_CH | SHMCOMM_SYNC_CH, NULL, sizeof(int), -1);
    check("connect as sync to an async channel", r, EINVAL);
    r = shmcomm_open_send(800, SHMCOMM_CONNECT_CH, NULL, sizeof(int), -1, &b);
    check("second sender on 800", r, EBUSY);
    r = shmcomm_open_send(802, SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH | SHMCOMM_SYNC_CH, NULL, 4, -1, &b);
    check("create both async and sync", r, EINVAL);
    r = shmcomm_open_send(802, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, NULL, 4, 0, &b);
    check("create sync with buffer_len 0", r, EINVAL);
    r = shmcomm_open_send(802, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, NULL, 65536, 1024, &b);
    check("create a 64 MiB sync channel (over the 1 MiB limit)", r, EINVAL);
    r = shmcomm_write(a, &x, 2);
    check("async write of 2 bytes into a 4-byte channel", r, EINVAL);

    int rx = shmcomm_open_receive(800, SHMCOMM_CONNECT_CH, NULL, sizeof(int), -1);
    check("connect receiver to 800", rx, 0);
    r = shmcomm_read(rx, &x, sizeof x);
    check("async read before any write", r, EAGAIN);
    x = 42;
    shmcomm_write(a, &x, sizeof x);
    r = shmcomm_close(a);
    check("sender closes 800", r, 0);
    x = 0;
    r = shmcomm_read(rx, &x, sizeof x);
    printf("errors: receiver reads %d after the sender closed\n", x);
    check("read after the sender closed", r < 0 || x != 42 ? -1 : 0, 0);
    r = shmcomm_close(rx);
    check("receiver closes 800", r, 0);
    r = shmcomm_open_receive(800, SHMCOMM_CONNECT_CH, NULL, sizeof(int), -1);
    check("connect to 800 after both sides closed (freed)", r, ENOENT);
    r = shmcomm_close(rx);
    check("close a closed descriptor", r, EBADF);
    r = (int)get_vshm_key(1);
    check("get_vshm_key on the console", r, EBADF);

    /* Sync: the receiver closes, the sender's write fails with EPIPE. */
    r = shmcomm_open_send(803, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, NULL, 4, 2, &b);
    check("create sync 803", r, 0);
    rx = shmcomm_open_receive(803, SHMCOMM_CONNECT_CH, NULL, 4, 3);
    check("connect with buffer_len 3 to a 2-packet channel", rx, EINVAL);
    rx = shmcomm_open_receive(803, SHMCOMM_CONNECT_CH, NULL, 4, -1);
    shmcomm_close(rx);
    x = 1;
    shmcomm_write(b, &x, 4);
    shmcomm_write(b, &x, 4);
    r = shmcomm_write(b, &x, 4);
    check("sync write into a full buffer whose receiver closed", r, EPIPE);
    shmcomm_close(b);

    /* A process that ends without closing releases its sides. */
    pid_t pid = fork();
    if (pid == 0) {
        shmcomm_channel_t c;
        shmcomm_open_send(804, SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, NULL, 4, -1, &c);
        shmcomm_open_receive(804, SHMCOMM_CONNECT_CH, NULL, 4, -1);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    r = shmcomm_open_send(804, SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, NULL, 4, -1, &b);
    check("create 804 after its users exited without closing", r, 0);
    rx = shmcomm_open_receive(804, SHMCOMM_CONNECT_CH, NULL, 4, -1);
    shmcomm_close(rx); /* both sides opened and closed: 804 is freed (the program can rerun) */
    shmcomm_close(b);

    printf("errors: %d of %d as expected\n", ok, total);
    return ok == total ? 0 : 1;
}
