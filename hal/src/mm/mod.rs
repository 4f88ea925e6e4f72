//! Physical memory and paging, by concern:
//!
//! - [`tables`]: the kernel's page tables, built at boot;
//! - [`frames`]: the frame allocator and owned frames ([`Frame`], [`FrameRun`]);
//! - [`heap`]: the kernel heap (TLSF, bounded time);
//! - [`kstack`]: kernel stacks with guard regions;
//! - [`space`]: user address spaces and page-table roots;
//! - [`phys`]: physical regions owned outright ([`PhysRegion`]);
//! - [`shared`]: counted frames several address spaces map ([`SharedPage`]);
//! - [`walk`]: the one page-table walker the others read tables with.
//!
//! Layout of the kernel's address space (4-level paging):
//! - `0xffff_8000_0000_0000 + p`: the direct map of physical address `p`, for all RAM and at
//!   least the low 4 GiB (MMIO holes mapped uncached), non-executable.
//! - `0xffff_c000_0000_0000`: kernel stacks, one 256 KiB slot each, unmapped below the stack.
//! - `0xffff_ffff_8000_0000 + p`: the kernel image, 4 KiB pages with per-section rights
//!   (text read+execute, rodata read-only, data/bss read+write, never writable and executable);
//!   the page below every kernel stack is left unmapped as a guard.
//! - The lower half belongs to the running process's [`AddressSpace`] (empty in kernel threads).
//!
//! Physical frames come from a bitmap allocator (crate `kmem`) built from the multiboot2 memory
//! map minus the first MiB, the kernel image, the boot modules, the boot information block and
//! the bitmap itself. The kernel heap is one contiguous run of frames, used through the direct
//! map.
//!
//! Soundness: no safe function here takes an address it then dereferences or frees. Memory is
//! handed out in owning values (frames, runs, regions, stacks, address spaces) that give it back
//! on drop; user addresses are numbers checked against [`USER_END`] and the page tables.
use core::sync::atomic::{AtomicU64, Ordering};

use kmem::{FrameAllocator, RegionSet};
pub use kmem::PhysRange;
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::OffsetPageTable;

use crate::boot::{BootInfo, MemoryKind};

pub mod frames;
pub mod heap;
pub mod kstack;
pub mod phys;
pub mod shared;
pub mod space;
mod tables;
mod walk;

pub use frames::{Frame, FrameRun, frame_counts, outside_managed_ram};
pub use heap::heap_usage;
pub use kstack::{KSTACK_BASE, KernelStack, alloc_kernel_stack};
pub use phys::{PhysRegion, TakeError};
pub use shared::{SharedPage, SharedRun};
pub use space::{AddressSpace, FlushTicket, PageTableRoot, TLB_FLUSH_VECTOR, USER_END, UserAccess, UserMemError, activate_root, init_tlb_shootdown, kernel_root};

