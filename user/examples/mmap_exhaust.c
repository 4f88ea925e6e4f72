/* mmap_exhaust: a hostile program — maps anonymous memory 1 MiB at a time (the kernel backs it
 * at once) until mmap fails, then exits without unmapping. The kernel must refuse with ENOMEM
 * (not panic or run out of memory itself) and get every page back when the program ends. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int main(void)
{
    unsigned long mib = 0;
    int err = 0;
    for (;;) {
        void *p = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            err = errno;
            break;
        }
        ((volatile char *)p)[4096] = 1;
        mib++;
        if (mib >= 1 << 16)
            break;
    }
    printf("mmap_exhaust: %lu MiB mapped, then mmap failed with %s (%s)\n", mib,
           err == ENOMEM ? "ENOMEM" : "another error", err ? strerror(err) : "no error");
    return err == ENOMEM ? 0 : 1;
}
