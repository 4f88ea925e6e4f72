//! shmcomm for Linux programs in a Quest-V Linux sandbox.
//!
//! The seed's `<shmcomm_user.h>` API for ordinary Linux C programs (and Rust ones, through
//! [`Chan`]): `user/libquest/c/shmcomm.c` (the marshal/unmarshal layer, the same file Quest's
//! programs use) calls the raw calls of `<shmcomm_internal.h>`, which this static library
//! implements for Linux:
//!
//! * **Which memory.** A key names one of the channel windows the partition configuration
//!   gives the sandbox. The monitor lists them in CPUID leaves (`quest_abi::questv`:
//!   `LEAF_SIGNATURE`, `LEAF_PLATFORM`, `LEAF_CHANNEL`), which user mode can execute (each one
//!   an exit, at open only). Linux sees each window as a *reserved* range of its e820 map.
//! * **How it is mapped.** `mmap` of `/dev/mem` at the window's address, `MAP_SHARED`, opened
//!   without `O_SYNC` so the mapping is write-back cached like Quest's own mapping of the same
//!   memory (mixed cache types on one page are not coherent on real hardware). The stock kernel
//!   allows it: `STRICT_DEVMEM` refuses only RAM and busy ranges, and a reserved range is
//!   neither. The descriptor a program gets is that `/dev/mem` file descriptor, as the seed
//!   says ("in Linux, the program uses a file descriptor").
//!   Why not a kernel module: `/dev/mem` works with Debian's unmodified kernel and needs no
//!   build against its headers; the price is that a sync side cannot sleep on a wait queue and
//!   polls instead (below), and that the program needs root (`CAP_SYS_RAWIO`).
//! * **The protocol.** `crates/channels` — the same loom-checked four-slot and FIFO code the
//!   Quest kernel runs on its side of the window — on the mapped words as `&[AtomicU64]`. The
//!   peer is another kernel and is not trusted: the crate validates the header at attach,
//!   masks every index and clamps every length, so a scribbled window gives an error
//!   (`EINVAL`/`EIO`), never a fault or a hang.
//! * **Blocking.** A sync read of an empty channel or a write to a full one sleeps
//!   [`POLL_INTERVAL`] and tries again (`nanosleep`: the core is free meanwhile) until the peer
//!   makes room, data arrives or the peer closes. Quest's side polls the same way (1 ms), since
//!   no wake-up crosses sandboxes without an exit. With `SHMCOMM_NONBLOCK_CH` it fails with
//!   `EAGAIN` instead (Boomerang's periodic stages).
//! * **A process that dies holding a side** cannot close it. Each open side is registered by an
//!   `flock` on `/run/shmcomm/<key>.<send|recv>`, held while it is open (a second Linux process
//!   opening the same side gets `EBUSY`); qshd calls [`shmcomm_janitor_sweep`] every 50 ms,
//!   which closes in the window every side whose lock nobody holds but that is still attached
//!   ([`reap`]), so the Quest peer sees end of file or `EPIPE` instead of waiting forever.
//! * **Boomerang stages** (`<boomerang.h>`): [`boomerang_stage`] gives the calling thread
//!   `SCHED_DEADLINE` (runtime C, deadline = period = T) from `channels::boomerang::plan`.
//! * **Errors** are Quest's (`<shmcomm_user.h>`; the open checks are Quest's own function,
//!   `channels::open::OpenRequest`): `ENODEV` not under Quest-V; `EBUSY` the side is open in
//!   another Linux process; `ENOENT` no
//!   window for the key (connect: or nobody formatted it yet); `EEXIST` create on a window that
//!   already holds a channel; `EINVAL` bad flags or sizes, a channel bigger than its window, or
//!   a size or type different from the channel's; `EBADF`; `EPIPE` sync write to a full
//!   channel whose reader closed; `EAGAIN` async read before the first write. Only configured windows exist here:
//!   channels between two Linux processes are not supported (use the kernel's own IPC).
//!
//! Every `unsafe` is in the C-facing functions at the bottom (raw pointers from C, `mmap`,
//! `errno`); the channel logic in [`Chan`] is safe and host-tested on ordinary memory.
use std::collections::HashMap;
use std::ffi::{c_int, c_long, c_uint, c_ulong, c_void};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use channels::open::OpenRequest;
use channels::{Error as ChError, FifoConsumer, FifoProducer, FourSlotReader, FourSlotWriter, Kind, ReadStatus};
use quest_abi::questv as abi;
use quest_abi::{BoomerangPlan, BoomerangQos};

