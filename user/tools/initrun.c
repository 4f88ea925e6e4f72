/* initrun PROGRAM [ARG...]: init of a Linux reference run for a program that is not written
 * to be init (rt-tests' cyclictest): gives it what a Linux system has (a console on
 * /dev/console, /proc, /sys and devtmpfs' /dev), runs it as a child, reports how it ended and
 * powers the machine off. xtask boots Debian's kernel with this as the initramfs's /init
 * (tests/src/linux.rs, xtask/src/bench_rt.rs); PROGRAM is looked up as given (/boot/NAME).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static void console(void)
{
    if (fcntl(1, F_GETFD) >= 0)
        return;
    mknod("/dev/console", S_IFCHR | 0600, makedev(5, 1));
    int fd = open("/dev/console", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
}

static void mount_or_say(const char *type, const char *dir)
{
    mkdir(dir, 0755);
    if (mount(type, dir, type, 0, NULL) != 0)
        printf("initrun: mount %s on %s: %s\n", type, dir, strerror(errno));
}

int main(int argc, char **argv)
{
    console();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        printf("initrun: usage: initrun PROGRAM [ARG...]\n");
    } else {
        mount_or_say("proc", "/proc");
        mount_or_say("sysfs", "/sys");
        mount_or_say("devtmpfs", "/dev");
        console();
        pid_t pid = fork();
        if (pid == 0) {
            execv(argv[1], argv + 1);
            printf("initrun: exec %s: %s\n", argv[1], strerror(errno));
            _exit(127);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid)
            printf("initrun: fork/wait: %s\n", strerror(errno));
        else if (WIFEXITED(st))
            printf("initrun: %s exited with status %d\n", argv[1], WEXITSTATUS(st));
        else
            printf("initrun: %s killed by signal %d\n", argv[1], WTERMSIG(st));
    }
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
