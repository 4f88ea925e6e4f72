//! Physical memory and paging.
//!
//! Layout of the kernel's address space (4-level paging):
//! - `0xffff_8000_0000_0000 + p`: the direct map of physical address `p`, for all RAM and at
//!   least the low 4 GiB (MMIO holes mapped uncached), non-executable.
//! - `0xffff_ffff_8000_0000 + p`: the kernel image, 4 KiB pages with per-section rights
//!   (text read+execute, rodata read-only, data/bss read+write, never writable and executable);
//!   the page below every kernel stack is left unmapped as a guard.
//! - The lower half is empty (user space will live there).
//!
//! Physical frames come from a bitmap allocator (crate `kmem`) built from the multiboot2 memory
//! map minus the first MiB, the kernel image, the boot modules, the boot information block and
//! the bitmap itself. The kernel heap is one contiguous run of frames, used through the direct
//! map by a linked-list allocator.
use core::sync::atomic::{AtomicU64, Ordering};

use kmem::{FrameAllocator, RegionSet};
pub use kmem::PhysRange;
use linked_list_allocator::LockedHeap;
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::{
    FrameAllocator as X86FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F,
    PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use crate::boot::{BootInfo, MemoryKind};

pub const PAGE_SIZE: u64 = 4096;
pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Virtual address of physical `p` in the direct map.
pub const fn phys_to_virt(p: u64) -> u64 {
    DIRECT_MAP_BASE + p
}

unsafe extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static __boot_stack_guard: u8;
    static __ist_df_guard: u8;
    static __ist_nmi_guard: u8;
    static __ist_mc_guard: u8;
}

fn sym(s: &'static u8) -> u64 {
    s as *const u8 as u64
}

static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);
/// The kernel page tables (shared by every CPU), for mappings made after boot.
static MAPPER: Mutex<Option<OffsetPageTable<'static>>> = Mutex::new(None);

/// Kernel stacks live here, one 256 KiB slot each: the stack at the top of its slot, the rest
/// unmapped, so an overflow hits a not-present page.
pub const KSTACK_BASE: u64 = 0xffff_c000_0000_0000;
const KSTACK_SLOT: u64 = 256 * 1024;
const KSTACK_MAX_PAGES: usize = 32;
const KSTACK_SLOTS: usize = 1 << 16;
static KERNEL_PML4: AtomicU64 = AtomicU64::new(0);
static DIRECT_LIMIT: AtomicU64 = AtomicU64::new(4 * GIB);

/// The kernel heap. Its lock is also taken by code running with interrupts disabled (the
/// scheduler allocates in its timer handler), so allocation runs with interrupts off: otherwise
/// an interrupt arriving while a thread holds the heap lock would deadlock its CPU.
struct IrqSafeHeap(LockedHeap);

// SAFETY: delegates to `LockedHeap`'s GlobalAlloc implementation, only adding an interrupt-off
// section around each call; layouts and pointers are passed through unchanged.
unsafe impl core::alloc::GlobalAlloc for IrqSafeHeap {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is forwarded unchanged.
        crate::cpu::without_interrupts(|| unsafe { self.0.alloc(layout) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // SAFETY: the caller's contract for `dealloc` is forwarded unchanged.
        crate::cpu::without_interrupts(|| unsafe { self.0.dealloc(ptr, layout) })
    }
}

#[global_allocator]
static HEAP: IrqSafeHeap = IrqSafeHeap(LockedHeap::empty());

/// Figures the boot path reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemStats {
    pub usable_bytes: u64,
    pub total_frames: usize,
    pub free_frames: usize,
    pub heap_bytes: u64,
    pub direct_map_bytes: u64,
    pub kernel_image: PhysRange,
    pub huge_pages_1g: bool,
}

/// Hands 4 KiB frames to the x86_64 crate's mapper during set-up.
struct Frames<'a>(&'a mut FrameAllocator<'static>);

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

fn nx_supported() -> bool {
    Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE)
}

fn gib_pages_supported() -> bool {
    crate::cpu::cpuid(0x8000_0001, 0).edx & (1 << 26) != 0
}