pub const PAGE_SIZE: u64 = 4096;
pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Virtual address of physical `p` in the direct map.
pub(crate) const fn phys_to_virt(p: u64) -> u64 {
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

/// The kernel page tables (shared by every CPU), for mappings made after boot.
static MAPPER: Mutex<Option<OffsetPageTable<'static>>> = Mutex::new(None);
static KERNEL_PML4: AtomicU64 = AtomicU64::new(0);
static DIRECT_LIMIT: AtomicU64 = AtomicU64::new(4 * GIB);

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

    // The counters of shared and copy-on-write frames (`shared`): one u32 per frame of RAM.
    let frames_total = (ram_top / PAGE_SIZE + 1) as usize;
    let count_bytes = (frames_total as u64 * 4).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let cr = usable
        .first_fit(count_bytes, PAGE_SIZE)
        .filter(|r| r.end <= 4 * GIB)
        .ok_or("no room for the frame counters below 4 GiB")?;
    reserve(&mut usable, cr)?;
    // SAFETY: as for the bitmap: usable RAM below 4 GiB (direct-mapped), removed from `usable`
    // so only this slice refers to it for the rest of the run; zeroed first (0 = not counted),
    // page aligned, and any bit pattern is a valid AtomicU32.
    let counts: &'static [core::sync::atomic::AtomicU32] = unsafe {
        core::ptr::write_bytes(phys_to_virt(cr.start) as *mut u8, 0, count_bytes as usize);
        core::slice::from_raw_parts(phys_to_virt(cr.start) as *const core::sync::atomic::AtomicU32, frames_total)
    };
    shared::init_counts(counts);
    let mut alloc = FrameAllocator::new(bitmap, ram_top, &usable).map_err(|_| "frame bitmap too small")?;

    let direct_top = ram_top.max(4 * GIB).next_multiple_of(GIB);
    let (pml4, mapper) = tables::build_kernel_tables(&mut alloc, info, direct_top)?;

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
    //    owned by the heap from now on (never freed).
    // 2. The direct map covers it (it is usable RAM below `direct_top`).
    // 3. `init` is called once (this function runs once on the boot CPU).
    unsafe { heap::init(heap, heap_bytes as usize) };

    let stats = MemStats {
        usable_bytes,
        total_frames: alloc.total_count(),
        free_frames: alloc.free_count(),
        heap_bytes,
        direct_map_bytes: direct_top,
        kernel_image: kernel,
        huge_pages_1g: gib_pages_supported(),
    };
    *frames::FRAMES.lock() = Some(alloc);
    BOOT_MODULES.call_once(|| info.modules().iter().map(|m| m.range).collect());
    Ok(stats)
}

/// Physical address of the kernel's top-level page table (what CR3 holds in kernel threads).
pub(crate) fn kernel_pml4() -> u64 {
    KERNEL_PML4.load(Ordering::Acquire)
}

/// Reads a u64 of kernel memory if the address is mapped (walks the active page tables through
/// the direct map). Used by the backtrace walker so a corrupt frame pointer cannot fault; only
/// kernel stacks and the kernel image are read (never the direct map: device memory there may
/// react to reads).
pub(crate) fn read_kernel_u64(va: u64) -> Option<u64> {
    let on_stack = kstack::KSTACK_AREA.contains(&va);
    if va % 8 != 0 || !(on_stack || va >= KERNEL_BASE) {
        return None;
    }
    translate(va)?;
    // SAFETY: `translate` found a present mapping for `va` in a kernel stack or the kernel image
    // (ordinary RAM), and an aligned u64 never crosses a page boundary, so the read touches only
    // mapped memory; volatile because it may be racing.
    Some(unsafe { core::ptr::read_volatile(va as *const u64) })
}

/// If `addr` lies in the unmapped guard page below one of the kernel's stacks, that stack's name.
pub(crate) fn guard_page_of(addr: u64) -> Option<&'static str> {
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
    (kstack::KSTACK_AREA.contains(&addr) && translate(addr).is_none()).then_some("kernel thread stack")
}

/// Physical address `va` maps to in the active page tables, if any.
pub(crate) fn translate(va: u64) -> Option<u64> {
    let root = Cr3::read().0.start_address().as_u64();
    // SAFETY: CR3 holds a live top-level table (the kernel's or a live address space's).
    unsafe { walk::translate(root, va, |_| true) }.map(|leaf| leaf.phys(va))
}

/// The boot modules' ranges as GRUB reported them (reserved for the whole run).
static BOOT_MODULES: spin::Once<alloc::vec::Vec<PhysRange>> = spin::Once::new();

/// The bytes of a boot module. Boot modules are reserved for the whole run (the allocator
/// never hands their frames out), so the slice stays valid. A `Module` whose range was changed
/// (its `range` field is public) to one GRUB did not report gets an empty slice.
pub fn module_bytes(m: &crate::boot::Module) -> &'static [u8] {
    let len = m.range.len() as usize;
    if len == 0 || !BOOT_MODULES.get().is_some_and(|r| r.contains(&m.range)) {
        return &[];
    }
    // SAFETY:
    // 1. The module's range was removed from usable memory before the frame allocator was built,
    //    so nothing ever writes it, and the direct map covers it (below 4 GiB, loaded by GRUB).
    // 2. u8 has no invalid bit patterns.
    unsafe { core::slice::from_raw_parts(phys_to_virt(m.range.start) as *const u8, len) }
}
