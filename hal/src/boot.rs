//! Machine entry: the multiboot2 header, the 32-bit entry GRUB jumps to, the switch to long mode,
//! and the copy of what the boot loader told us ([`BootInfo`]).
//!
//! GRUB (legacy BIOS and UEFI alike) enters `_start` in 32-bit protected mode with paging off,
//! EAX = multiboot2 magic and EBX = physical address of the boot information. The stub builds
//! boot page tables that map the first 4 GiB three times — identity (so the stub survives turning
//! paging on), at the direct-map base `0xffff_8000_0000_0000` and the first GiB at the kernel base
//! `0xffff_ffff_8000_0000` — enables PAE, long mode and NX, and calls [`hal_start`] on the boot
//! stack in the higher half. `mm::init` then replaces these tables with the real ones.
use core::arch::global_asm;

use crate::mm::PhysRange;

global_asm!(
    r#"
    .section .multiboot2_header, "a"
    .balign 8
mb2_header_start:
    .long 0xe85250d6                /* magic */
    .long 0                         /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header_start
    .long -(0xe85250d6 + (mb2_header_end - mb2_header_start))
    /* module alignment tag: page-align modules */
    .balign 8
    .short 6
    .short 0
    .long 8
    /* end tag */
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .boot.bss, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4096 * 4
boot_stack32:   .skip 1024
boot_stack32_top:

    .section .boot.data, "aw"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
no_lm_msg:
    .asciz "Quest-RS: this CPU does not support 64-bit long mode; halting.\r\n"

    .section .boot.text, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    mov $boot_stack32_top, %esp
    mov %eax, %edi                  /* multiboot2 magic -> 1st argument */
    mov %ebx, %esi                  /* boot information -> 2nd argument */

    /* Long mode available? */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    test $(1 << 29), %edx
    jz no_long_mode
    mov %edx, %ebp                  /* keep the feature bits: NX is bit 20 */

    /* PD entries: 2048 x 2 MiB pages covering 0..4 GiB, present | writable | huge. */
    xor %ecx, %ecx
1:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, boot_pd(,%ecx,8)
    movl $0, boot_pd+4(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 1b

    /* PDPT (low): 4 entries, one per PD. */
    xor %ecx, %ecx
2:
    mov %ecx, %eax
    shl $12, %eax
    add $boot_pd, %eax
    or $0x3, %eax
    mov %eax, boot_pdpt_low(,%ecx,8)
    inc %ecx
    cmp $4, %ecx
    jb 2b

    /* PDPT (high): entry 510 = first GiB, at 0xffffffff80000000. */
    mov $boot_pd, %eax
    or $0x3, %eax
    mov %eax, boot_pdpt_high + 510 * 8

    /* PML4: 0 = identity, 256 = direct map, 511 = kernel. */
    mov $boot_pdpt_low, %eax
    or $0x3, %eax
    mov %eax, boot_pml4
    mov %eax, boot_pml4 + 256 * 8
    mov $boot_pdpt_high, %eax
    or $0x3, %eax
    mov %eax, boot_pml4 + 511 * 8

    /* CR4.PAE, CR3, EFER.LME (+NXE), CR0.PG|WP|PE. */
    mov %cr4, %eax
    or $(1 << 5), %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $(1 << 8), %eax
    test $(1 << 20), %ebp
    jz 3f
    or $(1 << 11), %eax
3:
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode_entry

no_long_mode:
    mov $no_lm_msg, %esi
4:
    lodsb
    test %al, %al
    jz 6f
    mov %al, %bl
    mov $0x3fd, %dx
5:
    inb %dx, %al
    test $0x20, %al
    jz 5b
    mov %bl, %al
    mov $0x3f8, %dx
    outb %al, %dx
    jmp 4b
6:
    hlt
    jmp 6b

    .code64
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    movabs $__boot_stack_top, %rsp
    xor %ebp, %ebp                  /* end of the frame-pointer chain */
    movabs $hal_start, %rax
    call *%rax
7:
    hlt
    jmp 7b

    /* The boot CPU's kernel stack, with an unmapped guard page below it. */
    .section .kstack, "aw", @nobits
    .balign 4096
    .global __boot_stack_guard
__boot_stack_guard:
    .skip 4096
    .global __boot_stack_bottom
__boot_stack_bottom:
    .skip 65536
    .global __boot_stack_top
__boot_stack_top:
    .text
"#,
    options(att_syntax)
);

/// Multiboot2 magic GRUB leaves in EAX.
pub const MULTIBOOT2_MAGIC: u64 = 0x36d7_6289;

/// Which firmware loaded us (told apart by the EFI tags GRUB adds on UEFI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
        }
    }
}

