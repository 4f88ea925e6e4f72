//! futex(2): WAIT and WAKE (private and shared alike: keys are (process, address)), with
//! optional timeouts. The value check and the enqueue happen under one lock, and the
//! scheduler keeps wakes that arrive before the waiter blocks, so wake-ups are never lost.
use alloc::collections::{BTreeMap, VecDeque};

use hal::sync::IrqLock;

use crate::process::{Pid, Process};
use crate::sched::{self, Tid};

static QUEUES: IrqLock<BTreeMap<(Pid, u64), VecDeque<Tid>>> = IrqLock::new(BTreeMap::new());

/// FUTEX_WAIT: sleeps while `*addr == val` until woken or until `deadline` (ns).
pub fn wait(p: &Process, addr: u64, val: u32, deadline: Option<u64>) -> Result<u64, u32> {
    use linux_raw_sys::errno::{EAGAIN, EFAULT, ETIMEDOUT};
    let me = sched::current();
    let key = (p.pid, addr);
    {
        let mut q = QUEUES.lock();
        let cur = p.mem.lock().space.read_u32(addr).map_err(|_| EFAULT)?;
        if cur != val {
            return Err(EAGAIN);
        }
        q.entry(key).or_default().push_back(me);
    }
    match deadline {
        Some(d) => sched::sleep_until(d),
        None => sched::block_current(),
    }
    // Still queued: nobody woke us (timeout or a spurious wake).
    let mut q = QUEUES.lock();
    if let Some(w) = q.get_mut(&key) {
        if let Some(i) = w.iter().position(|&t| t == me) {
            w.remove(i);
            if w.is_empty() {
                q.remove(&key);
            }
            return if deadline.is_some_and(|d| hal::time::now_ns() >= d) { Err(ETIMEDOUT) } else { Ok(0) };
        }
    }
    Ok(0)
}

/// FUTEX_WAKE: wakes up to `n` waiters; returns how many.
pub fn wake(pid: Pid, addr: u64, n: u64) -> u64 {
    let woken: alloc::vec::Vec<Tid> = {
        let mut q = QUEUES.lock();
        let Some(w) = q.get_mut(&(pid, addr)) else { return 0 };
        let take = (n as usize).min(w.len());
        let v = w.drain(..take).collect();
        if w.is_empty() {
            q.remove(&(pid, addr));
        }
        v
    };
    for &t in &woken {
        let _ = sched::wake(t);
    }
    woken.len() as u64
}