/// Builds the frame allocator, the kernel page tables and the heap. Called once, on the boot
/// CPU, while the boot page tables are active.
pub(crate) fn init(info: &BootInfo) -> Result<MemStats, &'static str> {
    // SAFETY: only the addresses of linker-defined symbols are taken.
    let kernel = unsafe { PhysRange::new(sym(&__kernel_phys_start), sym(&__kernel_phys_end)) };

    let mut usable: RegionSet<256> = RegionSet::new();
    for r in info.memory_regions() {
        if r.kind == MemoryKind::Available {
            let pr = r.range.page_align_inward();
            if !pr.is_empty() {
                usable.add(pr).map_err(|_| "too many memory-map regions")?;
            }
        }
    }
    let usable_bytes = usable.total();
    let ram_top = usable.max_address().ok_or("no usable memory in the memory map")?;
    let reserve = |set: &mut RegionSet<256>, r: PhysRange| set.remove(r).map_err(|_| "memory map too fragmented");
    reserve(&mut usable, PhysRange::new(0, MIB))?;
    reserve(&mut usable, kernel)?;
    reserve(&mut usable, info.info_range)?;
    for m in info.modules() {
        reserve(&mut usable, m.range)?;
    }

    // The bitmap itself: below 4 GiB so the boot direct map reaches it.
    let words = FrameAllocator::bitmap_words_for(ram_top);
    let bytes = (words as u64 * 8).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let bm = usable
        .first_fit(bytes, PAGE_SIZE)
        .filter(|r| r.end <= 4 * GIB)
        .ok_or("no room for the frame bitmap below 4 GiB")?;
    reserve(&mut usable, bm)?;
    // SAFETY:
    // 1. `bm` is usable RAM (from the memory map) below 4 GiB, so the direct map (boot tables
    //    now, kernel tables later: both map it at the same address) covers it for `bytes` bytes.
    // 2. It has been removed from `usable`, so the allocator never hands it out: this slice is
    //    the only reference to that memory for the rest of the run.
    // 3. Any bit pattern is a valid u64 and the address is page aligned.
    let bitmap: &'static mut [u64] =
        unsafe { core::slice::from_raw_parts_mut(phys_to_virt(bm.start) as *mut u64, words) };
    let mut alloc = FrameAllocator::new(bitmap, ram_top, &usable).map_err(|_| "frame bitmap too small")?;

    let direct_top = ram_top.max(4 * GIB).next_multiple_of(GIB);
    let (pml4, mapper) = build_kernel_tables(&mut alloc, info, direct_top)?;

    // SAFETY:
    // 1. `pml4` maps the kernel image at the address it is linked at with the right rights, the
    //    current stack (in .kstack) and the direct map, so execution continues seamlessly.
    // 2. The frames of the new tables come from the allocator and are referenced nowhere else.
    unsafe { Cr3::write(pml4, Cr3Flags::empty()) };
    KERNEL_PML4.store(pml4.start_address().as_u64(), Ordering::Release);
    *MAPPER.lock() = Some(mapper);
    DIRECT_LIMIT.store(direct_top, Ordering::Relaxed);

    // Heap: 1/8 of usable RAM, between 4 and 64 MiB; a fixed 8 MiB for the Quest-V monitor,
    // which leaves the machine's RAM to its sandboxes.
    let heap_bytes = if cfg!(feature = "monitor") {
        8 * MIB
    } else {
        (usable_bytes / 8).clamp(4 * MIB, 64 * MIB) & !(PAGE_SIZE - 1)
    };
    let heap = alloc
        .alloc_contiguous((heap_bytes / PAGE_SIZE) as usize, 1)
        .ok_or("not enough contiguous memory for the kernel heap")?;
    // SAFETY:
    // 1. `[heap, heap + heap_bytes)` is a run of frames just taken from the allocator: unused and
    //    owned by the heap from now on.
    // 2. The direct map covers it (it is usable RAM below `direct_top`).
    // 3. `init` is called once (this function runs once on the boot CPU).
    unsafe { HEAP.0.lock().init(phys_to_virt(heap) as *mut u8, heap_bytes as usize) };

    let stats = MemStats {
        usable_bytes,
        total_frames: alloc.total_count(),
        free_frames: alloc.free_count(),
        heap_bytes,
        direct_map_bytes: direct_top,
        kernel_image: kernel,
        huge_pages_1g: gib_pages_supported(),
    };
    *FRAMES.lock() = Some(alloc);
    Ok(stats)
}