pub const MAX_MEMORY_REGIONS: usize = 128;
pub const MAX_MODULES: usize = 16;
const NAME_LEN: usize = 64;
const CMDLINE_LEN: usize = 256;

/// A memory-map entry as the loader reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub range: PhysRange,
    pub kind: MemoryKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    Available,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Defective,
}

/// A boot module (a file GRUB loaded beside the kernel), named by its command line.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    pub range: PhysRange,
    name: [u8; NAME_LEN],
    name_len: usize,
}

impl Module {
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
}

/// What the boot loader told us, copied out of the multiboot2 information block so that the
/// block's memory can be reused. Fixed capacity: no heap exists when it is filled.
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub firmware: Firmware,
    regions: [MemoryRegion; MAX_MEMORY_REGIONS],
    region_count: usize,
    /// Entries the loader gave beyond [`MAX_MEMORY_REGIONS`] (ignored, reported in the banner).
    pub regions_dropped: usize,
    modules: [Module; MAX_MODULES],
    module_count: usize,
    cmdline: [u8; CMDLINE_LEN],
    cmdline_len: usize,
    loader: [u8; NAME_LEN],
    loader_len: usize,
    /// (revision, RSDT or XSDT physical address) from the loader's copy of the ACPI RSDP.
    pub acpi_root: Option<(u8, u64)>,
    /// Where the information block itself lies (reserved until it has been copied).
    pub info_range: PhysRange,
}

impl BootInfo {
    pub fn memory_regions(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.module_count]
    }
    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules().iter().find(|m| m.name() == name)
    }
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }
    pub fn loader_name(&self) -> &str {
        core::str::from_utf8(&self.loader[..self.loader_len]).unwrap_or("")
    }
    /// Total bytes of available RAM the loader reported.
    pub fn usable_bytes(&self) -> u64 {
        self.memory_regions()
            .iter()
            .filter(|r| r.kind == MemoryKind::Available)
            .map(|r| r.range.len())
            .sum()
    }
}

fn copy_str(dst: &mut [u8], src: &str) -> usize {
    // Truncate on a character boundary so the copy stays valid UTF-8.
    let mut n = src.len().min(dst.len());
    while !src.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&src.as_bytes()[..n]);
    n
}

