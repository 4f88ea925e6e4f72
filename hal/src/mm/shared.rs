//! Shared pages: frames that several user address spaces map at once (MAP_SHARED memory, the
//! pages of in-memory files, System V shared memory).
//!
//! A [`SharedPage`] is a counted reference to one frame: each handle and each page-table entry
//! that maps it holds one count, kept in one table keyed by physical address; the frame goes
//! back to the allocator when the last count goes. Page-table entries of shared pages carry the
//! software bit [`SHARED_BIT`], so [`AddressSpace::unmap`](super::AddressSpace::unmap), the
//! drop of an address space and `duplicate` (fork) drop or take a count instead of freeing or
//! copying the frame.
//!
//! The bytes of a shared page may be written by user programs at any time; the kernel reads
//! and writes them only through the direct map with byte copies (as it does every user page).
use alloc::collections::BTreeMap;

use spin::Mutex;

use super::frames::Frame;
use super::{PAGE_SIZE, phys_to_virt};

/// Software-available page-table bit 9: the leaf maps a shared page (one count of it).
pub(crate) const SHARED_BIT: u64 = 1 << 9;

/// Counts of every shared frame (physical address -> references: handles and mappings).
static COUNTS: Mutex<BTreeMap<u64, usize>> = Mutex::new(BTreeMap::new());

fn with_counts<R>(f: impl FnOnce(&mut BTreeMap<u64, usize>) -> R) -> R {
    crate::cpu::without_interrupts(|| f(&mut COUNTS.lock()))
}

/// Adds a count to shared frame `pa` (a new mapping or handle of it).
pub(crate) fn get(pa: u64) {
    with_counts(|c| {
        let n = c.get_mut(&pa).expect("a shared frame has a count while referenced");
        *n += 1;
    });
}

/// Drops a count of shared frame `pa`; frees the frame when it was the last.
///
/// # Safety
/// The caller gives up one reference it held (a handle being dropped, or a page-table entry
/// with [`SHARED_BIT`] that was just removed and flushed).
pub(crate) unsafe fn put(pa: u64) {
    let last = with_counts(|c| {
        let n = c.get_mut(&pa).expect("a shared frame has a count while referenced");
        *n -= 1;
        if *n == 0 {
            c.remove(&pa);
            true
        } else {
            false
        }
    });
    if last {
        // SAFETY: the frame came from `Frame::into_raw` in `SharedPage::alloc`, and the count
        // reaching zero means no handle and no page-table entry refers to it any more.
        drop(unsafe { Frame::from_raw(pa) });
    }
}

/// The handle that takes over one count of shared frame `pa` (dropping it gives the count back).
///
/// # Safety
/// The caller gives up one count it held (a page-table entry with [`SHARED_BIT`] just removed).
pub(crate) unsafe fn adopt(pa: u64) -> SharedPage {
    SharedPage { pa }
}

/// A counted reference to a zero-initialised frame that user address spaces may share.
#[derive(Debug)]
pub struct SharedPage {
    pa: u64,
}

impl SharedPage {
    /// A new zeroed shared page, or `None` when memory is exhausted.
    pub fn alloc() -> Option<SharedPage> {
        let f = Frame::alloc()?;
        let pa = f.into_raw();
        with_counts(|c| c.insert(pa, 1));
        Some(SharedPage { pa })
    }

    /// Its physical address (a key: e.g. for futexes on shared memory).
    pub fn phys(&self) -> u64 {
        self.pa
    }

    /// Copies from offset `off` into `buf` (clamped to the page).
    pub fn read(&self, off: usize, buf: &mut [u8]) -> usize {
        let n = buf.len().min((PAGE_SIZE as usize).saturating_sub(off));
        if n > 0 {
            // SAFETY: [pa + off, pa + off + n) lies inside the frame this handle keeps alive
            // (n is clamped to the page), which the direct map covers; no Rust reference points
            // into user frames.
            unsafe { core::ptr::copy_nonoverlapping((phys_to_virt(self.pa) + off as u64) as *const u8, buf.as_mut_ptr(), n) };
        }
        n
    }

    /// Copies `data` to offset `off` (clamped to the page); returns the bytes written.
    pub fn write(&self, off: usize, data: &[u8]) -> usize {
        let n = data.len().min((PAGE_SIZE as usize).saturating_sub(off));
        if n > 0 {
            // SAFETY: as in `read`, writing.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), (phys_to_virt(self.pa) + off as u64) as *mut u8, n) };
        }
        n
    }

    /// Zeroes `[off, PAGE_SIZE)`.
    pub fn zero_from(&self, off: usize) {
        if off < PAGE_SIZE as usize {
            // SAFETY: as in `write`, within the page.
            unsafe { core::ptr::write_bytes((phys_to_virt(self.pa) + off as u64) as *mut u8, 0, PAGE_SIZE as usize - off) };
        }
    }
}

impl Clone for SharedPage {
    fn clone(&self) -> SharedPage {
        get(self.pa);
        SharedPage { pa: self.pa }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: this handle held one count and gives it up.
        unsafe { put(self.pa) };
    }
}