/// How long a blocked sync side sleeps between looks at the window.
pub const POLL_INTERVAL: Duration = Duration::from_micros(200);

/// errno values (Linux's).
pub const ENOENT: i32 = libc::ENOENT;
pub const EBADF: i32 = libc::EBADF;
pub const EAGAIN: i32 = libc::EAGAIN;
pub const EEXIST: i32 = libc::EEXIST;
pub const EINVAL: i32 = libc::EINVAL;
pub const EPIPE: i32 = libc::EPIPE;
pub const EIO: i32 = libc::EIO;
pub const ENODEV: i32 = libc::ENODEV;

/// A channel window as the monitor describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub key: u32,
    /// Bytes.
    pub size: u64,
    /// Guest-physical address.
    pub gpa: u64,
}

/// Decodes a `LEAF_CHANNEL` answer (eax, ebx, ecx, edx).
pub fn decode_window(r: [u32; 4]) -> Window {
    Window { key: r[0], size: u64::from(r[1]), gpa: u64::from(r[2] & !0xfff) | (u64::from(r[3]) << 32) }
}

/// The windows `cpuid` (a CPUID executor) reports, or `ENODEV` when the signature is not
/// Quest-V's.
pub fn windows_from(cpuid: impl Fn(u32, u32) -> [u32; 4]) -> Result<Vec<Window>, i32> {
    let s = cpuid(abi::LEAF_SIGNATURE, 0);
    if abi::signature_of(s[1], s[2], s[3]) != abi::SIGNATURE || s[0] < abi::LEAF_CHANNEL {
        return Err(ENODEV);
    }
    let n = cpuid(abi::LEAF_PLATFORM, 0)[0].min(256);
    Ok((0..n).map(|i| decode_window(cpuid(abi::LEAF_CHANNEL, i))).collect())
}

fn map_err(e: ChError) -> i32 {
    match e {
        ChError::WrongLength { .. } | ChError::TooLong { .. } | ChError::BufferTooSmall { .. } => EINVAL,
        ChError::Closed => EPIPE,
        ChError::Full | ChError::Empty => EAGAIN,
        _ => EIO,
    }
}