/// Reads the multiboot2 information block at physical `mbi_phys` (below 4 GiB, reachable
/// through the boot direct map).
pub(crate) fn parse(mbi_phys: u64) -> Result<BootInfo, &'static str> {
    if mbi_phys == 0 || mbi_phys % 8 != 0 || mbi_phys >= 1 << 32 {
        return Err("multiboot2 information pointer is null, misaligned or above 4 GiB");
    }
    let ptr = crate::mm::phys_to_virt(mbi_phys) as *const multiboot2::BootInformationHeader;
    // SAFETY:
    // 1. GRUB passed this address in EBX with the multiboot2 magic in EAX (checked by the caller),
    //    so it points at a multiboot2 information block, 8-byte aligned (checked above).
    // 2. The block lies below 4 GiB, which the boot page tables map at the direct-map base, and
    //    nothing has been allocated yet, so nothing overwrites it while we read it.
    let mbi = unsafe { multiboot2::BootInformation::load(ptr) }
        .map_err(|_| "multiboot2 information block is malformed")?;

    let empty_region = MemoryRegion { range: PhysRange { start: 0, end: 0 }, kind: MemoryKind::Reserved };
    let empty_module = Module { range: PhysRange { start: 0, end: 0 }, name: [0; NAME_LEN], name_len: 0 };
    let mut info = BootInfo {
        firmware: if mbi.efi_sdt64_tag().is_some() || mbi.efi_memory_map_tag().is_some() {
            Firmware::Uefi
        } else {
            Firmware::Bios
        },
        regions: [empty_region; MAX_MEMORY_REGIONS],
        region_count: 0,
        regions_dropped: 0,
        modules: [empty_module; MAX_MODULES],
        module_count: 0,
        cmdline: [0; CMDLINE_LEN],
        cmdline_len: 0,
        loader: [0; NAME_LEN],
        loader_len: 0,
        acpi_root: None,
        info_range: PhysRange { start: mbi_phys, end: mbi_phys + mbi.total_size() as u64 },
    };

    let push = |info: &mut BootInfo, start: u64, len: u64, kind: MemoryKind| {
        if len == 0 {
            return;
        }
        if info.region_count == MAX_MEMORY_REGIONS {
            info.regions_dropped += 1;
            return;
        }
        info.regions[info.region_count] =
            MemoryRegion { range: PhysRange { start: start, end: start.saturating_add(len) }, kind };
        info.region_count += 1;
    };
    if let Some(mm) = mbi.memory_map_tag() {
        use multiboot2::MemoryAreaType as T;
        for a in mm.memory_areas() {
            let kind = match a.typ().into() {
                T::Available => MemoryKind::Available,
                T::AcpiAvailable => MemoryKind::AcpiReclaimable,
                T::ReservedHibernate => MemoryKind::AcpiNvs,
                T::Defective => MemoryKind::Defective,
                _ => MemoryKind::Reserved,
            };
            push(&mut info, a.start_address(), a.size(), kind);
        }
    } else if let Some(efi) = mbi.efi_memory_map_tag() {
        use multiboot2::EFIMemoryAreaType as E;
        for d in efi.memory_areas() {
            let kind = match d.ty {
                E::CONVENTIONAL
                | E::BOOT_SERVICES_CODE
                | E::BOOT_SERVICES_DATA
                | E::LOADER_CODE
                | E::LOADER_DATA => MemoryKind::Available,
                E::ACPI_RECLAIM => MemoryKind::AcpiReclaimable,
                E::ACPI_NON_VOLATILE => MemoryKind::AcpiNvs,
                E::UNUSABLE => MemoryKind::Defective,
                _ => MemoryKind::Reserved,
            };
            push(&mut info, d.phys_start, d.page_count * 4096, kind);
        }
    } else {
        return Err("the boot loader gave no memory map");
    }

    for m in mbi.module_tags() {
        if info.module_count == MAX_MODULES {
            break;
        }
        let mut name = [0u8; NAME_LEN];
        let name_len = copy_str(&mut name, m.cmdline().unwrap_or(""));
        info.modules[info.module_count] = Module {
            range: PhysRange { start: m.start_address() as u64, end: m.end_address() as u64 },
            name,
            name_len,
        };
        info.module_count += 1;
    }
    if let Some(c) = mbi.command_line_tag() {
        info.cmdline_len = copy_str(&mut info.cmdline, c.cmdline().unwrap_or(""));
    }
    if let Some(l) = mbi.boot_loader_name_tag() {
        info.loader_len = copy_str(&mut info.loader, l.name().unwrap_or(""));
    }
    if let Some(r) = mbi.rsdp_v2_tag() {
        info.acpi_root = Some((r.revision(), r.xsdt_address() as u64));
    } else if let Some(r) = mbi.rsdp_v1_tag() {
        info.acpi_root = Some((0, r.rsdt_address() as u64));
    }
    Ok(info)
}
