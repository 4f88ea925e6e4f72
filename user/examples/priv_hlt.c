/* priv_hlt: a hostile program — executes `hlt`, a privileged instruction. In user mode (CPL 3)
 * it raises a general protection fault; the kernel must kill the program and carry on. */
#include <stdio.h>

int main(void)
{
    printf("priv_hlt: executing hlt\n");
    fflush(stdout);
    __asm__ volatile("hlt");
    printf("priv_hlt: survived\n");
    return 1;
}
