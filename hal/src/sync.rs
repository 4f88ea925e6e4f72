//! Locks for kernel data shared between CPUs and interrupt handlers.
//!
//! [`IrqLock`] is a ticket spinlock (FIFO-fair across CPUs: `spin`'s `TicketMutex`) that also
//! disables interrupts on the local CPU while held, so an interrupt handler taking the same lock
//! cannot deadlock against the code it interrupted. Interrupts are restored to their previous
//! state when the guard drops, so guards nest.
//!
//! **Lock order.** A lock made with [`IrqLock::ranked`] has a rank (1-31): while a CPU holds a
//! ranked lock it may only take ranked locks of a higher rank, so ranked locks are always
//! taken in one global order and cannot deadlock against each other. Debug builds check it on
//! every acquisition (a per-CPU mask of the ranks held) and panic naming both ranks; release
//! builds compile the check away. [`IrqLock::new`] makes an unranked lock (not checked). The
//! kernel's ranks and why are listed where it defines them (`kernel/src/locks.rs`).
use core::ops::{Deref, DerefMut};
#[cfg(debug_assertions)]
use core::sync::atomic::{AtomicU32, Ordering};

use spin::mutex::{TicketMutex, TicketMutexGuard};

pub struct IrqLock<T> {
    inner: TicketMutex<T>,
    rank: u8,
}

pub struct IrqLockGuard<'a, T> {
    guard: Option<TicketMutexGuard<'a, T>>,
    were_enabled: bool,
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    rank: u8,
}

/// Ranks of the ranked locks each CPU holds (bit `r` = rank `r`).
#[cfg(debug_assertions)]
static HELD: [AtomicU32; crate::percpu::MAX_CPUS] = [const { AtomicU32::new(0) }; crate::percpu::MAX_CPUS];

impl<T> IrqLock<T> {
    pub const fn new(v: T) -> Self {
        IrqLock { inner: TicketMutex::new(v), rank: 0 }
    }

    /// A lock with a place in the global lock order (`rank` 1-31; see the module doc).
    pub const fn ranked(v: T, rank: u8) -> Self {
        assert!(rank >= 1 && rank <= 31, "lock ranks are 1-31");
        IrqLock { inner: TicketMutex::new(v), rank }
    }

    /// Its rank (0: unranked).
    pub fn rank(&self) -> u8 {
        self.rank
    }

    /// Debug builds: checks the order and records the rank as held (interrupts are off).
    #[inline]
    fn enter(&self) {
        #[cfg(debug_assertions)]
        if self.rank > 0 {
            let held = &HELD[crate::percpu::cpu_index()];
            let h = held.load(Ordering::Relaxed);
            let not_below = h & !((1u32 << self.rank) - 1);
            assert!(
                not_below == 0,
                "lock order violated: taking a rank-{} lock while holding rank {}",
                self.rank,
                31 - not_below.leading_zeros()
            );
            held.store(h | (1 << self.rank), Ordering::Relaxed);
        }
    }

    /// Disables local interrupts, then takes the lock.
    pub fn lock(&self) -> IrqLockGuard<'_, T> {
        let were_enabled = crate::cpu::interrupts_enabled();
        crate::cpu::disable_interrupts();
        let g = self.inner.lock();
        self.enter();
        IrqLockGuard { guard: Some(g), were_enabled, rank: self.rank }
    }

    /// Takes the lock if it is free right now.
    pub fn try_lock(&self) -> Option<IrqLockGuard<'_, T>> {
        let were_enabled = crate::cpu::interrupts_enabled();
        crate::cpu::disable_interrupts();
        match self.inner.try_lock() {
            Some(g) => {
                self.enter();
                Some(IrqLockGuard { guard: Some(g), were_enabled, rank: self.rank })
            }
            None => {
                if were_enabled {
                    crate::cpu::enable_interrupts();
                }
                None
            }
        }
    }

    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl<T> Deref for IrqLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard present until drop")
    }
}

impl<T> DerefMut for IrqLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard present until drop")
    }
}

impl<T> Drop for IrqLockGuard<'_, T> {
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        if self.rank > 0 {
            HELD[crate::percpu::cpu_index()].fetch_and(!(1 << self.rank), Ordering::Relaxed);
        }
        drop(self.guard.take());
        if self.were_enabled {
            crate::cpu::enable_interrupts();
        }
    }
}
