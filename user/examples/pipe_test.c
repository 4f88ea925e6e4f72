/* pipe_test: a parent sends lines to its child through a pipe; the child counts them and sees
 * end of file once the parent closes its end. */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    int fds[2];
    if (pipe(fds) < 0) {
        perror("pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[1]);
        char buf[256];
        long total = 0;
        ssize_t n;
        while ((n = read(fds[0], buf, sizeof buf)) > 0)
            total += n;
        printf("child: read %ld bytes, then end of file\n", total);
        _exit(0);
    }
    close(fds[0]);
    const char *msg = "0123456789abcdef";
    for (int i = 0; i < 1000; i++)
        write(fds[1], msg, strlen(msg));
    close(fds[1]);
    int status;
    waitpid(pid, &status, 0);
    printf("parent: wrote 16000 bytes, child exited with %d\n", WEXITSTATUS(status));
    return 0;
}