enum Side<'a> {
    AsyncW(FourSlotWriter<'a>),
    AsyncR(FourSlotReader<'a>),
    SyncW(FifoProducer<'a>),
    SyncR(FifoConsumer<'a>),
}

/// One open side of a channel in a region.
pub struct Chan<'a> {
    key: u32,
    slot_size: usize,
    side: Side<'a>,
    /// `SHMCOMM_NONBLOCK_CH`: [`Chan::write`]/[`Chan::read`] fail with `EAGAIN` instead of
    /// waiting.
    nonblock: bool,
}

/// What a non-blocking attempt did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Done: bytes written or read (0 on a read: the sync sender closed and all is read).
    Done(usize),
    /// A sync channel is full (write) or empty (read): try again later.
    WouldBlock,
}

impl<'a> Chan<'a> {
    /// Opens the sending (`send`) or receiving side of channel `key` in `region`, as
    /// `shmcomm_open_send`/`shmcomm_open_receive` with these flags and sizes.
    pub fn open(region: &'a [AtomicU64], key: u32, send: bool, flags: u32, packet: u64, buffer_len: i64) -> Result<Chan<'a>, i32> {
        // The same checks as Quest's kernel (crates/channels/src/open.rs).
        let req = OpenRequest::parse(flags, packet, buffer_len).map_err(|_| EINVAL)?;
        if req.create {
            if channels::probe(region).is_ok() {
                return Err(EEXIST);
            }
            // A channel bigger than the configured window is EINVAL.
            req.region_bytes(region.len() * 8).map_err(|_| EINVAL)?;
            req.format(region).map_err(|_| EINVAL)?;
        } else {
            // Only a window someone formatted (a valid header) holds a channel.
            let g = channels::probe(region).map_err(|_| ENOENT)?;
            req.accepts(&g).map_err(|_| EINVAL)?;
        }
        let g = channels::probe(region).map_err(|_| EINVAL)?;
        let side = match (g.kind, send) {
            (Kind::FourSlot, true) => FourSlotWriter::attach(region).map(Side::AsyncW),
            (Kind::FourSlot, false) => FourSlotReader::attach(region).map(Side::AsyncR),
            (Kind::Fifo, true) => FifoProducer::attach(region).map(Side::SyncW),
            (_, false) => FifoConsumer::attach(region).map(Side::SyncR),
        }
        .map_err(|_| EINVAL)?;
        Ok(Chan { key, slot_size: g.slot_size, side, nonblock: req.nonblock })
    }

    pub fn key(&self) -> u32 {
        self.key
    }

    pub fn packet_size(&self) -> usize {
        self.slot_size
    }

    /// One try at sending `data` (one packet).
    pub fn try_write(&mut self, data: &[u8]) -> Result<Attempt, i32> {
        if data.is_empty() || data.len() > self.slot_size {
            return Err(EINVAL); // packets are never empty: a 0-byte read means "closed"
        }
        match &mut self.side {
            Side::AsyncW(w) => {
                if data.len() != self.slot_size {
                    return Err(EINVAL);
                }
                w.write(data).map_err(map_err)?;
                Ok(Attempt::Done(data.len()))
            }
            Side::SyncW(p) => match p.try_push(data) {
                Ok(()) => Ok(Attempt::Done(data.len())),
                Err(ChError::Full) => Ok(Attempt::WouldBlock),
                Err(e) => Err(map_err(e)),
            },
            _ => Err(EBADF),
        }
    }

    /// One try at receiving a packet into `buf` (at least the packet size).
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<Attempt, i32> {
        if buf.len() < self.slot_size {
            return Err(EINVAL);
        }
        let buf = &mut buf[..self.slot_size];
        match &mut self.side {
            Side::AsyncR(r) => match r.read(buf).map_err(map_err)? {
                ReadStatus::Empty => Err(EAGAIN),
                _ => Ok(Attempt::Done(self.slot_size)),
            },
            Side::SyncR(c) => match c.try_pop(buf) {
                Ok(n) => Ok(Attempt::Done(n)),
                Err(ChError::Closed) => Ok(Attempt::Done(0)), // sender gone, everything drained
                Err(ChError::Empty) => Ok(Attempt::WouldBlock),
                Err(e) => Err(map_err(e)),
            },
            _ => Err(EBADF),
        }
    }

    /// Sends, sleeping with `pause` while a sync channel is full.
    pub fn write(&mut self, data: &[u8], pause: impl Fn()) -> Result<usize, i32> {
        loop {
            match self.try_write(data)? {
                Attempt::Done(n) => return Ok(n),
                Attempt::WouldBlock if self.nonblock => return Err(EAGAIN),
                Attempt::WouldBlock => pause(),
            }
        }
    }

    /// Receives, sleeping with `pause` while a sync channel is empty.
    pub fn read(&mut self, buf: &mut [u8], pause: impl Fn()) -> Result<usize, i32> {
        loop {
            match self.try_read(buf)? {
                Attempt::Done(n) => return Ok(n),
                Attempt::WouldBlock if self.nonblock => return Err(EAGAIN),
                Attempt::WouldBlock => pause(),
            }
        }
    }

    /// Closes this side: its state word says "closed"; the peer's view of the data stays.
    pub fn close(self) {
        match self.side {
            Side::AsyncW(w) => w.close(),
            Side::AsyncR(r) => r.close(),
            Side::SyncW(p) => p.close(),
            Side::SyncR(c) => c.close(),
        }
    }
}

// ---- The C-facing raw calls (`<shmcomm_internal.h>`) ---------------------------------------

/// An open descriptor: the side and its `/dev/mem` mapping.
struct Open {
    chan: Chan<'static>,
    map: usize,
    len: usize,
    /// The side's lock file (see [`lock_side`]), held while the side is open.
    lock: c_int,
}

static OPEN: Mutex<Option<HashMap<c_int, Open>>> = Mutex::new(None);

fn set_errno(e: i32) -> c_long {
    // SAFETY: musl's __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
    -1
}

fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU and has no side effects (in a sandbox the
    // monitor answers it).
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, sub) };
    [r.eax, r.ebx, r.ecx, r.edx]
}

fn open_side(send: bool, key: u32, flags: u32, packet: u64, buffer_len: i64) -> Result<c_int, i32> {
    let w = windows_from(cpuid)?.into_iter().find(|w| w.key == key).ok_or(ENOENT)?;
    let lock = lock_side(key, send)?;
    let (fd, region) = match map_window(&w) {
        Ok(x) => x,
        Err(e) => {
            // SAFETY: our lock file's descriptor.
            unsafe { libc::close(lock) };
            return Err(e);
        }
    };
    match Chan::open(region, key, send, flags, packet, buffer_len) {
        Ok(chan) => {
            let (map, len) = (region.as_ptr() as usize, region.len() * 8);
            OPEN.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).insert(fd, Open { chan, map, len, lock });
            Ok(fd)
        }
        Err(e) => {
            // SAFETY: our mapping and descriptors; nothing refers to them any more.
            unsafe {
                libc::munmap(region.as_ptr() as *mut c_void, region.len() * 8);
                libc::close(fd);
                libc::close(lock);
            }
            Err(e)
        }
    }
}

