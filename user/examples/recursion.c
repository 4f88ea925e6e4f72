/* recursion: a hostile program — infinite recursion (each call keeps a frame, so the compiler
 * cannot turn it into a loop). The stack runs out; the kernel must kill it with a report that
 * names a stack overflow, and carry on. */
#include <stdio.h>

#pragma GCC diagnostic ignored "-Winfinite-recursion"

static volatile unsigned long depth;

static unsigned long __attribute__((noinline)) recurse(unsigned long n)
{
    volatile char pad[64];
    pad[0] = (char)n;
    depth = n;
    return recurse(n + 1) + pad[0];
}

int main(void)
{
    printf("recursion: recursing forever\n");
    fflush(stdout);
    unsigned long r = recurse(0);
    printf("recursion: survived (%lu)\n", r);
    return 1;
}
