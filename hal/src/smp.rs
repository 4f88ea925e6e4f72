//! Application-processor start-up: INIT-SIPI-SIPI with a real-mode trampoline copied to
//! physical 0x8000. The trampoline goes 16 → 32 → 64-bit on the boot page tables (which map
//! the trampoline page identically and the kernel image), jumps to the higher half, switches
//! to the kernel page tables and the stack prepared for it, and calls `hal_ap_main`.
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::boot::{BootInfo, MemoryKind};
use crate::mm::phys_to_virt;

/// Physical page of the trampoline (SIPI vector 0x08).
pub const TRAMPOLINE: u64 = 0x8000;

global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .global hal_ap_trampoline_start
    .global hal_ap_trampoline_end
    .code16
hal_ap_trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl 0x8000 + (ap_gdt_ptr - hal_ap_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x18, $(0x8000 + (ap_pm32 - hal_ap_trampoline_start))
    .code32
ap_pm32:
    mov $0x20, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $(1 << 5), %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0x80000001, %eax
    cpuid
    mov %edx, %ebx
    mov $0xc0000080, %ecx
    rdmsr
    or $(1 << 8), %eax
    test $(1 << 20), %ebx
    jz 1f
    or $(1 << 11), %eax
1:
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0
    ljmp $0x08, $(0x8000 + (ap_lm64 - hal_ap_trampoline_start))
    .code64
ap_lm64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    movabs $hal_ap_long_entry, %rax
    jmp *%rax
    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
    .quad 0x00cf9a000000ffff        /* 0x18: 32-bit code */
    .quad 0x00cf92000000ffff        /* 0x20: 32-bit data */
ap_gdt_end:
ap_gdt_ptr:
    .short ap_gdt_end - ap_gdt - 1
    .long 0x8000 + (ap_gdt - hal_ap_trampoline_start)
hal_ap_trampoline_end:

    .text
    .global hal_ap_long_entry
hal_ap_long_entry:
    movabs $HAL_AP_CR3, %rax
    mov (%rax), %rax
    mov %rax, %cr3
    movabs $HAL_AP_STACK, %rax
    mov (%rax), %rsp
    xor %ebp, %ebp
    movabs $hal_ap_main, %rax
    call *%rax
2:
    hlt
    jmp 2b
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static hal_ap_trampoline_start: u8;
    static hal_ap_trampoline_end: u8;
}

#[unsafe(no_mangle)]
static HAL_AP_CR3: AtomicU64 = AtomicU64::new(0);
#[unsafe(no_mangle)]
static HAL_AP_STACK: AtomicU64 = AtomicU64::new(0);
static AP_INDEX: AtomicUsize = AtomicUsize::new(0);
static AP_STARTED: AtomicBool = AtomicBool::new(false);
static AP_MAIN: AtomicUsize = AtomicUsize::new(0);

/// The kernel's entry for application processors: `fn(cpu_index) -> !`.
pub type ApMain = fn(usize) -> !;

#[unsafe(no_mangle)]
extern "C" fn hal_ap_main() -> ! {
    let index = AP_INDEX.load(Ordering::Acquire);
    crate::gdt::init_ap(index);
    crate::trap::init();
    crate::apic::init_cpu(false);
    crate::percpu::init_cpu(index, crate::apic::id());
    crate::fpu::init_cpu(false);
    crate::user::init_cpu();
    let raw = AP_MAIN.load(Ordering::Acquire);
    AP_STARTED.store(true, Ordering::Release);
    // SAFETY: AP_MAIN holds an `ApMain` stored by `start_aps` before any AP was started.
    let main: ApMain = unsafe { core::mem::transmute::<usize, ApMain>(raw) };
    main(index)
}

/// Starts every processor in `apic_ids` except the boot CPU (index 0 = `apic_ids[0]` is the
/// caller). Each runs `main(index)`. Returns the number of CPUs online afterwards.
pub fn start_aps(info: &BootInfo, apic_ids: &[u32], main: ApMain) -> Result<usize, &'static str> {
    let page = crate::mm::PhysRange::new(TRAMPOLINE, TRAMPOLINE + 4096);
    let usable = info
        .memory_regions()
        .iter()
        .any(|r| r.kind == MemoryKind::Available && r.range.contains_range(&page));
    if !usable {
        return Err("physical page 0x8000 (AP trampoline) is not usable RAM");
    }
    // SAFETY: only the addresses of the trampoline's bounds are taken.
    let (start, end) = unsafe {
        (&hal_ap_trampoline_start as *const u8, &hal_ap_trampoline_end as *const u8)
    };
    let len = end as usize - start as usize;
    // SAFETY:
    // 1. 0x8000 is usable RAM (checked) below 1 MiB, which the frame allocator never hands out,
    //    so nothing else uses it; the direct map covers it.
    // 2. The source is the trampoline's bytes in .rodata, `len` bytes, not overlapping.
    unsafe { core::ptr::copy_nonoverlapping(start, phys_to_virt(TRAMPOLINE) as *mut u8, len) };
    HAL_AP_CR3.store(crate::mm::kernel_pml4(), Ordering::Release);
    AP_MAIN.store(main as usize, Ordering::Release);
    let me = crate::apic::id();
    let mut index = 1;
    for &id in apic_ids {
        if id == me {
            continue;
        }
        if index >= crate::percpu::MAX_CPUS {
            break;
        }
        let stack = crate::mm::alloc_kernel_stack(16).ok_or("out of memory for AP stacks")?;
        HAL_AP_STACK.store(stack.top(), Ordering::Release);
        core::mem::forget(stack); // the AP's idle stack lives for ever
        AP_INDEX.store(index, Ordering::Release);
        AP_STARTED.store(false, Ordering::Release);
        crate::apic::send_init(id);
        crate::time::spin_ns(10_000_000);
        for _ in 0..2 {
            crate::apic::send_startup(id, (TRAMPOLINE >> 12) as u8);
            let t0 = crate::time::now_ns();
            while !AP_STARTED.load(Ordering::Acquire) && crate::time::now_ns() - t0 < 200_000 {
                core::hint::spin_loop();
            }
            if AP_STARTED.load(Ordering::Acquire) {
                break;
            }
        }
        // Slow emulators: give it up to a second in all.
        let t0 = crate::time::now_ns();
        while !AP_STARTED.load(Ordering::Acquire) && crate::time::now_ns() - t0 < 1_000_000_000 {
            core::hint::spin_loop();
        }
        if !AP_STARTED.load(Ordering::Acquire) {
            crate::println!("smp: CPU with APIC id {id} did not start");
            continue;
        }
        index += 1;
    }
    Ok(crate::percpu::online())
}