/// Maps window `w` of `/dev/mem` (write-back, shared): the descriptor and the words.
fn map_window(w: &Window) -> Result<(c_int, &'static [AtomicU64]), i32> {
    if w.size == 0 || w.size % 4096 != 0 || w.gpa % 4096 != 0 {
        return Err(EINVAL);
    }
    let len = w.size as usize;
    // SAFETY: a NUL-terminated path; the flags are plain open(2) flags.
    let fd = unsafe { libc::open(c"/dev/mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(EIO));
    }
    // SAFETY: a fresh shared mapping of `len` bytes of /dev/mem at the window's physical
    // address; nothing else in this process refers to that range.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, w.gpa as libc::off_t) };
    if p == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(EIO);
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    // SAFETY: the mapping is page aligned, `len` bytes long and stays mapped until the caller
    // unmaps it (`shmcomm_sys_close` drops the side first; the janitor never unmaps). The other
    // sandbox writes it concurrently: every access the channels crate makes is atomic.
    let region: &'static [AtomicU64] = unsafe { std::slice::from_raw_parts(p as *const AtomicU64, len / 8) };
    Ok((fd, region))
}

// ---- Sides whose Linux process died: the janitor --------------------------------------------

/// Where Linux processes register the sides they hold open: one lock file per key and side.
pub const REGISTRY: &str = "/run/shmcomm";

fn side_lock_path(key: u32, send: bool) -> std::ffi::CString {
    let p = format!("{REGISTRY}/{key}.{}", if send { "send" } else { "recv" });
    std::ffi::CString::new(p).unwrap_or_default()
}

/// Takes side (`key`, `send`)'s lock file (`flock`, exclusive), which this process then holds
/// while the side is open — and the kernel releases when the process ends, however it ends.
/// Another Linux process holding it: `EBUSY` (after a few 1 ms tries: the janitor holds it for
/// a moment while it looks).
fn lock_side(key: u32, send: bool) -> Result<c_int, i32> {
    // SAFETY: NUL-terminated paths; plain mkdir/open/flock calls on our own descriptor.
    unsafe {
        libc::mkdir(c"/run".as_ptr(), 0o755);
        libc::mkdir(c"/run/shmcomm".as_ptr(), 0o700);
        let path = side_lock_path(key, send);
        let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC, 0o600);
        if fd < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(EIO));
        }
        for _ in 0..20 {
            if libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0 {
                return Ok(fd);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        libc::close(fd);
        Err(libc::EBUSY)
    }
}

/// What the janitor did to a side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaped {
    /// Left alone (closed cleanly, never attached, or not a channel).
    Nothing,
    /// It was attached and nobody holds it: marked closed, as its owner's close would have.
    Closed,
}

/// Closes side `send` of the channel in `region` if it is still attached: its Linux owner is
/// known to be gone (the caller holds the side's lock file). The peer then sees what a close
/// shows it: a reader gets the packets already written and then end of file; a writer gets
/// `EPIPE` once the channel is full.
pub fn reap(region: &[AtomicU64], send: bool) -> Reaped {
    let Ok((w, r)) = channels::side_states(region) else { return Reaped::Nothing };
    if (if send { w } else { r }) != channels::SideState::Attached {
        return Reaped::Nothing;
    }
    let Ok(g) = channels::probe(region) else { return Reaped::Nothing };
    let done = match (g.kind, send) {
        (Kind::FourSlot, true) => FourSlotWriter::attach(region).map(FourSlotWriter::close),
        (Kind::FourSlot, false) => FourSlotReader::attach(region).map(FourSlotReader::close),
        (Kind::Fifo, true) => FifoProducer::attach(region).map(FifoProducer::close),
        (_, false) => FifoConsumer::attach(region).map(FifoConsumer::close),
    };
    if done.is_ok() { Reaped::Closed } else { Reaped::Nothing }
}

