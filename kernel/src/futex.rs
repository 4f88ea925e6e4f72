//! futex(2): WAIT, WAKE, REQUEUE and CMP_REQUEUE, with optional timeouts. Keys are (process,
//! address), except for a word in shared memory (a page mapped shared, `memory.rs`), whose key
//! is its physical address, so processes that map it at different addresses meet on it
//! (process-shared semaphores and mutexes in MAP_SHARED, /dev/shm or System V memory). The value check and the enqueue happen under one lock,
//! and the scheduler keeps wakes that arrive before the waiter blocks, so wake-ups are never
//! lost.
//!
//! The wait queues allocate nothing per wait (issue 21: a `BTreeMap` of `VecDeque`s created and
//! removed per wait cost ~1,000 kernel instructions of a 8,500-instruction round trip). Waiters
//! are nodes in one slab (`Queues::nodes`, a `Vec` that only grows, to the most waiters there
//! have ever been at once, and recycles nodes through a free list), linked by index into
//! doubly linked lists, one per hash bucket of keys, in arrival order. A waiter owns its node
//! for the whole wait: a waker or a requeue only unlinks it or moves it to another bucket, and
//! the waiter itself frees it when it runs again, so "still queued after the block" (a timeout,
//! a kill or a spurious wake) is a flag in its node. Indices instead of pointers keep this
//! safe code; the lists are hand-written because no allocation-free intrusive list crate works
//! without unsafe in the user (`intrusive-collections` needs `unsafe` adapters).
use alloc::vec::Vec;

use hal::sync::IrqLock;

use crate::process::{Pid, Process};
use crate::sched::{self, Tid};
use crate::syscall::UserPtr;

pub type Key = (Pid, u64);

/// The "process" of keys of words in shared memory (the address is physical).
const SHARED: Pid = Pid::MAX;

/// The key of the futex word at `addr` of process `p`.
pub fn key(p: &Process, addr: u64) -> Key {
    let mut m = p.mem.lock();
    let mut page = m.space.frame_and_shared(addr);
    if page.is_none() {
        // Not there yet (memory on demand): made as a read would make it.
        crate::memory::prefault(&mut m, addr, 4, false);
        page = m.space.frame_and_shared(addr);
    }
    match page {
        Some((pa, true)) => (SHARED, pa + (addr & (hal::mm::PAGE_SIZE - 1))),
        _ => (p.pid, addr),
    }
}

/// The key of the futex word at `addr` for an operation with `FUTEX_PRIVATE_FLAG` (`private`):
/// the process and the address, with no look at the page (Linux keys a private futex by its
/// address space and address too, even in shared memory).
fn key_for(p: &Process, addr: u64, private: bool) -> Key {
    if private { (p.pid, addr) } else { key(p, addr) }
}

/// Hash buckets of keys (a power of two).
const BUCKETS: usize = 64;
/// No node (the end of a list).
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    key: Key,
    tid: Tid,
    /// Neighbours in its bucket's list while queued; `next` links the free list when free.
    prev: u32,
    next: u32,
    /// On a queue (not yet woken or given up).
    queued: bool,
    /// Arrival order: a wake takes only waiters that arrived before it began.
    seq: u64,
}

/// Thread ids taken off a queue, to wake after its lock is dropped: the first 4 in place, the
/// rest (a broadcast to many waiters) on the heap.
struct Taken {
    first: [Tid; 4],
    len: usize,
    more: Vec<Tid>,
}

impl Taken {
    const fn new() -> Self {
        Taken { first: [0; 4], len: 0, more: Vec::new() }
    }

    fn push(&mut self, t: Tid) {
        if let Some(slot) = self.first.get_mut(self.len) {
            *slot = t;
        } else {
            self.more.push(t);
        }
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = Tid> + '_ {
        self.first[..self.len.min(self.first.len())].iter().chain(self.more.iter()).copied()
    }
}

struct Queues {
    /// Per bucket: first and last node.
    lists: [(u32, u32); BUCKETS],
    nodes: Vec<Node>,
    /// First free node.
    free: u32,
    seq: u64,
}

static QUEUES: IrqLock<Queues> =
    IrqLock::ranked(Queues { lists: [(NIL, NIL); BUCKETS], nodes: Vec::new(), free: NIL, seq: 0 }, crate::locks::WAIT_QUEUE);

fn bucket((pid, addr): Key) -> usize {
    // Words are 4-byte aligned; mix the address's higher bits and the process in.
    let h = (addr >> 2).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(pid).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    (h >> 58) as usize & (BUCKETS - 1)
}

fn idx(i: u32) -> usize {
    i as usize
}

