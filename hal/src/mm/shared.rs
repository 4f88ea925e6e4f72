//! Shared pages: frames that several user address spaces map at once (MAP_SHARED memory, the
//! pages of in-memory files, System V shared memory).
//!
//! A [`SharedPage`] is a counted reference to one frame: each handle and each page-table entry
//! that maps it holds one count, kept in an array of one atomic counter per frame of RAM (made at
//! boot: 4 bytes per 4 KiB, 0.1 % of RAM; 0 = not counted); the frame goes back to the allocator
//! when the last count goes. Copy-on-write frames (`space.rs`) are counted the same way. Page-table entries of shared pages carry the
//! software bit [`SHARED_BIT`], so [`AddressSpace::unmap`](super::AddressSpace::unmap), the
//! drop of an address space and `duplicate` (fork) drop or take a count instead of freeing or
//! copying the frame.
//!
//! The bytes of a shared page may be written by user programs at any time; the kernel reads
//! and writes them only through the direct map with byte copies (as it does every user page).
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use super::frames::Frame;
use super::{PAGE_SIZE, phys_to_virt};

/// Software-available page-table bit 9: the leaf maps a shared page (one count of it).
pub(crate) const SHARED_BIT: u64 = 1 << 9;

/// The counters: `COUNTS_LEN` of them from `COUNTS`, one per frame (set once at boot).
static COUNTS: AtomicPtr<AtomicU32> = AtomicPtr::new(core::ptr::null_mut());
static COUNTS_LEN: AtomicUsize = AtomicUsize::new(0);

/// Installs the counters (once, at boot, before any address space exists).
pub(super) fn init_counts(c: &'static [AtomicU32]) {
    COUNTS_LEN.store(c.len(), Ordering::Relaxed);
    COUNTS.store(c.as_ptr().cast_mut(), Ordering::Release);
}

/// The counter of frame `pa` (a frame of RAM from the allocator).
pub(crate) fn count(pa: u64) -> &'static AtomicU32 {
    let base = COUNTS.load(Ordering::Acquire);
    let len = COUNTS_LEN.load(Ordering::Relaxed);
    assert!(!base.is_null(), "frame counts are set up at boot");
    // SAFETY: `init_counts` stored a `&'static [AtomicU32]` of `len` counters (Release, read
    // with Acquire above), which lives for the rest of the run.
    let all = unsafe { core::slice::from_raw_parts(base.cast_const(), len) };
    &all[(pa / PAGE_SIZE) as usize]
}

/// Adds a count to shared frame `pa` (a new mapping or handle of it).
pub(crate) fn get(pa: u64) {
    let old = count(pa).fetch_add(1, Ordering::Relaxed);
    debug_assert!(old != 0, "a shared frame has a count while referenced");
}

/// Drops a count of shared frame `pa`; frees the frame when it was the last.
///
/// # Safety
/// The caller gives up one reference it held (a handle being dropped, or a page-table entry
/// with [`SHARED_BIT`] that was just removed and flushed).
pub(crate) unsafe fn put(pa: u64) {
    // AcqRel: every use of the frame through other counts happens before the free below.
    let old = count(pa).fetch_sub(1, Ordering::AcqRel);
    debug_assert!(old != 0, "a shared frame has a count while referenced");
    let last = old == 1;
    if last {
        // SAFETY: the frame came from `Frame::into_raw` in `SharedPage::alloc`, and the count
        // reaching zero means no handle and no page-table entry refers to it any more.
        drop(unsafe { Frame::from_raw(pa) });
    }
}

/// If the caller's entry holds the only count of `pa`, stops counting it and returns true: the
/// frame is that entry's alone again (copy-on-write with nobody left to share with).
pub(crate) fn uncount_if_sole(pa: u64) -> bool {
    // Nobody can add a count meanwhile: that takes a reference, and the caller's is the only one.
    count(pa).compare_exchange(1, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
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
        count(pa).store(1, Ordering::Release);
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

/// Physically contiguous shared pages that the kernel also reads as one slice of words: a
/// shmcomm channel's region, which the kernel validates and closes through the direct map
/// while the processes that opened the channel map its pages ([`SharedRun::page`]).
///
/// Each frame is an ordinary shared page (one count per handle and per mapping): the run holds
/// one count of every frame, so the words stay valid while it lives, and a frame goes back to
/// the allocator only when the run and every mapping of it are gone.
#[derive(Debug)]
pub struct SharedRun {
    start: u64,
    pages: alloc::vec::Vec<SharedPage>,
}

impl SharedRun {
    /// `frames` contiguous zeroed shared pages, or `None` when there is no such run free.
    pub fn alloc(frames: usize) -> Option<SharedRun> {
        let mut pages = alloc::vec::Vec::new();
        pages.try_reserve_exact(frames).ok()?;
        let run = super::FrameRun::alloc(frames)?; // zeroed, below the direct-map limit
        let start = run.phys();
        run.leak(); // each frame is freed on its own by `put` from now on
        for i in 0..frames as u64 {
            let pa = start + i * PAGE_SIZE;
            count(pa).store(1, Ordering::Release);
            pages.push(SharedPage { pa });
        }
        Some(SharedRun { start, pages })
    }

    /// A handle of page `i` (for a mapping), or `None` past the end.
    pub fn page(&self, i: usize) -> Option<SharedPage> {
        self.pages.get(i).cloned()
    }

    /// Number of pages.
    pub fn frames(&self) -> usize {
        self.pages.len()
    }

    /// The memory as words. User programs that map the pages may write them at any time:
    /// every access is atomic, so sharing is sound (what they write is untrusted input).
    pub fn words(&self) -> &[core::sync::atomic::AtomicU64] {
        // SAFETY:
        // 1. `self.pages` holds one count of every frame of the run, so none goes back to the
        //    allocator while `self` (which the returned slice borrows) lives.
        // 2. The frames are contiguous (one `FrameRun`) and below the direct-map limit
        //    (`FrameRun::alloc` checks), page aligned, so aligned for AtomicU64; they were
        //    zeroed, and any bit pattern is a valid AtomicU64.
        // 3. AtomicU64 has interior mutability; user mappings write the same bytes only through
        //    the CPU, never through a Rust reference, and every kernel access is atomic.
        unsafe {
            core::slice::from_raw_parts(
                phys_to_virt(self.start) as *const core::sync::atomic::AtomicU64,
                self.pages.len() * PAGE_SIZE as usize / 8,
            )
        }
    }
}
