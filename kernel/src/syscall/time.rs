//! Time: clock_gettime, clock_getres, gettimeofday, nanosleep and clock_nanosleep (one clock:
//! the TSC).
use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;

use super::{Cx, Errno, SysResult, UserPtr};
use crate::sched;

pub fn clock_gettime(cx: &Cx, clock: u64, ts: UserPtr<timespec>) -> SysResult {
    let ns = match clock as u32 {
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_BOOTTIME | CLOCK_REALTIME | CLOCK_MONOTONIC_COARSE
        | CLOCK_REALTIME_COARSE | CLOCK_PROCESS_CPUTIME_ID => hal::time::now_ns(),
        // The calling thread's time on a CPU (the scheduler's account).
        CLOCK_THREAD_CPUTIME_ID => sched::runtime_ns(cx.tid).unwrap_or(0),
        _ => return Err(EINVAL),
    };
    let t = timespec { tv_sec: (ns / 1_000_000_000) as _, tv_nsec: (ns % 1_000_000_000) as _ };
    ts.write(cx.p(), &t).map(|_| 0)
}

/// clock_getres: 1 ns for every clock clock_gettime reads (they all read the TSC, converted
/// to nanoseconds; the coarse clocks are not coarser here).
pub fn clock_getres(cx: &Cx, clock: u64, res: UserPtr<timespec>) -> SysResult {
    match clock as u32 {
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_BOOTTIME | CLOCK_REALTIME | CLOCK_MONOTONIC_COARSE
        | CLOCK_REALTIME_COARSE | CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => {}
        _ => return Err(EINVAL),
    }
    if !res.is_null() {
        res.write(cx.p(), &timespec { tv_sec: 0, tv_nsec: 1 })?;
    }
    Ok(0)
}

pub fn gettimeofday(cx: &Cx, tv: UserPtr<timeval>) -> SysResult {
    let ns = hal::time::now_ns();
    let t = timeval { tv_sec: (ns / 1_000_000_000) as _, tv_usec: ((ns % 1_000_000_000) / 1000) as _ };
    tv.write(cx.p(), &t).map(|_| 0)
}

/// A user `timespec` as nanoseconds (EINVAL if negative or not normalised).
pub fn read_timespec(cx: &Cx, ts: UserPtr<timespec>) -> Result<u64, Errno> {
    let t = ts.read(cx.p())?;
    let (s, n): (i64, i64) = (t.tv_sec, t.tv_nsec);
    if s < 0 || !(0..1_000_000_000).contains(&n) {
        return Err(EINVAL);
    }
    Ok((s as u64).saturating_mul(1_000_000_000).saturating_add(n as u64))
}

/// Sleeps until `deadline`; a signal ends it with EINTR and the time left in `rem` (if given).
fn sleep(cx: &Cx, deadline: u64, rem: Option<UserPtr<timespec>>) -> SysResult {
    match sched::sleep_until(deadline) {
        sched::Wake::Interrupted => {
            if let Some(r) = rem.filter(|r| !r.is_null()) {
                let left = deadline.saturating_sub(hal::time::now_ns());
                let t = timespec { tv_sec: (left / 1_000_000_000) as _, tv_nsec: (left % 1_000_000_000) as _ };
                r.write(cx.p(), &t)?;
            }
            Err(EINTR)
        }
        _ => Ok(0),
    }
}

pub fn nanosleep(cx: &Cx, req: UserPtr<timespec>, rem: UserPtr<timespec>) -> SysResult {
    let d = read_timespec(cx, req)?;
    sleep(cx, hal::time::now_ns().saturating_add(d), Some(rem))
}

pub fn clock_nanosleep(cx: &Cx, flags: u64, req: UserPtr<timespec>, rem: UserPtr<timespec>) -> SysResult {
    let d = read_timespec(cx, req)?;
    if flags as u32 & TIMER_ABSTIME != 0 { sleep(cx, d, None) } else { sleep(cx, hal::time::now_ns().saturating_add(d), Some(rem)) }
}
