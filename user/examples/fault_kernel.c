/* fault_kernel: a hostile program — reads kernel memory at 0xffffffff80100000 (where the
 * Quest-RS kernel image is mapped, supervisor-only). The kernel must kill it with a page fault
 * report (a protection violation, not a missing page) and carry on.
 *
 * The address is read from a volatile variable so the compiler emits a plain load.
 */
#include <stdint.h>
#include <stdio.h>

static volatile uintptr_t target = 0xffffffff80100000UL;

int main(void)
{
    printf("fault_kernel: reading address %#lx\n", (unsigned long)target);
    fflush(stdout);
    int v = *(volatile int *)target;
    printf("fault_kernel: survived, read %d\n", v);
    return 1;
}
