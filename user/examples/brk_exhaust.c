/* brk_exhaust: a hostile program — grows its heap with brk 1 MiB at a time until the kernel
 * refuses (brk returns the old break: what libc reports as ENOMEM), then exits without
 * shrinking it. The kernel must refuse cleanly and get every page back when the program ends. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    unsigned long start = syscall(SYS_brk, 0), cur = start;
    for (;;) {
        unsigned long want = cur + (1 << 20);
        unsigned long got = syscall(SYS_brk, want);
        if (got != want)
            break;
        ((volatile char *)want)[-1] = 1;
        cur = got;
    }
    printf("brk_exhaust: heap grew %lu MiB, then brk refused: ENOMEM\n", (cur - start) >> 20);
    return 0;
}
