//! Physical frames: the bitmap frame allocator (crate `kmem`) behind a lock, the owned
//! [`Frame`] and [`FrameRun`] types, and queries about managed RAM.
//!
//! Ownership is the soundness rule here: a frame leaves the allocator only inside a value that
//! gives it back on drop ([`Frame`], [`FrameRun`], [`super::PhysRegion`], a kernel stack or an
//! address space's tables), so no safe function takes a bare physical address to free.
use core::sync::atomic::Ordering;

use kmem::FrameAllocator;
use spin::Mutex;
use x86_64::PhysAddr;
use x86_64::structures::paging::{FrameAllocator as X86FrameAllocator, PhysFrame, Size4KiB};

use super::{DIRECT_LIMIT, PAGE_SIZE, phys_to_virt};

pub(super) static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);

/// Runs `f` on the frame allocator (interrupts off); `None` before `mm::init`.
pub(super) fn with_frames<R>(f: impl FnOnce(&mut FrameAllocator<'static>) -> R) -> Option<R> {
    crate::cpu::without_interrupts(|| FRAMES.lock().as_mut().map(f))
}

/// Hands 4 KiB frames to the x86_64 crate's mapper.
pub(super) struct Frames<'a>(pub &'a mut FrameAllocator<'static>);

// SAFETY: every frame returned comes from the bitmap allocator, which never hands out a frame
// twice or one outside usable RAM; the mapper zeroes the frames it turns into tables.
unsafe impl X86FrameAllocator<Size4KiB> for Frames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let p = self.0.alloc()?;
        // Tables are reached through the direct map: 4 GiB under the boot tables, all RAM after.
        assert!(p < DIRECT_LIMIT.load(Ordering::Relaxed), "page-table frame beyond the direct map");
        PhysFrame::from_start_address(PhysAddr::new(p)).ok()
    }
}

/// Zeroes `frames` frames at `p`.
///
/// # Safety
/// The caller owns `[p, p + frames * 4 KiB)`: just taken from the allocator, nothing else
/// refers to it, and it lies below the direct-map limit.
pub(super) unsafe fn zero_fresh(p: u64, frames: usize) {
    // SAFETY: by the contract, memory the caller owns exclusively, mapped writable by the
    // direct map.
    unsafe { core::ptr::write_bytes(phys_to_virt(p) as *mut u8, 0, frames * PAGE_SIZE as usize) };
}

/// One 4 KiB frame of RAM owned by its holder: taken from the frame allocator zeroed, given
/// back when dropped. No Rust reference points into it; hal writes it only through the direct
/// map (as a page table or a user page).
#[derive(Debug)]
pub struct Frame {
    pa: u64,
}

impl Frame {
    /// A zeroed frame, or `None` when memory is exhausted.
    pub fn alloc() -> Option<Frame> {
        let pa = with_frames(|a| a.alloc()).flatten()?;
        // SAFETY: just allocated (ours alone); the allocator manages only direct-mapped RAM.
        unsafe { zero_fresh(pa, 1) };
        Some(Frame { pa })
    }

    /// A frame with whatever it held before, or `None` when memory is exhausted: only for a
    /// caller that overwrites all of it before anything can read it (a copy-on-write copy).
    pub(super) fn alloc_unzeroed() -> Option<Frame> {
        let pa = with_frames(|a| a.alloc()).flatten()?;
        Some(Frame { pa })
    }

    /// Its physical address.
    pub fn phys(&self) -> u64 {
        self.pa
    }

    /// Gives up ownership (the frame now belongs to a page table, as a user page or a table).
    pub(super) fn into_raw(self) -> u64 {
        let pa = self.pa;
        core::mem::forget(self);
        pa
    }

    /// Takes back ownership of a frame given up with [`Frame::into_raw`].
    ///
    /// # Safety
    /// `pa` came from `into_raw` and nothing else refers to the frame any more (it has been
    /// unmapped, or its table is being torn down).
    pub(super) unsafe fn from_raw(pa: u64) -> Frame {
        Frame { pa }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        let pa = self.pa;
        let _ = with_frames(|a| a.free(pa));
    }
}

/// (free, total) frame counts.
pub fn frame_counts() -> (usize, usize) {
    crate::cpu::without_interrupts(|| FRAMES.lock().as_ref().map_or((0, 0), |a| (a.free_count(), a.total_count())))
}

/// Whether `[start, end)` lies inside the direct map and touches no frame the frame allocator
/// manages (usable RAM): device memory or memory another party (the Quest-V monitor) owns.
pub fn outside_managed_ram(start: u64, end: u64) -> bool {
    if start >= end || end > DIRECT_LIMIT.load(Ordering::Relaxed) {
        return false;
    }
    crate::cpu::without_interrupts(|| {
        let g = FRAMES.lock();
        let Some(a) = g.as_ref() else { return false };
        let mut p = start & !(PAGE_SIZE - 1);
        while p < end {
            if a.is_usable(p) {
                return false;
            }
            p += PAGE_SIZE;
        }
        true
    })
}

/// A run of physically contiguous, zeroed frames owned by the kernel (shared-memory channel
/// regions), seen as `u64` atomics through the direct map. Freed on drop.
#[derive(Debug)]
pub struct FrameRun {
    start: u64,
    frames: usize,
}

impl FrameRun {
    /// `frames` contiguous zeroed frames, or `None` if there is no such run free.
    pub fn alloc(frames: usize) -> Option<FrameRun> {
        if frames == 0 {
            return None;
        }
        let start = with_frames(|a| a.alloc_contiguous(frames, 1)).flatten()?;
        if start + frames as u64 * PAGE_SIZE > DIRECT_LIMIT.load(Ordering::Relaxed) {
            let _ = with_frames(|a| a.free_contiguous(start, frames));
            return None;
        }
        // SAFETY: just allocated (ours alone) and below the direct-map limit (checked above).
        unsafe { zero_fresh(start, frames) };
        Some(FrameRun { start, frames })
    }

    /// Physical address of the first frame.
    pub fn phys(&self) -> u64 {
        self.start
    }

    /// Gives the run up for good: it is never returned to the allocator (DMA memory,
    /// `crate::dma::DmaBuffer`).
    pub(crate) fn leak(self) {
        core::mem::forget(self);
    }

    /// Size in bytes.
    pub fn len_bytes(&self) -> usize {
        self.frames * PAGE_SIZE as usize
    }

    /// The memory as words. Several users may hold this at once (and other kernels may, for
    /// a Quest-V window): every access is atomic, so sharing is sound.
    pub fn words(&self) -> &[core::sync::atomic::AtomicU64] {
        // SAFETY:
        // 1. The run is owned by `self` until drop, and the returned slice borrows `self`, so
        //    the memory outlives every use of the slice.
        // 2. It is mapped through the direct map (checked in `alloc`), page aligned, so it is
        //    aligned for AtomicU64; it was zeroed, and any bit pattern is a valid AtomicU64.
        // 3. AtomicU64 has interior mutability: shared references to it may coexist with other
        //    (atomic) accessors, which is the only way this memory is ever touched.
        unsafe {
            core::slice::from_raw_parts(
                phys_to_virt(self.start) as *const core::sync::atomic::AtomicU64,
                self.len_bytes() / 8,
            )
        }
    }
}

impl Drop for FrameRun {
    fn drop(&mut self) {
        let (start, n) = (self.start, self.frames);
        let _ = with_frames(|a| a.free_contiguous(start, n));
    }
}
