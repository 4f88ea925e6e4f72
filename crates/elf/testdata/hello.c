/* Test fixture for crates/elf: a static musl C program with .data, .bss and TLS. */
#include <stdio.h>

static _Thread_local int counter = 41;   /* .tdata: gives the binary a PT_TLS */
static char scratch[4096];               /* .bss: memsz > filesz in the RW segment */

int main(int argc, char **argv)
{
    counter++;
    scratch[argc] = 'x';
    printf("hello from musl: argc=%d argv[0]=%s counter=%d\n", argc, argv[0], counter);
    return scratch[argc] == 'x' ? 0 : 1;
}
