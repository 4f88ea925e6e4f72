//! GDT and TSS of the boot CPU, with separate interrupt stacks (IST) for double fault, NMI and
//! machine check so that those are reported even when the current stack is unusable.
//!
//! Selector layout (fixed, `syscall`/`sysret` rely on it later):
//! 0x08 kernel code, 0x10 kernel data, 0x18 user code (32-bit, unused), 0x20 user data,
//! 0x28 user code (64-bit), 0x30 TSS.
use core::arch::global_asm;

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;

use crate::percpu::MAX_CPUS;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, DescriptorFlags, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slots (1-based in the IDT, 0-based in the TSS array).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u16 = 0x20 | 3;
pub const USER_CS: u16 = 0x28 | 3;

global_asm!(
    r#"
    .section .kstack, "aw", @nobits
    .balign 4096
    .global __ist_df_guard
__ist_df_guard: .skip 4096
    .skip 16384
    .global __ist_df_top
__ist_df_top:
    .global __ist_nmi_guard
__ist_nmi_guard: .skip 4096
    .skip 16384
    .global __ist_nmi_top
__ist_nmi_top:
    .global __ist_mc_guard
__ist_mc_guard: .skip 4096
    .skip 16384
    .global __ist_mc_top
__ist_mc_top:
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static __ist_df_top: u8;
    static __ist_nmi_top: u8;
    static __ist_mc_top: u8;
    static __boot_stack_top: u8;
}


struct Tables {
    gdt: GlobalDescriptorTable<8>,
    code: SegmentSelector,
    data: SegmentSelector,
    tss_sel: SegmentSelector,
}

/// The boot CPU's TSS (before the heap exists). Written only through raw pointers: by
/// `init_bsp` once, then by `set_kernel_stack` on the boot CPU.
static mut BSP_TSS: TaskStateSegment = TaskStateSegment::new();
static BSP_TABLES: Once<Tables> = Once::new();
/// Each CPU's TSS, by CPU index.
static TSS_PTRS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

fn addr_of(sym: &'static u8) -> VirtAddr {
    VirtAddr::new(sym as *const u8 as u64)
}

fn make_tables(tss: *mut TaskStateSegment) -> Tables {
    // SAFETY: `tss` points at a TSS that lives for ever (a static or a leaked box); the
    // descriptor only records its address (the reference does not outlive this call).
    let tss: &'static TaskStateSegment = unsafe { &*tss };
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    gdt.append(Descriptor::UserSegment(DescriptorFlags::USER_CODE32.bits()));
    gdt.append(Descriptor::user_data_segment());
    gdt.append(Descriptor::user_code_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    Tables { gdt, code, data, tss_sel }
}

fn load(t: &'static Tables) {
    debug_assert_eq!(t.code.0, KERNEL_CS);
    debug_assert_eq!(t.data.0, KERNEL_DS);
    debug_assert_eq!(t.tss_sel.0, 0x30);
    t.gdt.load();
    // SAFETY:
    // 1. The GDT just loaded is 'static and holds these exact selectors (asserted above).
    // 2. Segment registers only select descriptors; reloading them with the kernel selectors
    //    while running kernel code in ring 0 keeps the current privilege level.
    // 3. The TSS descriptor is valid, and not yet marked busy: each CPU has its own GDT and
    //    loads its TSS once.
    unsafe {
        CS::set_reg(t.code);
        DS::set_reg(t.data);
        ES::set_reg(t.data);
        SS::set_reg(t.data);
        load_tss(t.tss_sel);
    }
}

/// Builds and loads the boot CPU's GDT and TSS (IST stacks with guard pages in .kstack).
pub(crate) fn init_bsp() {
    let tss = &raw mut BSP_TSS;
    // SAFETY:
    // 1. The symbols are defined in the assembly above; only their addresses are taken.
    // 2. `init_bsp` runs once, on the boot CPU, before anything else uses BSP_TSS.
    unsafe {
        (*tss).interrupt_stack_table[(IST_DOUBLE_FAULT - 1) as usize] = addr_of(&__ist_df_top);
        (*tss).interrupt_stack_table[(IST_NMI - 1) as usize] = addr_of(&__ist_nmi_top);
        (*tss).interrupt_stack_table[(IST_MACHINE_CHECK - 1) as usize] = addr_of(&__ist_mc_top);
        (*tss).privilege_stack_table[0] = addr_of(&__boot_stack_top);
    }
    TSS_PTRS[0].store(tss as u64, Ordering::Release);
    load(BSP_TABLES.call_once(|| make_tables(tss)));
}

/// Sets the stack this CPU switches to when an interrupt or `syscall` arrives from user mode
/// (TSS.RSP0 and the per-CPU copy the syscall stub uses). The scheduler calls it on every
/// switch to a thread that may run user code. The CPU writes interrupt frames there: taking a
/// [`KernelStack`](crate::mm::KernelStack) (mapped, writable, covered by no Rust reference)
/// rather than an address keeps that sound.
pub fn set_kernel_stack(stack: &crate::mm::KernelStack) {
    let top = stack.top();
    let cpu = crate::percpu::cpu_index();
    let p = TSS_PTRS[cpu].load(Ordering::Acquire) as *mut TaskStateSegment;
    if !p.is_null() {
        // SAFETY: `p` is this CPU's TSS (static or leaked box, never freed); only this CPU
        // writes it, one u64 field that the CPU reads on ring transitions only. The TSS is
        // packed (RSP0 sits at offset 4), hence the unaligned store.
        unsafe { core::ptr::write_unaligned(&raw mut (*p).privilege_stack_table[0], VirtAddr::new(top)) };
    }
    crate::percpu::this_cpu().kernel_rsp.store(top, Ordering::Relaxed);
}

/// Builds and loads an application processor's GDT and TSS; its IST stacks come from the
/// kernel-stack area (with guard pages).
pub(crate) fn init_ap(index: usize) {
    let mut tss = TaskStateSegment::new();
    for slot in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK] {
        let stack = crate::mm::alloc_kernel_stack(4).expect("out of memory for IST stacks");
        tss.interrupt_stack_table[(slot - 1) as usize] = VirtAddr::new(stack.top());
        core::mem::forget(stack);
    }
    let tss: *mut TaskStateSegment = alloc::boxed::Box::into_raw(alloc::boxed::Box::new(tss));
    TSS_PTRS[index].store(tss as u64, Ordering::Release);
    let tables: &'static Tables = alloc::boxed::Box::leak(alloc::boxed::Box::new(make_tables(tss)));
    load(tables);
}