/// The windows the janitor has mapped (once, for the life of the process).
static JANITOR: Mutex<Vec<(u32, &'static [AtomicU64])>> = Mutex::new(Vec::new());

/// `shmcomm_janitor_sweep`: one look at every window's sides registered by Linux processes
/// (a lock file exists): a side whose lock nobody holds (its process ended) but that the
/// window still shows attached is closed ([`reap`]), with a line on stdout. qshd calls this
/// every 50 ms. Returns the sides closed, or -1 and errno.
#[unsafe(no_mangle)]
pub extern "C" fn shmcomm_janitor_sweep() -> c_long {
    let mut maps = JANITOR.lock().unwrap_or_else(|e| e.into_inner());
    if maps.is_empty() {
        let windows = match windows_from(cpuid) {
            Ok(w) => w,
            Err(e) => return set_errno(e),
        };
        for w in windows {
            if let Ok((_, region)) = map_window(&w) {
                maps.push((w.key, region)); // descriptor and mapping kept for the process's life
            }
        }
    }
    let mut closed = 0;
    for &(key, region) in maps.iter() {
        for send in [true, false] {
            let path = side_lock_path(key, send);
            // SAFETY: NUL-terminated path; our own descriptor, closed below.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if fd < 0 {
                continue; // no Linux process ever opened this side
            }
            // SAFETY: flock/close on our own descriptor.
            if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 && reap(region, send) == Reaped::Closed {
                closed += 1;
                println!(
                    "shmcomm janitor: closed the {} side of channel {key}: its Linux process ended without closing it",
                    if send { "send" } else { "receive" }
                );
                use std::io::Write;
                let _ = std::io::stdout().flush();
            }
            // SAFETY: our descriptor (closing it drops the lock if we took it).
            unsafe { libc::close(fd) };
        }
    }
    closed
}

/// Runs `f` on descriptor `fd`'s side, or fails with `EBADF`. The table lock is not held while
/// `f` runs a blocking loop: the side is taken out and put back.
fn with_side<T>(fd: c_int, f: impl FnOnce(&mut Chan<'static>) -> Result<T, i32>) -> Result<T, i32> {
    let mut o = OPEN.lock().unwrap_or_else(|e| e.into_inner()).as_mut().and_then(|t| t.remove(&fd)).ok_or(EBADF)?;
    let r = f(&mut o.chan);
    OPEN.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).insert(fd, o);
    r
}

fn pause() {
    std::thread::sleep(POLL_INTERVAL);
}

/// `shmcomm_sys_open`: a descriptor, or -1 and errno.
#[unsafe(no_mangle)]
pub extern "C" fn shmcomm_sys_open(send: c_int, key: c_uint, flags: c_uint, packet_size: c_ulong, buffer_len: c_long) -> c_long {
    match open_side(send != 0, key, flags, packet_size, buffer_len) {
        Ok(fd) => c_long::from(fd),
        Err(e) => set_errno(e),
    }
}

/// `shmcomm_sys_write`: one packet of `len` bytes from `packet`.
///
/// # Safety
/// `packet` must point to `len` readable bytes (C's contract for a buffer argument).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmcomm_sys_write(fd: c_int, packet: *const c_void, len: c_ulong) -> c_long {
    if packet.is_null() && len != 0 {
        return set_errno(libc::EFAULT);
    }
    // SAFETY: the caller's buffer of `len` bytes (checked non-null above).
    let data = if len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(packet as *const u8, len as usize) } };
    match with_side(fd, |c| c.write(data, pause)) {
        Ok(n) => n as c_long,
        Err(e) => set_errno(e),
    }
}

/// `shmcomm_sys_read`: one packet into `packet` (`len` bytes of room).
///
/// # Safety
/// `packet` must point to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmcomm_sys_read(fd: c_int, packet: *mut c_void, len: c_ulong) -> c_long {
    if packet.is_null() && len != 0 {
        return set_errno(libc::EFAULT);
    }
    // SAFETY: the caller's buffer of `len` bytes (checked non-null above).
    let buf = if len == 0 { &mut [][..] } else { unsafe { std::slice::from_raw_parts_mut(packet as *mut u8, len as usize) } };
    match with_side(fd, |c| c.read(buf, pause)) {
        Ok(n) => n as c_long,
        Err(e) => set_errno(e),
    }
}

/// `shmcomm_sys_close`.
#[unsafe(no_mangle)]
pub extern "C" fn shmcomm_sys_close(fd: c_int) -> c_long {
    let Some(o) = OPEN.lock().unwrap_or_else(|e| e.into_inner()).as_mut().and_then(|t| t.remove(&fd)) else {
        return set_errno(EBADF);
    };
    o.chan.close();
    // SAFETY: the side (the only user of the mapping) is gone; the mapping and descriptors are
    // this entry's. The lock goes last: the janitor must not see the side free and attached.
    unsafe {
        libc::munmap(o.map as *mut c_void, o.len);
        libc::close(fd);
        libc::close(o.lock);
    }
    0
}

