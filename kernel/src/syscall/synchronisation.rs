//! Synchronisation: futex(2) (the queues are in `crate::futex`).
use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;

use super::{Args, Cx, SysResult, UserPtr};

/// futex(uaddr, op, val, timeout | val2, uaddr2, val3).
pub fn futex(cx: &Cx, a: Args) -> SysResult {
    let p = cx.p();
    let word = UserPtr::<u32>::new(a.n(0));
    let op = a.n(1) as u32 & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    // A private futex is keyed by its address alone: no page look-up (`crate::futex::key_for`).
    let private = a.n(1) as u32 & FUTEX_PRIVATE_FLAG != 0;
    match op {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let timeout = a.ptr::<timespec>(3);
            let deadline = if timeout.is_null() {
                None
            } else {
                let t = super::time::read_timespec(cx, timeout)?;
                Some(if op == FUTEX_WAIT { hal::time::now_ns().saturating_add(t) } else { t })
            };
            crate::futex::wait(p, word, a.n(2) as u32, deadline, private)
        }
        // Linux wakes one waiter when asked for none (it counts a waiter before comparing).
        FUTEX_WAKE | FUTEX_WAKE_BITSET => Ok(crate::futex::wake(p, word.addr(), a.n(2).max(1), private)),
        // musl's condition variables requeue waiters onto the mutex: without these,
        // pthread_cond_broadcast with several waiters lost wake-ups (found by the thread
        // storm). The 4th argument is the number to move, not a timeout. Both return woken
        // plus moved (Linux's code; its manual page says REQUEUE returns the woken count).
        FUTEX_REQUEUE => crate::futex::requeue(p, word, (a.n(2) as u32 as u64, a.n(4), a.n(3) as u32 as u64), None, private).map(|(w, m)| w + m),
        FUTEX_CMP_REQUEUE => {
            crate::futex::requeue(p, word, (a.n(2) as u32 as u64, a.n(4), a.n(3) as u32 as u64), Some(a.n(5) as u32), private).map(|(w, m)| w + m)
        }
        // Priority inheritance (policy: crate::futex_pi). LOCK_PI's timeout is absolute
        // (CLOCK_REALTIME, which is Quest's one clock).
        FUTEX_LOCK_PI | FUTEX_LOCK_PI2 => {
            let timeout = a.ptr::<timespec>(3);
            let deadline = if timeout.is_null() { None } else { Some(super::time::read_timespec(cx, timeout)?) };
            crate::futex_pi::lock(p, cx.tid, word.addr(), deadline)
        }
        FUTEX_TRYLOCK_PI => crate::futex_pi::trylock(p, cx.tid, word.addr()),
        FUTEX_UNLOCK_PI => crate::futex_pi::unlock(p, cx.tid, word.addr()),
        other => {
            // Not supported yet (FUTEX_LOCK_PI, FUTEX_WAKE_OP, FUTEX_WAIT_REQUEUE_PI, ...): said
            // once per operation, naming the process.
            // Unknown numbers share one entry (a fuzzer must not grow the set without bound).
            if LOGGED.lock().insert(if op_name(other) == "unknown" { u32::MAX } else { other }) {
                let name = p.name.lock().clone();
                hal::println!("futex operation {other} ({}) not implemented: ENOSYS (first asked by process {} {name})", op_name(other), p.pid);
            }
            Err(ENOSYS)
        }
    }
}

static LOGGED: hal::sync::IrqLock<alloc::collections::BTreeSet<u32>> = hal::sync::IrqLock::ranked(alloc::collections::BTreeSet::new(), crate::locks::LOGGED);

fn op_name(op: u32) -> &'static str {
    match op {
        FUTEX_FD => "FUTEX_FD",
        FUTEX_WAKE_OP => "FUTEX_WAKE_OP",
        FUTEX_LOCK_PI => "FUTEX_LOCK_PI",
        FUTEX_UNLOCK_PI => "FUTEX_UNLOCK_PI",
        FUTEX_TRYLOCK_PI => "FUTEX_TRYLOCK_PI",
        FUTEX_WAIT_REQUEUE_PI => "FUTEX_WAIT_REQUEUE_PI",
        FUTEX_CMP_REQUEUE_PI => "FUTEX_CMP_REQUEUE_PI",
        FUTEX_LOCK_PI2 => "FUTEX_LOCK_PI2",
        _ => "unknown",
    }
}
