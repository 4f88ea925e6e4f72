/* hello_world: the seed's first example (tutorial slide "Application Development in Quest:
 * hello_world"), verbatim. */
#include <stdio.h>

int main (int argc, char* argv[]) {
    printf("Hello World!\n");
}
