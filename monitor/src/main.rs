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

    let mut sandboxes = Vec::new();
    for sb in &plan.sandboxes {
        match build_sandbox(&plan, sb, kernel, initrd, sym, &apic_ids, &module) {
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

/// Builds everything a sandbox needs before its first VMRUN.
fn build_sandbox(
    plan: &Plan,
    sb: &partition::PlannedSandbox,
    kernel: &[u8],
    initrd: &[u8],
    sym: &[u8],
    apic_ids: &[u32],
    module: &dyn Fn(&str) -> Option<&'static [u8]>,
) -> Result<SandboxRt, String> {
    let linux = matches!(sb.image, Image::Linux { .. });
    let ram = PhysRegion::take(hal::mm::PhysRange::new(sb.ram.start, sb.ram.end))
        .map_err(|e| format!("its RAM {} is not free RAM: {e:?} (the monitor's image, modules or heap are there: give the monitor more memory)", sb.ram))?;
    let ram_map: Vec<(u64, u64, u64)> = sb.guest_ram().map(|g| (g.guest, g.host - sb.ram.start, g.len)).collect();

    // Nested page tables: RAM and this sandbox's channel windows; nothing else (no monitor
    // memory, no other sandbox, no device MMIO: the console is an I/O port, the APIC is
    // used in x2APIC mode through MSRs, the IOAPIC is the monitor's).
    let mut b = npt::Builder::new(npt::Format::AmdNpt);
    for g in sb.guest_ram() {
        b.map(g.guest, g.host, g.len, Rights::RAM).map_err(|e| format!("nested paging of RAM: {e:?}"))?;
    }
    let mut channels = Vec::new();
    for (c, gpa) in plan.channels_of(sb.id) {
        b.map(gpa, c.phys.start, c.phys.len(), Rights::DATA).map_err(|e| format!("nested paging of channel {}: {e:?}", c.key))?;
        let kind = match c.kind {
            None => abi::ChannelKindCode::Any,
            Some(partition::ChannelKind::Async) => abi::ChannelKindCode::Async,
            Some(partition::ChannelKind::Sync) => abi::ChannelKindCode::Sync,
        };
        channels.push((c.key, c.phys.len() as u32, gpa, kind as u32));
    }
    if !hal::apic::has_x2apic() || linux {
        // xAPIC only: the local APIC's page, uncached, at its architectural address (each core
        // sees its own APIC there). See the warning at boot. A Linux sandbox always gets it:
        // Debian's kernel turns x2APIC off when it finds no interrupt remapping and no known
        // hypervisor, and then uses this page.
        b.map(XAPIC_PAGE, XAPIC_PAGE, 4096, Rights::MMIO).map_err(|e| format!("nested paging of the xAPIC page: {e:?}"))?;
    }
    let tables = PhysRegion::alloc(b.table_count(), 1).ok_or("out of monitor memory for nested page tables")?;
    let bytes = b.finish(tables.phys());
    tables.write(0, &bytes);

    let mut owned: Vec<partition::PortRange> = sb.io_ports.clone();
    owned.extend(sb.console.ports());
    let iopm = PhysRegion::alloc(3, 1).ok_or("out of monitor memory for the I/O permission map")?;
    iopm.write(0, &policy::io_permission_map(&owned));
    let msrpm = PhysRegion::alloc(2, 1).ok_or("out of monitor memory for the MSR permission map")?;
    msrpm.write(0, &policy::msr_permission_map());

    let own_ids: Vec<u32> = sb.cpus.iter().filter_map(|&c| apic_ids.get(c as usize).copied()).collect();
    // The kernel, its modules and the boot information, in the sandbox's RAM.
    let regions: Vec<(u64, u64)> = ram_map.iter().map(|&(g, _, l)| (g, l)).collect();
    let mods = [ModuleSpec { name: "initrd", len: initrd.len() as u64 }, ModuleSpec { name: "kernel.sym", len: sym.len() as u64 }];
    let (console_port, console_irq) = match sb.console {
        Console::Com(n @ 1..=4) => (hal::serial::COM_PORTS[n as usize - 1], Some(hal::serial::COM_IRQS[n as usize - 1])),
        _ => (0, None),
    };
    let off = |gpa: u64, len: u64| -> Result<u64, String> {
        ram_map
            .iter()
            .find(|&&(g, _, l)| gpa >= g && gpa + len <= g + l)
            .map(|&(g, o, _)| o + gpa - g)
            .ok_or_else(|| format!("guest-physical {gpa:#x}+{len:#x} outside its RAM"))
    };
    let entry = match &sb.image {
        Image::Quest => {
            if kernel.is_empty() {
                return Err("no `quest` boot module (the Quest kernel)".into());
            }
            let cmdline = format!("questv.sandbox={} questv.name={}", sb.id, sb.name);
            let bp = guest::plan(kernel, &mods, &cmdline, "Quest-V monitor", &regions).map_err(|e| format!("kernel image: {e}"))?;
            ram.zero(0, ram.len().min(bp.mbi_addr + bp.mbi.len() as u64 + 4096));
            for s in &bp.kernel.segments {
                let o = off(s.paddr, s.memsz)?;
                ram.write(o, &kernel[s.file.clone()]);
                ram.zero(o + s.file.len() as u64, s.memsz - s.file.len() as u64);
            }
            for (data, &at) in [initrd, sym].iter().zip(&bp.modules) {
                ram.write(off(at, data.len() as u64)?, data);
            }
            ram.write(off(bp.mbi_addr, bp.mbi.len() as u64)?, &bp.mbi);
            Entry::Multiboot { entry: bp.kernel.entry, mbi: bp.mbi_addr }
        }
        Image::Linux { kernel: kname, initrd: iname, cmdline } => {
            let image = module(kname).ok_or_else(|| format!("no boot module `{kname}` (its Linux kernel)"))?;
            let rd = match iname {
                Some(n) => module(n).ok_or_else(|| format!("no boot module `{n}` (its initramfs)"))?,
                None => &[],
            };
            let windows: Vec<(u64, u64)> = channels.iter().map(|c| (c.2, u64::from(c.1))).collect();
            let platform = linux::Platform { apic_ids: own_ids.clone(), uart: sb.console.ports().map(|p| p.first) };
            let com = match sb.console {
                Console::Com(n) => Some(n),
                Console::None => None,
            };
            let cl = linux::cmdline(TSC_KHZ.load(Ordering::Relaxed), com, cmdline);
            let lb = linux::plan(image, rd.len() as u64, &cl, &regions, &windows, &platform).map_err(|e| format!("Linux kernel `{kname}`: {e}"))?;
            linux::find_tables(&lb.acpi, linux::ACPI_BASE).map_err(|e| format!("its ACPI tables: {e} (monitor bug)"))?;
            // Below 1 MiB: the zero page, command line, ACPI tables and the (empty) BIOS areas
            // Linux scans for MP and SMBIOS tables.
            ram.zero(0, 0x10_0000);
            ram.write(off(linux::ZERO_PAGE, 4096)?, &lb.zero_page);
            ram.write(off(linux::CMDLINE, lb.cmdline.len() as u64)?, &lb.cmdline);
            ram.write(off(linux::ACPI_BASE, lb.acpi.len() as u64)?, &lb.acpi);
            ram.write(off(lb.kernel_at, lb.kernel.len() as u64)?, &image[lb.kernel.clone()]);
            if !rd.is_empty() {
                ram.write(off(lb.initrd_at, rd.len() as u64)?, rd);
            }
            println!(
                "sandbox {} ({}): Linux boot protocol {}.{:02}, {} KiB kernel at {:#x} (decompressed up to {:#x}), {} KiB initramfs at {:#x}, command line \"{cl}\"",
                sb.name,
                sb.id,
                image.get(0x207).copied().unwrap_or(0),
                image.get(0x206).copied().unwrap_or(0),
                lb.kernel.len() / 1024,
                lb.kernel_at,
                lb.kernel_end,
                rd.len() / 1024,
                lb.initrd_at
            );
            Entry::Linux { entry: lb.entry, zero_page: linux::ZERO_PAGE }
        }
    };

    let view = SandboxView {
        id: u32::from(sb.id),
        count: plan.sandboxes.len() as u32,
        console_port,
        console_irq: console_irq.unwrap_or(0),
        tsc_khz: TSC_KHZ.load(Ordering::Relaxed),
        cpu: sb.cpus[0],
        channels,
        apic_ids: own_ids.clone(),
    };
    let ncr3 = tables.phys();
    Ok(SandboxRt {
        id: sb.id,
        name: sb.name.clone(),
        ram,
        ram_map,
        console_irq,
        apic_ids: own_ids,
        cpus: sb.cpus.clone(),
        state: AtomicU8::new(NOT_STARTED),
        _npt: tables,
        iopm,
        msrpm,
        ncr3,
        view,
        entry,
    })
}

/// Every core: run this core's sandbox, or idle.
fn cpu_main(cpu: usize) -> ! {
    hal::cpu::disable_interrupts();
    let id = CPU_SANDBOX.get(cpu).map_or(NO_SANDBOX, |a| a.load(Ordering::Relaxed));
    let Some(rt) = SANDBOXES.get().and_then(|s| s.get(id as usize)) else {
        hal::cpu::halt_forever()
    };
    let boot_cpu = rt.view.cpu as usize == cpu;
    let vector = if boot_cpu {
        None
    } else {
        // An application processor of the sandbox: wait for its kernel's STARTUP IPI.
        loop {
            if matches!(rt.state.load(Ordering::Acquire), POWERED_OFF | STOPPED) {
                hal::cpu::halt_forever();
            }
            let v = SIPI[cpu].load(Ordering::Acquire);
            if v != 0 {
                break Some((v - 1) as u8);
            }
            core::hint::spin_loop();
        }
    };
    match launch(cpu, rt, vector) {
        Ok(never) => match never {},
        Err(e) => {
            stop(cpu, rt, STOPPED, &format!("cannot launch: {e}"));
            hal::cpu::halt_forever()
        }
    }
}

struct Vcpu {
    vmcb: PhysRegion,
    host_extra: PhysRegion,
    regs: GuestRegs,
}

impl Vcpu {
    fn get(&self, off: usize) -> u64 {
        self.vmcb.read_u64(off as u64)
    }
    fn set(&self, off: usize, v: u64) {
        self.vmcb.write_u64(off as u64, v)
    }
}

fn launch(cpu: usize, rt: &'static SandboxRt, ap_vector: Option<u8>) -> Result<core::convert::Infallible, &'static str> {
    let hsave = PhysRegion::alloc(1, 1).ok_or("out of memory for the host save area")?;
    hal::svm::enable(&hsave)?;
    let v = Vcpu {
        vmcb: PhysRegion::alloc(1, 1).ok_or("out of memory for the VMCB")?,
        host_extra: PhysRegion::alloc(1, 1).ok_or("out of memory for the host state")?,
        regs: match (ap_vector, rt.entry) {
            (None, Entry::Multiboot { mbi, .. }) => GuestRegs { rbx: mbi, ..GuestRegs::default() },
            (None, Entry::Linux { zero_page, .. }) => GuestRegs { rsi: zero_page, ..GuestRegs::default() },
            (Some(_), _) => GuestRegs::default(),
        },
    };
    let (entry, mbi) = match rt.entry {
        Entry::Multiboot { entry, mbi } => (entry, mbi as u32),
        Entry::Linux { entry, .. } => (entry, 0),
    };
    let setup = vmcb::Setup { asid: u32::from(rt.id) + 1, iopm: rt.iopm.phys(), msrpm: rt.msrpm.phys(), ncr3: rt.ncr3, entry, mbi };
    let image = match (ap_vector, rt.entry) {
        (None, Entry::Multiboot { .. }) => vmcb::boot_vmcb(&setup),
        (None, Entry::Linux { .. }) => vmcb::linux_vmcb(&setup),
        (Some(vector), _) => vmcb::ap_vmcb(&setup, vector),
    };
    v.vmcb.write(0, &image.0[..]);
    if ap_vector.is_none() {
        rt.state.store(RUNNING, Ordering::Release);
    }
    IN_GUEST[cpu].store(true, Ordering::Release);
    run(cpu, rt, v)
}

fn count(cpu: usize, r: ExitReason) {
    COUNTERS[cpu][r as usize].fetch_add(1, Ordering::Relaxed);
}

/// The exit loop.
fn run(cpu: usize, rt: &'static SandboxRt, mut v: Vcpu) -> ! {
    loop {
        hal::svm::run(&v.vmcb, &v.host_extra, &mut v.regs);
        // The first VMRUN flushed this ASID's TLB; later ones need not.
        v.vmcb.write(ctl::TLB_CONTROL as u64, &[0]);
        let exit = vmcb::decode_exit(v.get(ctl::EXITCODE), v.get(ctl::EXITINFO1), v.get(ctl::EXITINFO2));
        count(cpu, exit.reason());
        if rt.state.load(Ordering::Acquire) != RUNNING {
            // Stopped from another core (its INIT brought us here): halt with it.
            hal::cpu::halt_forever();
        }
        if let Err(why) = handle(cpu, rt, &mut v, exit) {
            stop(cpu, rt, STOPPED, &why);
            hal::cpu::halt_forever();
        }
        if rt.state.load(Ordering::Acquire) != RUNNING {
            hal::cpu::halt_forever();
        }
    }
}

/// Handles one exit; `Err` stops the sandbox with that report.
fn handle(cpu: usize, rt: &SandboxRt, v: &mut Vcpu, exit: Exit) -> Result<(), String> {
    let rip = v.get(save::RIP);
    match exit {
        Exit::Cpuid => {
            let leaf = v.get(save::RAX) as u32;
            let sub = v.regs.rcx as u32;
            let h = hal::cpu::cpuid(leaf, sub);
            let mut view = rt.view.clone();
            view.cpu = cpu as u32;
            let [a, b, c, d] = policy::cpuid(&view, leaf, sub, [h.eax, h.ebx, h.ecx, h.edx]);
            v.set(save::RAX, u64::from(a));
            v.regs.rbx = u64::from(b);
            v.regs.rcx = u64::from(c);
            v.regs.rdx = u64::from(d);
            skip(rt, v, insn::Insn::Cpuid)
        }
        Exit::Io { port, size, input, string, next_rip } => {
            if string {
                return Err(format!("string I/O to port {port:#x}, which it does not own (rip {rip:#x})"));
            }
            let mask = match size {
                1 => 0xff,
                2 => 0xffff,
                _ => 0xffff_ffff,
            };
            let rax = v.get(save::RAX);
            match policy::io(port, input, (rax & mask) as u32) {
                IoAction::ReadAllOnes => v.set(save::RAX, (rax & !mask) | mask),
                IoAction::Ignore => {}
                IoAction::PowerOff(code) => {
                    let (state, why) = match rt.entry {
                        // The port is the reset and sleep control register of a Linux
                        // sandbox's ACPI; its warm-boot flag says reboot or panic
                        // (monitor_core::linux::PowerEvent). A panic is not a clean end.
                        Entry::Linux { .. } => {
                            let flag = rt.read_byte(linux::WARM_BOOT_FLAG).zip(rt.read_byte(linux::WARM_BOOT_FLAG + 1));
                            let ev = linux::PowerEvent::of(code as u8, flag.map(|(lo, hi)| u16::from_le_bytes([lo, hi])));
                            (if ev == linux::PowerEvent::Panic { STOPPED } else { POWERED_OFF }, ev.to_string())
                        }
                        Entry::Multiboot { .. } => (POWERED_OFF, format!("powered off (code {code:#x})")),
                    };
                    stop(cpu, rt, state, &why);
                    return Ok(());
                }
            }
            v.set(save::RIP, next_rip);
            Ok(())
        }
        Exit::Rdmsr => {
            let val = policy::msr_read(v.regs.rcx as u32, v.get(save::EFER));
            v.set(save::RAX, val & 0xffff_ffff);
            v.regs.rdx = val >> 32;
            skip(rt, v, insn::Insn::Rdmsr)
        }
        Exit::Wrmsr => {
            let msr = v.regs.rcx as u32;
            let value = (v.regs.rdx << 32) | (v.get(save::RAX) & 0xffff_ffff);
            match policy::msr_write(msr, value, &rt.apic_ids) {
                MsrWrite::Efer(e) => v.set(save::EFER, e),
                MsrWrite::Ipi(icr) => hal::svm::send_x2apic_icr(icr).map_err(|e| format!("IPI: {e}"))?,
                MsrWrite::Ignore => {}
                MsrWrite::DeniedIpi(icr) => report(rt, &format!("IPI outside the sandbox refused (ICR {icr:#x})")),
                MsrWrite::Init(_) => {} // the core waits in the monitor until its STARTUP
                MsrWrite::Startup(dest, vector) => {
                    if let Some(k) = rt.apic_ids.iter().position(|&a| a == dest) {
                        let target = rt.cpus[k] as usize;
                        // Only the first STARTUP counts (the kernel sends two, as on hardware).
                        let _ = SIPI[target].compare_exchange(0, u32::from(vector) + 1, Ordering::AcqRel, Ordering::Acquire);
                    }
                }
            }
            skip(rt, v, insn::Insn::Wrmsr)
        }
        Exit::Hypercall => {
            let r = hypercall(rt, cpu, v);
            v.set(save::RAX, r as u64);
            skip(rt, v, insn::Insn::Vmmcall)
        }
        Exit::NestedFault { gpa, write, exec, present } => Err(format!(
            "{} guest-physical {gpa:#x} outside its partition ({}), rip {rip:#x}{}",
            if exec { "executed" } else if write { "wrote" } else { "read" },
            if present { "protection" } else { "not mapped" },
            if gpa & !0xfff == 0xfee0_0000 { " (the xAPIC page: sandboxes must use x2APIC)" } else { "" }
        )),
        Exit::Shutdown => Err(format!("triple fault (shutdown), rip {rip:#x}")),
        Exit::Init => Err("received INIT (another sandbox tried to reset this core)".into()),
        Exit::Forbidden(what) => Err(format!("used {what} at rip {rip:#x}")),
        Exit::Invalid => Err("the CPU refused its VMCB (VMEXIT_INVALID): monitor bug".into()),
        Exit::Unexpected(c) => Err(format!("unexpected exit {c:#x} at rip {rip:#x}")),
    }
}

/// Moves RIP past the intercepted instruction `want` (decoded: no next-RIP save on TCG).
fn skip(rt: &SandboxRt, v: &mut Vcpu, want: insn::Insn) -> Result<(), String> {
    let regs = walk::PagingRegs { cr0: v.get(save::CR0), cr3: v.get(save::CR3), cr4: v.get(save::CR4), efer: v.get(save::EFER) };
    let rip = v.get(save::RIP);
    let cs_base = if regs.long_mode() { 0 } else { v.get(save::CS + 8) };
    let mut buf = [0u8; 15];
    let n = walk::fetch(&regs, cs_base.wrapping_add(rip), &mut buf, |gpa| rt.read_byte(gpa));
    match insn::decode(&buf[..n], regs.long_mode() && v.get(save::CS) >> 16 & (1 << 9) != 0) {
        Ok((got, len)) if got == want => {
            v.set(save::RIP, rip + len as u64);
            Ok(())
        }
        Ok((got, _)) => Err(format!("expected {want:?} at rip {rip:#x}, found {got:?}")),
        Err(e) => Err(format!("cannot decode the instruction at rip {rip:#x}: {e:?}")),
    }
}

fn hypercall(rt: &SandboxRt, cpu: usize, v: &Vcpu) -> i64 {
    const EINVAL: i64 = -22;
    const EPERM: i64 = -1;
    const ENOSYS: i64 = -38;
    match v.get(save::RAX) {
        abi::HC_EXIT_STATS => {
            let (gpa, len) = (v.regs.rbx, v.regs.rcx);
            let records: Vec<(u32, u32, Counters)> = (0..hal::percpu::online())
                .map(|c| {
                    let mut k = Counters::default();
                    for (i, n) in k.0.iter_mut().enumerate() {
                        *n = COUNTERS[c][i].load(Ordering::Relaxed);
                    }
                    (c as u32, CPU_SANDBOX[c].load(Ordering::Relaxed), k)
                })
                .collect();
            let bytes = policy::exit_stats_bytes(&records);
            if gpa % 8 != 0 || len < bytes.len() as u64 {
                return EINVAL;
            }
            match rt.offset_of(gpa, bytes.len() as u64) {
                Some(off) => {
                    rt.ram.write(off, &bytes);
                    bytes.len() as i64
                }
                None => EINVAL,
            }
        }
        abi::HC_ROUTE_ISA_IRQ => {
            let (irq, vector) = (v.regs.rbx, v.regs.rcx);
            if !(32..=255).contains(&vector) || irq > 15 {
                return EINVAL;
            }
            if rt.console_irq != Some(irq as u8) {
                report(rt, &format!("refused to route IRQ {irq}: not one of its devices"));
                return EPERM;
            }
            let _g = REPORT.lock();
            match hal::ioapic::route_isa(irq as u8, vector as u8, hal::percpu::apic_id_of(cpu)) {
                Ok(()) => 0,
                Err(_) => EINVAL,
            }
        }
        _ => ENOSYS,
    }
}

fn report(rt: &SandboxRt, what: &str) {
    let _g = REPORT.lock();
    println!("Quest-V: sandbox {} ({}): {what}", rt.name, rt.id);
}

/// Stops a sandbox (this core halts after returning); powers the machine off once every
/// sandbox has stopped.
fn stop(cpu: usize, rt: &SandboxRt, state: u8, why: &str) {
    rt.state.store(state, Ordering::Release);
    IN_GUEST[cpu].store(false, Ordering::Release);
    // Its other cores run guest code without exits: an INIT (intercepted) brings each back to
    // the monitor, which sees the state and halts.
    for (k, &c) in rt.cpus.iter().enumerate() {
        if c as usize != cpu && IN_GUEST[c as usize].swap(false, Ordering::AcqRel) {
            hal::apic::send_init(rt.apic_ids[k]);
        }
    }
    let counts: Vec<String> = ExitReason::ALL
        .iter()
        .filter_map(|&r| {
            let n = COUNTERS[cpu][r as usize].load(Ordering::Relaxed);
            (n > 0).then(|| format!("{} {n}", r.name()))
        })
        .collect();
    report(
        rt,
        &format!(
            "{} on CPU {cpu}: {why} [exits: {}]",
            if state == POWERED_OFF { "stopped" } else { "STOPPED" },
            if counts.is_empty() { String::from("none") } else { counts.join(", ") }
        ),
    );
    let all = SANDBOXES.get().map_or(&[][..], |s| &s[..]);
    if all.iter().all(|s| matches!(s.state.load(Ordering::Acquire), POWERED_OFF | STOPPED)) {
        let clean = all.iter().all(|s| s.state.load(Ordering::Acquire) == POWERED_OFF);
        println!("Quest-V: every sandbox has stopped; powering off");
        hal::cpu::power_off(if clean { hal::cpu::ExitCode::Success } else { hal::cpu::ExitCode::Failure });
    }
}
