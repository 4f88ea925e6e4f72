//! Counting semaphores that block and wake threads through the scheduler.
//!
//! Invariant: `count >= 0`; a thread in `waiters` is blocked in `down` or about to block (a
//! wake that reaches it before it blocks is kept as a pending wake by the scheduler, so it is
//! never lost).
use alloc::collections::VecDeque;

use hal::sync::IrqLock;

use crate::sched::{self, Tid};

pub struct Semaphore {
    inner: IrqLock<Inner>,
}

struct Inner {
    count: u64,
    waiters: VecDeque<Tid>,
}

impl Semaphore {
    pub const fn new(count: u64) -> Semaphore {
        Semaphore { inner: IrqLock::ranked(Inner { count, waiters: VecDeque::new() }, crate::locks::WAIT_QUEUE) }
    }

    /// P: takes one unit, blocking while there is none.
    pub fn down(&self) {
        let me = sched::current();
        loop {
            {
                let mut s = self.inner.lock();
                if s.count > 0 {
                    s.count -= 1;
                    s.waiters.retain(|&t| t != me);
                    return;
                }
                if !s.waiters.contains(&me) {
                    s.waiters.push_back(me);
                }
            }
            sched::block_uninterruptible();
        }
    }

    /// P that gives up when the thread is killed or a signal it does not block is pending
    /// (`Err(())`; the unit stays for others).
    pub fn down_interruptible(&self) -> Result<(), ()> {
        let me = sched::current();
        loop {
            {
                let mut s = self.inner.lock();
                if s.count > 0 {
                    s.count -= 1;
                    s.waiters.retain(|&t| t != me);
                    return Ok(());
                }
                if !s.waiters.contains(&me) {
                    s.waiters.push_back(me);
                }
            }
            if sched::block_current() == sched::Wake::Interrupted {
                let mut s = self.inner.lock();
                s.waiters.retain(|&t| t != me);
                // A unit given to us meanwhile (`up` popped us) goes to the next waiter.
                let next = if s.count > 0 { s.waiters.front().copied() } else { None };
                drop(s);
                if let Some(t) = next {
                    let _ = sched::wake(t);
                }
                return Err(());
            }
        }
    }

    /// V: returns one unit and wakes the longest waiter.
    pub fn up(&self) {
        let w = {
            let mut s = self.inner.lock();
            s.count += 1;
            s.waiters.pop_front()
        };
        if let Some(t) = w {
            let _ = sched::wake(t);
        }
    }
}

/// An open file's position behind a sleeping lock (POSIX: a read or write moves it as one
/// step; Linux's `f_pos_lock`). The holder may block (a USB stick read waits for its
/// interrupt) and copies to or from user memory, so a spinning lock — which keeps interrupts
/// off — would hold back the CPU's timer for the whole transfer. Only from a thread.
pub struct Position {
    gate: Semaphore,
    at: core::sync::atomic::AtomicU64,
}

impl Position {
    pub const fn new() -> Position {
        Position { gate: Semaphore::new(1), at: core::sync::atomic::AtomicU64::new(0) }
    }

    /// Waits for other users of the position and holds it until the guard goes.
    pub fn lock(&self) -> PositionGuard<'_> {
        self.gate.down();
        PositionGuard(self)
    }

    /// The position now, without waiting (a holder may be moving it).
    pub fn peek(&self) -> u64 {
        self.at.load(core::sync::atomic::Ordering::Relaxed)
    }
}

/// The held position (see [`Position::lock`]).
pub struct PositionGuard<'a>(&'a Position);

impl PositionGuard<'_> {
    pub fn get(&self) -> u64 {
        self.0.at.load(core::sync::atomic::Ordering::Relaxed)
    }
    pub fn set(&mut self, v: u64) {
        self.0.at.store(v, core::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for PositionGuard<'_> {
    fn drop(&mut self) {
        self.0.gate.up();
    }
}
