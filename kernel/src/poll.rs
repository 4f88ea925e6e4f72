//! poll, ppoll, select and pselect6 that wait (issue 22 item 5): a waiting thread is on one
//! list that every change of a pipe (bytes in or out, an end closed) and new console input
//! wakes; it then checks its descriptors again. Broadcast waking is simple and enough for the
//! handful of waiters a Quest system has. Regular files, directories and devices of the tree
//! are always ready (as on Linux). eventfd, timerfd and epoll (issue 25) wait on the same
//! list ([`wait_for`]); a timerfd arms no timer, so a wait that includes one blocks with its
//! next expiry as the deadline.
use alloc::vec::Vec;

use hal::sync::IrqLock;
use linux_raw_sys::errno::*;
use linux_raw_sys::general::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI};

use crate::fs::File;
use crate::sched::{self, Tid};
use crate::syscall::{Cx, Errno, SysResult, UserPtr};

static WAITERS: IrqLock<Vec<Tid>> = IrqLock::ranked(Vec::new(), crate::locks::WAIT_QUEUE);

/// Wakes every poller (something they may wait for changed).
pub fn wake_all() {
    GENERATION.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
    let w = core::mem::take(&mut *WAITERS.lock());
    for t in w {
        let _ = sched::wake(t);
    }
}

/// Counts the changes [`wake_all`] announced: epoll's edge-triggered items report again only
/// after one (`crate::epoll`).
pub static GENERATION: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Blocks the calling thread until `check` gives a value (re-run after every [`wake_all`]) or
/// `deadline` passes (`Ok(None)`); a signal or a kill ends the wait with EINTR. The blocking
/// half of eventfd, timerfd and epoll_wait.
pub fn wait_for<R>(tid: Tid, deadline: Option<u64>, mut check: impl FnMut() -> Option<R>) -> Result<Option<R>, Errno> {
    loop {
        {
            let mut w = WAITERS.lock();
            if !w.contains(&tid) {
                w.push(tid);
            }
        }
        if let Some(r) = check() {
            WAITERS.lock().retain(|&t| t != tid);
            return Ok(Some(r));
        }
        if deadline.is_some_and(|d| d <= hal::time::now_ns()) {
            WAITERS.lock().retain(|&t| t != tid);
            return Ok(None);
        }
        if sched::block(deadline) == sched::Wake::Interrupted {
            WAITERS.lock().retain(|&t| t != tid);
            return Err(EINTR);
        }
    }
}

/// The ready events of descriptor `fd` among `events` (POLLNVAL for a closed one).
fn ready(cx: &Cx, fd: i32, events: u16) -> u16 {
    if fd < 0 {
        return 0;
    }
    let f = match cx.p().files.lock().get(fd as u64) {
        Ok(f) => f.clone(),
        Err(_) => return POLLNVAL as u16,
    };
    file_events(&f) & (events | (POLLERR | POLLHUP) as u16)
}

/// Every poll(2) event open file `f` has now.
pub fn file_events(f: &File) -> u16 {
    match f {
        File::Pipe(e) => e.pipe.poll(e.write),
        File::Console => {
            let r = crate::drivers::console().is_none_or(|c| c.readable());
            (if r { POLLIN as u16 } else { 0 }) | POLLOUT as u16
        }
        File::Sock(s) => s.poll(),
        File::Can(c) => (if c.readable() { POLLIN as u16 } else { 0 }) | POLLOUT as u16,
        File::Node(_) | File::Shm(_) => (POLLIN | POLLOUT) as u16,
        File::Event(e) => e.poll(),
        File::Timer(t) => t.poll(),
        File::Epoll(e) => e.poll(),
    }
}

/// Waits until one of `fds` (fd, events) is ready or `deadline` passes; returns the ready
/// events per descriptor. A signal ends the wait with EINTR (poll and select are never
/// restarted, as on Linux).
fn wait(cx: &Cx, fds: &[(i32, u16)], deadline: Option<u64>) -> Result<Vec<u16>, Errno> {
    loop {
        {
            // On the list before looking, so a change between the look and the block wakes us.
            let mut w = WAITERS.lock();
            if !w.contains(&cx.tid) {
                w.push(cx.tid);
            }
        }
        let out: Vec<u16> = fds.iter().map(|&(fd, ev)| ready(cx, fd, ev)).collect();
        if out.iter().any(|&r| r != 0) || deadline.is_some_and(|d| d <= hal::time::now_ns()) {
            WAITERS.lock().retain(|&t| t != cx.tid);
            return Ok(out);
        }
        match sched::block(timer_deadline(cx, fds, deadline)) {
            sched::Wake::Interrupted => {
                WAITERS.lock().retain(|&t| t != cx.tid);
                return Err(EINTR);
            }
            sched::Wake::TimedOut | sched::Wake::Woken => {}
        }
    }
}

/// `deadline` or, if sooner, the next expiry of a timerfd among `fds` (timerfds arm no timer:
/// `crate::timerfd`).
fn timer_deadline(cx: &Cx, fds: &[(i32, u16)], deadline: Option<u64>) -> Option<u64> {
    let files: Vec<File> = {
        let mut t = cx.p().files.lock();
        fds.iter().filter_map(|&(fd, _)| t.get(fd as u64).ok().cloned()).collect()
    };
    files.iter().filter_map(crate::timerfd::next_expiry).chain(deadline).min()
}

/// `struct pollfd` as two words: fd, and events | revents << 16.
type PollFd = [u32; 2];

