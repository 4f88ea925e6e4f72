//! The Quest-V monitor: partitions one machine among sandboxes and then stays out of the way.
//!
//! GRUB loads it (multiboot2) with the partition blob (module `partition`), the Quest kernel
//! (`quest`, a load-only ELF), its /boot archive (`initrd`) and symbol map (`quest.sym`). On
//! the boot CPU it checks SVM and nested paging, decodes and re-validates the plan against
//! the real machine, takes each sandbox's RAM and each channel's region out of its own
//! allocator, builds per-sandbox nested page tables (RAM + channel windows, nothing else), I/O
//! and MSR permission maps and a VMCB, loads the kernel and its multiboot2 information into
//! the sandbox's RAM, and starts every core. Each core then runs its sandbox's boot processor
//! (or idles if it has none) and handles the few exits the policy intercepts
//! (`monitor_core::policy`): after boot, none in normal operation.
//!
//! A sandbox that accesses memory outside its partition, triple-faults, receives INIT or uses
//! a forbidden instruction is stopped with a report on the monitor's console; the others keep
//! running. When every sandbox has stopped or powered off, the monitor powers the machine off.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

mod devices;
mod exits;
mod setup;

use exits::*;
use setup::*;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use hal::mm::PhysRegion;
use hal::println;
use hal::svm::GuestRegs;
use monitor_core::guest::{self, ModuleSpec};
use monitor_core::npt::{self, Rights};
use monitor_core::policy::{self, Counters, Exit, IoAction, MsrWrite, SandboxView};
use monitor_core::svm::{self as vmcb, ctl, save};
use monitor_core::{insn, linux, walk};
use partition::{Console, Image, Machine, Plan, PhysRange};
use quest_abi::questv::{self as abi, EXIT_REASONS, ExitReason};
use spin::{Mutex, Once};

hal::entry_point!(monitor_main);

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAX_CPUS: usize = hal::percpu::MAX_CPUS;
const NO_SANDBOX: u32 = u32::MAX;
/// The local APIC's MMIO page (xAPIC mode).
const XAPIC_PAGE: u64 = 0xfee0_0000;

/// Sandbox states.
const RUNNING: u8 = 0;
const POWERED_OFF: u8 = 1;
const STOPPED: u8 = 2;
const NOT_STARTED: u8 = 3;

/// A sandbox as the monitor keeps it after launch.
struct SandboxRt {
    id: u8,
    name: String,
    /// Its RAM (host-physical, owned).
    ram: PhysRegion,
    /// Guest-physical pieces of its RAM: (guest, offset in `ram`, len).
    ram_map: Vec<(u64, u64, u64)>,
    console_irq: Option<u8>,
    /// APIC ids of its cores.
    apic_ids: Vec<u32>,
    /// Physical CPU indices of its cores (same order as `apic_ids`).
    cpus: Vec<u32>,
    state: AtomicU8,
    // Kept alive for the hardware: nested page tables, I/O and MSR permission maps.
    _npt: PhysRegion,
    iopm: PhysRegion,
    msrpm: PhysRegion,
    /// Nested CR3.
    ncr3: u64,
    /// Its view of PCI configuration space.
    pci: Mutex<monitor_core::pci::ConfigSpace>,
    /// ISA IRQs of its PCI functions' INTx lines.
    pci_irqs: Vec<u8>,
    /// A Linux sandbox with PCI functions: its virtual IOAPIC.
    vioapic: Option<Mutex<monitor_core::vioapic::VirtualIoApic>>,
    /// Refused PCI accesses (configuration writes, other sandboxes' device ports).
    pci_refused: AtomicU64,
    view: SandboxView,
    entry: Entry,
}

/// How a sandbox's boot processor starts.
#[derive(Clone, Copy, Debug)]
enum Entry {
    /// A Quest kernel: multiboot2, `ebx` = the information block.
    Multiboot { entry: u32, mbi: u64 },
    /// A Linux kernel: its 32-bit boot protocol entry, `esi` = the zero page.
    Linux { entry: u32, zero_page: u64 },
}

impl Entry {
    fn address(&self) -> u32 {
        match *self {
            Entry::Multiboot { entry, .. } | Entry::Linux { entry, .. } => entry,
        }
    }
}

impl SandboxRt {
    /// Host offset in `ram` of guest-physical `gpa` with `len` bytes after it in the same piece.
    fn offset_of(&self, gpa: u64, len: u64) -> Option<u64> {
        self.ram_map
            .iter()
            .find(|&&(g, _, l)| gpa >= g && gpa.checked_add(len).is_some_and(|e| e <= g + l))
            .map(|&(g, off, _)| off + (gpa - g))
    }

