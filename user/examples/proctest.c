/* proctest: processes and threads (issue 22 item 4), one line per check:
 * "proctest: NAME ok" or "proctest: NAME FAILED: why", then "proctest: N checks, M failed".
 * The same static binary runs on Linux as init (the QEMU test) and must pass there too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include <time.h>
#include <unistd.h>

extern char **environ;
#define CHECK_PROGRAM "proctest"
#include <checklist.h>

/* The kernel's robust futex ABI directly (libc's robust mutexes sit on it; musl registers no
 * list itself): a thread registers a list holding one futex it owns and ends without
 * releasing it; the kernel marks the word FUTEX_OWNER_DIED and wakes the waiter. */
struct robust_list {
    struct robust_list *next;
};
struct robust_list_head {
    struct robust_list list;
    long futex_offset;
    struct robust_list *list_op_pending;
};
static struct {
    struct robust_list node;
    volatile unsigned lock;
} rm;
static struct robust_list_head rh;
static volatile int locked, go, reg;
static volatile long thread_tid;
static void *got_head;
static size_t got_len;

static void *die_holding(void *arg)
{
    (void)arg;
    rh.list.next = &rm.node;
    rm.node.next = &rh.list;
    rh.futex_offset = (long)((char *)&rm.lock - (char *)&rm.node);
    rh.list_op_pending = NULL;
    reg = (int)syscall(SYS_set_robust_list, &rh, sizeof rh);
    thread_tid = syscall(SYS_gettid);
    rm.lock = (unsigned)thread_tid;
    locked = 1;
    while (!go)
        ;
    syscall(SYS_exit, 0); /* ends without releasing the futex (nor telling libc) */
    return NULL;
}

static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig)
{
    (void)sig;
    got_usr1 = 1;
}

