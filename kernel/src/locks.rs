//! The global lock order: every ranked `IrqLock` of the kernel, by rank. A CPU holding a
//! ranked lock may only take locks of a higher rank (checked on every acquisition in debug
//! builds, `hal::sync`), so these locks cannot deadlock against each other. Rule of thumb:
//! tables that are looked up first rank low, the scheduler ranks highest — nothing but the
//! heap is taken while a CPU's scheduler lock is held, and wakes happen after a wait queue's
//! lock is dropped.
//!
//! The per-process locks (`name`, `files`, `mem`, `threads`, `children`, `clear_tid`) are not
//! ranked yet: they nest in ways that depend on the system call (fork holds two processes'
//! locks), and futexes read `mem` while holding their queue lock. Giving them ranks is the
//! next step once the system-call layer takes its locks in one place.
//!
//! | rank | lock | held while taking |
//! |---:|---|---|
//! | 2 | `process::PROCS` (pid → process) | — |
//! | 3 | `process::BY_THREAD` (thread → process) | — |
//! | 4 | a process's signal state (`Process::sig`) | `sched::WHERE`, `sched::CPUS[n]` (marking a thread), the heap |
//! | 6 | `shmcomm::CHANNELS` (key → channel) | a channel's state |
//! | 8 | wait queues: a pipe's, a channel's, a semaphore's, `futex::QUEUES` | the heap |
//! | 10 | the serial driver's input ring and reader (`drivers::serial::Serial`) | — |
//! | 11 | a CAN controller's queue, filter and counters (`drivers::can::Kvaser`) | the heap |
//! | 12 | `vcpu::IDS` (global VCPU numbers) | — |
//! | 14 | `sched::WHERE` (thread → CPU) | — |
//! | 16 | `sched::CPUS[n]` (a CPU's scheduler, threads, sleepers) | the heap |
//! | 20 | `syscall::LOGGED` (ENOSYS messages printed once) | — |

pub const PROCS: u8 = 2;
pub const BY_THREAD: u8 = 3;
pub const SIGNALS: u8 = 4;
pub const CHANNELS: u8 = 6;
pub const WAIT_QUEUE: u8 = 8;
pub const SERIAL: u8 = 10;
pub const CAN: u8 = 11;
pub const VCPU_IDS: u8 = 12;
pub const WHERE: u8 = 14;
pub const SCHED: u8 = 16;
pub const LOGGED: u8 = 20;
