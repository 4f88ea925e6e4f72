//! Quest's own syscall numbers: [`QUEST_BASE`]` + n`.
//!
//! See the crate documentation for why this range cannot collide with Linux. The low byte is the
//! call index, grouped by subsystem:
//!
//! | index       | group                      | status                               |
//! |-------------|----------------------------|--------------------------------------|
//! | `0x00–0x0f` | VCPUs                      | implemented                          |
//! | `0x10–0x1f` | tasks (`ps`, `kill`)       | implemented                          |
//! | `0x20–0x2f` | `shmcomm` (shared memory)  | implemented                          |
//! | `0x30–0x3f` | tuned pipes, Boomerang     | implemented                          |
//! | `0x40–0xff` | unassigned                 | `ENOSYS`                             |
//!
//! Numbers are `u32`, like `linux-raw-sys`'s `__NR_*`; the kernel compares them with the full
//! 64-bit `rax` (a value with any upper bit set is simply not a Quest call). Numbers once
//! published are never reused for a different call.

/// First Quest syscall number: `0x0051_5500` ("QU" in the middle bytes).
pub const QUEST_BASE: u32 = 0x0051_5500;
/// Last number of the Quest range (inclusive): `QUEST_BASE + 0xff`.
pub const QUEST_LAST: u32 = QUEST_BASE + 0xff;

/// `vcpu_create(struct sched_param *param) -> vcpu id`.
///
/// Creates a VCPU with `param`'s type, budget `C` and period `T` (microseconds), IO class and
/// PCPU affinity, after admission control on that PCPU. Returns the new VCPU's id (≥ 0).
/// Errors: `EFAULT` (bad pointer), `EINVAL` (unknown type, `C <= 0`, `T <= 0`, `C > T`,
/// affinity neither a PCPU nor [`AFFINITY_ANY`](crate::AFFINITY_ANY)), `EBUSY` (admission
/// control: the PCPU's VCPU set would no longer be schedulable), `ENOSPC` (VCPU table full),
/// `ENOMEM`.
pub const VCPU_CREATE: u32 = QUEST_BASE;
/// `vcpu_destroy(int vcpu, int force) -> 0`.
///
/// Destroys a VCPU. If tasks are bound to it: with `force == 0` fails with `EBUSY`; with
/// `force != 0` rebinds them to the default best-effort VCPU 0 first. Errors: `ESRCH` (no such
/// VCPU), `EBUSY`, `EPERM` (VCPU 0, the default VCPU, cannot be destroyed).
pub const VCPU_DESTROY: u32 = QUEST_BASE + 0x01;
/// `vcpu_getparams(struct sched_param *param) -> 0`.
///
/// Writes the parameters of the **calling task's** VCPU to `param` (for the default VCPU of
/// the seed: `MAIN_VCPU, C = 5000, T = 50000`). Errors: `EFAULT`.
pub const VCPU_GETPARAMS: u32 = QUEST_BASE + 0x02;
/// `vcpu_bind_task(int vcpu) -> 0`.
///
/// Binds the **calling task** to VCPU `vcpu`; it runs on that VCPU's budget from its next
/// dispatch. Errors: `ESRCH` (no such VCPU), `EINVAL` (an IO VCPU: tasks bind to Main VCPUs).
pub const VCPU_BIND_TASK: u32 = QUEST_BASE + 0x03;

/// `ps_tasks(struct task_info *buf, int max) -> count`.
///
/// Writes up to `max` [`TaskInfo`](crate::TaskInfo) records (tasks in id order) to `buf` and
/// returns the **total** number of tasks, which may exceed `max`: call again with a bigger
/// buffer. `buf` may be NULL when `max == 0` (just count). Errors: `EFAULT`, `EINVAL`
/// (`max < 0`).
pub const PS_TASKS: u32 = QUEST_BASE + 0x10;
/// `ps_vcpus(struct vcpu_info *buf, int max) -> count`: like [`PS_TASKS`] for
/// [`VcpuInfo`](crate::VcpuInfo) records (VCPUs in id order).
pub const PS_VCPUS: u32 = QUEST_BASE + 0x11;
/// `task_kill(int task) -> 0`.
///
/// Marks task `task` for termination, as the seed's `kill -t` / `kill -c` do: a terminal task
/// dies the next time it would run (a sleeping or waiting task first wakes up); killing a
/// process's main task marks its threads too. Its status shows `/terminal` until then.
/// Errors: `ESRCH` (no such task), `EPERM` (a kernel task or the init task).
pub const TASK_KILL: u32 = QUEST_BASE + 0x12;

