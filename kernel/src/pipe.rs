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
    capacity: usize,
    /// A tuned pipe's endpoint VCPUs (kernel/src/tpipe.rs).
    pub tuned: Option<Tuned>,
}

/// The endpoint VCPUs of a tuned pipe: the first task that writes is bound to `writer_vcpu`,
/// the first that reads to `reader_vcpu` (0 = nobody yet). Destroyed with the pipe.
pub struct Tuned {
    pub writer_vcpu: u32,
    pub reader_vcpu: u32,
    writer_task: core::sync::atomic::AtomicU32,
    reader_task: core::sync::atomic::AtomicU32,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if let Some(t) = &self.tuned {
            // Tasks still bound go back to their PCPU's best-effort VCPU.
            let _ = crate::vcpu::destroy(t.writer_vcpu, true);
            let _ = crate::vcpu::destroy(t.reader_vcpu, true);
        }
    }
}

struct Inner {
    buf: VecDeque<u8>,
    waiters: Vec<Tid>,
}

/// One end of a pipe; dropping the last reference closes it.
pub struct End {
    pub pipe: Arc<Pipe>,
    pub write: bool,
    /// `O_NONBLOCK` (pipe2, F_SETFL): reads and writes that would wait fail with EAGAIN.
    pub nonblock: core::sync::atomic::AtomicBool,
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
    with(CAPACITY, None)
}

/// A tuned pipe of `capacity` bytes whose ends bind their first users to these VCPUs.
pub fn new_tuned(capacity: usize, writer_vcpu: u32, reader_vcpu: u32) -> (Arc<End>, Arc<End>) {
    let t = Tuned {
        writer_vcpu,
        reader_vcpu,
        writer_task: core::sync::atomic::AtomicU32::new(0),
        reader_task: core::sync::atomic::AtomicU32::new(0),
    };
    with(capacity, Some(t))
}

fn with(capacity: usize, tuned: Option<Tuned>) -> (Arc<End>, Arc<End>) {
    let pipe = Arc::new(Pipe {
        inner: IrqLock::ranked(Inner { buf: VecDeque::new(), waiters: Vec::new() }, crate::locks::WAIT_QUEUE),
        readers: AtomicUsize::new(1),
        writers: AtomicUsize::new(1),
        capacity,
        tuned,
    });
    let nb = || core::sync::atomic::AtomicBool::new(false);
    (Arc::new(End { pipe: pipe.clone(), write: false, nonblock: nb() }), Arc::new(End { pipe, write: true, nonblock: nb() }))
}

impl Pipe {
    /// Wakes every waiter. They are taken off in batches kept on the stack, so the list keeps
    /// its allocation (taking the whole `Vec` freed it and the next sleeper allocated a new one:
    /// a heap round trip per wait).
    fn wake_all(&self) {
        loop {
            let mut batch = [0 as Tid; 8];
            let n = {
                let mut i = self.inner.lock();
                let n = i.waiters.len().min(batch.len());
                for (slot, t) in batch.iter_mut().zip(i.waiters.drain(..n)) {
                    *slot = t;
                }
                n
            };
            for &t in &batch[..n] {
                let _ = sched::wake(t);
            }
            if n < batch.len() {
                break;
            }
        }
        crate::poll::wake_all();
    }

    /// poll(2) events of an end: (`write` end) POLLOUT while there is room, POLLERR once no
    /// reader is left; (read end) POLLIN while there are bytes, POLLHUP once no writer is left.
    pub fn poll(&self, write: bool) -> u16 {
        use linux_raw_sys::general::{POLLERR, POLLHUP, POLLIN, POLLOUT};
        let len = self.inner.lock().buf.len();
        if write {
            if self.readers.load(Ordering::Acquire) == 0 {
                POLLERR as u16
            } else if len < self.capacity {
                POLLOUT as u16
            } else {
                0
            }
        } else {
            let mut ev = if len > 0 { POLLIN as u16 } else { 0 };
            if self.writers.load(Ordering::Acquire) == 0 {
                ev |= POLLHUP as u16;
            }
            ev
        }
    }