/// `shmcomm_sys_region`: the window descriptor `fd` runs on (its length in `*len`), or NULL.
///
/// # Safety
/// `len` must be NULL or point to a writable `unsigned long`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmcomm_sys_region(fd: c_int, len: *mut c_ulong) -> *mut c_void {
    let (map, n) = OPEN.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|t| t.get(&fd)).map_or((0, 0), |o| (o.map, o.len));
    if !len.is_null() {
        // SAFETY: a writable unsigned long (the caller's contract, non-null checked).
        unsafe { len.write(n as c_ulong) };
    }
    map as *mut c_void
}

/// `shmcomm_sys_key`: the channel's key, or -1 and errno.
#[unsafe(no_mangle)]
pub extern "C" fn shmcomm_sys_key(fd: c_int) -> c_long {
    match OPEN.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|t| t.get(&fd)) {
        Some(o) => c_long::from(o.chan.key()),
        None => set_errno(EBADF),
    }
}

// ---- Boomerang stages (`<boomerang.h>`) ------------------------------------------------

/// Linux's `struct sched_attr` (include/uapi/linux/sched/types.h), SCHED_ATTR_SIZE_VER1 (56 bytes): not
/// in the `libc` crate for musl, so written out here.
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

/// `SCHED_DEADLINE` (include/uapi/linux/sched.h).
const SCHED_DEADLINE: u32 = 6;

/// The `SCHED_DEADLINE` reservation for a stage of `plan`: runtime C, deadline = period = T.
fn deadline_attr(plan: &channels::boomerang::Plan) -> SchedAttr {
    let us = 1000u64;
    SchedAttr {
        size: core::mem::size_of::<SchedAttr>() as u32,
        sched_policy: SCHED_DEADLINE,
        sched_runtime: u64::from(plan.c_us) * us,
        sched_deadline: u64::from(plan.t_us) * us,
        sched_period: u64::from(plan.t_us) * us,
        ..SchedAttr::default()
    }
}

/// The plan for `q` as `<boomerang.h>` returns it (`vcpu` -1: the reservation is Linux's).
fn boomerang_plan(q: &BoomerangQos) -> Result<(channels::boomerang::Plan, BoomerangPlan), i32> {
    let p = channels::boomerang::plan(channels::boomerang::Qos { c_us: q.c, lambda: q.lambda, b: q.b, packet: q.packet, stages: q.stages }).map_err(|_| EINVAL)?;
    let out = BoomerangPlan {
        c: p.c_us,
        t: p.t_us,
        chunk: p.chunk,
        packets: p.packets,
        slots: p.slots,
        throughput: p.throughput,
        hop_delay_us: p.hop_delay_us,
        delay_us: p.delay_us,
        vcpu: -1,
    };
    Ok((p, out))
}

