//! eventfd and eventfd2 (issue 25): a 64-bit counter behind a descriptor. A write of an
//! 8-byte value adds it (blocking, or EAGAIN, while the sum would pass 2^64 − 2); a read takes
//! the whole count (or 1 in `EFD_SEMAPHORE` mode), blocking or EAGAIN while it is 0. Readable
//! while the count is above 0, writable while 1 more fits, as on Linux. Waiting goes through
//! `crate::poll` (one list every change wakes), so poll, select and epoll see each change. The
//! counter's rules are `evcore::Counter` (host-tested).
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use evcore::Counter;
use hal::sync::IrqLock;
use linux_raw_sys::errno::*;
use linux_raw_sys::general::{EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE, POLLIN, POLLOUT};

use crate::fs::File;
use crate::signal::ERESTARTSYS;
use crate::syscall::{Cx, SysResult, UserSlice, UserSliceMut};

pub struct EventFd {
    count: IrqLock<Counter>,
    /// `O_NONBLOCK` of this open file (EFD_NONBLOCK, or F_SETFL later).
    pub nonblock: AtomicBool,
    /// Writes so far: epoll's edge-triggered items report again after one.
    writes: AtomicU64,
}

impl EventFd {
    /// poll(2) events.
    pub fn poll(&self) -> u16 {
        let c = *self.count.lock();
        (if c.readable() { POLLIN as u16 } else { 0 }) | (if c.writable() { POLLOUT as u16 } else { 0 })
    }

    /// Changes that edge-triggered epoll items count.
    pub fn generation(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    /// Takes the count (or 1) now, if it is above 0.
    fn take(&self) -> Option<u64> {
        self.count.lock().take()
    }

    /// Adds `v` now, if it fits.
    fn add(&self, v: u64) -> bool {
        self.count.lock().add(v)
    }

    /// A counter starting at `init`.
    pub fn new(init: u64, semaphore: bool, nonblock: bool) -> EventFd {
        EventFd { count: IrqLock::ranked(Counter { count: init, semaphore }, crate::locks::WAIT_QUEUE), nonblock: AtomicBool::new(nonblock), writes: AtomicU64::new(0) }
    }
}

/// eventfd2(initval, flags); eventfd(initval) is flags 0.
pub fn create(cx: &Cx, init: u64, flags: u64) -> SysResult {
    let flags = u32::try_from(flags).map_err(|_| EINVAL)?;
    if flags & !(EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC) != 0 {
        return Err(EINVAL);
    }
    let e = EventFd::new(u64::from(init as u32), flags & EFD_SEMAPHORE != 0, flags & EFD_NONBLOCK != 0);
    cx.p().files.lock().insert_flags(File::Event(Arc::new(e)), 0, flags & EFD_CLOEXEC != 0)
}

/// read(2): 8 bytes, the count (or 1).
pub fn read(cx: &Cx, e: &EventFd, buf: UserSliceMut) -> SysResult {
    if buf.len() < 8 {
        return Err(EINVAL);
    }
    let v = match e.take() {
        Some(v) => v,
        None if e.nonblock.load(Ordering::Relaxed) => return Err(EAGAIN),
        None => crate::poll::wait_for(cx.tid, None, || e.take()).map_err(|_| ERESTARTSYS)?.ok_or(EAGAIN)?,
    };
    crate::poll::wake_all(); // room for writers
    buf.write(cx.p(), &v.to_ne_bytes())?;
    Ok(8)
}

/// write(2): 8 bytes, a value to add (all ones is EINVAL).
pub fn write(cx: &Cx, e: &EventFd, buf: UserSlice) -> SysResult {
    if buf.len() < 8 {
        return Err(EINVAL);
    }
    let mut b = [0u8; 8];
    buf.prefix(8).read_into(cx.p(), &mut b)?;
    let v = u64::from_ne_bytes(b);
    if v == u64::MAX {
        return Err(EINVAL);
    }
    if !e.add(v) {
        if e.nonblock.load(Ordering::Relaxed) {
            return Err(EAGAIN);
        }
        crate::poll::wait_for(cx.tid, None, || e.add(v).then_some(())).map_err(|_| ERESTARTSYS)?;
    }
    e.writes.fetch_add(1, Ordering::AcqRel);
    crate::poll::wake_all();
    Ok(8)
}
