/* huge_sleep: nanosleep and a futex wait with the largest timeouts a program can pass (the
 * kernel once overflowed computing the wake-up time). A child sleeps; the parent kills it. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    for (int which = 0; which < 2; which++) {
        pid_t pid = fork();
        if (pid == 0) {
            struct timespec ts = {INT64_MAX, 999999999};
            if (which == 0) {
                nanosleep(&ts, 0);
            } else {
                static int word;
                syscall(SYS_futex, &word, 0 /* FUTEX_WAIT */, 0, &ts, 0, 0);
            }
            _exit(3);
        }
        struct timespec short_wait = {0, 50 * 1000 * 1000};
        nanosleep(&short_wait, 0);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        printf("%s: child %s\n", which == 0 ? "nanosleep" : "futex wait",
               WIFSIGNALED(status) ? "was still sleeping and was killed" : "returned early");
    }
    return 0;
}
