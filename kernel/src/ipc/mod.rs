//! Inter-process communication (issue 22): fcntl record locks ([`rlock`]) and System V
//! shared memory ([`shm`]), semaphores ([`sem`]) and message queues ([`msg`]). The pure
//! logic is in `crates/ipc`; these modules add blocking, user memory and processes.
//!
//! Permissions: every Quest process runs as uid 0 (root), so the modes given to `*get` and
//! `IPC_SET` are kept and reported but never refuse an operation, as they would not refuse
//! root on Linux.
pub mod msg;
pub mod rlock;
pub mod sem;
pub mod shm;

use linux_raw_sys::errno::*;

use crate::process::Process;
use crate::syscall::Errno;

pub const IPC_RMID: u32 = 0;
pub const IPC_SET: u32 = 1;
pub const IPC_STAT: u32 = 2;

/// A process ends: its POSIX record locks go and its semaphore adjustments (SEM_UNDO) apply.
pub fn process_exit(p: &Process) {
    rlock::process_exit(p.pid);
    sem::process_exit(p.pid);
}

fn get_error(e: ipc::ids::GetError) -> Errno {
    match e {
        ipc::ids::GetError::Exists => EEXIST,
        ipc::ids::GetError::NoEntry => ENOENT,
        ipc::ids::GetError::Full => ENOSPC,
    }
}

/// Linux's `struct ipc64_perm` (48 bytes).
#[derive(Clone, Copy, Default)]
pub struct Perm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub mode: u32,
    pub seq: u16,
}

impl Perm {
    pub fn new(key: i32, mode: u32, id: i32) -> Perm {
        Perm { key, mode: mode & 0o777, seq: (id as u32 / ipc::ids::SEQ) as u16, ..Perm::default() }
    }
    /// Its 48 bytes as in `struct ipc64_perm`.
    pub fn bytes(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0..4].copy_from_slice(&self.key.to_le_bytes());
        b[4..8].copy_from_slice(&self.uid.to_le_bytes());
        b[8..12].copy_from_slice(&self.gid.to_le_bytes());
        b[12..16].copy_from_slice(&self.cuid.to_le_bytes());
        b[16..20].copy_from_slice(&self.cgid.to_le_bytes());
        b[20..24].copy_from_slice(&self.mode.to_le_bytes());
        b[24..26].copy_from_slice(&self.seq.to_le_bytes());
        b
    }
    /// IPC_SET: uid, gid and the permission bits of the mode, from a user `ipc64_perm`.
    pub fn set_from(&mut self, b: &[u8]) {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        self.uid = word(4);
        self.gid = word(8);
        self.mode = (self.mode & !0o777) | (word(20) & 0o777);
    }
}

fn now_secs() -> i64 {
    (hal::time::now_ns() / 1_000_000_000) as i64
}
