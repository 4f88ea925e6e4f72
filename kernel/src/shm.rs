//! Shared memory objects (issue 22): the pages of an in-memory file, of a `MAP_SHARED`
//! anonymous mapping, or of a System V shared memory segment.
//!
//! An object is a length and a sparse list of [`hal::mm::SharedPage`]s, made (zeroed) when
//! first touched — by a write through the file, a read of a mapping, or a page fault of a
//! process that maps it. A mapping maps the object's own frames, so every process that maps
//! it, and `read`/`write` of the file, see the same bytes at once (`msync` has nothing to do).
//!
//! Budget: the pages of files count against the in-memory file system's budget
//! (`vfs::TMPFS_MAX_BYTES`, ENOSPC beyond); the pages of anonymous objects are committed by
//! the processes that map them (`memory.rs`) or by the System V limits (`ipc/shm.rs`).
//!
//! After a shrinking truncate, pages a process still maps stay its until unmapped (Linux
//! would send SIGBUS on a touch beyond the end); the file itself forgets them.
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use hal::mm::{PAGE_SIZE, SharedPage};
use hal::sync::IrqLock;
use linux_raw_sys::errno::*;

use crate::syscall::Errno;

const PAGE: usize = PAGE_SIZE as usize;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Inner {
    len: u64,
    pages: Vec<Option<SharedPage>>,
}

pub struct ShmObject {
    /// Unique for the kernel's life (areas of `vmmap` name their object by it).
    pub id: u64,
    /// Pages count against the file system's budget.
    file: bool,
    inner: IrqLock<Inner>,
}

/// Pages of files made so far (their bytes count against the file system's budget).
static FILE_PAGES: AtomicU64 = AtomicU64::new(0);

/// Bytes the pages of files hold.
pub fn file_bytes() -> u64 {
    FILE_PAGES.load(Ordering::Relaxed) * PAGE_SIZE
}

impl ShmObject {
    /// A new empty object; `file`: its pages count against the file system's budget.
    pub fn new(file: bool, len: u64) -> Arc<ShmObject> {
        Arc::new(ShmObject { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), file, inner: IrqLock::new(Inner { len, pages: Vec::new() }) })
    }

    /// An anonymous object of these pages (already made), e.g. a shmcomm channel's region,
    /// which the kernel reads through the direct map while processes map the same pages.
    pub fn from_pages(pages: Vec<SharedPage>) -> Arc<ShmObject> {
        let len = pages.len() as u64 * PAGE_SIZE;
        let pages = pages.into_iter().map(Some).collect();
        Arc::new(ShmObject { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), file: false, inner: IrqLock::new(Inner { len, pages }) })
    }

    pub fn len(&self) -> u64 {
        self.inner.lock().len
    }

    /// Page `index` (made, zeroed, if it was not yet).
    pub fn page(&self, index: u64) -> Result<SharedPage, Errno> {
        let i = usize::try_from(index).map_err(|_| ENOMEM)?;
        let mut g = self.inner.lock();
        if g.pages.len() <= i {
            let more = i + 1 - g.pages.len();
            g.pages.try_reserve(more).map_err(|_| ENOMEM)?;
            g.pages.resize(i + 1, None);
        }
        if let Some(p) = &g.pages[i] {
            return Ok(p.clone());
        }
        if self.file && file_bytes() + PAGE_SIZE > crate::vfs::TMPFS_MAX_BYTES {
            return Err(ENOSPC);
        }
        let p = SharedPage::alloc().ok_or(ENOMEM)?;
        if self.file {
            FILE_PAGES.fetch_add(1, Ordering::Relaxed);
        }
        g.pages[i] = Some(p.clone());
        Ok(p)
    }

    /// Up to `max` bytes at `pos` (not beyond the length; holes read as zeros).
    pub fn read_at(&self, pos: u64, max: usize) -> Vec<u8> {
        let end = pos.saturating_add(max as u64).min(self.inner.lock().len);
        if pos >= end {
            return Vec::new();
        }
        let mut out = alloc::vec![0u8; (end - pos) as usize];
        let mut at = pos;
        while at < end {
            let (i, off) = ((at / PAGE_SIZE) as usize, (at % PAGE_SIZE) as usize);
            let n = (PAGE - off).min((end - at) as usize);
            let dst = &mut out[(at - pos) as usize..(at - pos) as usize + n];
            // The lock (interrupts off) for one page's copy at a time, not the whole read.
            if let Some(Some(p)) = self.inner.lock().pages.get(i) {
                p.read(off, dst);
            }
            at += n as u64;
        }
        out
    }

    /// Writes `data` at `pos`, extending the length.
    pub fn write_at(&self, pos: u64, data: &[u8]) -> Result<usize, Errno> {
        let end = pos.checked_add(data.len() as u64).ok_or(EFBIG)?;
        let mut at = pos;
        while at < end {
            let (i, off) = (at / PAGE_SIZE, (at % PAGE_SIZE) as usize);
            let n = (PAGE - off).min((end - at) as usize);
            let p = match self.page(i) {
                Ok(p) => p,
                Err(e) if at == pos => return Err(e),
                Err(_) => break, // a short write
            };
            p.write(off, &data[(at - pos) as usize..(at - pos) as usize + n]);
            at += n as u64;
            let mut g = self.inner.lock();
            g.len = g.len.max(at);
        }
        Ok((at - pos) as usize)
    }

    /// Sets the length: pages wholly beyond it are dropped, the tail of the last one zeroed.
    pub fn set_len(&self, len: u64) -> Result<(), Errno> {
        let mut g = self.inner.lock();
        if len < g.len {
            let keep = len.div_ceil(PAGE_SIZE) as usize;
            let from = keep.min(g.pages.len());
            let dropped = g.pages.drain(from..).filter(Option::is_some).count() as u64;
            if self.file {
                FILE_PAGES.fetch_sub(dropped, Ordering::Relaxed);
            }
            if !len.is_multiple_of(PAGE_SIZE)
                && let Some(Some(p)) = g.pages.get((len / PAGE_SIZE) as usize)
            {
                p.zero_from((len % PAGE_SIZE) as usize);
            }
        }
        g.len = len;
        Ok(())
    }
}

impl Drop for ShmObject {
    fn drop(&mut self) {
        if self.file {
            let made = self.inner.lock().pages.iter().filter(|p| p.is_some()).count() as u64;
            FILE_PAGES.fetch_sub(made, Ordering::Relaxed);
        }
    }
}
