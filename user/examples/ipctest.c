/* ipctest: shared memory, record locks, System V IPC and priority-inheritance mutexes as
 * programs use them (issue 22), one line per check: "ipctest: NAME ok" or
 * "ipctest: NAME FAILED: why", then "ipctest: N checks, M failed".
 * The same static binary runs on Linux (the QEMU test boots Debian's kernel with it as init)
 * and must pass there too.
 *
 *     ipctest            every group
 *     ipctest GROUP...   only these: shm (MAP_SHARED, msync, /dev/shm, sem_open), locks
 *                        (fcntl record locks, POSIX and OFD), sysv (shm, sem, msg), pi
 *                        (PTHREAD_PRIO_INHERIT mutexes, FUTEX_*_PI), futex (FUTEX_WAIT,
 *                        WAKE, REQUEUE and CMP_REQUEUE counts and order, timeouts)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/reboot.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FUTEX_UNLOCK_PI 7
#define FUTEX_TRYLOCK_PI 8

#define CHECK_PROGRAM "ipctest"
#include <checklist.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* The exit status of child `c` (-1 when it did not exit normally). */
static int reap(pid_t c)
{
    int st;
    while (waitpid(c, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Whether `fd` has something to read within `ms` milliseconds. */
static int readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, ms) == 1;
}

/* --- shared memory ------------------------------------------------------------------------ */

static void test_shm(void)
{
    /* MAP_SHARED anonymous memory is shared with a child (pages touched before and after). */
    volatile char *a = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    check("map_shared_anonymous", a != MAP_FAILED, "mmap: %s", strerror(errno));
    if (a != MAP_FAILED) {
        a[0] = 1;
        pid_t c = fork();
        if (c == 0) {
            a[1] = 42;
            a[8192] = 7;
            _exit(a[0] == 1 ? 0 : 1);
        }
        int st = reap(c);
        check("shared_anonymous_across_fork", st == 0 && a[1] == 42 && a[8192] == 7, "child %d, a[1] %d, a[8192] %d", st, a[1], a[8192]);
        munmap((void *)a, 3 * 4096);
    }
    volatile char *pr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pr != MAP_FAILED) {
        pr[0] = 5;
        pid_t c = fork();
        if (c == 0) {
            pr[0] = 6;
            _exit(0);
        }
        reap(c);
        check("private_anonymous_stays_private", pr[0] == 5, "parent sees %d", pr[0]);
    }

    /* A file of the in-memory file system mapped shared: the mapping is the file. */
    unlink("/tmp/ipctest.map");
    int fd = open("/tmp/ipctest.map", O_RDWR | O_CREAT | O_TRUNC, 0600);
    int r = ftruncate(fd, 8192);
    char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    check("map_shared_file", fd >= 0 && r == 0 && m != MAP_FAILED, "open %d, ftruncate %d, mmap: %s", fd, r, strerror(errno));
    if (m != MAP_FAILED) {
        memcpy(m, "hello", 5);
        char buf[8] = {0};
        pread(fd, buf, 5, 0);
        check("store_to_mapping_is_read", !memcmp(buf, "hello", 5), "read '%s'", buf);
        pwrite(fd, "world", 5, 4096);
        check("write_is_seen_in_mapping", !memcmp(m + 4096, "world", 5), "mapping has '%.5s'", m + 4096);
        check("msync", msync(m, 8192, MS_SYNC) == 0 && msync(m, 4096, MS_ASYNC | MS_INVALIDATE) == 0, "%s", strerror(errno));
        errno = 0;
        int e1 = msync(m + 1, 4096, MS_SYNC) < 0 ? errno : 0;
        int e2 = msync(m, 4096, MS_SYNC | MS_ASYNC) < 0 ? errno : 0;
        check("msync_rejects_bad_arguments", e1 == EINVAL && e2 == EINVAL, "unaligned %d, both %d", e1, e2);
        pid_t c = fork();
        if (c == 0) {
            int f2 = open("/tmp/ipctest.map", O_RDWR);
            char *m2 = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f2, 4096);
            if (m2 == MAP_FAILED)
                _exit(2);
            if (memcmp(m2, "world", 5))
                _exit(3);
            memcpy(m2 + 10, "child", 5);
            _exit(0);
        }
        int st = reap(c);
        check("file_mapping_shared_between_processes", st == 0 && !memcmp(m + 4096 + 10, "child", 5), "child %d, '%.5s'", st, m + 4096 + 10);
        munmap(m, 8192);
        int e3 = msync(m, 4096, MS_SYNC) < 0 ? errno : 0;
        check("msync_unmapped_is_enomem", e3 == ENOMEM, "errno %d", e3);
        memset(buf, 0, sizeof buf);
        pread(fd, buf, 5, 4096 + 10);
        check("bytes_stay_after_munmap", !memcmp(buf, "child", 5), "read '%s'", buf);
        int ro = open("/tmp/ipctest.map", O_RDONLY);
        void *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
        int e4 = w == MAP_FAILED ? errno : 0;
        check("shared_writable_needs_rdwr", e4 == EACCES, "errno %d", e4);
        close(ro);
    }
    close(fd);
    unlink("/tmp/ipctest.map");

    /* POSIX shared memory: /dev/shm. */
    shm_unlink("/ipctest");
    int s = shm_open("/ipctest", O_CREAT | O_EXCL | O_RDWR, 0600);
    int tr = s >= 0 ? ftruncate(s, 4096) : -1;
    volatile int *sp = s >= 0 ? mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0) : MAP_FAILED;
    check("shm_open", s >= 0 && tr == 0 && sp != MAP_FAILED, "shm_open %d, %s", s, strerror(errno));
    if (sp != MAP_FAILED) {
        pid_t c = fork();
        if (c == 0) {
            int s2 = shm_open("/ipctest", O_RDWR, 0);
            volatile int *p2 = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s2, 0);
            if (p2 == MAP_FAILED)
                _exit(2);
            p2[10] = 1234;
            _exit(0);
        }
        int st = reap(c);
        check("shm_open_shared_between_processes", st == 0 && sp[10] == 1234, "child %d, value %d", st, sp[10]);
        int u = shm_unlink("/ipctest");
        int again = shm_open("/ipctest", O_RDWR, 0);
        int e = errno;
        check("shm_unlink", u == 0 && again < 0 && e == ENOENT && sp[10] == 1234, "unlink %d, reopen %d errno %d", u, again, e);
    }

    /* Named semaphores across processes (sem_open keeps them in /dev/shm). */
    sem_unlink("/ipcsem");
    sem_unlink("/ipcsem2");
    sem_t *a1 = sem_open("/ipcsem", O_CREAT | O_EXCL, 0600, 0);
    sem_t *a2 = sem_open("/ipcsem2", O_CREAT | O_EXCL, 0600, 0);
    check("sem_open", a1 != SEM_FAILED && a2 != SEM_FAILED, "%s", strerror(errno));
    if (a1 != SEM_FAILED && a2 != SEM_FAILED) {
        pid_t c = fork();
        if (c == 0) {
            sem_t *b1 = sem_open("/ipcsem", 0);
            sem_t *b2 = sem_open("/ipcsem2", 0);
            if (b1 == SEM_FAILED || b2 == SEM_FAILED)
                _exit(2);
            sleep_ms(50); /* the parent waits in sem_wait meanwhile */
            for (int i = 0; i < 50; i++) {
                sem_post(b1);
                if (sem_wait(b2) < 0)
                    _exit(3);
            }
            _exit(0);
        }
        int ok = 1;
        for (int i = 0; i < 50 && ok; i++) {
            ok = sem_wait(a1) == 0 && sem_post(a2) == 0;
        }
        int st = reap(c);
        int v = -1;
        sem_getvalue(a1, &v);
        errno = 0;
        int t = sem_trywait(a1);
        check("sem_open_ping_pong_between_processes", ok && st == 0 && v == 0 && t < 0 && errno == EAGAIN, "ok %d, child %d, value %d, trywait %d", ok, st, v, t);
        sem_close(a1);
        sem_close(a2);
        check("sem_unlink", sem_unlink("/ipcsem") == 0 && sem_unlink("/ipcsem2") == 0 && sem_open("/ipcsem", 0) == SEM_FAILED && errno == ENOENT,
              "%s", strerror(errno));
    }

    /* A process-shared unnamed semaphore in MAP_SHARED memory. */
    sem_t *us = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (us != MAP_FAILED && sem_init(us, 1, 0) == 0) {
        pid_t c = fork();
        if (c == 0) {
            sleep_ms(50);
            sem_post(us);
            _exit(0);
        }
        int w = sem_wait(us);
        check("pshared_sem_in_shared_memory", w == 0 && reap(c) == 0, "sem_wait %d", w);
    } else {
        check("pshared_sem_in_shared_memory", 0, "mmap/sem_init: %s", strerror(errno));
    }

    /* mremap moves a shared mapping with its object (Linux: within the object's size). */
    char *room = mmap(NULL, 4 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *g = mmap(room, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (g != MAP_FAILED) {
        strcpy(g, "kept");
        g[8192] = 'y';
        munmap(g + 4096, 2 * 4096);
        mmap(g + 4096, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0); /* no room to grow */
        char *g2 = mremap(g, 4096, 3 * 4096, MREMAP_MAYMOVE);
        int ok = g2 != MAP_FAILED && g2 != g && !strcmp(g2, "kept") && g2[8192] == 'y';
        if (ok) {
            pid_t c = fork();
            if (c == 0) {
                g2[4096] = 'x';
                _exit(0);
            }
            reap(c);
            ok = g2[4096] == 'x';
        }
        check("mremap_keeps_shared_memory", ok, "%s", g2 == MAP_FAILED ? strerror(errno) : "bytes differ");
    }
}

/* --- record locks -------------------------------------------------------------------------- */

static int lk(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock f = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &f) < 0 ? -errno : 0;
}

