/* quest.h: the Quest-RS system calls that are not Linux's — raw numbers, the records of
 * `ps`, and the `ps`/`kill` calls.
 *
 * The single source of truth is the Rust crate crates/quest-abi; this header mirrors it and
 * crates/quest-abi/tests/c_header.rs checks (compiling this header with musl-gcc) that every
 * number, size and field offset agrees. Change both together. See docs/abi.md.
 *
 * Calls use the Linux syscall convention; the wrappers (user/libquest/c/quest.c, linked into
 * every program `cargo xtask cc` builds) return -1 and set errno on error, like libc's. On
 * plain Linux every Quest call fails with ENOSYS.
 */
#ifndef QUEST_H
#define QUEST_H

#include <stdint.h>

/* ---- Syscall numbers: QUEST_NR_BASE + n. 0x00515500 is far above Linux's numbers (< 500)
 * and below the x32 bit (0x40000000), so Linux answers every one of them with -ENOSYS. ---- */
#define QUEST_NR_BASE                 0x00515500
#define QUEST_NR_LAST                 (QUEST_NR_BASE + 0xff)

/* VCPUs (declared in <vcpu.h>) */
#define QUEST_NR_VCPU_CREATE          (QUEST_NR_BASE + 0x00)
#define QUEST_NR_VCPU_DESTROY         (QUEST_NR_BASE + 0x01)
#define QUEST_NR_VCPU_GETPARAMS       (QUEST_NR_BASE + 0x02)
#define QUEST_NR_VCPU_BIND_TASK       (QUEST_NR_BASE + 0x03)
/* tasks */
#define QUEST_NR_PS_TASKS             (QUEST_NR_BASE + 0x10)
#define QUEST_NR_PS_VCPUS             (QUEST_NR_BASE + 0x11)
#define QUEST_NR_TASK_KILL            (QUEST_NR_BASE + 0x12)
/* shmcomm (declared in <shmcomm_user.h>) */
#define QUEST_NR_SHMCOMM_OPEN_SEND    (QUEST_NR_BASE + 0x20)
#define QUEST_NR_SHMCOMM_OPEN_RECEIVE (QUEST_NR_BASE + 0x21)
#define QUEST_NR_SHMCOMM_WRITE        (QUEST_NR_BASE + 0x22)
#define QUEST_NR_SHMCOMM_READ         (QUEST_NR_BASE + 0x23)
#define QUEST_NR_SHMCOMM_CLOSE        (QUEST_NR_BASE + 0x24)
#define QUEST_NR_SHMCOMM_GET_KEY      (QUEST_NR_BASE + 0x25)
/* The user-level data path (user/libquest/c/shmcomm_sys.c): map the region, sleep, wake. */
#define QUEST_NR_SHMCOMM_MAP          (QUEST_NR_BASE + 0x26)
#define QUEST_NR_SHMCOMM_WAIT         (QUEST_NR_BASE + 0x27)
#define QUEST_NR_SHMCOMM_WAKE         (QUEST_NR_BASE + 0x28)
/* tuned pipes (declared in <tpipe.h>) */
#define QUEST_NR_TPIPE_OPEN           (QUEST_NR_BASE + 0x30)
#define QUEST_NR_TPIPE_WRITE          (QUEST_NR_BASE + 0x31)
#define QUEST_NR_TPIPE_READ           (QUEST_NR_BASE + 0x32)
#define QUEST_NR_TPIPE_CLOSE          (QUEST_NR_BASE + 0x33)
/* Boomerang stages (declared in <boomerang.h>) */
#define QUEST_NR_BOOMERANG_STAGE      (QUEST_NR_BASE + 0x34)
/* Quest-V */
#define QUEST_NR_QUESTV_EXITS         (QUEST_NR_BASE + 0x40)

/* ---- ps records ---- */

/* Bytes in task_info.name, including the terminating NUL. */
#define QUEST_TASK_NAME_LEN   32

/* task_info.status: a state in the low byte, or'ed with QUEST_TASK_TERMINAL. */
#define QUEST_TASK_RUNNING    0      /* on a PCPU now */
#define QUEST_TASK_READY      1      /* runnable */
#define QUEST_TASK_SLEEPING   2      /* timed sleep */
#define QUEST_TASK_WAITING    3      /* blocked on an event (waitpid, futex, I/O) */
#define QUEST_TASK_ZOMBIE     4      /* exited, not yet reaped */
#define QUEST_TASK_STATE_MASK 0xff
#define QUEST_TASK_TERMINAL   0x100  /* marked for termination ("/terminal") */

/* One task (thread) as ps_tasks reports it: 64 bytes. */
struct task_info {
    uint32_t id;        /* task id (= thread id; a main task's id is its process id) */
    uint32_t process;   /* its process (thread group) id: the seed's "Parent" column */
    uint32_t parent;    /* parent process id, 0 for tasks the kernel started */
    uint32_t vcpu;      /* VCPU it is bound to (0 = default best-effort VCPU) */
    uint32_t pcpu;      /* that VCPU's PCPU */
    uint32_t status;    /* QUEST_TASK_* state | QUEST_TASK_TERMINAL */
    uint32_t nthreads;  /* tasks in its process, main included */
    uint32_t thread;    /* 0 for the main task, 1, 2, ... for threads */
    char name[QUEST_TASK_NAME_LEN]; /* program path, NUL-terminated; may be empty for threads */
};

/* One VCPU as ps_vcpus reports it: 28 bytes. */
struct vcpu_info {
    uint32_t id;        /* VCPU id (0 = default best-effort Main VCPU) */
    uint32_t pcpu;      /* PCPU it runs on */
    uint32_t type;      /* MAIN_VCPU or IO_VCPU */
    uint32_t C;         /* budget, microseconds */
    uint32_t T;         /* period, microseconds */
    uint32_t io_class;  /* IO VCPU: device class; else 0 */
    uint32_t num_tasks; /* tasks bound to it */
};

/* Writes up to max records to buf (tasks / VCPUs in id order) and returns the TOTAL number,
 * which may exceed max; buf may be NULL when max is 0. -1 and errno (EFAULT, EINVAL) on error. */
int ps_tasks(struct task_info *buf, int max);
int ps_vcpus(struct vcpu_info *buf, int max);

/* Marks a task for termination (the seed's `kill -t ID`): it dies the next time it would run.
 * Returns 0, or -1 and errno (ESRCH: no such task; EPERM: a kernel or init task). */
int task_kill(int task);

/* ---- Quest-V: the monitor's exit counters (sandboxes only) ---- */

#define QUESTV_EXIT_REASONS 8   /* cpuid, io, msr, hypercall, npf, shutdown, init, other */

struct questv_exits_header {
    uint32_t cpus;      /* records that follow */
    uint32_t reasons;   /* counters per record (QUESTV_EXIT_REASONS) */
};

struct questv_cpu_exits {
    uint32_t cpu;       /* physical CPU index */
    uint32_t sandbox;   /* sandbox running there (0xffffffff: none) */
    uint64_t counts[QUESTV_EXIT_REASONS];
    uint64_t monitor_ns[QUESTV_EXIT_REASONS]; /* time the monitor spent on them (exit to VMRUN) */
};

/* Copies the header and one record per CPU into buf; returns the bytes written, or -1 with
 * errno ENODEV (not under the Quest-V monitor), EINVAL (len too small), EFAULT. */
long questv_exits(void *buf, unsigned long len);

#endif /* QUEST_H */