fn build_kernel_tables(
    alloc: &mut FrameAllocator<'static>,
    info: &BootInfo,
    direct_top: u64,
) -> Result<(PhysFrame, OffsetPageTable<'static>), &'static str> {
    let pml4_phys = alloc.alloc().ok_or("out of memory for page tables")?;
    let pml4_ptr = phys_to_virt(pml4_phys) as *mut PageTable;
    // SAFETY:
    // 1. The frame was just allocated: nothing else refers to it, and the boot direct map
    //    reaches it (allocations come lowest first, well below 4 GiB; `Frames` asserts it).
    // 2. A zeroed PageTable is valid (all entries unused); we write it before referencing it.
    let pml4: &'static mut PageTable = unsafe {
        pml4_ptr.write(PageTable::new());
        &mut *pml4_ptr
    };
    // SAFETY: the direct map at DIRECT_MAP_BASE covers every frame this mapper will touch (see
    // above), so its physical-to-virtual translation is correct.
    let mut mapper = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(DIRECT_MAP_BASE)) };
    let mut frames = Frames(alloc);
    let nx = if nx_supported() { F::NO_EXECUTE } else { F::empty() };

    // Direct map.
    let is_ram = |start: u64, len: u64| {
        info.memory_regions().iter().any(|r| {
            r.kind != MemoryKind::Reserved && r.range.start < start + len && start < r.range.end
        })
    };
    let base = F::PRESENT | F::WRITABLE | F::GLOBAL | nx;
    let uncached = F::NO_CACHE | F::WRITE_THROUGH;
    let huge = gib_pages_supported();
    let mut p = 0;
    while p < direct_top {
        let va = VirtAddr::new(phys_to_virt(p));
        let pa = PhysAddr::new(p);
        if huge && p >= 4 * GIB && p + GIB <= direct_top {
            let page = Page::<Size1GiB>::from_start_address(va).map_err(|_| "misaligned")?;
            let frame = PhysFrame::from_start_address(pa).map_err(|_| "misaligned")?;
            // SAFETY: maps physical memory into the kernel-only direct map; the new tables are not
            // active yet, so no live mapping changes (the flush is ignored for that reason).
            unsafe { mapper.map_to(page, frame, base, &mut frames) }
                .map_err(|_| "direct map: mapping failed")?
                .ignore();
            p += GIB;
            continue;
        }
        let flags = if is_ram(p, 2 * MIB) { base } else { base | uncached };
        let page = Page::<Size2MiB>::from_start_address(va).map_err(|_| "misaligned")?;
        let frame = PhysFrame::from_start_address(pa).map_err(|_| "misaligned")?;
        // SAFETY: as above.
        unsafe { mapper.map_to(page, frame, flags, &mut frames) }
            .map_err(|_| "direct map: mapping failed")?
            .ignore();
        p += 2 * MIB;
    }

    // Kernel image, per section.
    // SAFETY: only addresses of linker-defined symbols are taken.
    let (text, rodata, data, guards) = unsafe {
        (
            (sym(&__text_start), sym(&__text_end)),
            (sym(&__rodata_start), sym(&__rodata_end)),
            (sym(&__data_start), sym(&__data_end)),
            [sym(&__boot_stack_guard), sym(&__ist_df_guard), sym(&__ist_nmi_guard), sym(&__ist_mc_guard)],
        )
    };
    let sections = [
        (text, F::PRESENT | F::GLOBAL),
        (rodata, F::PRESENT | F::GLOBAL | nx),
        (data, F::PRESENT | F::WRITABLE | F::GLOBAL | nx),
    ];
    for ((start, end), flags) in sections {
        let mut va = start;
        while va < end {
            if !guards.contains(&va) {
                let page = Page::<Size4KiB>::from_start_address(VirtAddr::new(va)).map_err(|_| "misaligned")?;
                let frame = PhysFrame::from_start_address(PhysAddr::new(va - KERNEL_BASE))
                    .map_err(|_| "misaligned")?;
                // SAFETY: maps the kernel's own image at its link address; tables not active yet.
                unsafe { mapper.map_to(page, frame, flags, &mut frames) }
                    .map_err(|_| "kernel map: mapping failed")?
                    .ignore();
            }
            va += PAGE_SIZE;
        }
    }
    // The kernel-stack area's top-level entry exists from the start, so every address space
    // made later (copying the kernel half of this PML4) sees the stacks made after it.
    let pdpt = frames.0.alloc().ok_or("out of memory for page tables")?;
    // SAFETY: fresh frame, reached through the boot direct map; a zeroed table is valid.
    unsafe { core::ptr::write_bytes(phys_to_virt(pdpt) as *mut u8, 0, PAGE_SIZE as usize) };
    let idx = ((KSTACK_BASE >> 39) & 0x1ff) as usize;
    mapper.level_4_table_mut()[idx].set_addr(PhysAddr::new(pdpt), F::PRESENT | F::WRITABLE);
    let frame = PhysFrame::from_start_address(PhysAddr::new(pml4_phys)).map_err(|_| "misaligned")?;
    Ok((frame, mapper))
}

