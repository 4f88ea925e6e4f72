//! timerfd_create, timerfd_settime and timerfd_gettime (issue 25): a timer behind a descriptor.
//! Reading gives the number of expirations since the last read (8 bytes), blocking (or
//! EAGAIN) until there is one; poll, select and epoll see it readable once it has expired.
//!
//! No kernel timer is armed: the expirations are counted from the clock when the timer is
//! looked at (`evcore::Timer`, host-tested), and every wait that includes a timerfd blocks with its next
//! expiry as a deadline ([`next_expiry`]), so a periodic timer costs nothing between reads.
//! `CLOCK_REALTIME` and `CLOCK_BOOTTIME` read the same clock as `CLOCK_MONOTONIC` here (the
//! TSC since boot: no wall clock is kept and it is never set), so `TFD_TIMER_CANCEL_ON_SET`,
//! which waits for the realtime clock to be set, is refused with EINVAL (not supported yet).
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use evcore::Timer;
use hal::sync::IrqLock;
use linux_raw_sys::errno::*;
use linux_raw_sys::general::{CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_REALTIME, POLLIN, TFD_CLOEXEC, TFD_NONBLOCK, TFD_TIMER_ABSTIME};

use crate::fs::File;
use crate::signal::ERESTARTSYS;
use crate::syscall::{Cx, Errno, SysResult, UserPtr, UserSliceMut};

/// `struct itimerspec` as four words: interval (s, ns), value (s, ns).
pub type ItimerSpec = [i64; 4];

pub struct TimerFd {
    state: IrqLock<Timer>,
    /// `O_NONBLOCK` of this open file.
    pub nonblock: AtomicBool,
}

impl TimerFd {
    fn now_state(&self) -> Timer {
        let mut s = self.state.lock();
        s.catch_up(hal::time::now_ns());
        *s
    }

    /// poll(2) events: readable once expired.
    pub fn poll(&self) -> u16 {
        if self.now_state().expired > 0 { POLLIN as u16 } else { 0 }
    }

    pub fn generation(&self) -> u64 {
        self.now_state().generation
    }

    /// When a waiter must look again (the next expiry, while none is unread).
    pub fn next_expiry(&self) -> Option<u64> {
        self.now_state().wake_at()
    }

    fn take(&self) -> Option<u64> {
        self.state.lock().take(hal::time::now_ns())
    }
}

/// When a wait on `f` must wake up to look again even if nothing else happens: a timerfd's
/// next expiry, the earliest of an epoll set's timerfds.
pub fn next_expiry(f: &File) -> Option<u64> {
    match f {
        File::Timer(t) => t.next_expiry(),
        File::Epoll(e) => e.next_expiry(0),
        _ => None,
    }
}

/// `struct itimerspec` from (interval, time left) in ns.
fn spec(interval: u64, left: u64) -> ItimerSpec {
    let w = |v: u64| [(v / 1_000_000_000) as i64, (v % 1_000_000_000) as i64];
    let [a, b] = w(interval);
    let [c, d] = w(left);
    [a, b, c, d]
}

/// timerfd_create(clockid, flags).
pub fn create(cx: &Cx, clock: u64, flags: u64) -> SysResult {
    if !matches!(u32::try_from(clock), Ok(CLOCK_MONOTONIC | CLOCK_REALTIME | CLOCK_BOOTTIME)) {
        return Err(EINVAL);
    }
    let flags = u32::try_from(flags).map_err(|_| EINVAL)?;
    if flags & !(TFD_NONBLOCK | TFD_CLOEXEC) != 0 {
        return Err(EINVAL);
    }
    let t = TimerFd { state: IrqLock::ranked(Timer::default(), crate::locks::WAIT_QUEUE), nonblock: AtomicBool::new(flags & TFD_NONBLOCK != 0) };
    cx.p().files.lock().insert_flags(File::Timer(Arc::new(t)), 0, flags & TFD_CLOEXEC != 0)
}

fn timer(cx: &Cx, fd: u64) -> Result<Arc<TimerFd>, Errno> {
    match cx.p().files.lock().get(fd)? {
        File::Timer(t) => Ok(t.clone()),
        _ => Err(EINVAL),
    }
}

/// timerfd_settime(fd, flags, new, old): arms (a value of 0 disarms) and clears the unread
/// expirations, as on Linux.
pub fn settime(cx: &Cx, fd: u64, flags: u64, new: UserPtr<ItimerSpec>, old: UserPtr<ItimerSpec>) -> SysResult {
    let t = timer(cx, fd)?;
    if flags & !u64::from(TFD_TIMER_ABSTIME) != 0 {
        return Err(EINVAL); // TFD_TIMER_CANCEL_ON_SET included: see the module documentation
    }
    let [is, ins, vs, vns] = new.read(cx.p())?;
    let interval = evcore::timespec_ns(is, ins).ok_or(EINVAL)?;
    let value = evcore::timespec_ns(vs, vns).ok_or(EINVAL)?;
    let now = hal::time::now_ns();
    let before = {
        let mut s = t.state.lock();
        s.catch_up(now);
        let (i, left) = s.spec(now);
        s.arm(now, value, interval, flags & u64::from(TFD_TIMER_ABSTIME) != 0);
        spec(i, left)
    };
    crate::poll::wake_all(); // waiters take the new deadline
    if !old.is_null() {
        old.write(cx.p(), &before)?; // after the change, as Linux copies it out
    }
    Ok(0)
}

/// timerfd_gettime(fd, cur): the time to the next expiry and the interval.
pub fn gettime(cx: &Cx, fd: u64, cur: UserPtr<ItimerSpec>) -> SysResult {
    let t = timer(cx, fd)?;
    let now = hal::time::now_ns();
    let (interval, left) = {
        let mut s = t.state.lock();
        s.catch_up(now);
        s.spec(now)
    };
    cur.write(cx.p(), &spec(interval, left)).map(|_| 0)
}

/// read(2): the expirations since the last read (8 bytes).
pub fn read(cx: &Cx, t: &TimerFd, buf: UserSliceMut) -> SysResult {
    if buf.len() < 8 {
        return Err(EINVAL);
    }
    let v = match t.take() {
        Some(v) => v,
        None if t.nonblock.load(Ordering::Relaxed) => return Err(EAGAIN),
        None => loop {
            // Disarmed: waits for a settime (which wakes every waiter) or a signal.
            // A settime that moves the expiry ends this wait so the next one uses it.
            let deadline = t.next_expiry();
            let got = crate::poll::wait_for(cx.tid, deadline, || match t.take() {
                Some(v) => Some(Some(v)),
                None => (t.next_expiry() != deadline).then_some(None),
            });
            if let Some(Some(v)) = got.map_err(|_| ERESTARTSYS)? {
                break v;
            }
        },
    };
    buf.write(cx.p(), &v.to_ne_bytes())?;
    Ok(8)
}