static struct flock getlk(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock f = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, cmd, &f) < 0)
        f.l_type = -errno;
    return f;
}

#define LOCKFILE "/tmp/ipctest.lock"

/* Runs `f` in a child with a fresh descriptor of the lock file; its exit status. */
static int in_child(int (*f)(int, int), int arg)
{
    pid_t c = fork();
    if (c == 0) {
        int fd = open(LOCKFILE, O_RDWR);
        _exit(fd < 0 ? 99 : f(fd, arg));
    }
    return reap(c);
}

static int child_setlk(int fd, int which)
{
    switch (which) {
    case 0: return lk(fd, F_SETLK, F_WRLCK, 5, 10) == -EAGAIN || lk(fd, F_SETLK, F_WRLCK, 5, 10) == -EACCES ? 0 : 1;
    case 1: return lk(fd, F_SETLK, F_WRLCK, 10, 10) == 0 ? 0 : 1;
    case 2: return lk(fd, F_SETLK, F_RDLCK, 0, 5) == 0 && lk(fd, F_SETLK, F_WRLCK, 0, 5) == -EAGAIN ? 0 : 1;
    default: return 9;
    }
}

static int child_getlk(int fd, int which)
{
    struct flock f;
    switch (which) {
    case 0:
        f = getlk(fd, F_GETLK, F_WRLCK, 5, 10);
        return f.l_type == F_WRLCK && f.l_start == 0 && f.l_len == 10 && f.l_pid == getppid() ? 0 : 1;
    case 1:
        return getlk(fd, F_GETLK, F_WRLCK, 40, 20).l_type == F_UNLCK && getlk(fd, F_GETLK, F_RDLCK, 0, 1).l_type == F_WRLCK &&
                       getlk(fd, F_GETLK, F_WRLCK, 60, 1).l_type == F_WRLCK
                   ? 0
                   : 1;
    case 2:
        return getlk(fd, F_GETLK, F_WRLCK, 0, 0).l_type == F_UNLCK ? 0 : 1;
    case 3:
        f = getlk(fd, F_OFD_GETLK, F_WRLCK, 0, 1);
        return f.l_type == F_WRLCK && f.l_pid == -1 ? 0 : 1;
    default: return 9;
    }
}

