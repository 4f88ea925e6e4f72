//! Memory a device may read and write by DMA (bus mastering).
//!
//! There is no IOMMU yet, so a bus-mastering device reaches every physical address. The rule
//! that keeps DMA sound is about lifetimes: **memory handed to a device lives for the rest of
//! the run.** A [`DmaBuffer`] is a run of physically contiguous, zeroed frames that is never
//! given back to the frame allocator (it has no `Drop`; dropping the value only forgets the
//! handle), so whatever a device does to it later — after a driver gave up, after a controller
//! reset that did not stop a transfer — cannot corrupt memory Rust reuses. Rust reaches it only
//! as `AtomicU32` words through the direct map (the device writes it at any moment; atomics
//! make those races defined), never through a plain reference.
//!
//! The other half is in `hal::pci`: bus mastering is switched on only by the `unsafe fn`
//! [`crate::pci::enable_bus_master`], whose caller promises to give its device addresses inside
//! `DmaBuffer`s only (the kernel's `drivers::DmaDriver` trait carries that promise). Leaking is
//! the price: DMA buffers are for controller structures allocated once (rings, contexts, a
//! bounce buffer), not per transfer.
use core::sync::atomic::{AtomicU32, Ordering};

use super::mm::FrameRun;

/// Physically contiguous, zeroed memory that is never freed (see the module doc).
#[derive(Debug)]
pub struct DmaBuffer {
    phys: u64,
    words: &'static [AtomicU32],
}

impl DmaBuffer {
    /// `frames` contiguous zeroed 4 KiB frames, or `None` when there is no such run.
    pub fn alloc(frames: usize) -> Option<DmaBuffer> {
        let run = FrameRun::alloc(frames)?;
        let (phys, len) = (run.phys(), run.len_bytes());
        run.leak();
        let va = crate::mm::phys_to_virt(phys) as *const AtomicU32;
        // SAFETY:
        // 1. `leak` took the run away from the allocator for good: nothing frees or reuses it,
        //    so the memory lives for `'static`.
        // 2. `FrameRun::alloc` checked it lies in the direct map; it is page aligned (aligned
        //    for AtomicU32) and zeroed, and any bit pattern is a valid AtomicU32.
        // 3. Only atomics ever touch it (here and, by DMA, the device), so shared references
        //    may coexist with the device's writes.
        let words = unsafe { core::slice::from_raw_parts(va, len / 4) };
        Some(DmaBuffer { phys, words })
    }

    /// The bus address the device is given (physical: no IOMMU).
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.words.len() * 4
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The dword at byte offset `off` (4-aligned); all ones beyond the buffer or misaligned.
    pub fn read32(&self, off: usize) -> u32 {
        if !off.is_multiple_of(4) {
            return u32::MAX;
        }
        self.words.get(off / 4).map_or(u32::MAX, |w| w.load(Ordering::Acquire))
    }

    /// Writes the dword at `off`; ignored beyond the buffer or misaligned. Release ordering:
    /// what was written before is visible to the device once this is.
    pub fn write32(&self, off: usize, v: u32) {
        if off.is_multiple_of(4)
            && let Some(w) = self.words.get(off / 4)
        {
            w.store(v, Ordering::Release);
        }
    }

    /// Copies `out.len()` bytes from byte offset `off`; `false` (and nothing copied) if that
    /// runs past the buffer.
    pub fn read_bytes(&self, off: usize, out: &mut [u8]) -> bool {
        match off.checked_add(out.len()) {
            Some(end) if end <= self.len() => {}
            _ => return false,
        }
        for (i, b) in out.iter_mut().enumerate() {
            let at = off + i;
            *b = (self.words[at / 4].load(Ordering::Acquire) >> (8 * (at % 4))) as u8;
        }
        true
    }

    /// Zeroes `len` bytes from `off` (whole dwords; clipped to the buffer).
    pub fn zero(&self, off: usize, len: usize) {
        let first = off / 4;
        let last = off.saturating_add(len).div_ceil(4).min(self.words.len());
        for w in self.words.get(first..last).unwrap_or(&[]) {
            w.store(0, Ordering::Relaxed);
        }
    }
}
