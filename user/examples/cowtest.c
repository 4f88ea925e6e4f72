/* cowtest: what fork must keep true however it shares memory (copy-on-write on Quest-RS):
 * parent and child each see only their own writes (globals, heap, stack, through the kernel's
 * copies too), a fork does not copy memory nobody writes, mprotect still rules a shared page,
 * and a fork while another thread writes gives the child one consistent snapshot.
 * One line per check ("cowtest: NAME ok" / "cowtest: NAME FAILED: why"), then
 * "cowtest: N checks, M failed". The same static binary runs on Linux as init. */
#define CHECK_PROGRAM "cowtest"
#include <checklist.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024L * 1024)

static char global_page[3 * 4096] __attribute__((aligned(4096)));

static int wait_child(pid_t c)
{
    int st;
    while (waitpid(c, &st, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    return st;
}

static int exited_ok(int st)
{
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void own_writes(void)
{
    char *heap = malloc(5 * 4096);
    char stack[4096];
    memset(global_page, 'P', sizeof global_page);
    memset(heap, 'h', 5 * 4096);
    memset(stack, 's', sizeof stack);
    pid_t c = fork();
    if (c == 0) {
        int ok = global_page[4096] == 'P' && heap[3 * 4096] == 'h' && stack[100] == 's';
        memset(global_page, 'C', sizeof global_page);
        memset(heap, 'c', 5 * 4096);
        memset(stack, 't', sizeof stack);
        ok = ok && global_page[2 * 4096 + 7] == 'C' && heap[4 * 4096] == 'c' && stack[4000] == 't';
        _exit(ok ? 0 : 1);
    }
    int st = wait_child(c);
    int parent_ok = 1;
    for (size_t i = 0; i < sizeof global_page; i++) {
        parent_ok &= global_page[i] == 'P';
    }
    for (int i = 0; i < 5 * 4096; i++) {
        parent_ok &= heap[i] == 'h';
    }
    parent_ok &= stack[0] == 's' && stack[4095] == 's';
    check("child_sees_parent_memory_then_its_own_writes", exited_ok(st), "child status %#x", st);
    check("parent_keeps_its_memory_when_child_writes", parent_ok, "the parent saw the child's writes");
    /* The other way round: the parent writes after the fork, the child must not see it. */
    int p[2];
    if (pipe(p) != 0) {
        check("child_keeps_its_memory_when_parent_writes", 0, "pipe: errno %d", errno);
        free(heap);
        return;
    }
    c = fork();
    if (c == 0) {
        char go;
        close(p[1]);
        while (read(p[0], &go, 1) < 0 && errno == EINTR) {
        }
        _exit(global_page[0] == 'P' && heap[0] == 'h' ? 0 : 1);
    }
    close(p[0]);
    global_page[0] = 'X';
    heap[0] = 'X';
    if (write(p[1], "g", 1) != 1) {
        check("child_keeps_its_memory_when_parent_writes", 0, "write: errno %d", errno);
    }
    close(p[1]);
    st = wait_child(c);
    check("child_keeps_its_memory_when_parent_writes", exited_ok(st), "child status %#x", st);
    free(heap);
}

static void kernel_writes(void)
{
    memcpy(global_page, "parent", 7);
    int p[2];
    if (pipe(p) != 0) {
        check("kernel_copy_into_shared_page_stays_private", 0, "pipe: errno %d", errno);
        return;
    }
    pid_t c = fork();
    if (c == 0) {
        /* read() makes the kernel write into a page the parent still maps. */
        if (write(p[1], "child!", 7) != 7 || read(p[0], global_page, 7) != 7) {
            _exit(2);
        }
        _exit(memcmp(global_page, "child!", 7) == 0 ? 0 : 1);
    }
    int st = wait_child(c);
    close(p[0]);
    close(p[1]);
    check("kernel_copy_into_shared_page_stays_private", exited_ok(st) && memcmp(global_page, "parent", 7) == 0,
          "child status %#x, parent sees \"%.6s\"", st, global_page);
}

static void protection(void)
{
    global_page[0] = 'P';
    pid_t c = fork();
    if (c == 0) {
        if (mprotect(global_page, 4096, PROT_READ) != 0) {
            _exit(2);
        }
        *(volatile char *)global_page = 'C'; /* must fault */
        _exit(0);
    }
    int st = wait_child(c);
    check("read_only_after_fork_still_faults", st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
          "child status %#x (want killed by SIGSEGV)", st);
    c = fork();
    if (c == 0) {
        if (mprotect(global_page, 4096, PROT_READ) != 0 || mprotect(global_page, 4096, PROT_READ | PROT_WRITE) != 0) {
            _exit(2);
        }
        global_page[0] = 'C';
        _exit(global_page[0] == 'C' ? 0 : 1);
    }
    st = wait_child(c);
    check("writable_again_after_mprotect_gets_own_copy", exited_ok(st) && global_page[0] == 'P',
          "child status %#x, parent sees '%c'", st, global_page[0]);
}

static void generations(void)
{
    global_page[0] = '0';
    pid_t c = fork();
    if (c == 0) {
        global_page[0] = '1';
        pid_t g = fork();
        if (g == 0) {
            int ok = global_page[0] == '1';
            global_page[0] = '2';
            _exit(ok && global_page[0] == '2' ? 0 : 1);
        }
        int st = wait_child(g);
        _exit(exited_ok(st) && global_page[0] == '1' ? 0 : 1);
    }
    int st = wait_child(c);
    check("three_generations_each_keep_their_own", exited_ok(st) && global_page[0] == '0', "status %#x, parent '%c'", st,
          global_page[0]);
}

static unsigned long free_bytes(void)
{
    struct sysinfo si;
    if (sysinfo(&si) != 0) {
        return 0;
    }
    return si.freeram * si.mem_unit;
}

static void sharing(void)
{
    /* 16 MiB the parent has written: a fork must not copy it while nobody writes. */
    size_t len = 16 * MIB;
    char *big = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big == MAP_FAILED) {
        check("fork_copies_no_memory_nobody_writes", 0, "mmap: errno %d", errno);
        return;
    }
    for (size_t i = 0; i < len; i += 4096) {
        big[i] = (char)(i >> 12);
    }
    int p[2];
    if (pipe(p) != 0) {
        check("fork_copies_no_memory_nobody_writes", 0, "pipe: errno %d", errno);
        return;
    }
    unsigned long before = free_bytes();
    pid_t c = fork();
    if (c == 0) {
        char go;
        close(p[1]);
        while (read(p[0], &go, 1) < 0 && errno == EINTR) {
        }
        int ok = 1;
        for (size_t i = 0; i < len; i += 4096) {
            ok &= big[i] == (char)(i >> 12);
        }
        _exit(ok ? 0 : 1);
    }
    close(p[0]);
    unsigned long during = free_bytes();
    long used = (long)before - (long)during;
    if (write(p[1], "g", 1) != 1) {
        check("fork_copies_no_memory_nobody_writes", 0, "write: errno %d", errno);
    }
    close(p[1]);
    int st = wait_child(c);
    check("fork_copies_no_memory_nobody_writes", exited_ok(st) && used < 4 * MIB,
          "child status %#x, the fork of 16 MiB took %ld KiB", st, used / 1024);
    munmap(big, len);
}

static volatile unsigned long counter;
static volatile int stop_writer;

static void *writer(void *arg)
{
    (void)arg;
    while (!stop_writer) {
        counter++;
    }
    return NULL;
}

static void threaded(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, writer, NULL) != 0) {
        check("fork_beside_a_writing_thread_gives_a_snapshot", 0, "pthread_create failed");
        return;
    }
    while (counter < 1000) {
        sched_yield();
    }
    pid_t c = fork();
    if (c == 0) {
        /* Only this thread lives in the child: the counter must not move any more. */
        unsigned long a = counter;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        unsigned long b = counter;
        counter = 0;
        _exit(a == b && a >= 1000 ? 0 : 1);
    }
    int st = wait_child(c);
    unsigned long seen = counter;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
    int moving = counter != seen || counter >= 1000;
    stop_writer = 1;
    pthread_join(t, NULL);
    check("fork_beside_a_writing_thread_gives_a_snapshot", exited_ok(st) && moving && counter >= 1000,
          "child status %#x, parent counter %lu", st, counter);
}

static int run(int argc, char *argv[])
{
    (void)argc;
    (void)argv;
    own_writes();
    kernel_writes();
    protection();
    generations();
    sharing();
    threaded();
    printf("cowtest: %d checks, %d failed\n", checks, failed);
    return failed != 0;
}

int main(int argc, char *argv[])
{
    return check_main(argc, argv, run);
}