static void test_locks(void)
{
    unlink(LOCKFILE);
    int fd = open(LOCKFILE, O_RDWR | O_CREAT | O_TRUNC, 0600);
    write(fd, "0123456789abcdefghij", 20);

    int r = lk(fd, F_SETLK, F_WRLCK, 0, 10);
    check("setlk", r == 0, "%d", r);
    check("setlk_conflict_in_other_process", in_child(child_setlk, 0) == 0, "no EAGAIN");
    check("setlk_beside_is_free", in_child(child_setlk, 1) == 0, "refused");
    check("getlk_reports_the_holder", in_child(child_getlk, 0) == 0, "wrong report");
    /* One process's locks merge and split. */
    lk(fd, F_SETLK, F_WRLCK, 0, 100);
    lk(fd, F_SETLK, F_UNLCK, 40, 20);
    check("unlock_splits_a_lock", in_child(child_getlk, 1) == 0, "wrong split");
    check("own_locks_never_conflict", lk(fd, F_SETLK, F_RDLCK, 0, 100) == 0 && lk(fd, F_SETLK, F_WRLCK, 0, 0) == 0, "own lock refused");
    lk(fd, F_SETLK, F_UNLCK, 0, 0);
    check("unlock_all", in_child(child_getlk, 2) == 0, "still locked");
    lk(fd, F_SETLK, F_RDLCK, 0, 5);
    check("read_locks_are_shared", in_child(child_setlk, 2) == 0, "wrong");
    /* Closing any descriptor of the file drops the process's locks. */
    lk(fd, F_SETLK, F_WRLCK, 0, 0);
    int other = open(LOCKFILE, O_RDONLY);
    close(other);
    check("close_drops_posix_locks", in_child(child_getlk, 2) == 0, "still locked");

    /* F_SETLKW waits for the holder. */
    int pp[2];
    pipe(pp);
    lk(fd, F_SETLK, F_WRLCK, 0, 1);
    pid_t c = fork();
    if (c == 0) {
        int f2 = open(LOCKFILE, O_RDWR);
        int rr = lk(f2, F_SETLKW, F_WRLCK, 0, 1);
        write(pp[1], rr == 0 ? "y" : "n", 1);
        _exit(0);
    }
    int early = readable(pp[0], 150);
    lk(fd, F_SETLK, F_UNLCK, 0, 1);
    char ch = 0;
    int late = readable(pp[0], 5000) && read(pp[0], &ch, 1) == 1;
    reap(c);
    check("setlkw_waits_for_the_holder", !early && late && ch == 'y', "early %d late %d '%c'", early, late, ch);

    /* Deadlock: each holds what the other waits for; the second waiter gets EDEADLK. */
    lk(fd, F_SETLK, F_WRLCK, 0, 1);
    c = fork();
    if (c == 0) {
        int f2 = open(LOCKFILE, O_RDWR);
        lk(f2, F_SETLK, F_WRLCK, 1, 1);
        write(pp[1], "b", 1);
        int rr = lk(f2, F_SETLKW, F_WRLCK, 0, 1); /* waits for the parent */
        _exit(rr == 0 ? 0 : 1);
    }
    read(pp[0], &ch, 1);
    sleep_ms(150); /* the child is waiting now */
    r = lk(fd, F_SETLKW, F_WRLCK, 1, 1);
    lk(fd, F_SETLK, F_UNLCK, 0, 1);
    int st = reap(c);
    check("setlkw_deadlock_is_edeadlk", r == -EDEADLK && st == 0, "setlkw %d, child %d", r, st);

    /* Locks go when the process ends. */
    c = fork();
    if (c == 0) {
        int f2 = open(LOCKFILE, O_RDWR);
        lk(f2, F_SETLK, F_WRLCK, 0, 0);
        _exit(0);
    }
    reap(c);
    check("exit_drops_locks", lk(fd, F_SETLK, F_WRLCK, 0, 0) == 0, "still locked");
    lk(fd, F_SETLK, F_UNLCK, 0, 0);

    /* Open file description locks: owned by the open file, conflicting within a process. */
    int o1 = open(LOCKFILE, O_RDWR);
    int o2 = open(LOCKFILE, O_RDWR);
    r = lk(o1, F_OFD_SETLK, F_WRLCK, 0, 10);
    int r2 = lk(o2, F_OFD_SETLK, F_WRLCK, 5, 10);
    int r3 = lk(fd, F_SETLK, F_WRLCK, 0, 1);
    check("ofd_locks_conflict_in_one_process", r == 0 && r2 == -EAGAIN && r3 == -EAGAIN, "%d %d %d", r, r2, r3);
    struct flock f = getlk(o2, F_OFD_GETLK, F_WRLCK, 0, 1);
    check("ofd_getlk_pid_is_minus_one", f.l_type == F_WRLCK && f.l_pid == -1, "type %d pid %d", f.l_type, f.l_pid);
    check("ofd_lock_seen_by_other_process", in_child(child_getlk, 3) == 0, "not seen");
    int dup1 = dup(o1);
    close(o1);
    r2 = lk(o2, F_OFD_SETLK, F_WRLCK, 5, 10);
    close(dup1);
    int r4 = lk(o2, F_OFD_SETLK, F_WRLCK, 5, 10);
    check("ofd_lock_lives_with_its_open_file", r2 == -EAGAIN && r4 == 0, "%d %d", r2, r4);
    struct flock bad = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1, .l_pid = 1};
    check("ofd_setlk_needs_pid_zero", fcntl(o2, F_OFD_SETLK, &bad) < 0 && errno == EINVAL, "%s", strerror(errno));
    close(o2);
    check("bad_lock_type_is_einval", lk(fd, F_SETLK, 77, 0, 1) == -EINVAL, "accepted");
    int rfd = open(LOCKFILE, O_RDONLY);
    check("write_lock_needs_write_access", lk(rfd, F_SETLK, F_WRLCK, 0, 1) == -EBADF, "accepted");
    close(rfd);
    close(fd);
    unlink(LOCKFILE);
}

