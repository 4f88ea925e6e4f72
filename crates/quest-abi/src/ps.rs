//! The fixed-layout records of `ps_tasks` and `ps_vcpus`, from which the shell prints the
//! seed's `ps -t` and `ps -v` tables:
//!
//! ```text
//! ID      Name      Parent VCPU PCPU      Status Thread
//!  9      /boot/thread      9    0    0 sleeping/terminal  3
//! 10                        9    0    0      sleeping    1
//!
//! VCPU PCPU Type      C      T  num_tasks
//!   0    0 main      5000   50000      4
//! ```
//!
//! Column by column: `ID` = [`TaskInfo::id`]; `Name` = [`TaskInfo::name`]; `Parent` =
//! [`TaskInfo::process`] (the seed shows a task's process there: a process's own id for its main
//! task, the process id for its threads); `VCPU`, `PCPU`; `Status` =
//! [`TaskInfo::status`] as [`TaskState::as_str`] plus `/terminal` if [`TASK_TERMINAL`] is set;
//! `Thread` = [`TaskInfo::nthreads`] for a main task (`thread == 0`), else
//! [`TaskInfo::thread`]. The VCPU table is [`VcpuInfo`] field by field.
//!
//! Both records are `#[repr(C)]`, all fields `u32`/`i32` or bytes, no padding.

/// Bytes in [`TaskInfo::name`], including the terminating NUL (so at most 31 name bytes).
pub const TASK_NAME_LEN: usize = 32;

/// Flag in [`TaskInfo::status`]: the task is marked for termination (`kill`) and dies the next
/// time it would run. Shown as `/terminal`.
pub const TASK_TERMINAL: u32 = 0x100;
/// Mask of the [`TaskState`] part of [`TaskInfo::status`].
pub const TASK_STATE_MASK: u32 = 0xff;

/// The scheduling state of a task, the low byte of [`TaskInfo::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum TaskState {
    /// On a PCPU right now (`"running"`).
    Running = 0,
    /// Runnable, waiting for its VCPU to be scheduled (`"ready"`).
    Ready = 1,
    /// In a timed sleep: `nanosleep`, `usleep`, `sleep` (`"sleeping"`).
    Sleeping = 2,
    /// Blocked on an event: `waitpid`, a futex, a semaphore, I/O (`"waiting"`).
    Waiting = 3,
    /// Exited, not yet reaped by its parent (`"zombie"`).
    Zombie = 4,
}

impl TaskState {
    /// All states, in value order.
    pub const ALL: [TaskState; 5] = [
        TaskState::Running,
        TaskState::Ready,
        TaskState::Sleeping,
        TaskState::Waiting,
        TaskState::Zombie,
    ];

    /// The state for a raw value (the low byte of a status), or `None` if unknown.
    pub const fn from_raw(raw: u32) -> Option<TaskState> {
        match raw {
            0 => Some(TaskState::Running),
            1 => Some(TaskState::Ready),
            2 => Some(TaskState::Sleeping),
            3 => Some(TaskState::Waiting),
            4 => Some(TaskState::Zombie),
            _ => None,
        }
    }

    /// The raw value.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// As `ps -t` shows it, e.g. `"sleeping"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Ready => "ready",
            TaskState::Sleeping => "sleeping",
            TaskState::Waiting => "waiting",
            TaskState::Zombie => "zombie",
        }
    }

    /// The name of the C constant in `quest.h`, e.g. `"QUEST_TASK_SLEEPING"`.
    pub const fn c_name(self) -> &'static str {
        match self {
            TaskState::Running => "QUEST_TASK_RUNNING",
            TaskState::Ready => "QUEST_TASK_READY",
            TaskState::Sleeping => "QUEST_TASK_SLEEPING",
            TaskState::Waiting => "QUEST_TASK_WAITING",
            TaskState::Zombie => "QUEST_TASK_ZOMBIE",
        }
    }
}

