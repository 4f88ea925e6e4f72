/* glibc's process scheduling calls for programs written against glibc, linked before musl.
 *
 * musl deliberately answers sched_getscheduler, sched_getparam, sched_setscheduler and
 * sched_setparam with ENOSYS (Linux applies them to one thread, not to the process POSIX
 * describes, so musl refuses to pretend). glibc passes them straight to the kernel, and
 * programs such as rt-tests' cyclictest rely on that: built against musl unchanged, cyclictest
 * stops at "unable to get scheduler parameters" on Linux as on Quest. Linking this file first
 * gives such a program glibc's behaviour: the system call, its result and errno, nothing else.
 * (xtask/src/rt_tests.rs links it into cyclictest; the same binary runs on Quest and Linux.)
 */
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

int sched_getscheduler(pid_t pid)
{
    return (int)syscall(SYS_sched_getscheduler, pid);
}

int sched_getparam(pid_t pid, struct sched_param *param)
{
    return (int)syscall(SYS_sched_getparam, pid, param);
}

int sched_setscheduler(pid_t pid, int policy, const struct sched_param *param)
{
    return (int)syscall(SYS_sched_setscheduler, pid, policy, param);
}

int sched_setparam(pid_t pid, const struct sched_param *param)
{
    return (int)syscall(SYS_sched_setparam, pid, param);
}
