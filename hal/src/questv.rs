//! Running as a Quest-V sandbox: detection of the monitor (CPUID hypervisor leaves) and the
//! few hypercalls a sandbox kernel makes (routing its own device interrupts, reading the
//! monitor's exit counters). The ABI is in `quest_abi::questv`.
//!
//! Detection happens once, on the first call (from `serial::init`, the first thing the boot
//! path does), and is cached: CPUID is intercepted by the monitor, so a sandbox executes it
//! only while it boots.
use quest_abi::questv as abi;
use spin::Once;

/// What the monitor told this sandbox.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sandbox {
    /// Sandbox id (index in the partition plan).
    pub id: u32,
    /// Number of sandboxes in the plan.
    pub count: u32,
    /// Console UART I/O base.
    pub console_port: u16,
    /// Console ISA IRQ.
    pub console_irq: u8,
    /// How many PCI functions the monitor assigned to this sandbox.
    pub pci_functions: u8,
    /// TSC frequency in kHz (0: not given).
    pub tsc_khz: u32,
    /// Number of shared-memory channels mapped into this sandbox.
    pub channels: u32,
    /// Physical CPU index of this core.
    pub cpu: u32,
    /// Number of CPUs of the sandbox (its boot processor first; see [`cpu_apic_id`]).
    pub cpus: u32,
}

/// A shared-memory channel window.
#[derive(Clone, Copy, Debug)]
pub struct ChannelWindow {
    pub key: u32,
    /// Guest-physical address.
    pub phys: u64,
    pub size: u64,
    /// Configured kind (`quest_abi::questv::ChannelKindCode` as u32).
    pub kind: u32,
}

static SANDBOX: Once<Option<Sandbox>> = Once::new();

fn detect() -> Option<Sandbox> {
    if !crate::cpu::in_vm() {
        return None;
    }
    let s = crate::cpu::cpuid(abi::LEAF_SIGNATURE, 0);
    if abi::signature_of(s.ebx, s.ecx, s.edx) != abi::SIGNATURE || s.eax < abi::LEAF_PLATFORM {
        return None;
    }
    let a = crate::cpu::cpuid(abi::LEAF_SANDBOX, 0);
    let p = crate::cpu::cpuid(abi::LEAF_PLATFORM, 0);
    if p.ecx != abi::ABI_VERSION {
        return None;
    }
    Some(Sandbox {
        id: a.eax,
        count: a.ebx,
        console_port: a.ecx as u16,
        console_irq: (a.ecx >> 16) as u8,
        pci_functions: (a.ecx >> 24) as u8,
        tsc_khz: a.edx,
        channels: if s.eax >= abi::LEAF_CHANNEL { p.eax } else { 0 },
        cpu: p.edx,
        cpus: if s.eax >= abi::LEAF_CPUS { crate::cpu::cpuid(abi::LEAF_CPUS, 0).ebx.max(1) } else { 1 },
    })
}

/// The sandbox this kernel runs in, or `None` on bare metal (or under another hypervisor).
pub fn sandbox() -> Option<Sandbox> {
    *SANDBOX.call_once(detect)
}

/// Channel window `i` (`i < sandbox().channels`).
pub fn channel(i: u32) -> Option<ChannelWindow> {
    let sb = sandbox()?;
    if i >= sb.channels {
        return None;
    }
    let r = crate::cpu::cpuid(abi::LEAF_CHANNEL, i);
    Some(ChannelWindow {
        key: r.eax,
        size: u64::from(r.ebx),
        phys: (u64::from(r.edx) << 32) | u64::from(r.ecx & !0xfff),
        kind: r.ecx & 0xfff,
    })
}

/// APIC id of the sandbox's CPU `i` (`i < sandbox().cpus`); CPU 0 is the boot processor.
pub fn cpu_apic_id(i: u32) -> Option<u32> {
    let sb = sandbox()?;
    if i >= sb.cpus {
        return None;
    }
    let id = crate::cpu::cpuid(abi::LEAF_CPUS, i).eax;
    (id != u32::MAX).then_some(id)
}