/// One task (a thread; a process is its main thread plus the others) as `ps_tasks` reports it.
/// 64 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskInfo {
    /// Task id (Linux: the thread id, `gettid()`; the main task's id is the process id).
    pub id: u32,
    /// Id of the process the task belongs to (Linux: `getpid()`, the thread group id). The
    /// seed's `ps -t` "Parent" column.
    pub process: u32,
    /// Id of the parent process (Linux: `getppid()`); 0 for tasks the kernel started.
    pub parent: u32,
    /// Id of the VCPU the task is bound to (0 = the default best-effort VCPU).
    pub vcpu: u32,
    /// PCPU of that VCPU (0-based).
    pub pcpu: u32,
    /// [`TaskState`] in the low byte, or'ed with [`TASK_TERMINAL`] if marked for termination.
    pub status: u32,
    /// Number of tasks (threads, including the main one) in the task's process.
    pub nthreads: u32,
    /// Index of the task within its process: 0 for the main task, 1, 2, … for threads in
    /// creation order.
    pub thread: u32,
    /// Name: the program path it runs (`/boot/thread`), NUL-terminated and NUL-padded,
    /// truncated to 31 bytes. May be empty for threads (the seed shows them without a name).
    pub name: [u8; TASK_NAME_LEN],
}

impl Default for TaskInfo {
    fn default() -> Self {
        TaskInfo {
            id: 0,
            process: 0,
            parent: 0,
            vcpu: 0,
            pcpu: 0,
            status: 0,
            nthreads: 0,
            thread: 0,
            name: [0; TASK_NAME_LEN],
        }
    }
}

impl TaskInfo {
    /// The state part of [`status`](Self::status), or `None` for an unknown value.
    pub const fn state(&self) -> Option<TaskState> {
        TaskState::from_raw(self.status & TASK_STATE_MASK)
    }

    /// Whether the task is marked for termination.
    pub const fn is_terminal(&self) -> bool {
        self.status & TASK_TERMINAL != 0
    }

    /// Makes a status word.
    pub const fn make_status(state: TaskState, terminal: bool) -> u32 {
        state.raw() | if terminal { TASK_TERMINAL } else { 0 }
    }

    /// The name's bytes up to the first NUL.
    pub fn name_bytes(&self) -> &[u8] {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(TASK_NAME_LEN);
        &self.name[..end]
    }

    /// The name as text: the longest valid UTF-8 prefix of [`name_bytes`](Self::name_bytes).
    pub fn name_str(&self) -> &str {
        let b = self.name_bytes();
        match core::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// Sets the name from `name`, truncated to 31 bytes, NUL-terminated and NUL-padded.
    pub fn set_name(&mut self, name: &[u8]) {
        let n = name.len().min(TASK_NAME_LEN - 1);
        self.name = [0; TASK_NAME_LEN];
        self.name[..n].copy_from_slice(&name[..n]);
    }

    /// The value of the seed's `ps -t` "Thread" column: the thread count for a main task, the
    /// thread index for the others.
    pub const fn thread_column(&self) -> u32 {
        if self.thread == 0 {
            self.nthreads
        } else {
            self.thread
        }
    }
}

/// One VCPU as `ps_vcpus` reports it. 28 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VcpuInfo {
    /// VCPU id (0 = the default best-effort Main VCPU).
    pub id: u32,
    /// PCPU the VCPU runs on (0-based).
    pub pcpu: u32,
    /// [`MAIN_VCPU`](crate::MAIN_VCPU) or [`IO_VCPU`](crate::IO_VCPU) (C `type`).
    pub kind: u32,
    /// Budget in microseconds (for an IO VCPU: its current budget).
    pub c: u32,
    /// Period in microseconds.
    pub t: u32,
    /// For an IO VCPU, the device class it serves; 0 otherwise.
    pub io_class: u32,
    /// Number of tasks bound to the VCPU.
    pub num_tasks: u32,
}

