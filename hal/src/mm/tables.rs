//! The kernel's page tables, built once at boot (while GRUB's boot tables from `boot.rs` are
//! active): the direct map of physical memory, the kernel image per section, and the top-level
//! entry of the kernel-stack area, made up front so every address space shares it.
use kmem::FrameAllocator;
use x86_64::structures::paging::{Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame, Size1GiB, Size2MiB, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use super::frames::Frames;
use super::{DIRECT_MAP_BASE, GIB, KERNEL_BASE, MIB, PAGE_SIZE, gib_pages_supported, nx_supported, phys_to_virt, sym};
use super::{__boot_stack_guard, __data_end, __data_start, __ist_df_guard, __ist_mc_guard, __ist_nmi_guard, __rodata_end, __rodata_start, __text_end, __text_start};
use crate::boot::{BootInfo, MemoryKind};

pub(super) fn build_kernel_tables(
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
    let idx = ((super::kstack::KSTACK_BASE >> 39) & 0x1ff) as usize;
    mapper.level_4_table_mut()[idx].set_addr(PhysAddr::new(pdpt), F::PRESENT | F::WRITABLE);
    let frame = PhysFrame::from_start_address(PhysAddr::new(pml4_phys)).map_err(|_| "misaligned")?;
    Ok((frame, mapper))
}

