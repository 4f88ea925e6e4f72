//! shmcomm: the seed's shared-memory channels as kernel objects keyed by integers.
//!
//! A channel is a `crates/channels` layout (Simpson four-slot for `SHMCOMM_ASYNC_CH`, the SPSC
//! FIFO for `SHMCOMM_SYNC_CH`) in memory a [`Provider`] hands out for a key: physically
//! contiguous local frames ([`LocalFrames`]), or, in a Quest-V sandbox ([`QuestVWindows`]), the
//! inter-sandbox window the partition configuration gives the key, whose header another kernel
//! may have formatted — that is why connecting goes through `channels::probe` and the crate's
//! attach validation, never through trusted geometry.
//!
//! Each open side is a descriptor in the process's file table ([`File::Shm`]) holding an
//! `Arc<Side>`; dropping the last reference (close, or the process ending) closes that side:
//! the side's state word in the region says "closed", which the peer sees without its view of
//! the data changing (crates/channels' close semantics).
//!
//! Lifetime: a channel leaves the key table when no side is open **and** both sides have been
//! opened at least once. So a value or messages written before the receiver starts stay
//! deliverable (the seed runs `async_send` to completion, then `async_recv`); a key whose
//! peer never connects stays until it does (at most [`SHMCOMM_MAX_CHANNELS`] channels exist:
//! `ENOSPC` beyond). The memory is freed when the last `Arc<Channel>` goes.
//!
//! **The data path** (issue 21): a local channel's region is a run of shared pages
//! (`hal::mm::SharedRun`: contiguous, so the kernel reads it as one slice of words through the
//! direct map, and counted like MAP_SHARED pages, so processes map the very same frames).
//! `shmcomm_map` ([`map`]) maps it read/write into the process that opened a side, and the
//! user library (user/libquest/c/shmcomm_sys.c) runs the four-slot and FIFO protocols there:
//! a packet costs no system call. A sync side enters the kernel only to sleep ([`wait`]: a
//! futex-like wait on the peer's counter word, sleeping only while it still holds the value
//! the caller saw, checked under the channel lock) or to wake a sleeper ([`wake`]), and only
//! when the sleeper's waiter word (crates/channels' `prepare_sleep`/`peer_sleeping`) says so.
//! The whole region is mapped writable by both sides: the header, the two sides' control
//! lines and the slots share pages (a 192-byte header), so read-only mappings of the peer's
//! words would need a new layout version — and would not protect anything the crate's
//! hostile-peer rules do not already cover. What stays in the kernel: creating, keys, the
//! `OpenRequest` checks, `EBUSY` for a second opener, closing (the side's state word, written
//! when the last descriptor goes, however the process ended) and the waits. The kernel never
//! trusts the region: it compares the counter word for a wait, validates the header at every
//! attach, and its own record of which side is closed decides `EPIPE` and end of stream, so
//! a scribbled state word cannot make a side wait forever.
//!
//! The system calls `shmcomm_write`/`shmcomm_read` remain ([`write`], [`read`]): the kernel
//! runs the same crate functions on the region and copies from/to user memory. Programs that
//! call them directly keep working, a channel that cannot be mapped (a Quest-V window: not
//! supported yet) uses them, and so does a process started with `QUEST_SHMCOMM_SYSCALL=1`
//! (tests mix the two paths on one channel; `msg_shm_sys` measures it). The kernel path
//! publishes its waiter words too, so the two paths interoperate. Measured: docs/benchmarks.md
//! (`msg_shm`, `msg_shm_sys`).
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::AtomicU64;

use channels::open::OpenRequest;
use channels::{Error as ChError, FifoConsumer, FifoProducer, FourSlotReader, FourSlotWriter, Kind};
use hal::sync::IrqLock;
use linux_raw_sys::errno::*;
use quest_abi::shm::*;

use crate::process::Process;
use crate::sched::{self, Tid};
use crate::sync::Semaphore;