impl Queues {
    /// Queues `tid` on `key` (at the end); returns its node.
    fn enqueue(&mut self, key: Key, tid: Tid) -> u32 {
        self.seq += 1;
        let node = Node { key, tid, prev: NIL, next: NIL, queued: false, seq: self.seq };
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.nodes[idx(i)].next;
            self.nodes[idx(i)] = node;
            i
        } else {
            // Grows only past the most waiters there have ever been at once.
            self.nodes.reserve(16);
            self.nodes.push(node);
            u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 waiters")
        };
        self.link(i);
        i
    }

    /// Links node `i` at the end of its key's bucket.
    fn link(&mut self, i: u32) {
        let b = bucket(self.nodes[idx(i)].key);
        let tail = self.lists[b].1;
        {
            let n = &mut self.nodes[idx(i)];
            n.prev = tail;
            n.next = NIL;
            n.queued = true;
        }
        if tail == NIL {
            self.lists[b].0 = i;
        } else {
            self.nodes[idx(tail)].next = i;
        }
        self.lists[b].1 = i;
    }

    /// Takes node `i` off its bucket's list.
    fn unlink(&mut self, i: u32) {
        let Node { key, prev, next, .. } = self.nodes[idx(i)];
        let b = bucket(key);
        if prev == NIL {
            self.lists[b].0 = next;
        } else {
            self.nodes[idx(prev)].next = next;
        }
        if next == NIL {
            self.lists[b].1 = prev;
        } else {
            self.nodes[idx(next)].prev = prev;
        }
        let n = &mut self.nodes[idx(i)];
        n.queued = false;
        n.prev = NIL;
        n.next = NIL;
    }

    /// The waiter of node `i` is done with it: off its list if still there, then free. Returns
    /// whether it was still queued.
    fn release(&mut self, i: u32) -> bool {
        let queued = self.nodes[idx(i)].queued;
        if queued {
            self.unlink(i);
        }
        self.nodes[idx(i)].next = self.free;
        self.free = i;
        queued
    }

    /// Takes up to `n` of `key`'s waiters that arrived before now off their queue, first come
    /// first; `each` gets each node.
    fn take(&mut self, key: Key, n: u64, mut each: impl FnMut(&mut Self, u32)) -> u64 {
        let before = self.seq;
        let mut i = self.lists[bucket(key)].0;
        let mut got = 0;
        while i != NIL && got < n {
            let Node { key: k, next, seq, .. } = self.nodes[idx(i)];
            if k == key && seq <= before {
                self.unlink(i);
                each(self, i);
                got += 1;
            }
            i = next;
        }
        got
    }

    /// Takes up to `n` waiters of `key` off their queue into `out`.
    fn take_into(&mut self, key: Key, n: u64, out: &mut Taken) -> u64 {
        self.take(key, n, |q, i| out.push(q.nodes[idx(i)].tid))
    }
}

/// FUTEX_WAIT: sleeps while `*addr == val` until woken or until `deadline` (ns).
pub fn wait(p: &Process, word: UserPtr<u32>, val: u32, deadline: Option<u64>, private: bool) -> Result<u64, u32> {
    use linux_raw_sys::errno::{EAGAIN, ETIMEDOUT};
    let me = sched::current();
    let key = key_for(p, word.addr(), private);
    let node = {
        let mut q = QUEUES.lock();
        let cur = word.read(p)?;
        if cur != val {
            return Err(EAGAIN);
        }
        q.enqueue(key, me)
    };
    let why = sched::block(deadline);
    // Still queued (on `key` or where a requeue moved us): nobody woke us (timeout, a kill, or
    // a spurious wake).
    if QUEUES.lock().release(node) {
        return match why {
            sched::Wake::TimedOut => Err(ETIMEDOUT),
            sched::Wake::Interrupted => Err(linux_raw_sys::errno::EINTR),
            sched::Wake::Woken => Ok(0),
        };
    }
    Ok(0)
}

/// FUTEX_WAKE: wakes up to `n` waiters; returns how many.
pub fn wake(p: &Process, addr: u64, n: u64, private: bool) -> u64 {
    let k = key_for(p, addr, private);
    let mut woken = Taken::new();
    let got = QUEUES.lock().take_into(k, n, &mut woken);
    for t in woken.iter() {
        let _ = sched::wake(t);
    }
    if got == 0 {
        // A PI word freed by its dying owner's libc or by release_robust: PI waiters get it.
        crate::futex_pi::wake_free(p, if private { key(p, addr) } else { k }, addr);
    }
    got
}

/// FUTEX_REQUEUE / FUTEX_CMP_REQUEUE: wakes up to `n_wake` waiters of `addr` and moves up to
/// `n_move` of the others to `addr2`'s queue; with `expect`, fails with EAGAIN unless
/// `*addr == expect` (checked under the queue lock, like WAIT's check). Returns how many were
/// how many were woken and how many moved.
pub fn requeue(p: &Process, word: UserPtr<u32>, (n_wake, addr2, n_move): (u64, u64, u64), expect: Option<u32>, private: bool) -> Result<(u64, u64), u32> {
    use linux_raw_sys::errno::EAGAIN;
    let (k1, key2) = (key_for(p, word.addr(), private), key_for(p, addr2, private));
    let mut woken = Taken::new();
    let (n_woken, moved) = {
        let mut q = QUEUES.lock();
        if let Some(v) = expect {
            let cur = word.read(p)?;
            if cur != v {
                return Err(EAGAIN);
            }
        }
        let n_woken = q.take_into(k1, n_wake, &mut woken);
        let moved = if key2 == k1 {
            0
        } else {
            // Each moved waiter goes to the end of `key2`'s queue, keeping their order.
            q.take(k1, n_move, |q, i| {
                q.nodes[idx(i)].key = key2;
                q.link(i);
            })
        };
        (n_woken, moved)
    };
    for t in woken.iter() {
        let _ = sched::wake(t);
    }
    Ok((n_woken, moved))
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
            wake(p, addr, 1, false);
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