/* --- System V IPC -------------------------------------------------------------------------- */

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

struct msg {
    long mtype;
    char text[32];
};

static void test_sysv(void)
{
    /* Shared memory. */
    key_t key = 0x51ac0000 + (getpid() & 0xffff);
    int id = shmget(key, 8192, IPC_CREAT | IPC_EXCL | 0600);
    int dup = shmget(key, 8192, IPC_CREAT | IPC_EXCL | 0600);
    int de = errno;
    check("shmget", id >= 0 && dup < 0 && de == EEXIST, "id %d, again %d errno %d", id, dup, de);
    volatile int *p = id >= 0 ? shmat(id, NULL, 0) : (void *)-1;
    check("shmat", p != (void *)-1, "%s", strerror(errno));
    if (p != (void *)-1) {
        p[0] = 11;
        pid_t c = fork();
        if (c == 0) {
            int id2 = shmget(key, 0, 0);
            volatile int *q = shmat(id2, NULL, 0);
            if (id2 != id || q == (void *)-1 || q[0] != 11)
                _exit(2);
            q[1] = 22;
            p[2] = 33; /* the inherited attachment */
            _exit(0);
        }
        int st = reap(c);
        check("shm_shared_between_processes", st == 0 && p[1] == 22 && p[2] == 33, "child %d, %d %d", st, p[1], p[2]);
        struct shmid_ds ds;
        int r = shmctl(id, IPC_STAT, &ds);
        check("shmctl_stat", r == 0 && ds.shm_segsz == 8192 && ds.shm_nattch == 1 && ds.shm_cpid == getpid() && (ds.shm_perm.mode & 0777) == 0600,
              "r %d size %zu nattch %lu cpid %d mode %o", r, (size_t)ds.shm_segsz, (unsigned long)ds.shm_nattch, ds.shm_cpid, ds.shm_perm.mode);
        volatile int *ro = shmat(id, NULL, SHM_RDONLY);
        check("shmat_readonly", ro != (void *)-1 && ro[1] == 22, "%s", strerror(errno));
        shmdt((void *)ro);
        r = shmctl(id, IPC_RMID, NULL);
        int gone = shmget(key, 0, 0);
        int ge = errno;
        p[3] = 44; /* still attached: still usable */
        check("shm_rmid_keeps_attached_memory", r == 0 && gone < 0 && ge == ENOENT && p[3] == 44, "rmid %d, get %d errno %d", r, gone, ge);
        check("shmdt", shmdt((void *)p) == 0 && shmdt((void *)p) < 0 && errno == EINVAL, "%s", strerror(errno));
    }
    check("shmat_bad_id_is_einval", shmat(0x7ffffff, NULL, 0) == (void *)-1 && errno == EINVAL, "%s", strerror(errno));
    int priv = shmget(IPC_PRIVATE, 4096, 0600);
    int priv2 = shmget(IPC_PRIVATE, 4096, 0600);
    check("shm_ipc_private_is_new", priv >= 0 && priv2 >= 0 && priv != priv2, "%d %d", priv, priv2);
    shmctl(priv, IPC_RMID, NULL);
    shmctl(priv2, IPC_RMID, NULL);

    /* Semaphores. */
    int s = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    check("semget", s >= 0, "%s", strerror(errno));
    if (s >= 0) {
        union semun u = {.val = 5};
        int r = semctl(s, 0, SETVAL, u);
        check("semctl_setval_getval", r == 0 && semctl(s, 0, GETVAL) == 5 && semctl(s, 1, GETVAL) == 0, "r %d", r);
        unsigned short all[2] = {0, 0};
        u.array = all;
        semctl(s, 0, SETALL, u);
        struct sembuf dn = {0, -1, IPC_NOWAIT};
        r = semop(s, &dn, 1);
        check("semop_nowait_is_eagain", r < 0 && errno == EAGAIN, "r %d %s", r, strerror(errno));
        struct timespec ts = {0, 100 * 1000000};
        struct sembuf dn2 = {0, -1, 0};
        r = semtimedop(s, &dn2, 1, &ts);
        check("semtimedop_times_out", r < 0 && errno == EAGAIN, "r %d %s", r, strerror(errno));
        pid_t c = fork();
        if (c == 0) {
            sleep_ms(100);
            struct sembuf up = {0, 2, 0};
            _exit(semop(s, &up, 1) == 0 ? 0 : 1);
        }
        struct sembuf both[2] = {{0, -2, 0}, {1, 1, 0}}; /* all at once */
        r = semop(s, both, 2);
        int st = reap(c);
        check("semop_waits_and_applies_all", r == 0 && st == 0 && semctl(s, 0, GETVAL) == 0 && semctl(s, 1, GETVAL) == 1 && semctl(s, 0, GETPID) == getpid(),
              "r %d child %d val %d %d", r, st, semctl(s, 0, GETVAL), semctl(s, 1, GETVAL));
        /* SEM_UNDO: a process's adjustments are undone when it ends. */
        c = fork();
        if (c == 0) {
            struct sembuf up = {1, 3, SEM_UNDO};
            _exit(semop(s, &up, 1) == 0 && semctl(s, 1, GETVAL) == 4 ? 0 : 1);
        }
        st = reap(c);
        check("sem_undo_at_exit", st == 0 && semctl(s, 1, GETVAL) == 1, "child %d, val %d", st, semctl(s, 1, GETVAL));
        /* Wait for zero. */
        c = fork();
        if (c == 0) {
            sleep_ms(100);
            struct sembuf d = {1, -1, 0};
            _exit(semop(s, &d, 1) == 0 ? 0 : 1);
        }
        struct sembuf z = {1, 0, 0};
        r = semop(s, &z, 1);
        st = reap(c);
        check("semop_wait_for_zero", r == 0 && st == 0, "r %d child %d", r, st);
        struct semid_ds ds;
        u.buf = &ds;
        r = semctl(s, 0, IPC_STAT, u);
        check("semctl_stat", r == 0 && ds.sem_nsems == 2, "r %d nsems %lu", r, (unsigned long)ds.sem_nsems);
        struct sembuf big = {0, -1, 0};
        /* A waiter is woken with EIDRM when the set is removed. */
        c = fork();
        if (c == 0)
            _exit(semop(s, &big, 1) < 0 && errno == EIDRM ? 0 : 1);
        sleep_ms(100);
        int ncnt = semctl(s, 0, GETNCNT);
        r = semctl(s, 0, IPC_RMID);
        st = reap(c);
        check("sem_rmid_wakes_waiters_with_eidrm", ncnt == 1 && r == 0 && st == 0, "ncnt %d rmid %d child %d", ncnt, r, st);
        check("semop_removed_set_is_einval", semop(s, &big, 1) < 0 && (errno == EINVAL || errno == EIDRM), "%s", strerror(errno));
    }
    struct sembuf bad = {5, 1, 0};
    int s2 = semget(IPC_PRIVATE, 1, 0600);
    check("semop_bad_index_is_efbig", semop(s2, &bad, 1) < 0 && errno == EFBIG, "%s", strerror(errno));
    semctl(s2, 0, IPC_RMID);

    /* Message queues. */
    int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    check("msgget", q >= 0, "%s", strerror(errno));
    if (q >= 0) {
        struct msg m;
        for (long t = 1; t <= 3; t++) {
            m.mtype = t;
            snprintf(m.text, sizeof m.text, "type %ld", t);
            msgsnd(q, &m, strlen(m.text) + 1, 0);
        }
        struct msqid_ds ds;
        msgctl(q, IPC_STAT, &ds);
        check("msgctl_stat_counts", ds.msg_qnum == 3 && ds.msg_lspid == getpid(), "qnum %lu", (unsigned long)ds.msg_qnum);
        ssize_t n = msgrcv(q, &m, sizeof m.text, 3, 0);
        check("msgrcv_by_type", n == 7 && m.mtype == 3 && !strcmp(m.text, "type 3"), "n %zd type %ld", n, m.mtype);
        n = msgrcv(q, &m, sizeof m.text, -2, 0);
        check("msgrcv_lowest_type_up_to", n > 0 && m.mtype == 1, "n %zd type %ld", n, m.mtype);
        n = msgrcv(q, &m, 3, 0, 0);
        check("msgrcv_too_long_is_e2big", n < 0 && errno == E2BIG, "n %zd", n);
        n = msgrcv(q, &m, 3, 0, MSG_NOERROR);
        check("msgrcv_noerror_truncates", n == 3 && m.mtype == 2 && !memcmp(m.text, "typ", 3), "n %zd", n);
        n = msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT);
        check("msgrcv_empty_nowait_is_enomsg", n < 0 && errno == ENOMSG, "n %zd", n);
        pid_t c = fork();
        if (c == 0) {
            sleep_ms(100);
            struct msg m2 = {7, "from child"};
            _exit(msgsnd(q, &m2, 11, 0) == 0 ? 0 : 1);
        }
        n = msgrcv(q, &m, sizeof m.text, 7, 0);
        int st = reap(c);
        check("msgrcv_waits_for_a_sender", n == 11 && st == 0 && !strcmp(m.text, "from child"), "n %zd child %d", n, st);
        c = fork();
        if (c == 0)
            _exit(msgrcv(q, &m, sizeof m.text, 0, 0) < 0 && errno == EIDRM ? 0 : 1);
        sleep_ms(100);
        int r = msgctl(q, IPC_RMID, NULL);
        st = reap(c);
        check("msg_rmid_wakes_receivers_with_eidrm", r == 0 && st == 0, "rmid %d child %d", r, st);
        m.mtype = 0;
        check("msgsnd_type_zero_is_einval", msgsnd(msgget(IPC_PRIVATE, 0600), &m, 1, 0) < 0 && errno == EINVAL, "%s", strerror(errno));
    }
}

