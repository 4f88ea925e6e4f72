/* priv_cli: a hostile program — executes `cli`. In user mode with IOPL 0 (Quest-RS never
 * raises IOPL) it raises a general protection fault; the kernel must kill the program and carry
 * on, with interrupts still enabled. */
#include <stdio.h>

int main(void)
{
    printf("priv_cli: executing cli\n");
    fflush(stdout);
    __asm__ volatile("cli");
    printf("priv_cli: survived\n");
    return 1;
}