/// Physical address of the kernel's top-level page table (what CR3 holds in kernel threads).
pub fn kernel_pml4() -> u64 {
    KERNEL_PML4.load(Ordering::Acquire)
}

/// A kernel stack with an unmapped guard region below it. Dropping it keeps the slot (with its
/// pages still mapped) for reuse by the next stack of the same size, up to `KSTACK_CACHE`
/// stacks; beyond that its pages are unmapped and their frames freed, so a burst of threads
/// (a thread storm) does not keep its memory after the threads are gone.
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
        if let Some(a) = FRAMES.lock().as_mut() {
            for &f in &frames[..n] {
                let _ = a.free(f);
            }
        }
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
            let mut frames = FRAMES.lock();
            let frames = frames.as_mut()?;
            let nx = if nx_supported() { F::NO_EXECUTE } else { F::empty() };
            for i in 0..pages as u64 {
                let p = frames.alloc()?;
                // SAFETY: a fresh frame, exclusively ours, covered by the direct map.
                unsafe { core::ptr::write_bytes(phys_to_virt(p) as *mut u8, 0, PAGE_SIZE as usize) };
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

/// Reads a u64 of kernel memory if the address is mapped (walks the active page tables through
/// the direct map). Used by the backtrace walker so a corrupt frame pointer cannot fault.
pub fn read_kernel_u64(va: u64) -> Option<u64> {
    if va % 8 != 0 || va < DIRECT_MAP_BASE {
        return None;
    }
    translate(va)?;
    // SAFETY: `translate` found a present mapping for `va`, and an aligned u64 never crosses a
    // page boundary, so the read touches only mapped memory; volatile because it may be racing.
    Some(unsafe { core::ptr::read_volatile(va as *const u64) })
}

/// If `addr` lies in the unmapped guard page below one of the kernel's stacks, that stack's name.
pub fn guard_page_of(addr: u64) -> Option<&'static str> {
    // SAFETY: only the addresses of linker-defined symbols are taken.
    let guards = unsafe {
        [
            (sym(&__boot_stack_guard), "boot CPU's kernel stack"),
            (sym(&__ist_df_guard), "double-fault stack"),
            (sym(&__ist_nmi_guard), "NMI stack"),
            (sym(&__ist_mc_guard), "machine-check stack"),
        ]
    };
    if let Some((_, n)) = guards.iter().find(|(g, _)| (*g..*g + PAGE_SIZE).contains(&addr)) {
        return Some(n);
    }
    let area = KSTACK_BASE..KSTACK_BASE + KSTACK_SLOTS as u64 * KSTACK_SLOT;
    (area.contains(&addr) && translate(addr).is_none()).then_some("kernel thread stack")
}

/// Physical address `va` maps to in the active page tables, if any.
pub fn translate(va: u64) -> Option<u64> {
    let (frame, _) = Cr3::read();
    let mut table = frame.start_address().as_u64();
    for level in (0..4).rev() {
        let index = (va >> (12 + 9 * level)) & 0x1ff;
        let entry_pa = table + index * 8;
        // SAFETY: page-table frames lie in RAM, which the direct map covers (both the boot and the
        // kernel tables map it), and an aligned u64 read of an entry has no side effects.
        let entry = unsafe { core::ptr::read_volatile(phys_to_virt(entry_pa) as *const u64) };
        if entry & 1 == 0 {
            return None;
        }
        let addr = entry & 0x000f_ffff_ffff_f000;
        if level > 0 && level < 3 && entry & (1 << 7) != 0 {
            let size = 1u64 << (12 + 9 * level);
            return Some((addr & !(size - 1)) + (va & (size - 1)));
        }
        if level == 0 {
            return Some(addr + (va & 0xfff));
        }
        table = addr;
    }
    None
}

