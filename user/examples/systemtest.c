/* systemtest: system() and popen(), which run /bin/sh -c through posix_spawn
 * (clone(CLONE_VM | CLONE_VFORK) + execve). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int main(void)
{
    int st = system("echo systemtest: from system; exit 3");
    printf("systemtest: system returned exit status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    FILE *f = popen("echo from popen", "r");
    char line[64] = "";
    if (!f || !fgets(line, sizeof line, f)) {
        perror("systemtest: popen");
        return 1;
    }
    line[strcspn(line, "\n")] = '\0';
    int pst = pclose(f);
    printf("systemtest: popen read '%s', pclose %d\n", line, WIFEXITED(pst) ? WEXITSTATUS(pst) : -1);
    return 0;
}