impl VcpuInfo {
    /// The typed VCPU type, or `None` for an unknown `kind`.
    pub const fn vcpu_type(&self) -> Option<crate::VcpuType> {
        if self.kind > i32::MAX as u32 {
            return None;
        }
        crate::VcpuType::from_raw(self.kind as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn task_info_layout() {
        assert_eq!(size_of::<TaskInfo>(), 64);
        assert_eq!(align_of::<TaskInfo>(), 4);
        assert_eq!(offset_of!(TaskInfo, id), 0);
        assert_eq!(offset_of!(TaskInfo, process), 4);
        assert_eq!(offset_of!(TaskInfo, parent), 8);
        assert_eq!(offset_of!(TaskInfo, vcpu), 12);
        assert_eq!(offset_of!(TaskInfo, pcpu), 16);
        assert_eq!(offset_of!(TaskInfo, status), 20);
        assert_eq!(offset_of!(TaskInfo, nthreads), 24);
        assert_eq!(offset_of!(TaskInfo, thread), 28);
        assert_eq!(offset_of!(TaskInfo, name), 32);
    }

    #[test]
    fn vcpu_info_layout() {
        assert_eq!(size_of::<VcpuInfo>(), 28);
        assert_eq!(align_of::<VcpuInfo>(), 4);
        assert_eq!(offset_of!(VcpuInfo, id), 0);
        assert_eq!(offset_of!(VcpuInfo, pcpu), 4);
        assert_eq!(offset_of!(VcpuInfo, kind), 8);
        assert_eq!(offset_of!(VcpuInfo, c), 12);
        assert_eq!(offset_of!(VcpuInfo, t), 16);
        assert_eq!(offset_of!(VcpuInfo, io_class), 20);
        assert_eq!(offset_of!(VcpuInfo, num_tasks), 24);
    }

    #[test]
    fn status_word() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::from_raw(s.raw()), Some(s));
            for terminal in [false, true] {
                let t = TaskInfo {
                    status: TaskInfo::make_status(s, terminal),
                    ..Default::default()
                };
                assert_eq!(t.state(), Some(s));
                assert_eq!(t.is_terminal(), terminal);
            }
        }
        assert_eq!(TaskState::from_raw(5), None);
        assert_eq!(TaskState::Sleeping.as_str(), "sleeping");
        assert_eq!(
            TaskInfo {
                status: 0x1ff,
                ..Default::default()
            }
            .state(),
            None
        );
    }

    #[test]
    fn names() {
        let mut t = TaskInfo::default();
        assert_eq!(t.name_str(), "");
        t.set_name(b"/boot/thread");
        assert_eq!(t.name_str(), "/boot/thread");
        assert_eq!(t.name[12..], [0; 20]);
        t.set_name(&[b'x'; 40]);
        assert_eq!(t.name_bytes().len(), 31);
        assert_eq!(t.name[31], 0);
        t.set_name(b"ab\xffcd");
        assert_eq!(t.name_bytes(), b"ab\xffcd");
        assert_eq!(t.name_str(), "ab");
        t.set_name(b"short");
        assert_eq!(t.name_str(), "short"); // the old, longer name is cleared
    }

    #[test]
    fn thread_column_as_in_the_seed() {
        let main = TaskInfo {
            id: 9,
            process: 9,
            nthreads: 3,
            thread: 0,
            ..Default::default()
        };
        let t1 = TaskInfo {
            id: 10,
            process: 9,
            nthreads: 3,
            thread: 1,
            ..Default::default()
        };
        assert_eq!(main.thread_column(), 3);
        assert_eq!(t1.thread_column(), 1);
    }

    #[test]
    fn vcpu_kind() {
        use crate::VcpuType;
        let mut v = VcpuInfo {
            kind: 0,
            ..Default::default()
        };
        assert_eq!(v.vcpu_type(), Some(VcpuType::Main));
        v.kind = 1;
        assert_eq!(v.vcpu_type(), Some(VcpuType::Io));
        v.kind = u32::MAX;
        assert_eq!(v.vcpu_type(), None);
    }
}