/// The bytes of a boot module. Boot modules are reserved for the whole run (the allocator
/// never hands their frames out), so the slice stays valid.
pub fn module_bytes(m: &crate::boot::Module) -> &'static [u8] {
    let len = m.range.len() as usize;
    if len == 0 {
        return &[];
    }
    // SAFETY:
    // 1. The module's range was removed from usable memory before the frame allocator was built,
    //    so nothing ever writes it, and the direct map covers it (below 4 GiB, loaded by GRUB).
    // 2. u8 has no invalid bit patterns.
    unsafe { core::slice::from_raw_parts(phys_to_virt(m.range.start) as *const u8, len) }
}

/// Allocates one zeroed 4 KiB frame; returns its physical address.
pub fn alloc_frame() -> Option<u64> {
    let p = crate::cpu::without_interrupts(|| FRAMES.lock().as_mut()?.alloc())?;
    // SAFETY: the frame was just allocated (exclusively ours) and the direct map covers it.
    unsafe { core::ptr::write_bytes(phys_to_virt(p) as *mut u8, 0, PAGE_SIZE as usize) };
    Some(p)
}

/// Returns a frame obtained from [`alloc_frame`].
pub fn free_frame(p: u64) -> Result<(), kmem::Error> {
    crate::cpu::without_interrupts(|| match FRAMES.lock().as_mut() {
        Some(a) => a.free(p),
        None => Ok(()),
    })
}

/// (free, total) frame counts.
pub fn frame_counts() -> (usize, usize) {
    crate::cpu::without_interrupts(|| FRAMES.lock().as_ref().map_or((0, 0), |a| (a.free_count(), a.total_count())))
}

/// (used, free) bytes of the kernel heap.
pub fn heap_usage() -> (usize, usize) {
    crate::cpu::without_interrupts(|| {
        let h = HEAP.0.lock();
        (h.used(), h.free())
    })
}

/// Highest user address + 1 (the lower canonical half, minus the last page).
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// Rights of a user page. A page without `read` (PROT_NONE) is mapped but not accessible
/// to the program at all (a supervisor page: any user access faults); x86 cannot make a page
/// writable or executable without also making it readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UserAccess {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl UserAccess {
    /// Readable, plus `write` and `exec` as given.
    pub const fn readable(write: bool, exec: bool) -> UserAccess {
        UserAccess { read: true, write, exec }
    }
    /// No access at all (PROT_NONE).
    pub const NONE: UserAccess = UserAccess { read: false, write: false, exec: false };

    fn of_entry(e: u64) -> UserAccess {
        if e & 4 == 0 {
            return UserAccess::NONE;
        }
        UserAccess { read: true, write: e & 2 != 0, exec: e & (1 << 63) == 0 }
    }
}

/// Why a user-memory operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserMemError {
    /// Not a user address, or not mapped with the needed rights (EFAULT).
    Fault,
    /// No memory left (ENOMEM).
    NoMemory,
}

/// A user address space: its own top-level table whose upper half is the kernel's.
///
/// The owner serialises access (a process keeps it behind a lock); the kernel never touches
/// user memory through user addresses: every copy goes through the page tables and the direct
/// map, so a bad user pointer is an error, never a kernel fault.
#[derive(Debug)]
pub struct AddressSpace {
    pml4: u64,
    pages: usize,
}

fn user_flags(a: UserAccess) -> F {
    if !(a.read || a.write || a.exec) {
        // PROT_NONE: present (the frame stays this address space's) but not user-accessible.
        return F::PRESENT | if nx_supported() { F::NO_EXECUTE } else { F::empty() };
    }
    let mut f = F::PRESENT | F::USER_ACCESSIBLE;
    if a.write {
        f |= F::WRITABLE;
    }
    if !a.exec && nx_supported() {
        f |= F::NO_EXECUTE;
    }
    f
}