    fn read_byte(&self, gpa: u64) -> Option<u8> {
        let off = self.offset_of(gpa, 1)?;
        let mut b = [0u8];
        self.ram.read(off, &mut b);
        Some(b[0])
    }
}

static SANDBOXES: Once<Vec<SandboxRt>> = Once::new();
/// Shared channel regions (owned for the whole run).
static CHANNELS: Once<Vec<PhysRegion>> = Once::new();
/// The sandbox each CPU runs (index into SANDBOXES) or NO_SANDBOX.
static CPU_SANDBOX: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(NO_SANDBOX) }; MAX_CPUS];
/// A sandbox's application processors wait here for their STARTUP IPI: 0, or vector + 1.
static SIPI: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Whether the core runs guest code (so an INIT from the monitor lands as an exit, not a reset).
static IN_GUEST: [core::sync::atomic::AtomicBool; MAX_CPUS] = [const { core::sync::atomic::AtomicBool::new(false) }; MAX_CPUS];
static COUNTERS: [[AtomicU64; EXIT_REASONS]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; EXIT_REASONS] }; MAX_CPUS];
/// Nanoseconds spent handling those exits (exit to the next VMRUN), per CPU and reason.
static MONITOR_NS: [[AtomicU64; EXIT_REASONS]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; EXIT_REASONS] }; MAX_CPUS];
static TSC_KHZ: AtomicU32 = AtomicU32::new(0);
/// Serialises the monitor's console reports and the IOAPIC programming.
static REPORT: Mutex<()> = Mutex::new(());

fn refuse(why: &str) -> ! {
    println!("Quest-V: refusing to start: {why}");
    hal::cpu::power_off(hal::cpu::ExitCode::Failure)
}

