//! futex(2): WAIT, WAKE, REQUEUE and CMP_REQUEUE, with optional timeouts. Keys are (process,
//! address), except for a word in shared memory (a page mapped shared, `memory.rs`), whose key
//! is its physical address, so processes that map it at different addresses meet on it
//! (process-shared semaphores and mutexes in MAP_SHARED, /dev/shm or System V memory). The value check and the enqueue happen under one lock,
//! and the scheduler keeps wakes that arrive before the waiter blocks, so wake-ups are never
//! lost. A requeued waiter is found again through `WHERE` (which queue each waiter is on).
use alloc::collections::{BTreeMap, VecDeque};

use hal::sync::IrqLock;

use crate::process::{Pid, Process};
use crate::sched::{self, Tid};
use crate::syscall::UserPtr;

type Key = (Pid, u64);

/// The "process" of keys of words in shared memory (the address is physical).
const SHARED: Pid = Pid::MAX;

/// The key of the futex word at `addr` of process `p`.
pub fn key(p: &Process, addr: u64) -> Key {
    let mut m = p.mem.lock();
    crate::memory::prefault(&mut m, addr, 4, false);
    if m.space.is_shared(addr)
        && let Some((pa, _)) = m.space.lookup(addr)
    {
        return (SHARED, pa + (addr & (hal::mm::PAGE_SIZE - 1)));
    }
    (p.pid, addr)
}

struct Queues {
    /// Waiters per futex, in arrival order.
    by_key: BTreeMap<Key, VecDeque<Tid>>,
    /// The queue each waiter is on (moved by requeue).
    waiting: BTreeMap<Tid, Key>,
}

static QUEUES: IrqLock<Queues> = IrqLock::ranked(Queues { by_key: BTreeMap::new(), waiting: BTreeMap::new() }, crate::locks::WAIT_QUEUE);

impl Queues {
    /// Takes up to `n` waiters off `key`'s queue.
    fn take(&mut self, key: Key, n: u64) -> alloc::vec::Vec<Tid> {
        let Some(w) = self.by_key.get_mut(&key) else { return alloc::vec::Vec::new() };
        let take = usize::try_from(n).unwrap_or(usize::MAX).min(w.len());
        let v: alloc::vec::Vec<Tid> = w.drain(..take).collect();
        if w.is_empty() {
            self.by_key.remove(&key);
        }
        for t in &v {
            self.waiting.remove(t);
        }
        v
    }
}

/// FUTEX_WAIT: sleeps while `*addr == val` until woken or until `deadline` (ns).
pub fn wait(p: &Process, word: UserPtr<u32>, val: u32, deadline: Option<u64>) -> Result<u64, u32> {
    use linux_raw_sys::errno::{EAGAIN, ETIMEDOUT};
    let me = sched::current();
    let key = key(p, word.addr());
    {
        let mut q = QUEUES.lock();
        let cur = word.read(p)?;
        if cur != val {
            return Err(EAGAIN);
        }
        q.by_key.entry(key).or_default().push_back(me);
        q.waiting.insert(me, key);
    }
    let why = sched::block(deadline);
    // Still queued (on `key` or where a requeue moved us): nobody woke us (timeout, a kill, or
    // a spurious wake).
    let mut q = QUEUES.lock();
    if let Some(k) = q.waiting.remove(&me) {
        if let Some(w) = q.by_key.get_mut(&k) {
            if let Some(i) = w.iter().position(|&t| t == me) {
                w.remove(i);
            }
            if w.is_empty() {
                q.by_key.remove(&k);
            }
        }
        return match why {
            sched::Wake::TimedOut => Err(ETIMEDOUT),
            sched::Wake::Interrupted => Err(linux_raw_sys::errno::EINTR),
            sched::Wake::Woken => Ok(0),
        };
    }
    Ok(0)
}

/// FUTEX_WAKE: wakes up to `n` waiters; returns how many.
pub fn wake(p: &Process, addr: u64, n: u64) -> u64 {
    let k = key(p, addr);
    let woken = QUEUES.lock().take(k, n);
    for &t in &woken {
        let _ = sched::wake(t);
    }
    if woken.is_empty() {
        // A PI word freed by its dying owner's libc or by release_robust: PI waiters get it.
        crate::futex_pi::wake_free(p, addr);
    }
    woken.len() as u64
}

/// FUTEX_REQUEUE / FUTEX_CMP_REQUEUE: wakes up to `n_wake` waiters of `addr` and moves up to
/// `n_move` of the others to `addr2`'s queue; with `expect`, fails with EAGAIN unless
/// `*addr == expect` (checked under the queue lock, like WAIT's check). Returns how many were
/// woken plus moved (CMP_REQUEUE's result; REQUEUE's is the woken count, see the caller).
pub fn requeue(p: &Process, word: UserPtr<u32>, n_wake: u64, addr2: u64, n_move: u64, expect: Option<u32>) -> Result<(u64, u64), u32> {
    use linux_raw_sys::errno::EAGAIN;
    let (k1, key2) = (key(p, word.addr()), key(p, addr2));
    let (woken, moved) = {
        let mut q = QUEUES.lock();
        if let Some(v) = expect {
            let cur = word.read(p)?;
            if cur != v {
                return Err(EAGAIN);
            }
        }
        let woken = q.take(k1, n_wake);
        let moved = if key2 == k1 { alloc::vec::Vec::new() } else { q.take(k1, n_move) };
        if !moved.is_empty() {
            for &t in &moved {
                q.waiting.insert(t, key2);
            }
            q.by_key.entry(key2).or_default().extend(moved.iter().copied());
        }
        (woken, moved.len() as u64)
    };
    for &t in &woken {
        let _ = sched::wake(t);
    }
    Ok((woken.len() as u64, moved))
}

/// The robust futex list of thread `tid` ending (Linux's `struct robust_list_head` at `head`:
/// next, futex offset, pending entry): every futex on it that the thread still owns gets
/// FUTEX_OWNER_DIED (keeping FUTEX_WAITERS) and one waiter is woken, so the next locker sees
/// EOWNERDEAD. At most 2048 entries (Linux's limit); a bad pointer ends the walk. The word is
/// read and written as two steps, not one compare-exchange (the owner is gone; another
/// thread changing it meanwhile would itself be the new owner).
pub fn release_robust(p: &Process, tid: Tid, head: u64) {
    const WAITERS: u32 = 0x8000_0000;
    const OWNER_DIED: u32 = 0x4000_0000;
    const TID_MASK: u32 = 0x3fff_ffff;
    let Ok([next, offset, pending]) = UserPtr::<[u64; 3]>::new(head).read(p) else { return };
    let release = |entry: u64| {
        let addr = (entry & !1).wrapping_add(offset);
        let word = UserPtr::<u32>::new(addr);
        if let Ok(v) = word.read(p)
            && v & TID_MASK == tid
            && word.write(p, &((v & WAITERS) | OWNER_DIED)).is_ok()
            && v & WAITERS != 0
        {
            wake(p, addr, 1);
        }
    };
    let mut entry = next;
    for _ in 0..2048 {
        if entry == head || entry == 0 {
            break;
        }
        let Ok(n) = UserPtr::<u64>::new(entry & !1).read(p) else { break };
        if entry != pending {
            release(entry);
        }
        entry = n;
    }
    if pending != 0 {
        release(pending);
    }
}