impl AddressSpace {
    /// An empty user half over the kernel's upper half.
    pub fn new() -> Result<AddressSpace, UserMemError> {
        let p = alloc_frame().ok_or(UserMemError::NoMemory)?;
        let kernel = kernel_pml4();
        // SAFETY: both are page-table frames reachable through the direct map; `p` is fresh
        // (ours alone). Copying the upper 256 entries shares the kernel's lower-level tables,
        // which is how every address space sees the same kernel (they are pre-created).
        unsafe {
            core::ptr::copy_nonoverlapping(
                (phys_to_virt(kernel) as *const u64).add(256),
                (phys_to_virt(p) as *mut u64).add(256),
                256,
            );
        }
        Ok(AddressSpace { pml4: p, pages: 0 })
    }

    /// Physical address of its top-level table (for CR3).
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// Pages mapped.
    pub fn pages(&self) -> usize {
        self.pages
    }

    fn with_mapper<R>(&mut self, f: impl FnOnce(&mut OffsetPageTable<'_>, &mut FrameAllocator<'static>) -> R) -> R {
        crate::cpu::without_interrupts(|| {
            // SAFETY: `pml4` is this address space's table, reachable through the direct map;
            // `&mut self` makes this the only software access to it while the mapper lives.
            let table = unsafe { &mut *(phys_to_virt(self.pml4) as *mut PageTable) };
            // SAFETY: the direct map covers every page-table frame.
            let mut m = unsafe { OffsetPageTable::new(table, VirtAddr::new(DIRECT_MAP_BASE)) };
            let mut frames = FRAMES.lock();
            f(&mut m, frames.as_mut().expect("frame allocator initialised"))
        })
    }

    /// Maps a zeroed page at `va` (page aligned, user half) with `access`; if one is mapped
    /// already its rights are widened to include `access`. Returns its physical address.
    pub fn map_zeroed(&mut self, va: u64, access: UserAccess) -> Result<u64, UserMemError> {
        if va % PAGE_SIZE != 0 || va >= USER_END {
            return Err(UserMemError::Fault);
        }
        if let Some((pa, old)) = self.lookup(va) {
            let merged =
                UserAccess { read: old.read || access.read, write: old.write || access.write, exec: old.exec || access.exec };
            if merged != old {
                self.protect(va, merged)?;
            }
            return Ok(pa);
        }
        let pa = alloc_frame().ok_or(UserMemError::NoMemory)?;
        let flags = user_flags(access);
        let r = self.with_mapper(|m, frames| {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
            let frame = PhysFrame::containing_address(PhysAddr::new(pa));
            let parents = F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE;
            // SAFETY: maps a fresh, zeroed frame into the user half of this address space;
            // nothing else refers to that frame.
            unsafe { m.map_to_with_table_flags(page, frame, flags, parents, &mut Frames(frames)) }
                .map(|f| f.flush())
                .map_err(|_| UserMemError::NoMemory)
        });
        if r.is_err() {
            let _ = free_frame(pa);
        } else {
            self.pages += 1;
        }
        r.map(|_| pa)
    }

    /// Changes the rights of the page at `va`.
    pub fn protect(&mut self, va: u64, access: UserAccess) -> Result<(), UserMemError> {
        self.with_mapper(|m, _| {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
            // SAFETY: changes the rights of a user page of this address space only.
            unsafe { m.update_flags(page, user_flags(access)) }.map(|f| f.flush()).map_err(|_| UserMemError::Fault)
        })
    }

    /// Unmaps the page at `va` and frees its frame (no-op if nothing is mapped).
    pub fn unmap(&mut self, va: u64) {
        let freed = self.with_mapper(|m, _| {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
            m.unmap(page).ok().map(|(frame, flush)| {
                flush.flush();
                frame.start_address().as_u64()
            })
        });
        if let Some(pa) = freed {
            let _ = free_frame(pa);
            self.pages -= 1;
        }
    }

