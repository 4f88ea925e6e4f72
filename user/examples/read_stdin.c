/* read_stdin: prints "read_stdin: waiting for a line", then echoes one line of input. Used to
 * test that a task blocked reading the console still ends on ctrl-c / kill -t. */
#include <stdio.h>

int main(void)
{
    char line[128];
    printf("read_stdin: waiting for a line\n");
    fflush(stdout);
    if (fgets(line, sizeof line, stdin))
        printf("read_stdin: got %s", line);
    else
        printf("read_stdin: end of input\n");
    return 0;
}