/// Holds a side's operation lock; released on drop.
struct Turn<'a>(&'a Semaphore);

impl<'a> Turn<'a> {
    fn take(s: &'a Semaphore) -> Turn<'a> {
        s.down();
        Turn(s)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.up();
    }
}

/// Memory holding one channel's region.
pub trait ChannelMemory: Send + Sync {
    /// The region, as words (8-byte aligned; every access is atomic).
    fn words(&self) -> &[AtomicU64];
    /// Whether the peer may be in another kernel (a Quest-V window): then no wake-up comes
    /// from our own wait queue, and blocked sides poll the region instead.
    fn remote(&self) -> bool {
        false
    }
    /// The region as a shared memory object processes may map (the user-level data path), or
    /// `None` when it cannot be mapped (a Quest-V window: not supported yet).
    fn object(&self) -> Option<Arc<crate::shm::ShmObject>> {
        None
    }
}

/// "Where is key K's memory": the only place that knows where channel memory comes from.
pub trait Provider: Sync {
    /// Memory of at least `bytes` bytes for a channel being created under `key`.
    fn create(&self, key: u32, bytes: usize) -> Result<Box<dyn ChannelMemory>, u32>;
    /// Memory for `key` that exists outside this kernel's table (a Quest-V window another
    /// kernel may have formatted), or `None`. Its header is validated before use.
    fn existing(&self, key: u32) -> Option<Box<dyn ChannelMemory>>;
}

/// A local channel's region: contiguous shared pages (the kernel's view through the direct
/// map) and the same pages as a shared memory object (the processes' mappings).
struct LocalRegion {
    run: hal::mm::SharedRun,
    object: Arc<crate::shm::ShmObject>,
}

impl ChannelMemory for LocalRegion {
    fn words(&self) -> &[AtomicU64] {
        self.run.words()
    }
    fn object(&self) -> Option<Arc<crate::shm::ShmObject>> {
        Some(self.object.clone())
    }
}

/// Local physical frames: a new contiguous run of shared pages per channel.
pub struct LocalFrames;

impl Provider for LocalFrames {
    fn create(&self, _key: u32, bytes: usize) -> Result<Box<dyn ChannelMemory>, u32> {
        let frames = bytes.div_ceil(hal::mm::PAGE_SIZE as usize);
        let run = hal::mm::SharedRun::alloc(frames).ok_or(ENOMEM)?;
        let pages = (0..run.frames()).filter_map(|i| run.page(i)).collect();
        let object = crate::shm::ShmObject::from_pages(pages);
        Ok(Box::new(LocalRegion { run, object }))
    }
    fn existing(&self, _key: u32) -> Option<Box<dyn ChannelMemory>> {
        None
    }
}

static PROVIDER: LocalFrames = LocalFrames;

/// A Quest-V channel window: memory the monitor maps into this sandbox and another one.
struct Window(&'static [AtomicU64]);

impl ChannelMemory for Window {
    fn words(&self) -> &[AtomicU64] {
        self.0
    }
    fn remote(&self) -> bool {
        true
    }
}

/// Under the Quest-V monitor: keys the partition configuration gives a channel window live
/// there (shared with the other sandboxes that map it); every other key is local.
pub struct QuestVWindows;

impl QuestVWindows {
    fn window(key: u32) -> Option<&'static [AtomicU64]> {
        let n = hal::questv::sandbox()?.channels;
        (0..n).find(|&i| hal::questv::channel(i).is_some_and(|w| w.key == key)).and_then(hal::questv::channel_words)
    }
}

impl Provider for QuestVWindows {
    fn create(&self, key: u32, bytes: usize) -> Result<Box<dyn ChannelMemory>, u32> {
        match Self::window(key) {
            Some(w) if bytes <= w.len() * 8 => Ok(Box::new(Window(w))),
            Some(_) => Err(EINVAL), // the configured window is smaller than this channel
            None => LocalFrames.create(key, bytes),
        }
    }
    fn existing(&self, key: u32) -> Option<Box<dyn ChannelMemory>> {
        // Only a window another kernel has formatted (a valid header) exists.
        let w = Self::window(key)?;
        channels::probe(w).ok()?;
        Some(Box::new(Window(w)))
    }
}

static QUESTV: QuestVWindows = QuestVWindows;

fn provider() -> &'static dyn Provider {
    if hal::questv::sandbox().is_some() { &QUESTV } else { &PROVIDER }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SideState {
    Never,
    Open,
    Closed,
}

struct Inner {
    writer: SideState,
    reader: SideState,
    /// Tasks blocked in a sync read or write on this channel.
    waiters: Vec<Tid>,
}

pub struct Channel {
    key: u32,
    kind: Kind,
    slot_size: usize,
    slots: usize,
    mem: Box<dyn ChannelMemory>,
    inner: IrqLock<Inner>,
    /// Serialise the data operations of each side (the crate requires one writer and one
    /// reader; descriptors shared by fork or threads take turns). Sleeping locks: a sync
    /// operation may block while holding its side's.
    wlock: Semaphore,
    rlock: Semaphore,
}

static CHANNELS: IrqLock<BTreeMap<u32, Arc<Channel>>> = IrqLock::ranked(BTreeMap::new(), crate::locks::CHANNELS);

/// Largest region of one channel (a bigger `packet_size * buffer_len` is `EINVAL`).
const MAX_CHANNEL_BYTES: usize = 1 << 20;
/// Most bytes all channels together may hold (`ENOMEM` beyond): keys whose peer never
/// connects persist, so a careless or hostile program must not be able to pin much memory.
const MAX_TOTAL_BYTES: usize = 16 << 20;

/// One open side; the last reference dropping closes it.
pub struct Side {
    ch: Arc<Channel>,
    pub writer: bool,
    /// `SHMCOMM_NONBLOCK_CH`: a sync read of an empty channel or write to a full one is
    /// `EAGAIN`.
    nonblock: bool,
}

impl Side {
    pub fn key(&self) -> u32 {
        self.ch.key
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let ch = &self.ch;
        let region = ch.mem.words();
        // The side's state word says "closed": the peer's view of the data is unchanged.
        match (ch.kind, self.writer) {
            (Kind::FourSlot, true) => {
                if let Ok(w) = FourSlotWriter::attach(region) {
                    w.close()
                }
            }
            (Kind::FourSlot, false) => {
                if let Ok(r) = FourSlotReader::attach(region) {
                    r.close()
                }
            }
            (Kind::Fifo, true) => {
                if let Ok(p) = FifoProducer::attach(region) {
                    p.close()
                }
            }
            (_, false) => {
                if let Ok(c) = FifoConsumer::attach(region) {
                    c.close()
                }
            }
        }
        // The key table first, then the channel (the order `open` uses), so a connect cannot
        // slip in between "both sides closed" and the key leaving the table.
        let waiters = {
            let mut t = CHANNELS.lock();
            let mut i = ch.inner.lock();
            if self.writer {
                i.writer = SideState::Closed;
            } else {
                i.reader = SideState::Closed;
            }
            let gone = i.writer == SideState::Closed && i.reader == SideState::Closed;
            let w = core::mem::take(&mut i.waiters);
            drop(i);
            if gone && t.get(&ch.key).is_some_and(|c| Arc::ptr_eq(c, ch)) {
                t.remove(&ch.key); // not the last reference: `self.ch` still holds it
            }
            w
        };
        for t in waiters {
            let _ = sched::wake(t);
        }
    }
}

fn map_err(e: ChError) -> u32 {
    match e {
        ChError::WrongLength { .. } | ChError::TooLong { .. } | ChError::BufferTooSmall { .. } => EINVAL,
        ChError::Closed => EPIPE,
        ChError::Full | ChError::Empty => EAGAIN,
        _ => EIO,
    }
}

/// shmcomm_open_send / shmcomm_open_receive: returns the new side.
pub fn open(key: u32, flags: u32, packet: u64, buffer_len: i64, writer: bool) -> Result<Arc<Side>, u32> {
    let req = OpenRequest::parse(flags, packet, buffer_len).map_err(|_| EINVAL)?;
    let packet = req.packet;
    let mut table = CHANNELS.lock();
    let ch = if req.create {
        let kind = req.kind.ok_or(EINVAL)?;
        if table.contains_key(&key) || provider().existing(key).is_some() {
            return Err(EEXIST);
        }
        if table.len() >= SHMCOMM_MAX_CHANNELS as usize {
            return Err(ENOSPC);
        }
        let slots = req.slots;
        let bytes = req.region_bytes(MAX_CHANNEL_BYTES).map_err(|_| EINVAL)?;
        let used: usize = table.values().map(|c| c.mem.words().len() * 8).sum();
        if used + bytes > MAX_TOTAL_BYTES {
            return Err(ENOMEM);
        }
        let mem = provider().create(key, bytes)?;
        req.format(mem.words()).map_err(|_| EINVAL)?;
        let ch = Arc::new(Channel {
            key,
            kind,
            slot_size: packet,
            slots,
            mem,
            inner: IrqLock::ranked(Inner { writer: SideState::Never, reader: SideState::Never, waiters: Vec::new() }, crate::locks::WAIT_QUEUE),
            wlock: Semaphore::new(1),
            rlock: Semaphore::new(1),
        });
        table.insert(key, ch.clone());
        ch
    } else {
        let ch = match table.get(&key) {
            Some(c) => c.clone(),
            None => {
                // A channel made elsewhere (a Quest-V window): validate its header before use.
                let mem = provider().existing(key).ok_or(ENOENT)?;
                let g = channels::probe(mem.words()).map_err(|_| EINVAL)?;
                let ch = Arc::new(Channel {
                    key,
                    kind: g.kind,
                    slot_size: g.slot_size,
                    slots: g.slot_count,
                    mem,
                    inner: IrqLock::ranked(Inner { writer: SideState::Never, reader: SideState::Never, waiters: Vec::new() }, crate::locks::WAIT_QUEUE),
                    wlock: Semaphore::new(1),
                    rlock: Semaphore::new(1),
                });
                table.insert(key, ch.clone());
                ch
            }
        };
        let g = channels::Geometry { kind: ch.kind, slot_size: ch.slot_size, slot_count: ch.slots, region_words: ch.mem.words().len() };
        req.accepts(&g).map_err(|_| EINVAL)?;
        ch
    };
    {
        let mut i = ch.inner.lock();
        let s = if writer { &mut i.writer } else { &mut i.reader };
        if *s == SideState::Open {
            return Err(EBUSY);
        }
        *s = SideState::Open;
    }
    drop(table);
    // Attach once now: validates the header and publishes "attached" in the region.
    let region = ch.mem.words();
    let ok = match (ch.kind, writer) {
        (Kind::FourSlot, true) => FourSlotWriter::attach(region).map(drop),
        (Kind::FourSlot, false) => FourSlotReader::attach(region).map(drop),
        (Kind::Fifo, true) => FifoProducer::attach(region).map(drop),
        (_, false) => FifoConsumer::attach(region).map(drop),
    };
    let side = Arc::new(Side { ch, writer, nonblock: req.nonblock });
    ok.map_err(|_| EINVAL)?; // dropping `side` closes it again
    Ok(side)
}

/// The calling task is being killed: no more waiting.
fn terminal() -> bool {
    sched::interrupted()
}

/// Queues the caller on the channel, re-checks `ready` under the lock, and blocks unless it
/// holds (the scheduler keeps a wake that arrives before the block). With a peer in another
/// kernel (a Quest-V window), sleeps 1 ms and returns for the caller to re-check instead.
fn wait_until(ch: &Channel, ready: impl Fn(&Inner) -> bool) {
    if ch.mem.remote() {
        if !ready(&ch.inner.lock()) && !terminal() {
            let _ = sched::sleep_ns(1_000_000);
        }
        return;
    }
    let me = sched::current();
    {
        let mut i = ch.inner.lock();
        // A killed task does not go to sleep (and its block would return at once anyway).
        if ready(&i) || terminal() {
            return;
        }
        if !i.waiters.contains(&me) {
            i.waiters.push(me);
        }
    }
    let _ = sched::block_current(); // the caller re-checks, `terminal()` included
}

/// Wakes every task waiting on the channel, one at a time outside the lock. The list keeps
/// its capacity (no allocation per sleep and wake on the data path); tasks that queue again
/// meanwhile stay queued for the next wake.
fn wake_peer(ch: &Channel) {
    let n = ch.inner.lock().waiters.len();
    for _ in 0..n {
        let Some(t) = ch.inner.lock().waiters.pop() else { break };
        let _ = sched::wake(t);
    }
}

/// shmcomm_write: `len` bytes from user address `buf`.
pub fn write(p: &Process, s: &Side, buf: crate::syscall::UserSlice) -> Result<u64, u32> {
    let len = buf.len();
    if !s.writer {
        return Err(EBADF);
    }
    let ch = &s.ch;
    // Packets are never empty: a sync read returning 0 means "sender closed, all read".
    if len == 0 || len > ch.slot_size as u64 || (ch.kind == Kind::FourSlot && len != ch.slot_size as u64) {
        return Err(EINVAL);
    }
    let data = buf.read_to_vec(p)?;
    let region = ch.mem.words();
    let _turn = Turn::take(&ch.wlock);
    if terminal() {
        return Err(EINTR);
    }
    match ch.kind {
        Kind::FourSlot => {
            let mut w = FourSlotWriter::attach(region).map_err(map_err)?;
            w.write(&data).map_err(map_err)?;
            Ok(len)
        }
        _ => loop {
            let r = FifoProducer::attach(region).map_err(map_err)?.try_push(&data);
            match r {
                Ok(()) => {
                    wake_peer(ch);
                    return Ok(len);
                }
                Err(ChError::Full) if s.nonblock => return Err(EAGAIN),
                Err(ChError::Full) => {
                    // Publish "sleeping" for a peer on the user-level path (it wakes us only then).
                    let mut pr = FifoProducer::attach(region).map_err(map_err)?;
                    if pr.prepare_sleep().is_none() {
                        continue;
                    }
                    wait_until(ch, |i| {
                        i.reader == SideState::Closed || FifoProducer::attach(region).is_ok_and(|mut p| !p.is_full())
                    });
                    pr.end_sleep();
                    if terminal() {
                        return Err(EINTR);
                    }
                }
                Err(e) => return Err(map_err(e)),
            }
        },
    }
}

/// shmcomm_read: into user address `buf` of `len` bytes; returns the bytes read.
pub fn read(p: &Process, s: &Side, buf: crate::syscall::UserSliceMut) -> Result<u64, u32> {
    let len = buf.len();
    if s.writer {
        return Err(EBADF);
    }
    let ch = &s.ch;
    if len < ch.slot_size as u64 {
        return Err(EINVAL);
    }
    let region = ch.mem.words();
    let mut data = vec![0u8; ch.slot_size];
    let _turn = Turn::take(&ch.rlock);
    if terminal() {
        return Err(EINTR);
    }
    let n = match ch.kind {
        Kind::FourSlot => {
            let mut r = FourSlotReader::attach(region).map_err(map_err)?;
            match r.read(&mut data).map_err(map_err)? {
                channels::ReadStatus::Empty => return Err(EAGAIN),
                _ => ch.slot_size,
            }
        }
        _ => loop {
            let r = FifoConsumer::attach(region).map_err(map_err)?.try_pop(&mut data);
            match r {
                Ok(n) => {
                    wake_peer(ch);
                    break n;
                }
                Err(ChError::Closed) => return Ok(0), // sender gone, everything drained
                Err(ChError::Empty) if s.nonblock => return Err(EAGAIN),
                Err(ChError::Empty) => {
                    let mut co = FifoConsumer::attach(region).map_err(map_err)?;
                    if co.prepare_sleep().is_none() {
                        continue;
                    }
                    wait_until(ch, |i| {
                        i.writer == SideState::Closed || FifoConsumer::attach(region).is_ok_and(|mut c| !c.is_empty())
                    });
                    co.end_sleep();
                    if terminal() {
                        return Err(EINTR);
                    }
                }
                Err(e) => return Err(map_err(e)),
            }
        },
    };
    buf.write(p, &data[..n])?;
    Ok(n as u64)
}

// ---- The user-level data path -------------------------------------------------------------

/// shmcomm_map: maps the channel's region into `p` (shared, read/write) and returns its address
/// and length in bytes. The process then runs the channel protocol itself (user/libquest/c/
/// shmcomm_sys.c) and enters the kernel only through [`wait`] and [`wake`]. `EOPNOTSUPP` for a
/// Quest-V window (those keep the system-call path).
pub fn map(p: &Process, s: &Side) -> Result<(u64, u64), u32> {
    let obj = s.ch.mem.object().ok_or(EOPNOTSUPP)?;
    let len = obj.len();
    use linux_raw_sys::general::{MAP_SHARED, PROT_READ, PROT_WRITE};
    let addr = crate::memory::mmap(p, 0, len, u64::from(PROT_READ | PROT_WRITE), MAP_SHARED, crate::memory::Source::Shared(obj, 0))?;
    Ok((addr, len))
}

/// shmcomm_wait: a sync side of the user-level path sleeps until the peer's counter word (the
/// consumer waits on `writer_pos`, the producer on `reader_pos`) no longer holds `expected`
/// — checked under the channel's lock, which [`wake`] takes too, so a wake after the peer moved
/// its counter is never lost — or until the peer closes. Returns 0 (look again), `EPIPE` (the
/// peer side is closed: the kernel's own record, not the region's, so a scribbled state word
/// cannot make anyone wait forever), `EINTR` (a signal or a kill), `EINVAL` (a four-slot
/// channel: nothing waits there). The region's contents are only compared, never trusted.
pub fn wait(s: &Side, expected: u64) -> Result<u64, u32> {
    let ch = &s.ch;
    if ch.kind != Kind::Fifo {
        return Err(EINVAL);
    }
    let word = &ch.mem.words()[if s.writer { channels::layout::W_READER_POS } else { channels::layout::W_WRITER_POS }];
    let peer_closed = |i: &Inner| if s.writer { i.reader == SideState::Closed } else { i.writer == SideState::Closed };
    let me = sched::current();
    {
        let mut i = ch.inner.lock();
        if peer_closed(&i) {
            return Err(EPIPE);
        }
        if terminal() {
            return Err(EINTR);
        }
        if word.load(core::sync::atomic::Ordering::SeqCst) != expected {
            return Ok(0);
        }
        if !i.waiters.contains(&me) {
            i.waiters.push(me);
        }
    }
    match sched::block_current() {
        sched::Wake::Woken | sched::Wake::TimedOut => Ok(0),
        sched::Wake::Interrupted => {
            ch.inner.lock().waiters.retain(|&t| t != me);
            Err(EINTR)
        }
    }
}

/// shmcomm_wake: wakes the tasks sleeping on the channel (the user-level path calls it after a
/// push or pop when the peer's waiter word is set).
pub fn wake(s: &Side) -> Result<u64, u32> {
    wake_peer(&s.ch);
    Ok(0)
}