/// `shmcomm_open_send(key, flags, packet_size, buffer_len) -> descriptor`.
///
/// Opens the sending side of channel `key` ([`crate::shm`] flags). `SHMCOMM_CREATE_CH` makes
/// a new channel (`SHMCOMM_ASYNC_CH`: four-slot of one `packet_size` value; `SHMCOMM_SYNC_CH`:
/// FIFO of `buffer_len` packets); `SHMCOMM_CONNECT_CH` attaches to an existing one. Errors:
/// `EEXIST` (create: key exists), `ENOENT` (connect: no such key), `EINVAL` (bad flags, size
/// or type mismatch), `EBUSY` (the side is already open), `ENOSPC`, `ENOMEM`, `EMFILE`.
pub const SHMCOMM_OPEN_SEND: u32 = QUEST_BASE + 0x20;
/// `shmcomm_open_receive(key, flags, packet_size, buffer_len) -> descriptor`: the receiving
/// side, as [`SHMCOMM_OPEN_SEND`].
pub const SHMCOMM_OPEN_RECEIVE: u32 = QUEST_BASE + 0x21;
/// `shmcomm_write(fd, buf, len) -> len`: async: replaces the value (`len == packet_size`);
/// sync: appends one packet of `len <= packet_size` bytes, blocking while full. Errors:
/// `EBADF`, `EFAULT`, `EINVAL` (length), `EPIPE` (sync: the receiver closed).
pub const SHMCOMM_WRITE: u32 = QUEST_BASE + 0x22;
/// `shmcomm_read(fd, buf, len) -> bytes`: async: copies the latest value (`len >=
/// packet_size`; `EAGAIN` before the first write); sync: takes the oldest packet, blocking
/// while empty; 0 once the sender closed and the buffer is drained.
pub const SHMCOMM_READ: u32 = QUEST_BASE + 0x23;
/// `shmcomm_close(fd) -> 0`: closes this side; the peer's view stays intact.
pub const SHMCOMM_CLOSE: u32 = QUEST_BASE + 0x24;
/// `get_vshm_key(fd) -> key`. Errors: `EBADF`.
pub const SHMCOMM_GET_KEY: u32 = QUEST_BASE + 0x25;
/// `shmcomm_map(fd, u64 *len) -> address`: maps the channel's region into the caller (shared,
/// read/write) for the user-level data path, stores its length in `*len` and returns its
/// address. Errors: `EBADF`, `EFAULT`, `ENOMEM`, `EOPNOTSUPP` (a Quest-V window).
pub const SHMCOMM_MAP: u32 = QUEST_BASE + 0x26;
/// `shmcomm_wait(fd, expected) -> 0`: a sync side sleeps while the peer's counter word in the
/// region (`writer_pos` for the receiver, `reader_pos` for the sender) equals `expected` and
/// the peer is open. Errors: `EBADF`, `EINVAL` (async channel), `EPIPE` (the peer closed),
/// `EINTR`.
pub const SHMCOMM_WAIT: u32 = QUEST_BASE + 0x27;
/// `shmcomm_wake(fd) -> 0`: wakes the tasks sleeping on the channel. Errors: `EBADF`.
pub const SHMCOMM_WAKE: u32 = QUEST_BASE + 0x28;

/// `tpipe_open(const struct tpipe_qos *qos, int fds[2], struct tpipe_guarantee *g) -> 0`.
///
/// Creates a tuned pipe (`fds[0]` read end, `fds[1]` write end) and the writer's and reader's
/// Main VCPUs derived from `qos` by rate matching (docs/channels.md), after admission
/// control. Errors: `EFAULT`, `EINVAL` (bad QoS, or `C` larger than the derived period),
/// `EBUSY` (admission control refused the VCPUs), `EMFILE`, `ENOMEM`.
pub const TPIPE_OPEN: u32 = QUEST_BASE + 0x30;
/// `tpipe_write(fd, buf, len)`: `write` on a tuned pipe's write end (binds the calling task
/// to the writer VCPU the first time). Errors: `EBADF` (not a tuned pipe's write end), `EPIPE`.
pub const TPIPE_WRITE: u32 = QUEST_BASE + 0x31;
/// `tpipe_read(fd, buf, len)`: `read` on a tuned pipe's read end (binds the calling task to
/// the reader VCPU the first time). Errors: `EBADF`.
pub const TPIPE_READ: u32 = QUEST_BASE + 0x32;
/// `tpipe_close(fd) -> 0`: `close`. Errors: `EBADF` (not a tuned pipe end).
pub const TPIPE_CLOSE: u32 = QUEST_BASE + 0x33;
/// `boomerang_stage(const struct boomerang_qos *qos, struct boomerang_plan *plan) -> 0`.
///
/// Makes the calling task a stage of a Boomerang pipeline: derives the stage's reservation
/// from `qos` by rate matching (`channels::boomerang`, docs/channels.md), creates a Main VCPU
/// with it on the caller's PCPU (admission control), binds the caller to it and writes the
/// plan (with the VCPU's id) to `plan`. Errors: `EFAULT`, `EINVAL` (bad QoS), `EBUSY`
/// (admission control refused the VCPU), `ENOSPC`, `ENOMEM`.
pub const BOOMERANG_STAGE: u32 = QUEST_BASE + 0x34;

