//! Typed user memory: a user address keeps its type from the register to the copy.
//!
//! A system call's pointer arguments become [`UserPtr<T>`] (one value of a plain-old-data
//! type `T`), [`UserSlice`] (bytes the kernel reads), [`UserSliceMut`] (bytes the kernel
//! writes) or [`UserCStr`] (a NUL-terminated string). Their methods copy through the process's
//! address space (`hal::mm::AddressSpace` walks its page tables and goes through the direct
//! map; the kernel never dereferences a user address) and fail with `EFAULT` on any address
//! that is not mapped with the right access, overflows, or lies outside the buffer the caller
//! described. These are the only places in the kernel that call `copy_to_user` /
//! `copy_from_user`.
//!
//! No `unsafe` is needed here: the byte views of `T` come from hal (`hal::user::pod_bytes`,
//! `hal::user::pod_read`, bounded by `hal::user::Pod`).
use alloc::vec::Vec;
use core::marker::PhantomData;

use hal::user::Pod;
use linux_raw_sys::errno::{EFAULT, ENAMETOOLONG};

use crate::process::Process;

/// Copies from user memory, first making the untouched pages of lazy areas (`crate::memory`).
fn copy_in(p: &Process, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    for (i, piece) in buf.chunks_mut(COPY_PIECE).enumerate() {
        let at = addr + (i * COPY_PIECE) as u64;
        let mut m = p.mem.lock();
        crate::memory::prefault(&mut m, at, piece.len() as u64, false);
        m.space.copy_from_user(at, piece).map_err(|_| EFAULT)?;
    }
    Ok(())
}

/// Copies to user memory, first making the untouched pages of lazy areas.
fn copy_out(p: &Process, addr: u64, data: &[u8]) -> Result<(), Errno> {
    for (i, piece) in data.chunks(COPY_PIECE).enumerate() {
        let at = addr + (i * COPY_PIECE) as u64;
        let mut m = p.mem.lock();
        crate::memory::prefault(&mut m, at, piece.len() as u64, true);
        let r = m.space.copy_to_user(at, piece).map_err(|_| EFAULT);
        // Copy-on-write pages broken by the prefault: other CPUs drop the old entries first.
        let t = m.space.take_flush();
        drop(m);
        t.wait();
        r?;
    }
    Ok(())
}

/// The most bytes a user copy moves with the address space locked (a spinning lock: interrupts
/// off). A megabyte read or write goes in pieces, so it never holds back the CPU's timer for
/// the whole copy (tests/tests/sched.rs: file I/O beside a reservation). Another thread may
/// change the mapping between two pieces, as between two pages of Linux's copies: the copy
/// then stops with EFAULT where it faults.
const COPY_PIECE: usize = 16 * 1024;

/// An errno (positive; the system-call return path negates it).
pub type Errno = u32;

