//! Quest-RS kernel: policy on top of `hal`.
//!
//! The foundation kernel boots, reports the machine (banner), exercises the heap, takes the
//! serial console's receive interrupt, and runs the boot console: a line-oriented command
//! prompt on COM1 that the user-space shell will replace.
#![no_std]
#![no_main]
#![deny(unsafe_code)]
// Scheduler queries (runtime, replenishment rules, switch counts) used only by the ktest
// workloads in the test build.
#![cfg_attr(not(feature = "ktest"), allow(dead_code))]

extern crate alloc;

mod console;
mod locks;
mod drivers;
mod initrd;
mod fs;
mod futex;
mod futex_pi;
mod pipe;
mod process;
mod questv;
mod queshe;
mod sched;
mod ipc;
mod shm;
mod shmcomm;
mod memory;
mod poll;
mod epoll;
mod eventfd;
mod timerfd;
mod signal;
mod socket;
mod stop;
mod vfs;
mod tpipe;
mod syscall;
mod vcpu;
mod sync;
#[cfg(feature = "ktest")]
mod ktest;
#[cfg(feature = "ktest")]
mod ktest_sched;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use hal::println;

hal::entry_point!(kernel_main);

/// Version printed in the banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn kernel_main(boot: &'static hal::Boot) -> ! {
    let info = &boot.info;
    let mem = &boot.mem;
    let mut brand = [0u8; 48];
    println!();
    println!(
        "Quest-RS {VERSION} (x86_64{}) booted by {} via {}",
        if cfg!(feature = "ktest") { ", ktest build" } else { "" },
        if info.loader_name().is_empty() { "an unknown loader" } else { info.loader_name() },
        info.firmware.name(),
    );
    println!("cpu: {}{}", hal::cpu::brand(&mut brand), if hal::cpu::in_vm() { " (virtual machine)" } else { "" });

    if let Some(sb) = hal::questv::sandbox() {
        println!(
            "Quest-V: sandbox {} of {} on CPU {} ({} CPU(s)), console at {:#x} (IRQ {}), {} channel window(s)",
            sb.id, sb.count, sb.cpu, sb.cpus, sb.console_port, sb.console_irq, sb.channels
        );
    }
    match boot.acpi {
        Ok(p) => {
            println!(
                "CPUs: {} found (ACPI MADT), {} IOAPIC(s){}",
                p.cpu_count,
                p.ioapic_count,
                if p.cpus_ignored > 0 { " (more CPUs than the supported maximum were ignored)" } else { "" }
            );
        }
        Err(e) => match hal::mptable::probe() {
            Some(mp) => println!("CPUs: {} found (MP table; ACPI: {e})", mp.cpu_count),
            None => println!("CPUs: 1 assumed ({e}; no MP table either)"),
        },
    }
    println!(
        "memory map: {} entries{}, {} MiB usable; {} MiB free in {} frames; kernel image {:#x}-{:#x}",
        info.memory_regions().len(),
        if info.regions_dropped > 0 { " (some dropped)" } else { "" },
        mem.usable_bytes >> 20,
        (mem.free_frames as u64 * 4096) >> 20,
        mem.free_frames,
        mem.kernel_image.start,
        mem.kernel_image.end,
    );
    println!(
        "paging: 4-level, direct map of {} GiB at {:#x}, heap {} MiB, symbols: {}",
        mem.direct_map_bytes >> 30,
        hal::mm::DIRECT_MAP_BASE,
        mem.heap_bytes >> 20,
        hal::fault::symbol_count()
    );
    if !info.cmdline().is_empty() {
        println!("command line: {}", info.cmdline());
    }
    heap_self_check();

    let boot_fs = initrd::init(info);
    for opt in info.cmdline().split_whitespace() {
        if let Some(m) = opt.strip_prefix("sched.background=") {
            match sched::parse_background(m) {
                Some(on) => sched::set_default_background(on),
                None => println!("command line: sched.background={m}: expected on or off; using on"),
            }
        }
        if let Some(m) = opt.strip_prefix("sched.replenish=") {
            // Only the POSIX rules are offered: no admission test is sound for strict sliding
            // windows (docs/vcpu-sched.md).
            if m != "posix" {
                println!("command line: sched.replenish={m}: not supported (only posix: no admission test is sound for the sliding-window rules); using posix");
            }
        }
    }
    sched::init_this_cpu();
    vcpu::register_best_effort(0);
    hal::trap::set_exception_hook(process::on_exception);
    hal::user::set_syscall_handler(syscall::handle);
    hal::trap::set_user_return_hook(signal::on_user_return);
    let mp = if boot.acpi.is_err() { hal::mptable::probe() } else { None };
    // Under Quest-V the monitor names the sandbox's CPUs (there are no ACPI tables in a sandbox).
    let sandbox_cpus: Vec<u32> = match hal::questv::sandbox() {
        Some(sb) => (0..sb.cpus).filter_map(hal::questv::cpu_apic_id).collect(),
        None => Vec::new(),
    };
    let ids: &[u32] = match (&boot.acpi, &mp) {
        _ if !sandbox_cpus.is_empty() => &sandbox_cpus,
        (Ok(p), _) => &p.apic_ids[..p.cpu_count],
        (Err(_), Some(m)) => &m.apic_ids[..m.cpu_count],
        _ => &[],
    };
    match hal::smp::start_aps(info, ids, ap_main) {
        Ok(n) => println!("SMP: {n} CPU(s) online"),
        Err(e) => println!("SMP: application processors not started: {e}"),
    }
    println!(
        "timer: LAPIC ({}{}), TSC {} MHz{}",
        if hal::apic::x2apic_enabled() { "x2APIC" } else { "xAPIC" },
        if hal::apic::tsc_deadline_enabled() { ", TSC-deadline" } else { ", one-shot count-down" },
        boot.tsc_hz / 1_000_000,
        if hal::time::tsc_invariant() { ", invariant" } else { "" },
    );
    let (smep, smap) = hal::user::smep_smap();
    println!("user mode: syscall/iretq, SMEP {}, SMAP {}", if smep { "on" } else { "off" }, if smap { "on" } else { "off" });
    drivers::pci::init(info.cmdline());
    if let Err(e) = drivers::serial::init() {
        println!("serial: input bottom half not started: {e}");
    }
    match queshe::start() {
        Ok(Some(key)) => println!("queshe: this console is also on channels {key} (input) and {} (output)", key + 1),
        Ok(None) => {}
        Err(e) => println!("queshe: not started: {e}"),
    }
    drivers::can::init();
    drivers::usb::init();
    // The console: /boot/user_init (which starts the shell) unless this is the test build or
    // the command line says `console=kernel`; the kernel's own console if it is missing or ends.
    let kernel_console = cfg!(feature = "ktest") || info.cmdline().split_whitespace().any(|o| o == "console=kernel");
    let result = sched::spawn("console", 0, None, move || {
        if !kernel_console && boot_fs.read("user_init").is_some() {
            match process::spawn(&boot_fs, "user_init", &[], 0) {
                Ok(p) => {
                    p.exited.down();
                    println!("user_init exited (status {}); kernel console follows", p.exit_code.load(core::sync::atomic::Ordering::Relaxed));
                }
                Err(e) => println!("user_init: {e}; kernel console follows"),
            }
        }
        console::run(boot_fs)
    });
    if let Err(e) = result {
        println!("console: not started: {e}");
    }
    sched::idle()
}

/// Application processors: join the scheduler and idle until given work.
fn ap_main(cpu: usize) -> ! {
    sched::init_this_cpu();
    vcpu::register_best_effort(cpu);
    sched::idle()
}

/// A quick proof that `alloc` works before anything depends on it.
fn heap_self_check() {
    let v: Vec<u64> = (0..1000).collect();
    let b = Box::new(v.iter().sum::<u64>());
    let mut m = BTreeMap::new();
    for i in 0..100u32 {
        m.insert(i, i * i);
    }
    assert_eq!(*b, 499_500);
    assert_eq!(m.get(&12), Some(&144));
    let (used, free) = hal::mm::heap_usage();
    println!("heap: ok (Vec, Box, BTreeMap); {used} bytes used, {} KiB free", free / 1024);
}
