//! Pipes (pipe2): a 64 KiB ring shared by a read end and a write end. Reads block while it is
//! empty and a writer exists (end of file after the last writer closes); writes block while it
//! is full and a reader exists (EPIPE after the last reader closes). An end counts as open while
//! any descriptor in any process refers to it (descriptors hold `Arc<End>`, copied by fork and
//! dup).
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use hal::sync::IrqLock;

use crate::sched::{self, Tid};

const CAPACITY: usize = 64 * 1024;

pub struct Pipe {
    inner: IrqLock<Inner>,
    readers: AtomicUsize,
    writers: AtomicUsize,
}

struct Inner {
    buf: VecDeque<u8>,
    waiters: Vec<Tid>,
}

/// One end of a pipe; dropping the last reference closes it.
pub struct End {
    pub pipe: Arc<Pipe>,
    pub write: bool,
}

impl Drop for End {
    fn drop(&mut self) {
        let c = if self.write { &self.pipe.writers } else { &self.pipe.readers };
        c.fetch_sub(1, Ordering::AcqRel);
        self.pipe.wake_all();
    }
}

/// A new pipe: (read end, write end).
pub fn new() -> (Arc<End>, Arc<End>) {
    let pipe = Arc::new(Pipe {
        inner: IrqLock::new(Inner { buf: VecDeque::new(), waiters: Vec::new() }),
        readers: AtomicUsize::new(1),
        writers: AtomicUsize::new(1),
    });
    (Arc::new(End { pipe: pipe.clone(), write: false }), Arc::new(End { pipe, write: true }))
}

impl Pipe {
    fn wake_all(&self) {
        let w = core::mem::take(&mut self.inner.lock().waiters);
        for t in w {
            let _ = sched::wake(t);
        }
    }

    /// Reads up to `max` bytes; blocks while empty and a writer exists. Empty result = EOF.
    pub fn read(&self, max: usize) -> Vec<u8> {
        let me = sched::current();
        loop {
            {
                let mut i = self.inner.lock();
                if !i.buf.is_empty() {
                    let n = max.min(i.buf.len());
                    let out: Vec<u8> = i.buf.drain(..n).collect();
                    drop(i);
                    self.wake_all();
                    return out;
                }
                if self.writers.load(Ordering::Acquire) == 0 {
                    return Vec::new();
                }
                if !i.waiters.contains(&me) {
                    i.waiters.push(me);
                }
            }
            sched::block_current();
            if crate::process::current().is_some_and(|p| p.terminal.load(Ordering::Relaxed)) {
                return Vec::new();
            }
        }
    }

    /// Writes all of `data`, blocking while full; `Err(())` once no reader is left (EPIPE).
    pub fn write(&self, data: &[u8]) -> Result<usize, ()> {
        let me = sched::current();
        let mut done = 0;
        while done < data.len() {
            {
                let mut i = self.inner.lock();
                if self.readers.load(Ordering::Acquire) == 0 {
                    return if done > 0 { Ok(done) } else { Err(()) };
                }
                let room = CAPACITY - i.buf.len();
                if room > 0 {
                    let n = room.min(data.len() - done);
                    i.buf.extend(&data[done..done + n]);
                    done += n;
                    drop(i);
                    self.wake_all();
                    continue;
                }
                if !i.waiters.contains(&me) {
                    i.waiters.push(me);
                }
            }
            sched::block_current();
            if crate::process::current().is_some_and(|p| p.terminal.load(Ordering::Relaxed)) {
                return Ok(done);
            }
        }
        Ok(done)
    }
}
