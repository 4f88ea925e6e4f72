/* priv_wrmsr: a hostile program — writes a model-specific register (IA32_TIME_STAMP_COUNTER)
 * with `wrmsr`, a ring-0-only instruction. In user mode it raises a general protection fault;
 * the kernel must kill the program and carry on. */
#include <stdio.h>

int main(void)
{
    printf("priv_wrmsr: executing wrmsr\n");
    fflush(stdout);
    __asm__ volatile("wrmsr" : : "c"(0x10), "a"(0), "d"(0));
    printf("priv_wrmsr: survived\n");
    return 1;
}