/// `questv_exits(void *buf, size_t len) -> bytes`: under the Quest-V monitor, copies its
/// per-CPU exit counters ([`crate::questv::ExitStatsHeader`] then one
/// [`crate::questv::CpuExitStats`] per CPU) into `buf`. Errors: `ENODEV` (not in a Quest-V
/// sandbox), `EINVAL` (`len` too small), `EFAULT`.
pub const QUESTV_EXITS: u32 = QUEST_BASE + 0x40;

/// Every Quest call, for the kernel's dispatcher (`QuestSyscall::from_nr(rax)`) and for tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)] // each variant is documented by the constant of the same name
pub enum QuestSyscall {
    VcpuCreate = VCPU_CREATE,
    VcpuDestroy = VCPU_DESTROY,
    VcpuGetparams = VCPU_GETPARAMS,
    VcpuBindTask = VCPU_BIND_TASK,
    PsTasks = PS_TASKS,
    PsVcpus = PS_VCPUS,
    TaskKill = TASK_KILL,
    ShmcommOpenSend = SHMCOMM_OPEN_SEND,
    ShmcommOpenReceive = SHMCOMM_OPEN_RECEIVE,
    ShmcommWrite = SHMCOMM_WRITE,
    ShmcommRead = SHMCOMM_READ,
    ShmcommClose = SHMCOMM_CLOSE,
    ShmcommGetKey = SHMCOMM_GET_KEY,
    ShmcommMap = SHMCOMM_MAP,
    ShmcommWait = SHMCOMM_WAIT,
    ShmcommWake = SHMCOMM_WAKE,
    TpipeOpen = TPIPE_OPEN,
    TpipeWrite = TPIPE_WRITE,
    TpipeRead = TPIPE_READ,
    TpipeClose = TPIPE_CLOSE,
    BoomerangStage = BOOMERANG_STAGE,
    QuestvExits = QUESTV_EXITS,
}

impl QuestSyscall {
    /// All Quest calls, in number order.
    pub const ALL: [QuestSyscall; 22] = [
        Self::VcpuCreate,
        Self::VcpuDestroy,
        Self::VcpuGetparams,
        Self::VcpuBindTask,
        Self::PsTasks,
        Self::PsVcpus,
        Self::TaskKill,
        Self::ShmcommOpenSend,
        Self::ShmcommOpenReceive,
        Self::ShmcommWrite,
        Self::ShmcommRead,
        Self::ShmcommClose,
        Self::ShmcommGetKey,
        Self::ShmcommMap,
        Self::ShmcommWait,
        Self::ShmcommWake,
        Self::TpipeOpen,
        Self::TpipeWrite,
        Self::TpipeRead,
        Self::TpipeClose,
        Self::BoomerangStage,
        Self::QuestvExits,
    ];

