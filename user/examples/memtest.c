/* memtest: user memory as programs use it (issue 22 item 3), one line per check:
 * "memtest: NAME ok" or "memtest: NAME FAILED: why", then "memtest: N checks, M failed".
 * The same static binary runs on Linux as init (the QEMU test) and must pass there too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK_PROGRAM "memtest"
#include <checklist.h>

static long free_kib(void)
{
    struct sysinfo si;
    sysinfo(&si);
    return (long)(si.freeram * si.mem_unit / 1024);
}

static sigjmp_buf jb;
static volatile int fault_code;

static void h_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    fault_code = si->si_code;
    siglongjmp(jb, 1);
}

/* Recursion that uses about `kib` KiB of stack. */
static int deep(int kib)
{
    volatile char pad[1024];
    pad[0] = (char)kib;
    if (kib <= 1)
        return pad[0];
    return deep(kib - 1) + pad[0] - pad[0];
}

static void run(void)
{
    const long MIB = 1024 * 1024;
    /* Lazy: a large mapping costs nothing until touched. */
    long before = free_kib();
    size_t big = 96 * MIB;
    char *p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long after_map = free_kib();
    int ok = p != MAP_FAILED;
    if (ok)
        for (size_t off = 0; off < big; off += 16 * MIB)
            p[off] = 1;
    long after_touch = free_kib();
    check("anonymous_memory_on_demand", ok && before - after_map < 4096 && before - after_touch < 8192,
          "mapped %d, free KiB %ld -> %ld -> %ld", ok, before, after_map, after_touch);
    if (ok)
        munmap(p, big);

    /* munmap gives the range back: mmap with it as a hint gets it again. */
    char *a = mmap(NULL, 64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(a, 64 * 1024);
    char *b = mmap(a, 64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check("munmap_gives_the_range_back", a != MAP_FAILED && b == a, "a %p b %p", (void *)a, (void *)b);

    /* MAP_FIXED replaces one page in the middle with a fresh zero page. */
    memset(b, 'A', 64 * 1024);
    char *f = mmap(b + 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    check("map_fixed_replaces", f == b + 4096 && b[4096] == 0 && b[4095] == 'A' && b[8192] == 'A', "f %p %d %d %d", (void *)f,
          b[4096], b[4095], b[8192]);
    char *n = mmap(b, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    check("map_fixed_noreplace_eexist", n == MAP_FAILED && errno == EEXIST, "%p errno %d", (void *)n, errno);

    /* mremap: grow (moving if need be) keeps the bytes; shrink. */
    char *g = mremap(b, 64 * 1024, 8 * MIB, MREMAP_MAYMOVE);
    ok = g != MAP_FAILED && g[0] == 'A' && g[4096] == 0 && g[65535] == 'A' && g[8 * MIB - 1] == 0;
    check("mremap_grows_keeping_bytes", ok, "g %p", (void *)g);
    char *s = mremap(g, 8 * MIB, 4096, 0);
    check("mremap_shrinks", s == g && s[0] == 'A', "s %p", (void *)s);
    munmap(s, 4096);

    /* mprotect read-only: a write is SIGSEGV with SEGV_ACCERR. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    char *r = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    r[0] = 5;
    mprotect(r, 4096, PROT_READ);
    fault_code = 0;
    int wrote = 0;
    if (!sigsetjmp(jb, 1)) {
        *(volatile char *)r = 6;
        wrote = 1;
    }
    check("mprotect_read_only", !wrote && fault_code == SEGV_ACCERR && r[0] == 5, "wrote %d code %d", wrote, fault_code);
    munmap(r, 4096);
    /* After munmap, the address faults (SEGV_MAPERR). */
    fault_code = 0;
    if (!sigsetjmp(jb, 1))
        (void)*(volatile char *)r;
    check("munmap_unmaps", fault_code == SEGV_MAPERR, "code %d", fault_code);
    signal(SIGSEGV, SIG_DFL);

    /* A private mapping of a file: its bytes; writes stay private. */
    int fd = open("/tmp/memtest.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    char text[6000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 26);
    ok = fd >= 0 && write(fd, text, sizeof text) == (ssize_t)sizeof text;
    char *m = ok ? mmap(NULL, sizeof text, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    int merr = errno;
    ok = m != MAP_FAILED && !memcmp(m, text, sizeof text) && m[sizeof text] == 0;
    if (m != MAP_FAILED)
        m[0] = 'Z';
    char first = 0;
    pread(fd, &first, 1, 0);
    check("private_file_mapping", ok && first == 'a', "mapped %p (errno %d) first %c", (void *)m, merr, first);
    if (fd >= 0) {
        close(fd);
        unlink("/tmp/memtest.dat");
    }

    /* RLIMIT_DATA limits anonymous memory. */
    struct rlimit old, lim = {16 * MIB, RLIM_INFINITY};
    getrlimit(RLIMIT_DATA, &old);
    setrlimit(RLIMIT_DATA, &lim);
    char *d = mmap(NULL, 32 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int e = errno;
    setrlimit(RLIMIT_DATA, &old);
    check("rlimit_data", d == MAP_FAILED && e == ENOMEM, "%p errno %d", (void *)d, e);

    /* RLIMIT_NOFILE: the 11th descriptor (0..9 allowed) is EMFILE. */
    struct rlimit nf = {10, 10}, oldnf;
    getrlimit(RLIMIT_NOFILE, &oldnf);
    setrlimit(RLIMIT_NOFILE, &nf);
    int last = -1, err = 0;
    for (int i = 0; i < 20; i++) {
        int x = open("/dev/null", O_RDONLY);
        if (x < 0) {
            err = errno;
            break;
        }
        last = x;
    }
    for (int i = 3; i <= last; i++)
        close(i);
    setrlimit(RLIMIT_NOFILE, &oldnf);
    check("rlimit_nofile", last == 9 && err == EMFILE, "last %d errno %d", last, err);

    /* RLIMIT_STACK: 8 MiB by default, and 4 MiB of recursion fits. */
    struct rlimit st;
    getrlimit(RLIMIT_STACK, &st);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(deep(4096) == 1 ? 0 : 1);
    int status = 0;
    waitpid(c, &status, 0);
    check("main_stack_grows_to_its_limit", st.rlim_cur == 8 * MIB && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "limit %lu status %#x", (unsigned long)st.rlim_cur, status);
    printf("memtest: %d checks, %d failed\n", checks, failed);
    fflush(stdout);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getpid() == 1) {
        mknod("/dev/console", S_IFCHR | 0600, makedev(5, 1));
        mknod("/dev/null", S_IFCHR | 0666, makedev(1, 3));
        int fd = open("/dev/console", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
        }
        printf("memtest: on Linux as init\n");
        fflush(stdout);
        pid_t c = fork();
        if (c == 0) {
            run();
            _exit(0);
        }
        int st;
        while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
        }
        sync();
        reboot(RB_POWER_OFF);
        return 0;
    }
    run();
    return failed != 0;
}
