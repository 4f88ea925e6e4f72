/* fault_null: a hostile program — reads address 0. The kernel must kill it with a page fault
 * report and carry on (user memory below the first mapped page is never mapped).
 *
 * The address is read from a volatile variable so the compiler cannot see the NULL and
 * replace the load with a trap instruction (GCC's -fisolate-erroneous-paths would turn a
 * visible NULL dereference into `ud2`, an invalid-opcode fault instead of a page fault).
 */
#include <stdint.h>
#include <stdio.h>

static volatile uintptr_t target = 0;

int main(void)
{
    printf("fault_null: reading address %#lx\n", (unsigned long)target);
    fflush(stdout);
    int v = *(volatile int *)target;
    printf("fault_null: survived, read %d\n", v);
    return 1;
}