    /// The call with syscall number `nr` (the full `rax`), or `None` if `nr` is not an assigned
    /// Quest number (then it is a Linux number or unknown).
    pub const fn from_nr(nr: u64) -> Option<QuestSyscall> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u32 as u64 == nr {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// The syscall number.
    pub const fn nr(self) -> u32 {
        self as u32
    }

    /// The constant's name in this module, e.g. `"VCPU_CREATE"`; the C header defines it as
    /// `QUEST_NR_` + this name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::VcpuCreate => "VCPU_CREATE",
            Self::VcpuDestroy => "VCPU_DESTROY",
            Self::VcpuGetparams => "VCPU_GETPARAMS",
            Self::VcpuBindTask => "VCPU_BIND_TASK",
            Self::PsTasks => "PS_TASKS",
            Self::PsVcpus => "PS_VCPUS",
            Self::TaskKill => "TASK_KILL",
            Self::ShmcommOpenSend => "SHMCOMM_OPEN_SEND",
            Self::ShmcommOpenReceive => "SHMCOMM_OPEN_RECEIVE",
            Self::ShmcommWrite => "SHMCOMM_WRITE",
            Self::ShmcommRead => "SHMCOMM_READ",
            Self::ShmcommClose => "SHMCOMM_CLOSE",
            Self::ShmcommGetKey => "SHMCOMM_GET_KEY",
            Self::ShmcommMap => "SHMCOMM_MAP",
            Self::ShmcommWait => "SHMCOMM_WAIT",
            Self::ShmcommWake => "SHMCOMM_WAKE",
            Self::TpipeOpen => "TPIPE_OPEN",
            Self::TpipeWrite => "TPIPE_WRITE",
            Self::TpipeRead => "TPIPE_READ",
            Self::TpipeClose => "TPIPE_CLOSE",
            Self::BoomerangStage => "BOOMERANG_STAGE",
            Self::QuestvExits => "QUESTV_EXITS",
        }
    }

    /// Whether the kernel implements the call (all assigned numbers are implemented now).
    pub const fn implemented(self) -> bool {
        (self.nr() - QUEST_BASE) <= 0x40
    }
}

/// Whether `nr` (the full `rax`) lies in the Quest range, assigned or not. A number in the
/// range that is not assigned gets `-ENOSYS`, like any unknown number.
pub const fn is_quest_range(nr: u64) -> bool {
    nr >= QUEST_BASE as u64 && nr <= QUEST_LAST as u64
}

// The range cannot collide with Linux (see the crate documentation): it lies far above every
// Linux number we know of (plus lots of head-room), below the x32 bit, and is positive as i32.
const _: () = {
    assert!(QUEST_BASE > 1000 * crate::linux::NR_SYSCALLS_KNOWN);
    assert!(QUEST_LAST < 0x4000_0000); // __X32_SYSCALL_BIT
    assert!((QUEST_LAST as i32) > 0);
    let mut i = 0;
    while i < QuestSyscall::ALL.len() {
        let n = QuestSyscall::ALL[i].nr();
        assert!(n >= QUEST_BASE && n <= QUEST_LAST);
        if i > 0 {
            assert!(QuestSyscall::ALL[i - 1].nr() < n); // sorted, hence distinct
        }
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_nr_round_trips_and_rejects_others() {
        for c in QuestSyscall::ALL {
            assert_eq!(QuestSyscall::from_nr(c.nr() as u64), Some(c));
            assert!(is_quest_range(c.nr() as u64));
        }
        assert_eq!(QuestSyscall::from_nr(1), None); // write
        assert_eq!(QuestSyscall::from_nr(QUEST_BASE as u64 + 0x0f), None);
        assert_eq!(QuestSyscall::from_nr(QUEST_BASE as u64 | 1 << 32), None);
        assert!(!is_quest_range(QUEST_BASE as u64 | 1 << 32));
        assert!(!is_quest_range(QUEST_BASE as u64 - 1));
        assert!(!is_quest_range(QUEST_LAST as u64 + 1));
    }

    #[test]
    fn numbers_are_pinned() {
        // Published numbers never change: C programs are compiled against them.
        assert_eq!(VCPU_CREATE, 0x0051_5500);
        assert_eq!(VCPU_DESTROY, 0x0051_5501);
        assert_eq!(VCPU_GETPARAMS, 0x0051_5502);
        assert_eq!(VCPU_BIND_TASK, 0x0051_5503);
        assert_eq!(PS_TASKS, 0x0051_5510);
        assert_eq!(PS_VCPUS, 0x0051_5511);
        assert_eq!(TASK_KILL, 0x0051_5512);
        assert_eq!(SHMCOMM_OPEN_SEND, 0x0051_5520);
        assert_eq!(TPIPE_OPEN, 0x0051_5530);
        assert_eq!(BOOMERANG_STAGE, 0x0051_5534);
    }

    #[test]
    fn implemented_set() {
        let implemented: usize = QuestSyscall::ALL.iter().filter(|c| c.implemented()).count();
        assert_eq!(implemented, 22);
        assert!(QuestSyscall::ShmcommOpenSend.implemented());
        assert!(QuestSyscall::ShmcommWait.implemented());
        assert!(QuestSyscall::TpipeClose.implemented());
        assert!(QuestSyscall::TaskKill.implemented());
    }

    #[test]
    fn names_are_distinct() {
        for (i, a) in QuestSyscall::ALL.iter().enumerate() {
            for b in &QuestSyscall::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
