/* fork_bomb: forks until the kernel refuses (EAGAIN/ENOMEM), then every process exits. The
 * kernel must refuse cleanly and recover all memory. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    int made = 0, err = 0;
    for (;;) {
        pid_t pid = fork();
        if (pid < 0) {
            err = errno;
            break;
        }
        if (pid == 0) {
            /* The child waits a little so the processes pile up, then exits. */
            struct timespec ts = {1, 0};
            nanosleep(&ts, 0);
            _exit(0);
        }
        made++;
        if (made >= 5000)
            break;
    }
    while (wait(0) > 0)
        ;
    printf("fork_bomb: %d children before fork failed with %s\n", made, err ? strerror(err) : "no error");
    return 0;
}