/* --- priority-inheritance mutexes ---------------------------------------------------------- */

static pthread_mutex_t pim;
static long counter;

static void *pi_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&pim);
        long v = counter;
        if ((i & 63) == 0)
            sched_yield();
        counter = v + 1;
        pthread_mutex_unlock(&pim);
    }
    return NULL;
}

static void *pi_try(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)pthread_mutex_trylock(&pim);
}

static void test_pi(void)
{
    pthread_mutexattr_t at;
    pthread_mutexattr_init(&at);
    int r = pthread_mutexattr_setprotocol(&at, PTHREAD_PRIO_INHERIT);
    int r2 = pthread_mutex_init(&pim, &at);
    check("prio_inherit_mutex_init", r == 0 && r2 == 0, "%d %d", r, r2);
    r = pthread_mutex_lock(&pim);
    /* musl keeps the owner's thread id in the second int of a PI mutex (the futex word). */
    unsigned word = ((volatile unsigned *)&pim)[1];
    check("pi_lock_word_is_owner_tid", r == 0 && (word & 0x3fffffff) == (unsigned)syscall(SYS_gettid), "r %d word %#x", r, word);
    pthread_t t;
    void *res;
    pthread_create(&t, NULL, pi_try, NULL);
    pthread_join(t, &res);
    check("pi_trylock_held_is_ebusy", (intptr_t)res == EBUSY, "%ld", (long)(intptr_t)res);
    pthread_mutex_unlock(&pim);
    pthread_t ts[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&ts[i], NULL, pi_worker, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(ts[i], NULL);
    check("pi_mutex_excludes", counter == 6000, "counter %ld", counter);
    /* The kernel calls directly: TRYLOCK_PI on a free word takes it; UNLOCK_PI by another tid
     * is EPERM; UNLOCK_PI by the owner frees it. */
    static volatile uint32_t w;
    unsigned me = syscall(SYS_gettid);
    long t1 = syscall(SYS_futex, &w, FUTEX_TRYLOCK_PI, 0, NULL, NULL, 0);
    unsigned after = w;
    w = me + 1;
    long u1 = syscall(SYS_futex, &w, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0);
    int ue = errno;
    w = me;
    long u2 = syscall(SYS_futex, &w, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0);
    check("futex_trylock_unlock_pi", t1 == 0 && after == me && u1 < 0 && ue == EPERM && u2 == 0 && w == 0, "try %ld word %#x unlock-other %ld (%d) unlock %ld word %#x",
          t1, after, u1, ue, u2, w);
    /* A PI mutex held by a thread that dies: the next locker is told (robust + PI). */
    pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_t rm;
    pthread_mutex_init(&rm, &at);
    pthread_create(&t, NULL, (void *(*)(void *))pthread_mutex_lock, &rm);
    pthread_join(t, NULL);
    r = pthread_mutex_lock(&rm);
    check("robust_pi_owner_died", r == EOWNERDEAD, "r %d", r);
}


/* --- futex wait queues ----------------------------------------------------------------------- */

#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
#define FUTEX_REQUEUE_PRIVATE 131
#define FUTEX_CMP_REQUEUE_PRIVATE 132

static long fx(volatile uint32_t *w, int op, long val, const struct timespec *to, volatile uint32_t *w2, unsigned val3)
{
    return syscall(SYS_futex, w, op, val, to, w2, val3);
}

/* A waiter: waits on `word` (value 0) once, then records which word (0/1) it was woken from
 * by the order it finished in. */
struct fwaiter {
    volatile uint32_t *word;
    int id;
    long r;
};
static atomic_int fx_started, fx_done;
static int fx_order[64];

static void *fx_wait(void *arg)
{
    struct fwaiter *w = arg;
    atomic_fetch_add(&fx_started, 1);
    w->r = fx(w->word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    fx_order[atomic_fetch_add(&fx_done, 1)] = w->id;
    return NULL;
}

/* Starts `n` waiters on `word`, one at a time (each is blocked before the next starts, so
 * their arrival order is their id order). */
static void fx_start(pthread_t *t, struct fwaiter *w, int first, int n, volatile uint32_t *word)
{
    for (int i = first; i < first + n; i++) {
        w[i].word = word;
        w[i].id = i;
        int before = atomic_load(&fx_started);
        pthread_create(&t[i], NULL, fx_wait, &w[i]);
        while (atomic_load(&fx_started) == before)
            sleep_ms(1);
        sleep_ms(5);
    }
}

static void test_futex(void)
{
    static volatile uint32_t a, b, many[40];
    pthread_t t[64];
    struct fwaiter w[64];
    /* The value check and the timeout. */
    errno = 0;
    long r = fx(&a, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
    check("futex_wait_wrong_value_is_eagain", r < 0 && errno == EAGAIN, "r %ld %s", r, strerror(errno));
    struct timespec to = {0, 20 * 1000000};
    errno = 0;
    r = fx(&a, FUTEX_WAIT_PRIVATE, 0, &to, NULL, 0);
    check("futex_wait_times_out", r < 0 && errno == ETIMEDOUT, "r %ld %s", r, strerror(errno));
    check("futex_wake_nobody_is_zero", fx(&a, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) == 0, "%s", strerror(errno));
    /* WAKE wakes at most n, first come first woken. */
    atomic_store(&fx_done, 0);
    fx_start(t, w, 0, 3, &a);
    long w2 = fx(&a, FUTEX_WAKE_PRIVATE, 2, NULL, NULL, 0);
    while (atomic_load(&fx_done) < 2)
        sleep_ms(1);
    long w1 = fx(&a, FUTEX_WAKE_PRIVATE, 5, NULL, NULL, 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    check("futex_wake_counts_and_order", w2 == 2 && w1 == 1 && fx_order[0] + fx_order[1] == 1 && fx_order[2] == 2 && w[0].r == 0 && w[2].r == 0,
          "woke %ld then %ld, order %d %d %d", w2, w1, fx_order[0], fx_order[1], fx_order[2]);
    /* A broadcast to more waiters than the kernel keeps in place (4): all woken, counted. */
    atomic_store(&fx_done, 0);
    fx_start(t, w, 0, 24, &a);
    long all = fx(&a, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    for (int i = 0; i < 24; i++)
        pthread_join(t[i], NULL);
    check("futex_wake_all_of_24", all == 24 && atomic_load(&fx_done) == 24, "woke %ld, %d ended", all, atomic_load(&fx_done));
    /* REQUEUE: 1 woken, 2 moved to b (in their order), 2 left on a. */
    atomic_store(&fx_done, 0);
    fx_start(t, w, 0, 5, &a);
    r = fx(&a, FUTEX_CMP_REQUEUE_PRIVATE, 1, (void *)2L, &b, 0);
    while (atomic_load(&fx_done) < 1)
        sleep_ms(1);
    long wb1 = fx(&b, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    while (atomic_load(&fx_done) < 2)
        sleep_ms(1);
    int first_on_b = fx_order[1];
    long wb = fx(&b, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    long wa = fx(&a, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    for (int i = 0; i < 5; i++)
        pthread_join(t[i], NULL);
    check("futex_cmp_requeue_moves_in_order", r == 3 && fx_order[0] == 0 && wb1 == 1 && first_on_b == 1 && wb == 1 && wa == 2,
          "requeue %ld first %d, b: %ld (first %d) + %ld, a: %ld", r, fx_order[0], wb1, first_on_b, wb, wa);
    errno = 0;
    r = fx(&a, FUTEX_CMP_REQUEUE_PRIVATE, 1, (void *)1L, &b, 7);
    check("futex_cmp_requeue_wrong_value_is_eagain", r < 0 && errno == EAGAIN, "r %ld %s", r, strerror(errno));
    /* Plain REQUEUE returns woken plus moved, as CMP_REQUEUE (Linux's code; its manual page
     * says the woken count). */
    atomic_store(&fx_done, 0);
    fx_start(t, w, 0, 2, &a);
    r = fx(&a, FUTEX_REQUEUE_PRIVATE, 0, (void *)1L, &b, 0);
    long moved = fx(&b, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    long left = fx(&a, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    check("futex_requeue_returns_woken_and_moved", r == 1 && moved == 1 && left == 1, "requeue %ld, b %ld, a %ld", r, moved, left);
    /* Many words, one waiter each (keys that share the kernel's hash buckets): each wake finds
     * exactly its own waiter. */
    atomic_store(&fx_done, 0);
    for (int i = 0; i < 40; i++)
        fx_start(t, w, i, 1, &many[i]);
    int ok = 1;
    for (int i = 39; i >= 0; i--) {
        long n = fx(&many[i], FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
        pthread_join(t[i], NULL);
        ok &= n == 1 && fx_order[39 - i] == i;
    }
    check("futex_wake_finds_its_own_word_of_40", ok, "a wake found another word's waiter or none");
    /* A waiter that timed out is off the queue: a later wake finds nobody. */
    to.tv_nsec = 10 * 1000000;
    r = fx(&a, FUTEX_WAIT_PRIVATE, 0, &to, NULL, 0);
    check("futex_timed_out_waiter_is_dequeued", r < 0 && fx(&a, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0) == 0, "r %ld", r);
    /* WAKE of 0 waiters wakes one (Linux counts before it compares). */
    atomic_store(&fx_done, 0);
    fx_start(t, w, 0, 2, &a);
    long zero = fx(&a, FUTEX_WAKE_PRIVATE, 0, NULL, NULL, 0);
    long rest = fx(&a, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    check("futex_wake_of_zero_wakes_one", zero == 1 && rest == 1, "wake 0: %ld, then %ld", zero, rest);
}

static int run(int argc, char *argv[])
{
    const char *groups[] = {"shm", "locks", "sysv", "pi", "futex"};
    void (*fns[])(void) = {test_shm, test_locks, test_sysv, test_pi, test_futex};
    for (int g = 0; g < 5; g++) {
        int want = argc <= 1;
        for (int i = 1; i < argc; i++)
            want |= !strcmp(argv[i], groups[g]);
        if (want)
            fns[g]();
    }
    printf("ipctest: %d checks, %d failed\n", checks, failed);
    fflush(stdout);
    return failed != 0;
}

int main(int argc, char *argv[])
{
    return check_main(argc, argv, run);
}