/// `vmmcall` with function `f` and arguments in rbx, rcx, rdx; returns rax.
fn hypercall(f: u64, a: u64, b: u64, c: u64) -> i64 {
    let ret: u64;
    // SAFETY: `vmmcall` traps to the Quest-V monitor (we only call this when `sandbox()` found
    // it), which reads the arguments, may write guest memory the caller passed as a buffer
    // (declared to the compiler by the absence of `nomem`), and returns a result in rax. rbx
    // is reserved by LLVM, so it is swapped in and out around the instruction.
    unsafe {
        core::arch::asm!(
            "xchg {a}, rbx",
            "vmmcall",
            "xchg {a}, rbx",
            a = inout(reg) a => _,
            inout("rax") f => ret,
            in("rcx") b,
            in("rdx") c,
            options(nostack),
        );
    }
    ret as i64
}

/// Asks the monitor to route ISA `irq` (one of this sandbox's devices) to `vector` on this
/// core. The IOAPIC is the monitor's: a sandbox may only route its own devices' pins.
pub fn route_isa_irq(irq: u8, vector: u8) -> Result<(), i64> {
    match hypercall(abi::HC_ROUTE_ISA_IRQ, u64::from(irq), u64::from(vector), 0) {
        0 => Ok(()),
        e => Err(e),
    }
}

/// Asks the monitor to route (or, with `masked`, mask) the INTx line on ISA `irq` of one of this
/// sandbox's PCI functions to `vector` on this core, level-triggered.
pub fn route_pci_intx(irq: u8, vector: u8, masked: bool) -> Result<(), i64> {
    match hypercall(abi::HC_ROUTE_PCI_INTX, u64::from(irq), u64::from(vector), u64::from(masked)) {
        0 => Ok(()),
        e => Err(e),
    }
}

/// Reads the monitor's per-CPU exit counters into `buf` (see `quest_abi::questv`); returns the
/// number of bytes written. `buf` must be in the direct map (kernel memory).
pub fn exit_stats(buf: &mut [u64]) -> Result<usize, i64> {
    let va = buf.as_mut_ptr() as u64;
    let pa = crate::mm::translate(va).ok_or(-14)?;
    // The buffer must be physically contiguous: kernel heap memory is (the direct map).
    let len = core::mem::size_of_val(buf) as u64;
    if crate::mm::translate(va + len - 1) != Some(pa + len - 1) {
        return Err(-22);
    }
    let r = hypercall(abi::HC_EXIT_STATS, pa, len, 0);
    if r < 0 { Err(r) } else { Ok(r as usize) }
}

/// The memory of channel window `i` as 64-bit words, for `crates/channels` (every access to it
/// is atomic). `None` if there is no such window, or if it is not a well-formed window: 8-byte
/// aligned, inside the direct map, and not RAM this kernel's frame allocator manages (the
/// monitor puts windows after the sandbox's RAM, outside its memory map).
pub fn channel_words(i: u32) -> Option<&'static [core::sync::atomic::AtomicU64]> {
    let w = channel(i)?;
    if w.size == 0 || w.phys % 4096 != 0 || w.size % 8 != 0 {
        return None;
    }
    let end = w.phys.checked_add(w.size)?;
    if !crate::mm::outside_managed_ram(w.phys, end) {
        return None;
    }
    let va = crate::mm::phys_to_virt(w.phys) as *const core::sync::atomic::AtomicU64;
    // SAFETY:
    // 1. [phys, end) lies in the direct map (checked by `outside_managed_ram`) and is not RAM
    //    the frame allocator hands out, so no Rust object of this kernel lives there: the only
    //    references to it are these shared `AtomicU64` slices, which allow aliasing.
    // 2. The monitor maps the window for the whole run (nested paging), so it stays valid for
    //    'static; another kernel writes it concurrently, which atomics permit.
    // 3. The start is page aligned and the length a multiple of 8.
    Some(unsafe { core::slice::from_raw_parts(va, (w.size / 8) as usize) })
}
