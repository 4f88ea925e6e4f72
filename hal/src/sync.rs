//! Locks for kernel data shared between CPUs and interrupt handlers.
//!
//! [`IrqLock`] is a ticket spinlock (FIFO-fair across CPUs: `spin`'s `TicketMutex`) that also
//! disables interrupts on the local CPU while held, so an interrupt handler taking the same lock
//! cannot deadlock against the code it interrupted. Interrupts are restored to their previous
//! state when the guard drops, so guards nest.
use core::ops::{Deref, DerefMut};

use spin::mutex::{TicketMutex, TicketMutexGuard};

pub struct IrqLock<T> {
    inner: TicketMutex<T>,
}

pub struct IrqLockGuard<'a, T> {
    guard: Option<TicketMutexGuard<'a, T>>,
    were_enabled: bool,
}

impl<T> IrqLock<T> {
    pub const fn new(v: T) -> Self {
        IrqLock { inner: TicketMutex::new(v) }
    }

    /// Disables local interrupts, then takes the lock.
    pub fn lock(&self) -> IrqLockGuard<'_, T> {
        let were_enabled = crate::cpu::interrupts_enabled();
        crate::cpu::disable_interrupts();
        IrqLockGuard { guard: Some(self.inner.lock()), were_enabled }
    }

    /// Takes the lock if it is free right now.
    pub fn try_lock(&self) -> Option<IrqLockGuard<'_, T>> {
        let were_enabled = crate::cpu::interrupts_enabled();
        crate::cpu::disable_interrupts();
        match self.inner.try_lock() {
            Some(g) => Some(IrqLockGuard { guard: Some(g), were_enabled }),
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
        drop(self.guard.take());
        if self.were_enabled {
            crate::cpu::enable_interrupts();
        }
    }
}
