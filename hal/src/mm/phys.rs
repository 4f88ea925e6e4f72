//! Physical memory owned outright: [`PhysRegion`], for the Quest-V monitor's sandbox RAM,
//! channel regions, VMCBs and nested page tables.
use core::sync::atomic::Ordering;

use kmem::PhysRange;

use super::frames::with_frames;
use super::{DIRECT_LIMIT, PAGE_SIZE, phys_to_virt};

/// Physical memory owned outright by one holder: frames taken out of the frame allocator (by
/// [`PhysRegion::alloc`] or [`PhysRegion::take`]) that no Rust reference points into. The Quest-V
/// monitor keeps sandbox RAM, channel regions, VMCBs and nested page tables in these and reads
/// and writes them only through the methods below (bounds-checked copies through the direct
/// map), so its own code stays free of `unsafe`.
///
/// The memory may also be written by a guest running on another core (it is the guest's RAM):
/// every access is a raw copy, never a reference, so such a race can only give stale or torn
/// bytes, never undefined behaviour in the monitor's Rust code.
#[derive(Debug)]
pub struct PhysRegion {
    start: u64,
    len: u64,
}

impl PhysRegion {
    /// Allocates `pages` contiguous zeroed frames aligned to `align_pages` frames.
    pub fn alloc(pages: usize, align_pages: usize) -> Option<PhysRegion> {
        let start = with_frames(|a| a.alloc_contiguous(pages, align_pages)).flatten()?;
        let r = PhysRegion { start, len: pages as u64 * PAGE_SIZE };
        r.zero(0, r.len);
        Some(r)
    }

    /// Takes exactly `range` (page aligned, usable RAM, every frame free) out of the allocator.
    /// Fails, taking nothing, if any frame is not usable RAM or already in use.
    pub fn take(range: PhysRange) -> Result<PhysRegion, TakeError> {
        if range.start % PAGE_SIZE != 0 || range.end % PAGE_SIZE != 0 || range.is_empty() {
            return Err(TakeError::Misaligned);
        }
        if range.end > DIRECT_LIMIT.load(Ordering::Relaxed) {
            return Err(TakeError::NotUsable(range.end - PAGE_SIZE));
        }
        with_frames(|a| {
            let mut p = range.start;
            while p < range.end {
                if !a.is_usable(p) {
                    return Err(TakeError::NotUsable(p));
                }
                if !a.is_free(p) {
                    return Err(TakeError::InUse(p));
                }
                p += PAGE_SIZE;
            }
            a.reserve(range);
            Ok(PhysRegion { start: range.start, len: range.len() })
        })
        .unwrap_or(Err(TakeError::NotUsable(range.start)))
    }

    /// Physical start address.
    pub fn phys(&self) -> u64 {
        self.start
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty (never: regions have at least one frame).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, off: u64, n: u64) -> usize {
        let end = off.checked_add(n).expect("PhysRegion access overflows");
        assert!(end <= self.len, "PhysRegion access [{off:#x}, {end:#x}) beyond its {:#x} bytes", self.len);
        phys_to_virt(self.start + off) as usize
    }

    /// Copies `data` to offset `off`.
    pub fn write(&self, off: u64, data: &[u8]) {
        let va = self.check(off, data.len() as u64);
        // SAFETY: [va, va + len) lies inside frames this region owns (bounds checked above),
        // which the direct map covers; no Rust reference points into them (see the type doc).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), va as *mut u8, data.len()) };
    }

    /// Copies from offset `off` into `buf`.
    pub fn read(&self, off: u64, buf: &mut [u8]) {
        let va = self.check(off, buf.len() as u64);
        // SAFETY: as in `write`, reading.
        unsafe { core::ptr::copy_nonoverlapping(va as *const u8, buf.as_mut_ptr(), buf.len()) };
    }

    /// Zeroes `n` bytes at `off`.
    pub fn zero(&self, off: u64, n: u64) {
        let va = self.check(off, n);
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_bytes(va as *mut u8, 0, n as usize) };
    }

    /// Reads the little-endian u64 at `off` (a single volatile access when 8-byte aligned).
    pub fn read_u64(&self, off: u64) -> u64 {
        let va = self.check(off, 8);
        if va % 8 == 0 {
            // SAFETY: as in `write`; aligned, in bounds.
            unsafe { core::ptr::read_volatile(va as *const u64) }
        } else {
            let mut b = [0u8; 8];
            self.read(off, &mut b);
            u64::from_le_bytes(b)
        }
    }

    /// Writes the little-endian u64 at `off` (a single volatile access when 8-byte aligned).
    pub fn write_u64(&self, off: u64, v: u64) {
        let va = self.check(off, 8);
        if va % 8 == 0 {
            // SAFETY: as in `write`; aligned, in bounds.
            unsafe { core::ptr::write_volatile(va as *mut u64, v) }
        } else {
            self.write(off, &v.to_le_bytes());
        }
    }
}

/// Why [`PhysRegion::take`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeError {
    /// The range is empty or not page aligned.
    Misaligned,
    /// This frame is not usable RAM (reserved, MMIO, or beyond RAM).
    NotUsable(u64),
    /// This frame is already in use (the monitor's image, a boot module, its heap ...).
    InUse(u64),
}

