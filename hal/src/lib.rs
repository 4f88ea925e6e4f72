//! Quest-RS hardware abstraction layer: the only crate of the kernel where `unsafe` lives.
//!
//! It owns the machine from GRUB's jump to `_start` until it calls the kernel's main function
//! (declared with [`entry_point!`]) with a [`BootInfo`]: long mode, GDT/TSS/IDT, the fault
//! reporter, the frame allocator, the kernel page tables and the heap are up by then. Everything
//! it exposes is a safe API.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod acpi;
pub mod apic;
pub mod boot;
pub mod context;
pub mod cpu;
pub mod dma;
pub mod fault;
pub mod fpu;
pub mod gdt;
pub mod ioapic;
pub mod mm;
pub mod mptable;
pub mod pci;
pub mod percpu;
pub mod pic;
pub mod questv;
pub mod serial;
pub mod smp;
pub mod svm;
pub mod sync;
pub mod time;
pub mod trap;
pub mod user;

pub use boot::BootInfo;

/// What `hal_start` hands the kernel.
pub struct Boot {
    pub info: BootInfo,
    pub mem: mm::MemStats,
    /// Processors, IOAPICs and power-off registers from ACPI, or why they are unknown.
    pub acpi: Result<&'static acpi::Platform, &'static str>,
    /// TSC frequency (Hz).
    pub tsc_hz: u64,
}

unsafe extern "Rust" {
    /// The kernel's main function, defined by [`entry_point!`].
    safe fn __quest_kernel_main(boot: &'static Boot) -> !;
}

/// Declares the kernel's main function: `entry_point!(main)` with `fn main(&'static hal::Boot) -> !`.
#[macro_export]
macro_rules! entry_point {
    ($main:path) => {
        #[allow(unsafe_code)]
        #[unsafe(export_name = "__quest_kernel_main")]
        fn __quest_kernel_main(boot: &'static $crate::Boot) -> ! {
            let f: fn(&'static $crate::Boot) -> ! = $main;
            f(boot)
        }
    };
}

static BOOT: spin::Once<Boot> = spin::Once::new();

fn die(msg: &str) -> ! {
    fatal_println!("Quest-RS: fatal boot error: {msg}");
    cpu::power_off(cpu::ExitCode::Failure)
}

/// First Rust code: called by the boot stub on the boot stack with the multiboot2 magic and the
/// physical address of the boot information.
#[unsafe(no_mangle)]
extern "C" fn hal_start(magic: u64, mbi_phys: u64) -> ! {
    serial::init();
    gdt::init_bsp();
    trap::init();
    if magic != boot::MULTIBOOT2_MAGIC {
        die("not started by a multiboot2 boot loader (bad magic)");
    }
    let info = boot::parse(mbi_phys).unwrap_or_else(|e| die(e));
    let mem = mm::init(&info).unwrap_or_else(|e| die(e));
    if let Some(m) = info.module("kernel.sym") {
        fault::set_symbols(mm::module_bytes(m));
    }
    // In a Quest-V sandbox the 8259s belong to the monitor (which masked them): leave them be.
    if questv::sandbox().is_none() {
        pic::init();
    }
    let acpi = acpi::init(info.acpi_root);
    apic::init_cpu(true);
    percpu::init_cpu(0, apic::id());
    fpu::init_cpu(true);
    user::init_cpu();
    let tsc_hz = time::init();
    let boot = BOOT.call_once(|| Boot { info, mem, acpi, tsc_hz });
    __quest_kernel_main(boot)
}
