/* priv_out: a hostile program — writes to I/O port 0xf4, QEMU's isa-debug-exit device (were the
 * write allowed, QEMU would stop at once). With IOPL 0 and no I/O permission bitmap, `out` in
 * user mode raises a general protection fault; the kernel must kill the program and carry on. */
#include <stdio.h>

int main(void)
{
    printf("priv_out: executing out to port 0xf4\n");
    fflush(stdout);
    __asm__ volatile("outb %%al, %%dx" : : "a"((unsigned char)0x11), "d"((unsigned short)0xf4));
    printf("priv_out: survived\n");
    return 1;
}