static void run(const char *self)
{
    pthread_t t;
    pthread_create(&t, NULL, die_holding, NULL);
    while (!locked) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    long g = syscall(SYS_get_robust_list, thread_tid, &got_head, &got_len);
    check("get_robust_list", reg == 0 && g == 0 && got_head == &rh && got_len == sizeof rh, "set %d get %ld head %p len %zu",
          reg, g, got_head, got_len);
    unsigned want = (unsigned)thread_tid | 0x80000000u; /* FUTEX_WAITERS */
    rm.lock = want;
    go = 1;
    struct timespec to = {2, 0};
    long w = syscall(SYS_futex, &rm.lock, 0 /* FUTEX_WAIT */, want, &to, NULL, 0);
    int e = errno;
    check("robust_futex_owner_died", (w == 0 || e == EAGAIN) && rm.lock == (0x80000000u | 0x40000000u),
          "wait %ld errno %d word %#x", w, e, rm.lock);

    /* posix_spawn (clone(CLONE_VM | CLONE_VFORK) + execve) of this program. */
    pid_t pid = -1;
    char *argv[] = {(char *)self, "child", NULL};
    int s = posix_spawn(&pid, self, NULL, NULL, argv, environ);
    int st = -1;
    if (s == 0)
        waitpid(pid, &st, 0);
    check("posix_spawn", s == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 5, "spawn %d status %#x", s, st);
    char *bad[] = {"/nonexistent", NULL};
    s = posix_spawn(&pid, "/nonexistent", NULL, NULL, bad, environ);
    check("posix_spawn_reports_enoent", s == ENOENT, "spawn %d", s);

    /* flock: another open file's LOCK_EX|LOCK_NB fails while the lock is held, and a blocking
     * LOCK_EX waits until LOCK_UN. */
    int fd = open("/tmp/proctest.lock", O_RDWR | O_CREAT, 0600);
    int l = flock(fd, LOCK_EX);
    fflush(stdout);
    pid_t fc = fork();
    if (fc == 0) {
        int f2 = open("/tmp/proctest.lock", O_RDWR);
        int nb = flock(f2, LOCK_EX | LOCK_NB);
        int nberr = errno;
        int b = flock(f2, LOCK_EX);
        _exit(nb < 0 && nberr == EWOULDBLOCK && b == 0 ? 0 : 1);
    }
    struct timespec pause_ts = {0, 100 * 1000000};
    nanosleep(&pause_ts, NULL);
    int still = waitpid(fc, &st, WNOHANG); /* 0: the child waits for the lock */
    flock(fd, LOCK_UN);
    waitpid(fc, &st, 0);
    check("flock", fd >= 0 && l == 0 && still == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "fd %d lock %d waiting %d status %#x",
          fd, l, still, st);
    close(fd);
    unlink("/tmp/proctest.lock");

    /* poll, select and ppoll wait for a pipe (a timeout, a byte a child writes later, a
     * signal the temporary mask lets in). */
    int pf[2];
    pipe(pf);
    struct pollfd pfd = {.fd = pf[0], .events = POLLIN};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int pr = poll(&pfd, 1, 50);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long waited = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    fflush(stdout);
    pid_t wc = fork();
    if (wc == 0) {
        struct timespec d = {0, 50 * 1000000};
        nanosleep(&d, NULL);
        write(pf[1], "x", 1);
        _exit(0);
    }
    int pr2 = poll(&pfd, 1, -1);
    short rev = pfd.revents;
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(pf[0], &rs);
    struct timeval tv = {1, 0};
    int sr = select(pf[0] + 1, &rs, NULL, NULL, &tv);
    waitpid(wc, NULL, 0);
    check("poll_and_select_wait", pr == 0 && waited >= 40 && pr2 == 1 && (rev & POLLIN) && sr == 1 && FD_ISSET(pf[0], &rs),
          "timeout %d after %ld ms, then %d revents %#x, select %d", pr, waited, pr2, rev, sr);
    char c;
    read(pf[0], &c, 1);
    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, NULL);
    signal(SIGUSR1, on_usr1);
    fflush(stdout);
    pid_t kc = fork();
    if (kc == 0) {
        struct timespec d = {0, 30 * 1000000};
        nanosleep(&d, NULL);
        kill(getppid(), SIGUSR1);
        _exit(0);
    }
    sigemptyset(&empty);
    pfd.revents = 0;
    int pp = ppoll(&pfd, 1, NULL, &empty);
    int pe = errno;
    waitpid(kc, NULL, 0);
    check("ppoll_signal_mask", pp < 0 && pe == EINTR && got_usr1, "ppoll %d errno %d handler %d", pp, pe, got_usr1);
    close(pf[0]);
    close(pf[1]);

    /* socketpair(AF_UNIX, SOCK_STREAM): a child answers; end of file once it has gone. */
    int sv[2];
    int spr = socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    fflush(stdout);
    pid_t sc = fork();
    if (sc == 0) {
        close(sv[0]);
        char b[8] = {0};
        ssize_t n = recv(sv[1], b, 4, 0);
        send(sv[1], n == 4 && !memcmp(b, "ping", 4) ? "pong" : "bad!", 4, 0);
        _exit(0);
    }
    close(sv[1]);
    ssize_t sn = send(sv[0], "ping", 4, 0);
    char rb[8] = {0};
    ssize_t rn = read(sv[0], rb, 4);
    waitpid(sc, NULL, 0);
    ssize_t eof = read(sv[0], rb + 4, 4);
    close(sv[0]);
    check("socketpair_stream", spr == 0 && sn == 4 && rn == 4 && !memcmp(rb, "pong", 4) && eof == 0,
          "pair %d send %zd read %zd '%.4s' then %zd", spr, sn, rn, rb, eof);

    /* Process groups: a child leads its own group with a grandchild in it; kill(-group) ends
     * the child; setsid makes a session leader. */
    int gp[2];
    pipe(gp);
    fflush(stdout);
    pid_t ga = fork();
    if (ga == 0) {
        setpgid(0, 0);
        pid_t gb = fork();
        if (gb == 0) {
            for (;;)
                pause();
        }
        int ids[2] = {(int)getpgid(0), (int)getpgid(gb)};
        write(gp[1], ids, sizeof ids);
        for (;;)
            pause();
    }
    int ids[2] = {0, 0};
    read(gp[0], ids, sizeof ids);
    int k = kill(-ga, SIGTERM);
    st = 0;
    waitpid(ga, &st, 0);
    close(gp[0]);
    close(gp[1]);
    fflush(stdout);
    pid_t ss = fork();
    if (ss == 0)
        _exit(setsid() == getpid() && getsid(0) == getpid() && getpgrp() == getpid() ? 0 : 1);
    int sst = -1;
    waitpid(ss, &sst, 0);
    check("process_groups", ids[0] == ga && ids[1] == ga && k == 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM &&
                                WIFEXITED(sst) && WEXITSTATUS(sst) == 0,
          "group %d/%d of %d, kill %d, status %#x, setsid child %#x", ids[0], ids[1], ga, k, st, sst);

    /* vfork: the parent goes on once the child has exited. */
    fflush(stdout);
    pid_t v = vfork();
    if (v == 0)
        _exit(7);
    st = -1;
    waitpid(v, &st, 0);
    check("vfork", v > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 7, "pid %d status %#x", v, st);
    printf("proctest: %d checks, %d failed\n", checks, failed);
    fflush(stdout);
}

int main(int argc, char *argv[])
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && !strcmp(argv[1], "child"))
        return 5;
    if (getpid() == 1) {
        mknod("/dev/console", S_IFCHR | 0600, makedev(5, 1));
        int fd = open("/dev/console", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        printf("proctest: on Linux as init\n");
        fflush(stdout);
        pid_t c = fork();
        if (c == 0) {
            run("/init");
            _exit(0);
        }
        int st;
        while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
        }
        sync();
        reboot(RB_POWER_OFF);
        return 0;
    }
    run("/boot/proctest");
    return failed != 0;
}
