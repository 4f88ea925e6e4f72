/* libc_test_run: runs the tests of musl's libc-test that `cargo xtask libc-test` built and put
 * in /boot (their names listed in /boot/libc-tests), each in a child with a time limit, from
 * /tmp, and prints one line per test — "libc-test: NAME ok" or "libc-test: NAME FAILED (why)" —
 * then "libc-test: P of N passed". The same static binary is the init of Debian's kernel for
 * the reference run: there it first mounts /proc, makes /dev/shm and /bin/sh (busybox, as on
 * Quest) so both systems offer the tests the same environment.
 *
 *     libc_test_run [SECONDS]     time limit per test (default 10)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int run(int limit)
{
    FILE *l = fopen("/boot/libc-tests", "r");
    if (!l) {
        printf("libc-test: no /boot/libc-tests: %s\n", strerror(errno));
        return 1;
    }
    char name[256];
    int n = 0, passed = 0;
    while (fgets(name, sizeof name, l)) {
        name[strcspn(name, "\n")] = 0;
        if (!name[0])
            continue;
        n++;
        char path[300];
        snprintf(path, sizeof path, "/boot/%s", name);
        fflush(stdout);
        double start = now();
        pid_t c = fork();
        if (c == 0) {
            chdir("/tmp");
            char *argv[] = {path, NULL};
            execv(path, argv);
            _exit(127);
        }
        int st = 0, done = 0;
        if (c < 0) {
            printf("libc-test: %s FAILED (fork: %s)\n", name, strerror(errno));
            continue;
        }
        while (!done) {
            pid_t w = waitpid(c, &st, WNOHANG);
            if (w == c) {
                done = 1;
                break;
            }
            if (now() - start > limit) {
                kill(c, SIGKILL);
                waitpid(c, &st, 0);
                done = 2;
                break;
            }
            struct timespec ts = {0, 10 * 1000000};
            nanosleep(&ts, NULL);
        }
        if (done == 2)
            printf("libc-test: %s FAILED (timeout)\n", name);
        else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("libc-test: %s ok\n", name);
            passed++;
        } else if (WIFEXITED(st))
            printf("libc-test: %s FAILED (exit %d)\n", name, WEXITSTATUS(st));
        else
            printf("libc-test: %s FAILED (signal %d)\n", name, WTERMSIG(st));
    }
    printf("libc-test: %d of %d passed\n", passed, n);
    fflush(stdout);
    return 0;
}

int main(int argc, char *argv[])
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int limit = argc > 1 ? atoi(argv[1]) : 10;
    if (limit <= 0)
        limit = 10;
    if (getpid() != 1)
        return run(limit);
    /* Linux as init. */
    mknod("/dev/console", S_IFCHR | 0600, makedev(5, 1));
    int fd = open("/dev/console", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
    }
    mknod("/dev/null", S_IFCHR | 0666, makedev(1, 3));
    mknod("/dev/zero", S_IFCHR | 0666, makedev(1, 5));
    mknod("/dev/full", S_IFCHR | 0666, makedev(1, 7));
    mknod("/dev/random", S_IFCHR | 0666, makedev(1, 8));
    mknod("/dev/urandom", S_IFCHR | 0666, makedev(1, 9));
    mknod("/dev/tty", S_IFCHR | 0666, makedev(5, 0));
    mkdir("/dev/shm", 01777);
    mkdir("/proc", 0555);
    mount("proc", "/proc", "proc", 0, NULL);
    mkdir("/bin", 0755);
    if (access("/boot/busybox", X_OK) == 0)
        symlink("/boot/busybox", "/bin/sh");
    printf("libc-test: on Linux as init\n");
    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(run(limit));
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
    }
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
