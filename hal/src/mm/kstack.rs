//! Kernel stacks: 256 KiB slots above [`KSTACK_BASE`], the stack at the top of its slot and the
//! rest unmapped, so an overflow hits a not-present page (a guard region) and is reported.
use x86_64::structures::paging::{Mapper, Page, PageTableFlags as F, PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use super::frames::{Frames, with_frames, zero_fresh};
use super::{MAPPER, PAGE_SIZE, nx_supported};
use spin::Mutex;

/// Kernel stacks live here, one 256 KiB slot each.
pub const KSTACK_BASE: u64 = 0xffff_c000_0000_0000;
const KSTACK_SLOT: u64 = 256 * 1024;
const KSTACK_MAX_PAGES: usize = 32;
const KSTACK_SLOTS: usize = 1 << 16;

/// The kernel-stack area (for the fault reporter's guard-page check).
pub(super) const KSTACK_AREA: core::ops::Range<u64> = KSTACK_BASE..KSTACK_BASE + KSTACK_SLOTS as u64 * KSTACK_SLOT;

/// A kernel stack with an unmapped guard region below it: every page of it mapped writable for
/// as long as the value lives. Dropping it keeps the slot (with its pages still mapped) for
/// reuse by the next stack of the same size, up to `KSTACK_CACHE` stacks; beyond that its pages
/// are unmapped and their frames freed, so a burst of threads (a thread storm) does not keep its
/// memory after the threads are gone.
#[derive(Debug)]
pub struct KernelStack {
    slot: usize,
    pages: usize,
}

struct StackSlots {
    next: usize,
    /// Slots whose stack pages are still mapped: (slot, pages).
    free: alloc::vec::Vec<(usize, usize)>,
    /// Slots with nothing mapped.
    bare: alloc::vec::Vec<usize>,
}

/// How many freed stacks stay mapped for reuse.
const KSTACK_CACHE: usize = 64;

static STACK_SLOTS: Mutex<StackSlots> =
    Mutex::new(StackSlots { next: 0, free: alloc::vec::Vec::new(), bare: alloc::vec::Vec::new() });

fn stack_top(slot: usize) -> u64 {
    KSTACK_BASE + (slot as u64 + 1) * KSTACK_SLOT
}

impl KernelStack {
    /// One past the highest byte of the stack (16-byte aligned).
    pub fn top(&self) -> u64 {
        stack_top(self.slot)
    }
    /// Lowest mapped byte.
    pub fn bottom(&self) -> u64 {
        self.top() - self.pages as u64 * PAGE_SIZE
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        let cached = crate::cpu::without_interrupts(|| {
            let mut s = STACK_SLOTS.lock();
            if s.free.len() < KSTACK_CACHE {
                s.free.push((self.slot, self.pages));
                true
            } else {
                false
            }
        });
        if !cached {
            release_stack(self.slot, self.pages, self.pages);
        }
    }
}

/// Unmaps the lowest `mapped` pages of a `pages`-page stack in `slot` (the stack's pages are
/// mapped from its bottom up), frees their frames and returns the slot as bare. The TLB entries
/// are flushed on this CPU, the one that ran the stack's thread (a dead thread's stack is
/// dropped on its own CPU after switching away) or that just failed to build it; a stack is
/// never touched from another CPU, and a reused slot is flushed again when it is mapped.
fn release_stack(slot: usize, pages: usize, mapped: usize) {
    crate::cpu::without_interrupts(|| {
        let mut frames = [0u64; KSTACK_MAX_PAGES];
        let mut n = 0;
        {
            let mut mapper = MAPPER.lock();
            if let Some(mapper) = mapper.as_mut() {
                let bottom = stack_top(slot) - pages as u64 * PAGE_SIZE;
                for i in 0..mapped.min(KSTACK_MAX_PAGES) as u64 {
                    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(bottom + i * PAGE_SIZE));
                    if let Ok((frame, flush)) = mapper.unmap(page) {
                        flush.flush();
                        frames[n] = frame.start_address().as_u64();
                        n += 1;
                    }
                }
            }
        }
        let _ = with_frames(|a| {
            for &f in &frames[..n] {
                let _ = a.free(f);
            }
        });
        STACK_SLOTS.lock().bare.push(slot);
    });
}

/// Allocates a kernel stack of `pages` 4 KiB pages (at most 32) with a guard region below.
pub fn alloc_kernel_stack(pages: usize) -> Option<KernelStack> {
    if pages == 0 || pages > KSTACK_MAX_PAGES {
        return None;
    }
    crate::cpu::without_interrupts(|| {
        let mut slots = STACK_SLOTS.lock();
        if let Some(i) = slots.free.iter().position(|&(_, p)| p == pages) {
            let (slot, pages) = slots.free.swap_remove(i);
            return Some(KernelStack { slot, pages });
        }
        let slot = match slots.bare.pop() {
            Some(s) => s,
            None if slots.next == KSTACK_SLOTS => return None,
            None => {
                slots.next += 1;
                slots.next - 1
            }
        };
        drop(slots);
        let bottom = stack_top(slot) - pages as u64 * PAGE_SIZE;
        let mut mapped = 0;
        let ok = (|| {
            let mut mapper = MAPPER.lock();
            let mapper = mapper.as_mut()?;
            let mut frames = super::frames::FRAMES.lock();
            let frames = frames.as_mut()?;
            let nx = if nx_supported() { F::NO_EXECUTE } else { F::empty() };
            for i in 0..pages as u64 {
                let p = frames.alloc()?;
                // SAFETY: a fresh frame, exclusively ours; the allocator manages direct-mapped RAM.
                unsafe { zero_fresh(p, 1) };
                let va = bottom + i * PAGE_SIZE;
                let page = Page::<Size4KiB>::from_start_address(VirtAddr::new(va)).ok()?;
                let frame = PhysFrame::from_start_address(PhysAddr::new(p)).ok()?;
                // SAFETY: the slot's addresses are used by no one else (a slot is handed out to
                // one stack at a time and is unmapped when bare), so mapping fresh frames there
                // changes no existing mapping.
                match unsafe { mapper.map_to(page, frame, F::PRESENT | F::WRITABLE | nx, &mut Frames(frames)) } {
                    Ok(f) => f.flush(),
                    Err(_) => {
                        let _ = frames.free(p);
                        return None;
                    }
                }
                mapped += 1;
            }
            Some(())
        })();
        match ok {
            Some(()) => Some(KernelStack { slot, pages }),
            None => {
                // Out of memory part-way: give back what was mapped (before, the half-mapped
                // stack went into the reuse list and a later thread would have faulted on it).
                release_stack(slot, pages, mapped);
                None
            }
        }
    })
}
