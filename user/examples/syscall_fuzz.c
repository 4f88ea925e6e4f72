/* syscall_fuzz: a seeded, bounded system-call fuzzer. Children call random Linux and Quest
 * system call numbers with random and adversarial arguments (kernel addresses, unmapped and
 * misaligned pointers, huge lengths, negative values, invalid flags); the parent restarts a
 * child that dies (a fault kills only that task) or hangs (it is killed after a deadline) until
 * the requested number of calls has been made.
 *
 *   syscall_fuzz [SEED] [CALLS]      (defaults: 1, 20000)
 *
 * The kernel must never panic or hang; the program prints its seed and call count. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH 500
#define QUEST_BASE 0x515500L

static uint64_t state;

static uint64_t next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static long arg(void)
{
    static const long special[] = {
        0, 1, -1, 2, 4096, -4096, 0x7fffffff, (long)0x80000000UL, 0x7fffffffffffL,
        (long)0xffffffff80100000UL, (long)0xffff800000000000UL, (long)0xffffc00000000000UL,
        0x1000, 0x10, 3, 0x7ffffffff000L, 0x400000, 0x401000, 1L << 40, (long)0x8000000000000000UL,
    };
    switch (next() % 4) {
    case 0: return special[next() % (sizeof special / sizeof special[0])];
    case 1: return (long)next();
    case 2: return (long)(next() % 4096);
    default: return (long)(0x400000 + (next() % 0x100000)); /* near the program */
    }
}

/* Calls that would end the child's fuzzing for reasons that prove nothing (replace it, stop
 * the machine) or leave the system's other tasks (the shell) at risk. */
static int excluded(long nr)
{
    switch (nr) {
    case SYS_exit: case SYS_exit_group: case SYS_execve: case SYS_reboot:
    case SYS_kill: case SYS_tkill: case SYS_tgkill:
    case SYS_fork: case SYS_vfork: case SYS_clone:
    case SYS_read: case SYS_readv: /* console input would wait for a person */
        return 1;
    }
    return nr == QUEST_BASE + 0x12; /* task_kill */
}

int main(int argc, char **argv)
{
    unsigned long seed = argc > 1 ? strtoul(argv[1], 0, 0) : 1;
    long calls = argc > 2 ? strtol(argv[2], 0, 0) : 20000;
    long done = 0, children = 0, killed = 0, faulted = 0;
    printf("syscall_fuzz: seed %lu, %ld calls\n", seed, calls);
    fflush(stdout);
    state = seed * 0x9e3779b97f4a7c15ULL + 1;
    while (done < calls) {
        uint64_t child_seed = next();
        long n = calls - done < BATCH ? calls - done : BATCH;
        pid_t pid = fork();
        if (pid == 0) {
            state = child_seed | 1;
            for (long i = 0; i < n; i++) {
                long nr = next() % 8 == 0 ? QUEST_BASE + (long)(next() % 0x40) : (long)(next() % 460);
                if (excluded(nr))
                    continue;
                syscall(nr, arg(), arg(), arg(), arg(), arg(), arg());
            }
            _exit(0);
        }
        if (pid < 0) {
            perror("syscall_fuzz: fork");
            return 1;
        }
        children++;
        /* Up to ~2 s per batch; a child blocked in a call (futex, nanosleep...) is killed. */
        int status = 0, waited = 0;
        for (;;) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid)
                break;
            if (waited++ > 200) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                killed++;
                break;
            }
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, 0);
        }
        if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
            faulted++;
        done += n;
    }
    printf("syscall_fuzz: done: seed %lu, %ld calls in %ld children (%ld killed after a timeout, %ld ended by a fault)\n",
           seed, done, children, killed, faulted);
    return 0;
}
