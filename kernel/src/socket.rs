//! `socketpair(AF_UNIX, SOCK_STREAM)` (issue 22 item 5, in part): two connected stream sockets,
//! each end reading from one pipe and writing to the other (`crate::pipe`: blocking, end of
//! file when the peer closes or shuts down writing, EPIPE and SIGPIPE when the peer is gone;
//! poll and select see them like pipes). Not supported yet: datagram and seqpacket socket
//! pairs, `socket`/`bind`/`connect`/`listen`/`accept` with paths, MSG_DONTWAIT and other flags
//! but MSG_NOSIGNAL.
use alloc::sync::Arc;
use alloc::vec::Vec;

use hal::sync::IrqLock;

use crate::pipe::{End, WriteError};

pub struct Sock {
    rx: Arc<End>,
    tx: IrqLock<Option<Arc<End>>>,
    read_shut: core::sync::atomic::AtomicBool,
    /// `O_NONBLOCK` (SOCK_NONBLOCK, F_SETFL, FIONBIO).
    pub nonblock: core::sync::atomic::AtomicBool,
}

/// Two connected stream sockets.
pub fn pair() -> (Arc<Sock>, Arc<Sock>) {
    let (r1, w1) = crate::pipe::new();
    let (r2, w2) = crate::pipe::new();
    let f = || core::sync::atomic::AtomicBool::new(false);
    let a = Sock { rx: r1, tx: IrqLock::new(Some(w2)), read_shut: f(), nonblock: f() };
    let b = Sock { rx: r2, tx: IrqLock::new(Some(w1)), read_shut: f(), nonblock: f() };
    (Arc::new(a), Arc::new(b))
}

impl Sock {
    /// Up to `max` bytes (empty: end of file); `None`: interrupted.
    pub fn read(&self, max: usize) -> Option<Vec<u8>> {
        if self.read_shut.load(core::sync::atomic::Ordering::Relaxed) {
            return Some(Vec::new());
        }
        self.rx.pipe.read(max)
    }

    pub fn write(&self, data: &[u8]) -> Result<usize, WriteError> {
        let tx = self.tx.lock().clone();
        match tx {
            Some(t) => t.pipe.write(data),
            None => Err(WriteError::Broken),
        }
    }

    /// [`read`](Self::read) without waiting (`None`: EAGAIN).
    pub fn read_now(&self, max: usize) -> Option<Vec<u8>> {
        if self.read_shut.load(core::sync::atomic::Ordering::Relaxed) {
            return Some(Vec::new());
        }
        self.rx.pipe.read_now(max)
    }

    /// [`write`](Self::write) without waiting (`Ok(0)`: EAGAIN).
    pub fn write_now(&self, data: &[u8]) -> Result<usize, WriteError> {
        let tx = self.tx.lock().clone();
        match tx {
            Some(t) => t.pipe.write_now(data),
            None => Err(WriteError::Broken),
        }
    }

    /// shutdown: SHUT_RD (0) makes reads return end of file, SHUT_WR (1) gives the peer end
    /// of file, SHUT_RDWR (2) both.
    pub fn shutdown(&self, how: u32) -> bool {
        if how > 2 {
            return false;
        }
        if how != 1 {
            self.read_shut.store(true, core::sync::atomic::Ordering::Relaxed);
        }
        if how != 0 {
            let t = self.tx.lock().take();
            drop(t);
        }
        true
    }

    /// poll(2) events: the read side's and the write side's.
    pub fn poll(&self) -> u16 {
        let w = self.tx.lock().clone().map_or(linux_raw_sys::general::POLLERR as u16, |t| t.pipe.poll(true));
        self.rx.pipe.poll(false) | w
    }
}
