//! Accounting: getrusage and times.
//!
//! CPU time is what the scheduler measures per thread (`sched::runtime_ns`: the time it ran,
//! kernel time in its system calls included), plus the threads of the process that have
//! ended, plus the children it has waited for (`Process::ended_cpu_ns`, `children_cpu_ns`).
//! The scheduler does not split user from system time: all of it is reported as user time
//! and the system time is 0. The maximum resident set is the memory the process has been
//! promised (`Mem::committed`: its heap, mappings and loaded image); the fault and I/O
//! counters are not kept (0).
use core::sync::atomic::Ordering;

use linux_raw_sys::errno::*;
use linux_raw_sys::general::{RUSAGE_CHILDREN, RUSAGE_SELF, RUSAGE_THREAD};

use super::{Cx, SysResult, UserPtr};
use crate::process::Process;

/// `struct rusage`: two timevals, then 14 longs (maxrss first).
type Rusage = [u64; 18];
/// `struct tms`: four clock_t, in USER_HZ ticks.
type Tms = [u64; 4];
/// Linux's USER_HZ: the unit of `times` (sysconf(_SC_CLK_TCK)).
const USER_HZ: u64 = 100;

/// CPU time of the process's live threads and of those that have ended (ns).
fn process_cpu(p: &Process) -> u64 {
    let live: u64 = p.threads.lock().clone().iter().map(|&t| crate::sched::runtime_ns(t).unwrap_or(0)).sum();
    live + p.ended_cpu_ns.load(Ordering::Relaxed)
}

fn usage(ns: u64, maxrss_kib: u64) -> Rusage {
    let mut r = [0u64; 18];
    r[0] = ns / 1_000_000_000;
    r[1] = ns % 1_000_000_000 / 1000;
    r[4] = maxrss_kib;
    r
}

pub fn getrusage(cx: &Cx, who: u64, out: UserPtr<Rusage>) -> SysResult {
    let p = cx.p();
    let r = match who as i32 {
        w if w == RUSAGE_SELF as i32 => usage(process_cpu(p), p.mem.lock().committed / 1024),
        w if w == RUSAGE_THREAD as i32 => usage(crate::sched::runtime_ns(cx.tid).unwrap_or(0), p.mem.lock().committed / 1024),
        RUSAGE_CHILDREN => usage(p.children_cpu_ns.load(Ordering::Relaxed), 0),
        _ => return Err(EINVAL),
    };
    out.write(p, &r).map(|_| 0)
}

/// times(buf): the process's and its waited-for children's CPU time; returns the ticks since
/// boot (Linux counts from an arbitrary point too).
pub fn times(cx: &Cx, out: UserPtr<Tms>) -> SysResult {
    let p = cx.p();
    let tick = 1_000_000_000 / USER_HZ;
    if !out.is_null() {
        let t = [process_cpu(p) / tick, 0, p.children_cpu_ns.load(Ordering::Relaxed) / tick, 0];
        out.write(p, &t)?;
    }
    Ok(hal::time::now_ns() / tick)
}
