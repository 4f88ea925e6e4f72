/* fake_quest.c: host-test stand-in for user/libquest/c/quest.c.
 *
 * On Linux every Quest call fails with ENOSYS, so the shell's `ps` tables cannot be seen
 * there. host-test.sh links this file instead of quest.c into a second shell binary: the
 * PS_TASKS / PS_VCPUS records are those of the tutorial's last `ps -t` slide (user_init and
 * /boot/thread with its two threads, one VCPU), and TASK_KILL marks them. Not for Quest.
 */
#include <errno.h>
#include <string.h>

#include <quest.h>
#include <vcpu.h>

static struct task_info tasks[] = {
    {.id = 8, .process = 8, .parent = 0, .status = QUEST_TASK_RUNNING, .nthreads = 1,
     .name = "/boot/user_init"},
    {.id = 9, .process = 9, .parent = 8, .status = QUEST_TASK_WAITING, .nthreads = 3,
     .name = "/boot/thread"},
    {.id = 10, .process = 9, .parent = 8, .status = QUEST_TASK_SLEEPING, .nthreads = 3,
     .thread = 1, .name = "/boot/thread"},
    {.id = 11, .process = 9, .parent = 8, .status = QUEST_TASK_SLEEPING, .nthreads = 3,
     .thread = 2, .name = ""},
};

static const struct vcpu_info vcpus[] = {
    {.id = 0, .pcpu = 0, .type = MAIN_VCPU, .C = 5000, .T = 50000, .num_tasks = 4},
    {.id = 1, .pcpu = 1, .type = IO_VCPU, .C = 10, .T = 100, .io_class = 1},
};

#define N(a) ((int)(sizeof a / sizeof a[0]))

int ps_tasks(struct task_info *buf, int max)
{
    if (max < 0 || (max > 0 && !buf))
        return errno = max < 0 ? EINVAL : EFAULT, -1;
    for (int i = 0; i < max && i < N(tasks); i++)
        buf[i] = tasks[i];
    return N(tasks);
}

int ps_vcpus(struct vcpu_info *buf, int max)
{
    if (max < 0 || (max > 0 && !buf))
        return errno = max < 0 ? EINVAL : EFAULT, -1;
    for (int i = 0; i < max && i < N(vcpus); i++)
        buf[i] = vcpus[i];
    return N(vcpus);
}

/* Tasks 8..11 exist (8 is init: EPERM; killing 9 marks its threads too); 999 does not
 * (ESRCH); any other id gets ENOSYS, so the shell falls back to kill(2) for its real
 * children. */
int task_kill(int task)
{
    if (task == 8)
        return errno = EPERM, -1;
    if (task == 999)
        return errno = ESRCH, -1;
    int found = 0;
    for (int i = 0; i < N(tasks); i++) {
        if ((int)tasks[i].id == task || (task == 9 && tasks[i].process == 9)) {
            tasks[i].status |= QUEST_TASK_TERMINAL;
            found = 1;
        }
    }
    if (!found)
        errno = ENOSYS;
    return found ? 0 : -1;
}

int vcpu_create(struct sched_param *param)
{
    (void)param;
    return errno = ENOSYS, -1;
}

int vcpu_bind_task(int vcpu)
{
    (void)vcpu;
    return errno = ENOSYS, -1;
}

int vcpu_getparams(struct sched_param *param)
{
    (void)param;
    return errno = ENOSYS, -1;
}

int vcpu_destroy(int vcpu, int force)
{
    (void)vcpu;
    (void)force;
    return errno = ENOSYS, -1;
}
