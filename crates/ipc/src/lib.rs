//! Pure logic of the kernel's inter-process communication (issue 22): no hardware, no
//! scheduler — the kernel (`kernel/src/ipc/`) adds blocking, user memory and processes.
//!
//! - [`rlock`]: fcntl record locks (POSIX, owned by a process; OFD, owned by an open file
//!   description), with Linux's merging and splitting and a wait-for deadlock check.
//! - [`sem`]: System V semaphore sets: `semop`'s all-or-nothing application and undo values.
//! - [`msg`]: System V message queues: selection by type, sizes.
//! - [`ids`]: System V key → id tables, ids with a sequence number, permissions.
//!
//! Hand-written: each is small and follows Linux's documented semantics (fcntl(2), semop(2),
//! msgrcv(2), svipc(7)); no `no_std` crate offers them.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod ids;
pub mod msg;
pub mod rlock;
pub mod sem;
