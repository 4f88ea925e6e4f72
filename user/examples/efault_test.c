/* efault_test: system calls given kernel or unmapped pointers must fail with EFAULT, never
 * crash the kernel or the program. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

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
    return 0;
}