/// `boomerang_stage`: the calling thread gets `SCHED_DEADLINE` (runtime C, deadline = period
/// = T) through Linux's own admission control (`EBUSY` when the CPUs' deadline bandwidth is
/// used up; `EPERM` without root).
///
/// # Safety
/// `qos` must point to a readable `struct boomerang_qos`, `plan` to a writable
/// `struct boomerang_plan` (C's contract for pointer arguments; NULL is `EFAULT`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn boomerang_stage(qos: *const BoomerangQos, plan: *mut BoomerangPlan) -> c_int {
    if qos.is_null() || plan.is_null() {
        return set_errno(libc::EFAULT) as c_int;
    }
    // SAFETY: a readable record (the caller's contract, non-null checked).
    let q = unsafe { qos.read_unaligned() };
    let (p, out) = match boomerang_plan(&q) {
        Ok(x) => x,
        Err(e) => return set_errno(e) as c_int,
    };
    let attr = deadline_attr(&p);
    // SAFETY: sched_setattr(0 = this thread, a valid struct sched_attr of `size` bytes, 0).
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r < 0 {
        return -1; // errno from the kernel
    }
    // SAFETY: a writable record (the caller's contract, non-null checked).
    unsafe { plan.write_unaligned(out) };
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use quest_abi::shm::*;

    #[test]
    fn the_janitor_closes_only_sides_left_attached() {
        let r = region(8192);
        let mut tx = Chan::open(&r, 156, true, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, 64, 4).unwrap();
        let mut rx = Chan::open(&r, 156, false, SHMCOMM_CONNECT_CH, 64, -1).unwrap();
        tx.write(&[7; 64], || {}).unwrap();
        // The writer "dies" attached: reaped once, then left alone.
        assert_eq!(reap(&r, true), Reaped::Closed);
        assert_eq!(reap(&r, true), Reaped::Nothing);
        // The reader gets what was written, then end of file, as after a close.
        let mut buf = [0u8; 64];
        assert_eq!(rx.read(&mut buf, || panic!("waited")), Ok(64));
        assert_eq!(rx.read(&mut buf, || panic!("waited")), Ok(0));
        // A side that closed cleanly, and a window holding no channel, are not touched.
        rx.close();
        assert_eq!(reap(&r, false), Reaped::Nothing);
        assert_eq!(reap(&region(4096), true), Reaped::Nothing);
    }

    #[test]
    fn nonblock_sides_say_eagain_instead_of_waiting() {
        let r = region(8192);
        let mut tx = Chan::open(&r, 158, true, SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH | SHMCOMM_NONBLOCK_CH, 32, 2).unwrap();
        let mut rx = Chan::open(&r, 158, false, SHMCOMM_CONNECT_CH | SHMCOMM_NONBLOCK_CH, 32, 2).unwrap();
        let mut buf = [0u8; 32];
        let never = || panic!("a non-blocking side waited");
        assert_eq!(rx.read(&mut buf, never), Err(EAGAIN));
        assert_eq!(tx.write(&[1; 32], never), Ok(32));
        assert_eq!(tx.write(&[2; 32], never), Ok(32));
        assert_eq!(tx.write(&[3; 32], never), Err(EAGAIN));
        assert_eq!(rx.read(&mut buf, never), Ok(32));
        assert_eq!(buf, [1; 32]);
    }

    #[test]
    fn a_boomerang_stage_is_a_deadline_reservation_of_the_plan() {
        let q = BoomerangQos { c: 1000, lambda: 12_800, b: 384, packet: 32, stages: 3 };
        let (p, out) = boomerang_plan(&q).unwrap();
        assert_eq!((out.t, out.packets, out.slots, out.delay_us, out.vcpu), (10_000, 4, 12, 80_000, -1));
        let a = deadline_attr(&p);
        assert_eq!((a.size, a.sched_policy), (56, SCHED_DEADLINE));
        assert_eq!((a.sched_runtime, a.sched_deadline, a.sched_period), (1_000_000, 10_000_000, 10_000_000));
        assert_eq!(boomerang_plan(&BoomerangQos { c: 10_001, ..q }).err(), Some(EINVAL));
    }

    fn region(bytes: usize) -> Vec<AtomicU64> {
        (0..bytes / 8).map(|_| AtomicU64::new(0)).collect()
    }
    const CREATE_ASYNC: u32 = SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH;
    const CREATE_SYNC: u32 = SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH;

    #[test]
    fn the_seed_pair_async() {
        let r = region(4096);
        let mut tx = Chan::open(&r, 153, true, CREATE_ASYNC, 4, -1).unwrap();
        let mut rx = Chan::open(&r, 153, false, SHMCOMM_CONNECT_CH, 4, -1).unwrap();
        let mut x = [0u8; 4];
        assert_eq!(rx.try_read(&mut x), Err(EAGAIN), "nothing written yet");
        assert_eq!(tx.try_write(&10i32.to_le_bytes()), Ok(Attempt::Done(4)));
        assert_eq!(rx.try_read(&mut x), Ok(Attempt::Done(4)));
        assert_eq!(i32::from_le_bytes(x), 10);
        assert_eq!(tx.try_write(&[1, 2]), Err(EINVAL), "async packets are whole");
        assert_eq!(rx.try_write(&x), Err(EBADF));
        tx.close();
        rx.close();
    }

    #[test]
    fn sync_blocks_then_drains_after_close() {
        let r = region(4096);
        let mut tx = Chan::open(&r, 7, true, CREATE_SYNC, 8, 2).unwrap();
        let mut rx = Chan::open(&r, 7, false, SHMCOMM_CONNECT_CH | SHMCOMM_SYNC_CH, 8, 2).unwrap();
        let mut b = [0u8; 8];
        assert_eq!(rx.try_read(&mut b), Ok(Attempt::WouldBlock));
        assert_eq!(tx.try_write(b"one"), Ok(Attempt::Done(3)));
        assert_eq!(tx.try_write(b"two"), Ok(Attempt::Done(3)));
        assert_eq!(tx.try_write(b"three"), Ok(Attempt::WouldBlock), "two slots");
        assert_eq!(rx.try_read(&mut b), Ok(Attempt::Done(3)));
        assert_eq!(&b[..3], b"one");
        tx.close();
        assert_eq!(rx.try_read(&mut b), Ok(Attempt::Done(3)));
        assert_eq!(&b[..3], b"two");
        assert_eq!(rx.try_read(&mut b), Ok(Attempt::Done(0)), "closed and drained");
    }

    #[test]
    fn sync_write_to_a_closed_reader_is_epipe() {
        let r = region(4096);
        let mut tx = Chan::open(&r, 7, true, CREATE_SYNC, 8, 1).unwrap();
        Chan::open(&r, 7, false, SHMCOMM_CONNECT_CH, 8, -1).unwrap().close();
        // The free slot still takes a packet; then nobody will ever make room.
        assert_eq!(tx.try_write(b"x"), Ok(Attempt::Done(1)));
        assert_eq!(tx.try_write(b"y"), Err(EPIPE));
    }

    #[test]
    fn open_errors_are_quests() {
        let r = region(4096);
        assert_eq!(Chan::open(&r, 1, false, SHMCOMM_CONNECT_CH, 4, -1).err(), Some(ENOENT), "nobody formatted it");
        assert_eq!(Chan::open(&r, 1, true, SHMCOMM_CREATE_CH | SHMCOMM_CONNECT_CH, 4, -1).err(), Some(EINVAL));
        assert_eq!(Chan::open(&r, 1, true, CREATE_ASYNC | SHMCOMM_SYNC_CH, 4, -1).err(), Some(EINVAL));
        assert_eq!(Chan::open(&r, 1, true, 0x100 | CREATE_ASYNC, 4, -1).err(), Some(EINVAL));
        assert_eq!(Chan::open(&r, 1, true, CREATE_ASYNC, 0, -1).err(), Some(EINVAL));
        assert_eq!(Chan::open(&r, 1, true, CREATE_SYNC, 8, 0).err(), Some(EINVAL), "sync needs a buffer");
        assert_eq!(Chan::open(&r, 1, true, CREATE_SYNC, 1024, 8).err(), Some(EINVAL), "bigger than the window");
        let _tx = Chan::open(&r, 1, true, CREATE_ASYNC, 4, -1).unwrap();
        assert_eq!(Chan::open(&r, 1, true, CREATE_ASYNC, 4, -1).err(), Some(EEXIST));
        assert_eq!(Chan::open(&r, 1, false, SHMCOMM_CONNECT_CH, 8, -1).err(), Some(EINVAL), "size differs");
        assert_eq!(Chan::open(&r, 1, false, SHMCOMM_CONNECT_CH | SHMCOMM_SYNC_CH, 4, -1).err(), Some(EINVAL), "type differs");
    }

    #[test]
    fn a_scribbled_window_is_an_error_not_a_fault() {
        let r = region(4096);
        let mut tx = Chan::open(&r, 9, true, CREATE_SYNC, 16, 4).unwrap();
        let mut rx = Chan::open(&r, 9, false, SHMCOMM_CONNECT_CH, 16, 4).unwrap();
        // The other sandbox writes garbage over everything.
        for (i, w) in r.iter().enumerate() {
            w.store(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1), std::sync::atomic::Ordering::Relaxed);
        }
        let mut b = [0u8; 16];
        for _ in 0..8 {
            let _ = tx.try_write(b"data");
            let _ = rx.try_read(&mut b);
        }
        assert!(Chan::open(&r, 9, false, SHMCOMM_CONNECT_CH, 16, 4).is_err(), "the header no longer validates");
    }

    #[test]
    fn windows_come_from_the_monitors_cpuid_leaves() {
        let (b, c, d) = abi::signature_regs();
        let fake = move |leaf: u32, sub: u32| match leaf {
            abi::LEAF_SIGNATURE => [abi::LEAF_CPUS, b, c, d],
            abi::LEAF_PLATFORM => [2, 0, abi::ABI_VERSION, 1],
            abi::LEAF_CHANNEL if sub == 0 => [153, 4096, 0x1000_0001, 0],
            abi::LEAF_CHANNEL => [154, 8192, 0x2000_0002, 1],
            _ => [0; 4],
        };
        assert_eq!(
            windows_from(fake).unwrap(),
            vec![Window { key: 153, size: 4096, gpa: 0x1000_0000 }, Window { key: 154, size: 8192, gpa: 0x1_2000_0000 }]
        );
        assert_eq!(windows_from(|_, _| [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]), Err(ENODEV), "not Quest-V");
    }
}
