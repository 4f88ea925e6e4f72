/* efault_test: system calls given kernel or unmapped pointers must fail with EFAULT, never
 * crash the kernel or the program. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <fcntl.h>

#define FUTEX_WAIT 0 /* linux/futex.h is not in musl's include path */

static void check(const char *what, long r)
{
    printf("%s: %s\n", what, r < 0 && errno == EFAULT ? "EFAULT" : "WRONG");
}

int main(void)
{
    void *kernel = (void *)0xffffffff80100000UL;
    void *unmapped = (void *)0x10UL;
    check("write from kernel address", syscall(SYS_write, 1, kernel, 16));
    check("write from unmapped address", syscall(SYS_write, 1, unmapped, 16));
    check("clock_gettime into kernel address", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, kernel));
    check("uname into unmapped address", syscall(SYS_uname, unmapped));
    check("open with kernel path", syscall(SYS_open, kernel, 0));
    /* Typed structures in and out (syscall/user.rs): each pointer is checked as a whole. */
    check("statx into kernel address", syscall(SYS_statx, AT_FDCWD, "/boot", 0, 0x7ff, kernel));
    check("TCGETS into unmapped address", syscall(SYS_ioctl, 0, TCGETS, unmapped));
    check("gettimeofday into kernel address", syscall(SYS_gettimeofday, kernel, 0));
    check("nanosleep from unmapped timespec", syscall(SYS_nanosleep, unmapped, 0));
    check("readv with kernel iovec array", syscall(SYS_readv, 0, kernel, 1));
    check("futex wait on kernel word", syscall(SYS_futex, kernel, FUTEX_WAIT, 0, 0, 0, 0));
    return 0;
}
