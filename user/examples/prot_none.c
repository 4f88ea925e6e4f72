/* prot_none: a PROT_NONE page is mapped but not accessible: the kernel refuses to copy from it
 * (EFAULT), it becomes readable after mprotect(PROT_READ), and a read after going back to
 * PROT_NONE kills the program with a page-fault report. */
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
    char *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("prot_none: mmap failed\n");
        return 1;
    }
    long r = write(1, p, 1);
    printf("\nprot_none: write from a PROT_NONE page: %s\n", r < 0 && errno == EFAULT ? "EFAULT" : "accepted");
    if (mprotect(p, 4096, PROT_READ) == 0)
        printf("prot_none: after PROT_READ it reads %d\n", p[0]);
    mprotect(p, 4096, PROT_NONE);
    printf("prot_none: reading it again (must fault)\n");
    fflush(stdout);
    volatile char c = p[0];
    printf("prot_none: read %d: NOT protected\n", c);
    return 0;
}