    /// The frame and rights of the user page containing `va`.
    pub fn lookup(&self, va: u64) -> Option<(u64, UserAccess)> {
        if va >= USER_END {
            return None;
        }
        let mut table = self.pml4;
        for level in (0..4).rev() {
            let index = (va >> (12 + 9 * level)) & 0x1ff;
            // SAFETY: page-table frames are reachable through the direct map; aligned u64 read.
            let e = unsafe { core::ptr::read_volatile((phys_to_virt(table) as *const u64).add(index as usize)) };
            // Tables above the leaf are always user-accessible; a leaf without the user bit is a
            // PROT_NONE page.
            if e & 1 == 0 || (level > 0 && e & 4 == 0) {
                return None;
            }
            if level > 0 && e & (1 << 7) != 0 {
                return None; // user huge pages are never made
            }
            table = e & 0x000f_ffff_ffff_f000;
            if level == 0 {
                return Some((table, UserAccess::of_entry(e)));
            }
        }
        None
    }

    fn copy(&self, va: u64, len: usize, write: bool, mut f: impl FnMut(u64, usize, usize)) -> Result<(), UserMemError> {
        let end = va.checked_add(len as u64).ok_or(UserMemError::Fault)?;
        if end > USER_END {
            return Err(UserMemError::Fault);
        }
        // Check everything first, so a failed copy changes nothing.
        let mut p = va & !(PAGE_SIZE - 1);
        while p < end {
            match self.lookup(p) {
                Some((_, a)) if a.read && (a.write || !write) => {}
                _ => return Err(UserMemError::Fault),
            }
            p += PAGE_SIZE;
        }
        let mut done = 0usize;
        while done < len {
            let cur = va + done as u64;
            let (pa, _) = self.lookup(cur).ok_or(UserMemError::Fault)?;
            let off = (cur % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - off).min(len - done);
            f(pa + off as u64, done, n);
            done += n;
        }
        Ok(())
    }

    /// Copies `data` to user address `va` (the pages must be mapped writable).
    pub fn copy_to_user(&self, va: u64, data: &[u8]) -> Result<(), UserMemError> {
        self.copy(va, data.len(), true, |pa, at, n| {
            // SAFETY: `pa..pa+n` lies in one user frame of this address space (looked up just
            // now), reachable through the direct map; `data[at..at+n]` is in bounds.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr().add(at), phys_to_virt(pa) as *mut u8, n) }
        })
    }

    /// Writes user memory regardless of the page's rights (the loader filling read-only code).
    pub fn fill(&self, va: u64, data: &[u8]) -> Result<(), UserMemError> {
        self.copy(va, data.len(), false, |pa, at, n| {
            // SAFETY: as in `copy_to_user`.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr().add(at), phys_to_virt(pa) as *mut u8, n) }
        })
    }

    /// Copies user memory at `va` into `buf`.
    pub fn copy_from_user(&self, va: u64, buf: &mut [u8]) -> Result<(), UserMemError> {
        let len = buf.len();
        let ptr = buf.as_mut_ptr();
        self.copy(va, len, false, |pa, at, n| {
            // SAFETY: as in `copy_to_user`, reading; `ptr[at..at+n]` is within `buf`.
            unsafe { core::ptr::copy_nonoverlapping(phys_to_virt(pa) as *const u8, ptr.add(at), n) }
        })
    }

    /// Makes this the active address space of this CPU.
    pub fn activate(&self) {
        activate_root(self.pml4);
    }
}

/// Loads `root` into CR3 if it is not active already.
pub fn activate_root(root: u64) {
    let (cur, _) = Cr3::read();
    if cur.start_address().as_u64() != root {
        // SAFETY: `root` is the kernel's table or an `AddressSpace`'s, whose upper half is the
        // kernel's: the running kernel code, stack and data stay mapped across the switch.
        unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(root)), Cr3Flags::empty()) };
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        if self.pml4 == 0 {
            return;
        }
        // Leave it first if it is active on this CPU.
        if Cr3::read().0.start_address().as_u64() == self.pml4 {
            activate_root(kernel_pml4());
        }
        fn free_level(table: u64, level: u32) {
            for i in 0..512u64 {
                // SAFETY: a page-table frame of this (dying) address space, via the direct map.
                let e = unsafe { core::ptr::read_volatile((phys_to_virt(table) as *const u64).add(i as usize)) };
                if e & 1 == 0 {
                    continue;
                }
                let next = e & 0x000f_ffff_ffff_f000;
                if level > 1 {
                    free_level(next, level - 1);
                }
                let _ = free_frame(next);
            }
        }
        // Only the user half (entries 0..256) belongs to this address space.
        for i in 0..256u64 {
            // SAFETY: as above, the top-level table.
            let e = unsafe { core::ptr::read_volatile((phys_to_virt(self.pml4) as *const u64).add(i as usize)) };
            if e & 1 != 0 {
                let pdpt = e & 0x000f_ffff_ffff_f000;
                free_level(pdpt, 3);
                let _ = free_frame(pdpt);
            }
        }
        let _ = free_frame(self.pml4);
    }
}

