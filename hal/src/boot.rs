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

pub use bootinfo::{BootInfo, Firmware, MAX_MEMORY_REGIONS, MAX_MODULES, MemoryKind, MemoryRegion, Module};

/// Reads the multiboot2 information block at physical `mbi_phys` (below 4 GiB, reachable
/// through the boot direct map). What is read from it is decided by `bootinfo::parse` (pure,
/// checks every size and offset, fuzzed on the host); only the pointer handling is here.
pub(crate) fn parse(mbi_phys: u64) -> Result<BootInfo, &'static str> {
    if mbi_phys == 0 || mbi_phys % 8 != 0 || mbi_phys >= 1 << 32 {
        return Err("multiboot2 information pointer is null, misaligned or above 4 GiB");
    }
    let ptr = crate::mm::phys_to_virt(mbi_phys) as *const u8;
    // SAFETY: GRUB passed this address in EBX with the multiboot2 magic in EAX (checked by the
    // caller): it points at an information block, 8-byte aligned (checked above), below 4 GiB,
    // which the boot page tables map at the direct-map base. Its first 4 bytes are its size.
    let total = unsafe { core::ptr::read_volatile(ptr.cast::<u32>()) } as usize;
    if !(16..=bootinfo::MAX_TOTAL_SIZE).contains(&total) || mbi_phys + total as u64 > 1 << 32 {
        return Err("multiboot2 information block has an impossible total size");
    }
    // SAFETY: as above, the block's `total` bytes lie below 4 GiB (checked) and are mapped;
    // nothing has been allocated yet, so nothing writes them while the slice is used.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, total) };
    bootinfo::parse(bytes, mbi_phys)
}