fn monitor_main(boot: &'static hal::Boot) -> ! {
    let info = &boot.info;
    println!();
    println!("Quest-V monitor {VERSION} (x86_64, AMD-V) booted by {}", info.loader_name());
    let caps = hal::svm::caps().unwrap_or_else(|e| refuse(e));
    if !caps.nested_paging {
        refuse("the CPU has SVM but no nested paging (QEMU: use -cpu EPYC or -cpu max)");
    }
    if !hal::apic::has_x2apic() {
        println!(
            "Quest-V: WARNING: no x2APIC: each sandbox gets its core's xAPIC page mapped, so the monitor \
             cannot filter the IPIs a sandbox sends (with x2APIC it checks every ICR write)"
        );
    }
    let platform = boot.acpi.unwrap_or_else(|e| refuse(&format!("no ACPI processor list: {e}")));
    let apic_ids: Vec<u32> = platform.apic_ids[..platform.cpu_count].to_vec();
    let ram_top = info
        .memory_regions()
        .iter()
        .filter(|r| r.kind == hal::boot::MemoryKind::Available)
        .map(|r| r.range.end)
        .max()
        .unwrap_or(0);
    let machine = Machine { cpus: apic_ids.len() as u32, memory_bytes: ram_top };
    println!(
        "SVM: revision {}, {} ASIDs, nested paging, next-RIP save {}; {} CPUs, RAM up to {:#x}, TSC {} MHz",
        caps.revision,
        caps.asids,
        if caps.nrip_save { "yes" } else { "no (lengths decoded)" },
        machine.cpus,
        ram_top,
        boot.tsc_hz / 1_000_000
    );
    TSC_KHZ.store((boot.tsc_hz / 1000) as u32, Ordering::Relaxed);

    let module = |name: &str| info.module(name).map(hal::mm::module_bytes);
    let blob = module("partition").unwrap_or_else(|| refuse("no `partition` boot module (the compiled partition plan)"));
    let plan = Plan::decode(blob).unwrap_or_else(|e| refuse(&format!("the partition blob is invalid: {e}")));
    // What the monitor occupies: its image, the boot modules, the boot information.
    let mut reserved: Vec<PhysRange> = Vec::new();
    let img = boot.mem.kernel_image;
    reserved.push(PhysRange::new(img.start, img.end));
    for m in info.modules() {
        reserved.push(PhysRange::new(m.range.start & !0xfff, (m.range.end + 0xfff) & !0xfff));
    }
    reserved.push(PhysRange::new(info.info_range.start & !0xfff, (info.info_range.end + 0xfff) & !0xfff));
    // Inside the monitor's own region these are simply the monitor's memory: only what lies
    // outside it must stay clear of the sandboxes and channels.
    if let Some(m) = plan.monitor {
        reserved = reserved
            .into_iter()
            .flat_map(|r| [PhysRange::new(r.start, r.end.min(m.start)), PhysRange::new(r.start.max(m.end), r.end)])
            .filter(|r| r.start < r.end)
            .collect();
    }
    if let Err(errs) = plan.validate_with_reserved(&machine, &reserved) {
        println!("Quest-V: the partition plan does not fit this machine:");
        for e in &errs {
            println!("  - {e}");
        }
        refuse(&format!("{} error(s) in the partition plan", errs.len()));
    }
    if plan.sandboxes.len() as u32 > caps.asids.saturating_sub(1) {
        refuse(&format!("{} sandboxes but the CPU offers only {} guest ASIDs", plan.sandboxes.len(), caps.asids.saturating_sub(1)));
    }

    // The monitor's own console: the first UART no sandbox owns.
    let used: Vec<u16> = plan.sandboxes.iter().filter_map(|s| s.console.ports()).map(|p| p.first).collect();
    let mine = hal::serial::COM_PORTS.iter().copied().find(|p| !used.contains(p));
    match mine {
        Some(p) => {
            println!("Quest-V: monitor console moves to I/O port {p:#x}; sandbox consoles follow");
            hal::serial::use_port(p).unwrap_or_else(|e| refuse(e));
            println!("Quest-V monitor {VERSION}: console on {p:#x}");
        }
        None => println!("Quest-V: every UART belongs to a sandbox: the monitor keeps COM1 for reports"),
    }

    let kernel = module("quest").unwrap_or(&[]);
    let initrd = module("initrd").unwrap_or(&[]);
    let sym = module("quest.sym").unwrap_or(&[]);

    // Channels: shared regions, zeroed (the first kernel to open one writes its header).
    let mut chans = Vec::new();
    for c in &plan.channels {
        let r = PhysRegion::take(hal::mm::PhysRange::new(c.phys.start, c.phys.end))
            .unwrap_or_else(|e| refuse(&format!("channel {}: its region {} is not free RAM ({e:?})", c.key, c.phys)));
        // No header until a sandbox creates the channel.
        r.zero(0, r.len());
        println!("channel {}: {} bytes at {} ({})", c.key, c.phys.len(), c.phys, c.kind.map_or(String::from("any kind"), |k| format!("{k}")));
        chans.push(r);
    }
    CHANNELS.call_once(|| chans);

    // PCI device assignment: bus 0 probed and the assignment checked (only if any).
    let bus = devices::probe(&plan);

    let mut sandboxes = Vec::new();
    for sb in &plan.sandboxes {
        match build_sandbox(&plan, sb, kernel, initrd, sym, &apic_ids, &module, &bus) {
            Ok(rt) => sandboxes.push(rt),
            Err(e) => refuse(&format!("sandbox {} ({}): {e}", sb.name, sb.id)),
        }
    }
    for rt in &sandboxes {
        let sb = &plan.sandboxes[rt.id as usize];
        if sb.cpus.len() > 1 && !hal::apic::has_x2apic() {
            refuse(&format!(
                "sandbox {} has {} CPUs: multi-core sandboxes need x2APIC (the monitor turns their INIT/STARTUP IPIs into core launches)",
                sb.name,
                sb.cpus.len()
            ));
        }
        for &cpu in &sb.cpus {
            CPU_SANDBOX[cpu as usize].store(u32::from(rt.id), Ordering::Relaxed);
        }
    }
    let sandboxes = SANDBOXES.call_once(|| sandboxes);
    for rt in sandboxes.iter() {
        let sb = &plan.sandboxes[rt.id as usize];
        println!(
            "sandbox {} ({}): {} CPU {:?}, RAM {} ({} MiB), console {}, kernel entry {:#x}, {} channel window(s){}",
            rt.name,
            rt.id,
            sb.image.kind_name(),
            sb.cpus,
            sb.ram,
            sb.ram.len() >> 20,
            sb.console,
            rt.entry.address(),
            rt.view.channels.len(),
            if sb.cpus.len() > 1 { "; its kernel starts the other CPUs (INIT/STARTUP through the monitor)" } else { "" },
        );
    }
    let held = (0..apic_ids.len()).filter(|&c| CPU_SANDBOX[c].load(Ordering::Relaxed) == NO_SANDBOX).count();
    println!("Quest-V: launching {} sandbox(es); {held} CPU(s) idle", sandboxes.len());
    match hal::smp::start_aps(info, &apic_ids, cpu_main) {
        Ok(n) => println!("Quest-V: {n} CPU(s) online"),
        Err(e) => println!("Quest-V: application processors not started: {e}"),
    }
    cpu_main(0)
}
