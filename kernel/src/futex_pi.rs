//! Priority-inheritance futexes: FUTEX_LOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_UNLOCK_PI (what musl's
//! PTHREAD_PRIO_INHERIT mutexes call). The word holds the owner's thread id, with
//! FUTEX_WAITERS (bit 31) while the kernel has waiters and FUTEX_OWNER_DIED (bit 30) after an
//! owner died holding it (robust mutexes); the kernel changes it only with compare-exchange
//! (user threads on other CPUs change it atomically too).
//!
//! Policy across VCPUs (docs/ARCHITECTURE.md, "Priority-inheritance futexes"): waiters are
//! served in priority order — the period of the waiter's VCPU, shorter first (Quest's
//! rate-monotonic priority), arrival order among equals — and FUTEX_UNLOCK_PI hands the lock
//! to that waiter directly (the word gets its id before it runs; nobody can barge in). The
//! owner is not boosted: it keeps running on its own VCPU with that VCPU's budget, because
//! lending a waiter's priority or budget to a thread of another VCPU (perhaps on another
//! CPU) would let one VCPU spend time reserved for another and void the admission test that
//! guarantees every VCPU its budget. A high-priority waiter's blocking is thus bounded by the
//! owner's critical section run at the owner VCPU's own reservation.
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use hal::sync::IrqLock;
use linux_raw_sys::errno::*;

use crate::process::{Pid, Process};
use crate::sched::{self, Tid};
use crate::signal::ERESTARTSYS;
use crate::syscall::Errno;

const WAITERS: u32 = 0x8000_0000;
const OWNER_DIED: u32 = 0x4000_0000;
const TID_MASK: u32 = 0x3fff_ffff;

/// One waiter: (priority key, arrival, thread).
type Waiter = (u64, u64, Tid);

/// Waiters per futex (by `futex::key`), best first.
static QUEUES: IrqLock<BTreeMap<(Pid, u64), Vec<Waiter>>> = IrqLock::ranked(BTreeMap::new(), crate::locks::WAIT_QUEUE);
static ARRIVAL: AtomicU64 = AtomicU64::new(0);

/// The running thread's priority key: its VCPU's period (ns); no VCPU: lowest.
fn my_priority() -> u64 {
    let cpu = hal::percpu::cpu_index();
    sched::current_vcpu().and_then(|v| sched::vcpus(cpu).into_iter().find(|i| i.id == v)).map_or(u64::MAX, |i| i.period)
}

fn cas(p: &Process, addr: u64, old: u32, new: u32) -> Result<u32, Errno> {
    let mut m = p.mem.lock();
    crate::memory::prefault(&mut m, addr, 4, true);
    let r = m.space.cmpxchg_u32(addr, old, new).map_err(|_| EFAULT);
    // A copy-on-write page broken by the prefault: other CPUs drop the old entry first.
    let t = m.space.take_flush();
    drop(m);
    t.wait();
    r
}

fn read(p: &Process, addr: u64) -> Result<u32, Errno> {
    let mut m = p.mem.lock();
    crate::memory::prefault(&mut m, addr, 4, false);
    m.space.read_u32(addr).map_err(|_| EFAULT)
}

/// Whether thread `tid` is alive (an owner that is gone can never unlock).
fn alive(tid: u32) -> bool {
    crate::process::of_thread(tid).is_some()
}

/// FUTEX_TRYLOCK_PI: takes a free word (keeping OWNER_DIED); EDEADLK if we own it, EAGAIN if
/// another thread does.
pub fn trylock(p: &Process, me: Tid, addr: u64) -> Result<u64, Errno> {
    let key = crate::futex::key(p, addr);
    let q = QUEUES.lock();
    let queued = q.get(&key).is_some_and(|w| !w.is_empty());
    loop {
        let v = read(p, addr)?;
        if v & TID_MASK == me {
            return Err(EDEADLK);
        }
        if v & TID_MASK != 0 {
            return Err(EAGAIN);
        }
        let new = me | (v & OWNER_DIED) | if queued { WAITERS } else { 0 };
        if cas(p, addr, v, new)? == v {
            return Ok(0);
        }
    }
}