impl AddressSpace {
    /// Every mapped user page: (virtual address, physical address, rights), in address order.
    pub fn pages_iter(&self) -> alloc::vec::Vec<(u64, u64, UserAccess)> {
        let mut out = alloc::vec::Vec::new();
        fn walk(table: u64, level: u32, base: u64, out: &mut alloc::vec::Vec<(u64, u64, UserAccess)>) {
            for i in 0..512u64 {
                // SAFETY: a page-table frame of this address space, via the direct map.
                let e = unsafe { core::ptr::read_volatile((phys_to_virt(table) as *const u64).add(i as usize)) };
                if e & 1 == 0 || (level > 0 && e & 4 == 0) {
                    continue;
                }
                let va = base | (i << (12 + 9 * level));
                let next = e & 0x000f_ffff_ffff_f000;
                if level == 0 {
                    out.push((va, next, UserAccess::of_entry(e)));
                } else if e & (1 << 7) == 0 {
                    walk(next, level - 1, va, out);
                }
            }
        }
        for i in 0..256u64 {
            // SAFETY: the top-level table, via the direct map.
            let e = unsafe { core::ptr::read_volatile((phys_to_virt(self.pml4) as *const u64).add(i as usize)) };
            if e & 1 != 0 && e & 4 != 0 {
                walk(e & 0x000f_ffff_ffff_f000, 2, i << 39, &mut out);
            }
        }
        out
    }

    /// A copy of this address space (every user page copied now: `fork`).
    pub fn duplicate(&self) -> Result<AddressSpace, UserMemError> {
        let mut child = AddressSpace::new()?;
        for (va, pa, access) in self.pages_iter() {
            let cpa = child.map_zeroed(va, access)?;
            // SAFETY: both frames are user pages reachable through the direct map; `cpa` is
            // fresh (the child's alone), `pa` is only read.
            unsafe {
                core::ptr::copy_nonoverlapping(phys_to_virt(pa) as *const u8, phys_to_virt(cpa) as *mut u8, PAGE_SIZE as usize)
            };
        }
        Ok(child)
    }

    /// Reads a u32 of user memory (futex words).
    pub fn read_u32(&self, va: u64) -> Result<u32, UserMemError> {
        let mut b = [0u8; 4];
        if va % 4 != 0 {
            return Err(UserMemError::Fault);
        }
        self.copy_from_user(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

impl AddressSpace {
    /// A placeholder that owns nothing (what a dead process keeps until it is reaped).
    pub fn new_empty() -> AddressSpace {
        AddressSpace { pml4: 0, pages: 0 }
    }
}

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
        let start = crate::cpu::without_interrupts(|| FRAMES.lock().as_mut()?.alloc_contiguous(pages, align_pages))?;
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
        crate::cpu::without_interrupts(|| {
            let mut g = FRAMES.lock();
            let a = g.as_mut().ok_or(TakeError::NotUsable(range.start))?;
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
        let start = crate::cpu::without_interrupts(|| FRAMES.lock().as_mut()?.alloc_contiguous(frames, 1))?;
        if start + frames as u64 * PAGE_SIZE > DIRECT_LIMIT.load(Ordering::Relaxed) {
            let _ = crate::cpu::without_interrupts(|| FRAMES.lock().as_mut().map(|a| a.free_contiguous(start, frames)));
            return None;
        }
        // SAFETY: the run was just allocated (exclusively ours) and lies below the direct-map
        // limit (checked above), so `[start, start + frames * 4 KiB)` is mapped writable.
        unsafe { core::ptr::write_bytes(phys_to_virt(start) as *mut u8, 0, frames * PAGE_SIZE as usize) };
        Some(FrameRun { start, frames })
    }

    /// Physical address of the first frame.
    pub fn phys(&self) -> u64 {
        self.start
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
        let _ = crate::cpu::without_interrupts(|| FRAMES.lock().as_mut().map(|a| a.free_contiguous(start, n)));
    }
}
