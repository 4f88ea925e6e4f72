/* checklist.h: the reporting of the check programs that run on Quest and on Linux alike
 * (cowtest, evtest, ipctest, memtest, proctest, sigtest, stoptest, unixtest): one line per
 * check, "PROG: NAME ok" or "PROG: NAME FAILED: why", counted in `checks` and `failed` for the
 * program's summary line; and `check_main`, their main on both systems.
 * Define CHECK_PROGRAM (the prefix) before including it. */
#ifndef QUEST_CHECKLIST_H
#define QUEST_CHECKLIST_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CHECK_PROGRAM
#error "define CHECK_PROGRAM before including <checklist.h>"
#endif

static int checks, failed;

static void check(const char *name, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4), unused));
static void check(const char *name, int ok, const char *fmt, ...)
{
    checks++;
    if (ok) {
        printf(CHECK_PROGRAM ": %s ok\n", name);
    } else {
        failed++;
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        printf(CHECK_PROGRAM ": %s FAILED: %s\n", name, buf);
    }
    fflush(stdout);
}

/* main: `run` on Quest. On Linux as init (pid 1: the QEMU test boots Debian's kernel with the
 * program as /init): the console and /dev/shm made, "PROG: on Linux as init", `run` in a
 * child, then power off. */
static int check_main(int argc, char *argv[], int (*run)(int argc, char *argv[])) __attribute__((unused));
static int check_main(int argc, char *argv[], int (*run)(int argc, char *argv[]))
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getpid() != 1) {
        return run(argc, argv);
    }
    mknod("/dev/console", S_IFCHR | 0600, makedev(5, 1));
    mknod("/dev/null", S_IFCHR | 0666, makedev(1, 3));
    int fd = open("/dev/console", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
    }
    mkdir("/dev/shm", 01777);
    printf(CHECK_PROGRAM ": on Linux as init\n");
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        _exit(run(argc, argv));
    }
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
    }
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}

#endif /* QUEST_CHECKLIST_H */