    /// Tuned pipe: binds the calling task to the side's VCPU if it is the first to use it.
    fn bind_first(&self, write: bool) {
        let Some(t) = &self.tuned else { return };
        let (task, vcpu) = if write { (&t.writer_task, t.writer_vcpu) } else { (&t.reader_task, t.reader_vcpu) };
        if task.compare_exchange(0, sched::current(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            let _ = crate::vcpu::bind_current(vcpu);
        }
    }

    /// Reads up to `max` bytes; blocks while empty and a writer exists. Empty result = EOF;
    /// `None`: interrupted (a kill or a signal) before anything arrived.
    pub fn read(&self, max: usize) -> Option<Vec<u8>> {
        self.read_with(
            |b| {
                let mut v = alloc::vec![0; max.min(b.len())];
                take_front(b, &mut v);
                v
            },
            Vec::new,
        )
    }

    /// [`read`](Self::read) into `out` (up to its length): how many bytes (0 = EOF).
    pub fn read_into(&self, out: &mut [u8]) -> Option<usize> {
        self.read_with(|b| take_front(b, out), || 0)
    }

    /// The blocking read: `take` takes what it wants from the non-empty ring; `eof()` is the
    /// result once no writer is left.
    fn read_with<R>(&self, mut take: impl FnMut(&mut VecDeque<u8>) -> R, eof: impl Fn() -> R) -> Option<R> {
        self.bind_first(false);
        let me = sched::current();
        loop {
            {
                let mut i = self.inner.lock();
                if !i.buf.is_empty() {
                    let r = take(&mut i.buf);
                    drop(i);
                    self.wake_all();
                    return Some(r);
                }
                if self.writers.load(Ordering::Acquire) == 0 {
                    return Some(eof());
                }
                if !i.waiters.contains(&me) {
                    i.waiters.push(me);
                }
            }
            if sched::block_current() == sched::Wake::Interrupted {
                self.inner.lock().waiters.retain(|&t| t != me);
                return None;
            }
        }
    }

    /// [`read_into`](Self::read_into) without waiting: `None` while empty and a writer exists
    /// (EAGAIN).
    pub fn read_now_into(&self, out: &mut [u8]) -> Option<usize> {
        self.bind_first(false);
        let mut i = self.inner.lock();
        if i.buf.is_empty() {
            return (self.writers.load(Ordering::Acquire) == 0).then_some(0);
        }
        let n = take_front(&mut i.buf, out);
        drop(i);
        self.wake_all();
        Some(n)
    }

    /// [`write`](Self::write) without waiting: what fits now; `Ok(0)` (EAGAIN) when nothing
    /// does, or when `data` is at most `PIPE_BUF` (4096) bytes and does not fit whole (such
    /// writes are atomic, as POSIX requires).
    pub fn write_now(&self, data: &[u8]) -> Result<usize, WriteError> {
        self.bind_first(true);
        let mut i = self.inner.lock();
        if self.readers.load(Ordering::Acquire) == 0 {
            return Err(WriteError::Broken);
        }
        let room = self.capacity - i.buf.len();
        if room == 0 || (data.len() <= 4096 && room < data.len()) {
            return Ok(0);
        }
        let n = room.min(data.len());
        i.buf.extend(&data[..n]);
        drop(i);
        self.wake_all();
        Ok(n)
    }

    /// Writes all of `data`, blocking while full; `Err(Broken)` once no reader is left (EPIPE),
    /// `Err(Interrupted)` if a kill or signal came before anything was written (after that, the
    /// count written so far).
    pub fn write(&self, data: &[u8]) -> Result<usize, WriteError> {
        self.bind_first(true);
        let me = sched::current();
        let mut done = 0;
        while done < data.len() {
            {
                let mut i = self.inner.lock();
                if self.readers.load(Ordering::Acquire) == 0 {
                    return if done > 0 { Ok(done) } else { Err(WriteError::Broken) };
                }
                let room = self.capacity - i.buf.len();
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
            if sched::block_current() == sched::Wake::Interrupted {
                self.inner.lock().waiters.retain(|&t| t != me);
                return if done > 0 { Ok(done) } else { Err(WriteError::Interrupted) };
            }
        }
        Ok(done)
    }
}

/// Why a pipe write wrote nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteError {
    Broken,
    Interrupted,
}

/// Moves the first bytes of `buf` (as many as `out` holds) to `out`; returns how many: copied
/// from the ring's two slices at once (collecting a `drain` copies byte by byte: 30 % of a
/// 64-byte message's kernel instructions).
fn take_front(buf: &mut VecDeque<u8>, out: &mut [u8]) -> usize {
    let n = out.len().min(buf.len());
    let (a, b) = buf.as_slices();
    let first = n.min(a.len());
    out[..first].copy_from_slice(&a[..first]);
    out[first..n].copy_from_slice(&b[..n - first]);
    buf.drain(..n);
    n
}