/// FUTEX_LOCK_PI: takes the word, or waits (until `deadline`, ns) for an unlock to hand it to
/// us.
pub fn lock(p: &Process, me: Tid, addr: u64, deadline: Option<u64>) -> Result<u64, Errno> {
    let key = crate::futex::key(p, addr);
    let prio = my_priority();
    loop {
        // An owner that is gone can never unlock (looked up before the queue lock: the thread
        // table ranks below it).
        let v0 = read(p, addr)?;
        if v0 & TID_MASK != 0 && v0 & TID_MASK != me && !alive(v0 & TID_MASK) {
            return Err(ESRCH);
        }
        {
            let mut q = QUEUES.lock();
            let v = read(p, addr)?;
            let owner = v & TID_MASK;
            if owner == 0 {
                let queued = q.get(&key).is_some_and(|w| !w.is_empty());
                let new = me | (v & OWNER_DIED) | if queued { WAITERS } else { 0 };
                if cas(p, addr, v, new)? == v {
                    return Ok(0);
                }
                continue;
            }
            if owner == me {
                return Err(EDEADLK);
            }
            if v & WAITERS == 0 && cas(p, addr, v, v | WAITERS)? != v {
                continue;
            }
            let w = q.entry(key).or_default();
            let at = (prio, ARRIVAL.fetch_add(1, Ordering::Relaxed), me);
            let i = w.partition_point(|x| (x.0, x.1) <= (at.0, at.1));
            w.insert(i, at);
        }
        let why = sched::block(deadline);
        let mut q = QUEUES.lock();
        let w = q.entry(key).or_default();
        let Some(i) = w.iter().position(|x| x.2 == me) else {
            // Handed to us by an unlock: the word holds our id.
            return Ok(0);
        };
        w.remove(i);
        if w.is_empty() {
            q.remove(&key);
            // Nobody else waits: clear FUTEX_WAITERS (the owner may then unlock in user mode).
            if let Ok(v) = read(p, addr)
                && v & WAITERS != 0
            {
                let _ = cas(p, addr, v, v & !WAITERS);
            }
        }
        drop(q);
        match why {
            sched::Wake::TimedOut => return Err(ETIMEDOUT),
            sched::Wake::Interrupted => return Err(ERESTARTSYS),
            sched::Wake::Woken => {} // not handed to us: try again
        }
    }
}

/// Gives the word at `addr` (whose value was `v`) to the best waiter, or frees it (0, or
/// OWNER_DIED if `died`); returns the thread to wake.
fn hand_over(p: &Process, key: (Pid, u64), addr: u64, mut v: u32, died: bool) -> Result<Option<Tid>, Errno> {
    let mut q = QUEUES.lock();
    let keep = if died { OWNER_DIED } else { 0 };
    let next = q.get_mut(&key).filter(|w| !w.is_empty()).map(|w| w.remove(0));
    let more = q.get(&key).is_some_and(|w| !w.is_empty());
    if !more {
        q.remove(&key);
    }
    let new = match next {
        Some((_, _, t)) => t | keep | if more { WAITERS } else { 0 },
        None => keep,
    };
    loop {
        let found = cas(p, addr, v, new)?;
        if found == v {
            break;
        }
        v = found; // user mode changed the waiters bit meanwhile: the id is still ours
    }
    Ok(next.map(|(_, _, t)| t))
}

/// FUTEX_UNLOCK_PI: EPERM unless we own the word; hands it to the best waiter.
pub fn unlock(p: &Process, me: Tid, addr: u64) -> Result<u64, Errno> {
    let key = crate::futex::key(p, addr);
    let v = read(p, addr)?;
    if v & TID_MASK != me {
        return Err(EPERM);
    }
    if let Some(t) = hand_over(p, key, addr, v, false)? {
        let _ = sched::wake(t);
    }
    Ok(0)
}

/// A PI word was freed without FUTEX_UNLOCK_PI — the owner died and the kernel
/// (`futex::release_robust`) or its own libc (musl's pthread_exit, for process-private robust
/// mutexes) marked it OWNER_DIED and called FUTEX_WAKE: if PI waiters wait on it, the best of
/// them gets it (with OWNER_DIED kept, so it sees EOWNERDEAD).
pub fn wake_free(p: &Process, key: crate::futex::Key, addr: u64) {
    if !QUEUES.lock().get(&key).is_some_and(|w| !w.is_empty()) {
        return;
    }
    if let Ok(v) = read(p, addr)
        && v & TID_MASK == 0
        && let Ok(Some(t)) = hand_over(p, key, addr, v, v & OWNER_DIED != 0)
    {
        let _ = sched::wake(t);
    }
}
