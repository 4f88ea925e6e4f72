/* vcpu.h: Quest's VCPU API, as the seed's programs use it:
 *
 *     struct sched_param s_params = {.type = MAIN_VCPU, .C = 20, .T = 100};
 *     int new_vcpu = vcpu_create (&s_params);      // >= 0: the VCPU id; < 0: error
 *     vcpu_bind_task (new_vcpu);
 *     vcpu_getparams (&s_params2);                  // s_params2.C == 20, .T == 100
 *
 * Mirrors crates/quest-abi (checked by crates/quest-abi/tests/c_header.rs). Every call returns
 * -1 and sets errno on error, like libc's wrappers; on plain Linux they fail with ENOSYS.
 *
 * Like the seed's libc, this header makes memset, exit and usleep available: it includes
 * <string.h>, <stdlib.h> and <unistd.h>.
 *
 * `struct sched_param` clashes with POSIX's (musl's <sched.h>, pulled in by <pthread.h>). This
 * header includes <sched.h> first and then renames the Quest struct to `quest_sched_param`
 * with a macro, so that `struct sched_param` means Quest's from here on and programs may
 * include both headers, in either order. The price: after <vcpu.h>, POSIX's struct (used only
 * by sched_setparam, pthread_attr_setschedparam and friends) cannot be named.
 */
#ifndef QUEST_VCPU_H
#define QUEST_VCPU_H

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <quest.h>

#define MAIN_VCPU 0          /* sporadic server: budget C every period T; tasks bind to it */
#define IO_VCPU   1          /* PIBS server for interrupts / I/O */
#define VCPU_AFFINITY_ANY (-1) /* sched_param.affinity: any PCPU */

#define sched_param quest_sched_param

/* VCPU parameters (20 bytes). Times in microseconds. Zero-initialised fields mean: no IO
 * class, PCPU 0. */
struct sched_param {
    int type;       /* MAIN_VCPU or IO_VCPU */
    int C;          /* budget */
    int T;          /* period */
    int io_class;   /* IO VCPU: device class; 0 = none */
    int affinity;   /* PCPU (0-based), or VCPU_AFFINITY_ANY */
};

/* Creates a VCPU (after admission control); returns its id, or -1 and errno: EFAULT, EINVAL
 * (bad type, C <= 0, T <= 0, C > T, bad affinity), EBUSY (not schedulable), ENOSPC, ENOMEM. */
int vcpu_create(struct sched_param *param);
/* Binds the calling task to a VCPU; 0, or -1 and errno: ESRCH, EINVAL (an IO VCPU). */
int vcpu_bind_task(int vcpu);
/* Reads the parameters of the calling task's VCPU; 0, or -1 and errno: EFAULT. */
int vcpu_getparams(struct sched_param *param);
/* Destroys a VCPU; with tasks bound fails with EBUSY unless force is non-zero, which moves them
 * to VCPU 0 first. 0, or -1 and errno: ESRCH, EBUSY, EPERM (VCPU 0). */
int vcpu_destroy(int vcpu, int force);

#endif /* QUEST_VCPU_H */
