/* stack_overflow: a hostile program — one stack frame far larger than the stack (16 MiB of
 * locals, twice the 8 MiB RLIMIT_STACK), written from the bottom. The kernel must kill it with a report that names a stack
 * overflow, and carry on. */
#include <stdio.h>
#include <string.h>

static void __attribute__((noinline)) big(void)
{
    volatile char frame[16 << 20];
    frame[0] = 1; /* lowest address: far below the end of the stack */
    printf("stack_overflow: survived (%d)\n", frame[0]);
}

int main(void)
{
    printf("stack_overflow: a 16 MiB stack frame\n");
    fflush(stdout);
    big();
    return 1;
}