fn poll_common(cx: &Cx, ufds: UserPtr<PollFd>, n: u64, deadline: Option<u64>) -> SysResult {
    if n > cx.p().files.lock().limit as u64 {
        return Err(EINVAL);
    }
    let mut fds = Vec::new();
    for i in 0..n {
        let [fd, ev] = ufds.at(i)?.read(cx.p())?;
        fds.push((fd as i32, ev as u16));
    }
    let out = wait(cx, &fds, deadline)?;
    let mut count = 0;
    for (i, (&(fd, ev), &r)) in fds.iter().zip(out.iter()).enumerate() {
        ufds.at(i as u64)?.write(cx.p(), &[fd as u32, u32::from(ev) | (u32::from(r) << 16)])?;
        count += u64::from(r != 0);
    }
    Ok(count)
}

pub fn poll(cx: &Cx, ufds: UserPtr<PollFd>, n: u64, timeout_ms: u64) -> SysResult {
    let t = timeout_ms as i32;
    let deadline = if t < 0 { None } else { Some(hal::time::now_ns().saturating_add(t as u64 * 1_000_000)) };
    poll_common(cx, ufds, n, deadline)
}

/// Runs `f` with the thread's signal mask replaced by the one at `mask` (ppoll, pselect6),
/// as sigsuspend does: a handler that ends the wait runs with the temporary mask and returns
/// to the old one.
pub fn with_mask(cx: &Cx, mask: UserPtr<u64>, f: impl FnOnce() -> SysResult) -> SysResult {
    if mask.is_null() {
        return f();
    }
    let m = signals::SigSet(mask.read(cx.p())?);
    crate::signal::swap_mask(cx, m);
    let r = f();
    if r != Err(EINTR) {
        crate::signal::restore_mask(cx);
    }
    r
}

pub fn ppoll(cx: &Cx, ufds: UserPtr<PollFd>, n: u64, ts: UserPtr<linux_raw_sys::general::timespec>, mask: UserPtr<u64>, size: u64) -> SysResult {
    if !mask.is_null() && size != 8 {
        return Err(EINVAL);
    }
    let deadline = if ts.is_null() { None } else { Some(hal::time::now_ns().saturating_add(crate::syscall::read_timespec(cx, ts)?)) };
    with_mask(cx, mask, || poll_common(cx, ufds, n, deadline))
}

/// select and pselect6 on fd_set bitmaps (`nfds` bits, in 64-bit words).
fn select_common(cx: &Cx, nfds: u64, sets: [UserPtr<u64>; 3], deadline: Option<u64>) -> SysResult {
    if nfds > cx.p().files.lock().limit as u64 || nfds > 1024 {
        return Err(EINVAL);
    }
    let words = nfds.div_ceil(64);
    let mut bits = [Vec::new(), Vec::new(), Vec::new()];
    for (k, s) in sets.iter().enumerate() {
        for i in 0..words {
            bits[k].push(if s.is_null() { 0 } else { s.at(i)?.read(cx.p())? });
        }
    }
    let mut fds = Vec::new();
    for fd in 0..nfds {
        let (w, b) = ((fd / 64) as usize, 1u64 << (fd % 64));
        let mut ev = 0u16;
        if bits[0][w] & b != 0 {
            ev |= POLLIN as u16;
        }
        if bits[1][w] & b != 0 {
            ev |= POLLOUT as u16;
        }
        if bits[2][w] & b != 0 {
            ev |= POLLPRI as u16;
        }
        if ev != 0 {
            fds.push((fd as i32, ev));
        }
    }
    let out = wait(cx, &fds, deadline)?;
    let mut res = [alloc::vec![0u64; words as usize], alloc::vec![0u64; words as usize], alloc::vec![0u64; words as usize]];
    let mut count = 0;
    for (&(fd, ev), &r) in fds.iter().zip(out.iter()) {
        if r & POLLNVAL as u16 != 0 {
            return Err(EBADF);
        }
        let (w, b) = ((fd / 64) as usize, 1u64 << (fd % 64));
        let rd = ev & POLLIN as u16 != 0 && r & (POLLIN | POLLHUP | POLLERR) as u16 != 0;
        let wr = ev & POLLOUT as u16 != 0 && r & (POLLOUT | POLLERR) as u16 != 0;
        for (k, on) in [rd, wr, false].into_iter().enumerate() {
            if on {
                res[k][w] |= b;
                count += 1;
            }
        }
    }
    for (k, s) in sets.iter().enumerate() {
        if !s.is_null() {
            for i in 0..words {
                s.at(i)?.write(cx.p(), &res[k][i as usize])?;
            }
        }
    }
    Ok(count)
}

pub fn select(cx: &Cx, nfds: u64, r: UserPtr<u64>, w: UserPtr<u64>, e: UserPtr<u64>, tv: UserPtr<linux_raw_sys::general::timeval>) -> SysResult {
    let deadline = if tv.is_null() {
        None
    } else {
        let t = tv.read(cx.p())?;
        if t.tv_sec < 0 || !(0..1_000_000).contains(&t.tv_usec) {
            return Err(EINVAL);
        }
        Some(hal::time::now_ns().saturating_add((t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_usec as u64 * 1000)))
    };
    select_common(cx, nfds, [r, w, e], deadline)
}

pub fn pselect6(cx: &Cx, nfds: u64, r: UserPtr<u64>, w: UserPtr<u64>, e: UserPtr<u64>, ts: UserPtr<linux_raw_sys::general::timespec>, sig: UserPtr<[u64; 2]>) -> SysResult {
    let deadline = if ts.is_null() { None } else { Some(hal::time::now_ns().saturating_add(crate::syscall::read_timespec(cx, ts)?)) };
    let (mask, size) = if sig.is_null() { (0, 8) } else { let [m, s] = sig.read(cx.p())?; (m, s) };
    if mask != 0 && size != 8 {
        return Err(EINVAL);
    }
    with_mask(cx, UserPtr::new(mask), || select_common(cx, nfds, [r, w, e], deadline))
}