/// A user address of one `T`.
pub struct UserPtr<T: Pod> {
    addr: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> Clone for UserPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Pod> Copy for UserPtr<T> {}

impl<T: Pod> UserPtr<T> {
    pub const fn new(addr: u64) -> Self {
        UserPtr { addr, _t: PhantomData }
    }
    pub fn addr(self) -> u64 {
        self.addr
    }
    pub fn is_null(self) -> bool {
        self.addr == 0
    }
    /// The `i`-th `T` of an array starting here (EFAULT if the address overflows).
    pub fn at(self, i: u64) -> Result<Self, Errno> {
        let off = i.checked_mul(core::mem::size_of::<T>() as u64).ok_or(EFAULT)?;
        Ok(UserPtr::new(self.addr.checked_add(off).ok_or(EFAULT)?))
    }
    /// Copies the value in.
    pub fn read(self, p: &Process) -> Result<T, Errno> {
        let n = core::mem::size_of::<T>();
        // Words and small structures (a futex word, a timespec): a small buffer, since zeroing
        // the large one cost more than the copy (a `memset` of 256 bytes per read).
        if n <= 16 {
            let mut small = [0u8; 16];
            copy_in(p, self.addr, &mut small[..n])?;
            return hal::user::pod_read(&small[..n]).ok_or(EFAULT);
        }
        let mut buf = [0u8; 256];
        if n <= buf.len() {
            copy_in(p, self.addr, &mut buf[..n])?;
            return hal::user::pod_read(&buf[..n]).ok_or(EFAULT);
        }
        let mut v = alloc::vec![0u8; n];
        copy_in(p, self.addr, &mut v)?;
        hal::user::pod_read(&v).ok_or(EFAULT)
    }
    /// Copies `v` out.
    pub fn write(self, p: &Process, v: &T) -> Result<(), Errno> {
        copy_out(p, self.addr, hal::user::pod_bytes(v))
    }
}

/// `len` bytes at a user address that the kernel reads.
#[derive(Clone, Copy)]
pub struct UserSlice {
    addr: u64,
    len: u64,
}

impl UserSlice {
    pub const fn new(addr: u64, len: u64) -> Self {
        UserSlice { addr, len }
    }
    pub fn len(self) -> u64 {
        self.len
    }
    /// The first `len` bytes (or all of them, if fewer).
    pub fn prefix(self, len: u64) -> Self {
        UserSlice { addr: self.addr, len: self.len.min(len) }
    }
    /// Consecutive pieces of at most `size` bytes each (for copying large buffers through a
    /// bounded kernel buffer).
    pub fn chunks(self, size: u64) -> impl Iterator<Item = UserSlice> {
        let size = size.max(1);
        (0..self.len.div_ceil(size)).map(move |i| {
            let off = i * size;
            UserSlice { addr: self.addr.wrapping_add(off), len: (self.len - off).min(size) }
        })
    }
    /// Copies the bytes into `buf`, which must be exactly as long (EFAULT otherwise).
    pub fn read_into(self, p: &Process, buf: &mut [u8]) -> Result<(), Errno> {
        if buf.len() as u64 != self.len || self.addr.checked_add(self.len).is_none() {
            return Err(EFAULT);
        }
        copy_in(p, self.addr, buf)
    }
    /// Copies the bytes into a new vector.
    pub fn read_to_vec(self, p: &Process) -> Result<Vec<u8>, Errno> {
        let mut v = alloc::vec![0u8; usize::try_from(self.len).map_err(|_| EFAULT)?];
        self.read_into(p, &mut v)?;
        Ok(v)
    }
}

/// `len` bytes at a user address that the kernel writes.
#[derive(Clone, Copy)]
pub struct UserSliceMut {
    addr: u64,
    len: u64,
}

impl UserSliceMut {
    pub const fn new(addr: u64, len: u64) -> Self {
        UserSliceMut { addr, len }
    }
    pub fn len(self) -> u64 {
        self.len
    }
    /// Copies `data` to the start of the buffer; EFAULT if it does not fit.
    pub fn write(self, p: &Process, data: &[u8]) -> Result<(), Errno> {
        if data.len() as u64 > self.len || self.addr.checked_add(data.len() as u64).is_none() {
            return Err(EFAULT);
        }
        copy_out(p, self.addr, data)
    }
}

/// A NUL-terminated string at a user address.
#[derive(Clone, Copy)]
pub struct UserCStr {
    addr: u64,
}

impl UserCStr {
    pub const fn new(addr: u64) -> Self {
        UserCStr { addr }
    }
    pub fn is_null(self) -> bool {
        self.addr == 0
    }
    /// Copies the string in (without its NUL); ENAMETOOLONG beyond `max` bytes. Reads a page at
    /// most at a time, so a string that ends just before an unmapped page is read correctly.
    pub fn read(self, p: &Process, max: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 64];
        loop {
            let at = self.addr.checked_add(out.len() as u64).ok_or(EFAULT)?;
            let n = (4096 - (at % 4096) as usize).min(chunk.len());
            UserSlice::new(at, n as u64).read_into(p, &mut chunk[..n])?;
            if let Some(i) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..i]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
            if out.len() > max {
                return Err(ENAMETOOLONG);
            }
        }
    }
}
