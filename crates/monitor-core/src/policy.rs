//! What a sandbox sees and may do. Pure decisions; the monitor carries them out.
//!
//! Intercepted, and why (everything else runs on the hardware untouched):
//! * CPUID: to hide SVM from the sandbox, set the hypervisor bit and answer the Quest-V leaves
//!   (`quest_abi::questv`). Executed only while a kernel boots.
//! * I/O ports the sandbox does not own: reads give all ones, writes are dropped; a write to
//!   the debug-exit port (0xf4) is the sandbox powering itself off.
//! * MSRs: EFER writes (the guest must not clear EFER.SVME, which VMRUN needs), VM_CR and
//!   VM_HSAVE_PA (the monitor's), x2APIC ICR writes (a sandbox may send IPIs only to its own
//!   cores: no INIT, NMI or fixed interrupt into another sandbox), APIC_BASE writes (a sandbox
//!   may not leave x2APIC mode: in xAPIC mode its IPIs would go through an MMIO page the
//!   monitor cannot filter without an exit per interrupt acknowledgement, and a disabled APIC
//!   would not take the INIT by which the monitor stops a core), and reads of
//!   IA32_ARCH_CAPABILITIES and IA32_XAPIC_DISABLE_STATUS, which tell the kernel just that:
//!   "legacy xAPIC disabled, x2APIC locked" (see [`ARCH_CAP_XAPIC_DISABLE`]). All of them are
//!   boot-time exits except the IPIs.
//! * VMMCALL: hypercalls. Shutdown (triple fault), INIT, NPT violations: stop the sandbox.
//! * The SVM instructions themselves (VMRUN must be intercepted), MONITOR/MWAIT, ICEBP.
//!
//! Not intercepted, on purpose: external interrupts, NMIs, HLT, RDTSC, the LAPIC timer,
//! page faults, CR accesses: the sandbox owns its cores and runs at full speed.

use alloc::vec;
use alloc::vec::Vec;
use partition::PortRange;
use quest_abi::questv::{self as abi, ExitReason};

/// What the monitor tells a sandbox through CPUID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxView {
    pub id: u32,
    pub count: u32,
    pub console_port: u16,
    pub console_irq: u8,
    pub tsc_khz: u32,
    /// Physical CPU index of the core answering.
    pub cpu: u32,
    /// (key, size, guest-physical address, kind code).
    pub channels: Vec<(u32, u32, u64, u32)>,
    /// APIC ids of the sandbox's CPUs, the boot processor first.
    pub apic_ids: Vec<u32>,
    /// How many PCI functions it owns (0: its kernel need not enumerate PCI).
    pub pci_functions: u8,
    /// Show KVM's CPUID signature at [`KVM_LEAF_BASE`], with no feature bits: set for a Linux
    /// sandbox that owns PCI functions. Linux then finds a hypervisor that allows x2APIC
    /// without interrupt remapping (`kvm_para_available()` is its `x2apic_available()`), and
    /// uses nothing else of KVM's: kvmclock, steal time, PV EOI, PV IPIs, PV TLB flush, PV
    /// spinlocks and async page faults each need a feature bit of leaf 0x4000_0101, all 0.
    /// The Quest-V leaves at 0x4000_0000 stay as they are (Linux scans 0x4000_0000 upward in
    /// steps of 0x100 for a signature it knows; Quest's kernel reads only 0x4000_0000..0x4000_0004).
    pub kvm_signature: bool,
}

/// Where the KVM signature leaf is (the second hypervisor base).
pub const KVM_LEAF_BASE: u32 = 0x4000_0100;

/// The guest's answer to CPUID `leaf`/`sub`, given the host's answer `host` (eax, ebx, ecx, edx).
pub fn cpuid(view: &SandboxView, leaf: u32, sub: u32, host: [u32; 4]) -> [u32; 4] {
    let [a, b, mut c, d] = host;
    match leaf {
        1 => {
            c |= 1 << 31; // running under a hypervisor
            c &= !(1 << 5); // no VMX
            c &= !(1 << 3); // no MONITOR/MWAIT (intercepted: Linux would idle with them)
        }
        // No LA57: 4-level paging, which the monitor walks. IA32_ARCH_CAPABILITIES exists (the
        // monitor answers it: x2APIC locked).
        7 if sub == 0 => return [a, b, c & !(1 << 16), d | CPUID7_EDX_ARCH_CAPABILITIES],
        0x8000_0001 => c &= !((1 << 2) | (1 << 29)),       // no SVM, no MONITORX/MWAITX
        0x8000_000a => return [0; 4],  // SVM features: none
        abi::LEAF_SIGNATURE => {
            let (sb, sc, sd) = abi::signature_regs();
            return [abi::LEAF_CPUS, sb, sc, sd];
        }
        abi::LEAF_SANDBOX => {
            let c = u32::from(view.console_port) | (u32::from(view.console_irq) << 16) | (u32::from(view.pci_functions) << 24);
            return [view.id, view.count, c, view.tsc_khz];
        }
        abi::LEAF_PLATFORM => return [view.channels.len() as u32, 0, abi::ABI_VERSION, view.cpu],
        abi::LEAF_CHANNEL => {
            return match view.channels.get(sub as usize) {
                Some(&(key, size, gpa, kind)) => [key, size, (gpa as u32 & !0xfff) | (kind & 0xfff), (gpa >> 32) as u32],
                None => [0; 4],
            };
        }
        abi::LEAF_CPUS => {
            let id = view.apic_ids.get(sub as usize).copied().unwrap_or(u32::MAX);
            return [id, view.apic_ids.len() as u32, 0, 0];
        }
        0x4000_0005..=0x4000_00ff => return [0; 4],
        // "KVMKVMKVM\0\0\0"; the highest leaf is the features leaf.
        KVM_LEAF_BASE if view.kvm_signature => return [KVM_LEAF_BASE + 1, 0x4b4d_564b, 0x564b_4d56, 0x0000_004d],
        0x4000_0101..=0x4000_01ff if view.kvm_signature => return [0; 4],
        _ => {}
    }
    [a, b, c, d]
}

/// The I/O permission map: 12 KiB, one bit per port (set = intercept), with the sandbox's
/// own ports clear.
pub fn io_permission_map(owned: &[PortRange]) -> Vec<u8> {
    let mut m = vec![0xffu8; 3 * 4096];
    for r in owned {
        for p in r.first..=r.last {
            m[usize::from(p) / 8] &= !(1 << (p % 8));
        }
    }
    m
}

/// Whether the I/O permission map `m` intercepts `port`.
pub fn io_intercepted(m: &[u8], port: u16) -> bool {
    m[usize::from(port) / 8] & (1 << (port % 8)) != 0
}

/// MSRs the monitor intercepts: (msr, intercept reads, intercept writes).
pub const INTERCEPTED_MSRS: [(u32, bool, bool); 7] = [
    (MSR_EFER, false, true),
    (MSR_VM_CR, true, true),
    (MSR_VM_HSAVE_PA, true, true),
    (MSR_X2APIC_ICR, false, true),
    (MSR_APIC_BASE, false, true),
    (MSR_ARCH_CAPABILITIES, true, true),
    (MSR_XAPIC_DISABLE_STATUS, true, true),
];
pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_ARCH_CAPABILITIES: u32 = 0x10a;
pub const MSR_XAPIC_DISABLE_STATUS: u32 = 0xbd;
/// APIC_BASE: the APIC is enabled / in x2APIC mode.
pub const APIC_BASE_EN: u64 = 1 << 11;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// CPUID.(7,0):EDX bit 29: IA32_ARCH_CAPABILITIES is implemented.
pub const CPUID7_EDX_ARCH_CAPABILITIES: u32 = 1 << 29;
/// IA32_ARCH_CAPABILITIES bit 21: IA32_XAPIC_DISABLE_STATUS is implemented. The only bit the
/// monitor sets: it says nothing about speculation it does not know (the host is AMD, where
/// Linux decides those from its vendor tables). A kernel that finds its x2APIC enabled at
/// entry and this lock set keeps x2APIC mode even without interrupt remapping (Linux 6.0+:
/// `x2apic_hw_locked()`), which is what lets a stock Linux sandbox use more than one core
/// with every IPI checked by the monitor.
pub const ARCH_CAP_XAPIC_DISABLE: u64 = 1 << 21;
/// IA32_XAPIC_DISABLE_STATUS bit 0: legacy xAPIC disabled (x2APIC locked).
pub const LEGACY_XAPIC_DISABLED: u64 = 1;
pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_VM_CR: u32 = 0xc001_0114;
pub const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
pub const MSR_X2APIC_ICR: u32 = 0x830;
pub const EFER_SVME: u64 = 1 << 12;

/// Bit position of `msr`'s read-intercept bit in the SVM MSR permission map (the write bit
/// follows it), or `None` for MSRs outside the three mapped ranges (always intercepted).
pub fn msrpm_bit(msr: u32) -> Option<usize> {
    let (base, off) = match msr {
        0..=0x1fff => (0usize, msr),
        0xc000_0000..=0xc000_1fff => (0x800 * 8, msr - 0xc000_0000),
        0xc001_0000..=0xc001_1fff => (0x1000 * 8, msr - 0xc001_0000),
        _ => return None,
    };
    Some(base + off as usize * 2)
}

/// The 8 KiB MSR permission map with [`INTERCEPTED_MSRS`] set.
pub fn msr_permission_map() -> Vec<u8> {
    let mut m = vec![0u8; 2 * 4096];
    for (msr, r, w) in INTERCEPTED_MSRS {
        let bit = msrpm_bit(msr).expect("mapped MSR");
        if r {
            m[bit / 8] |= 1 << (bit % 8);
        }
        if w {
            m[(bit + 1) / 8] |= 1 << ((bit + 1) % 8);
        }
    }
    m
}

/// What to do with an intercepted MSR write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrWrite {
    /// Store this value as the guest's EFER.
    Efer(u64),
    /// Write this value to the physical ICR (checked).
    Ipi(u64),
    /// A shorthand or logical destination that names only the sandbox's own cores: the monitor
    /// writes `icr` (physical destination mode, no shorthand) once per core whose bit is set in
    /// `cores` (bit k = the sandbox's k-th core), with that core's APIC id as destination.
    Multicast { icr: u64, cores: u64 },
    /// APIC_BASE write that would leave x2APIC mode or disable the APIC: refused (reported,
    /// dropped).
    DeniedApicBase(u64),
    /// Drop it (the MSR is the monitor's).
    Ignore,
    /// Refused: an IPI outside the sandbox (reported, dropped).
    DeniedIpi(u64),
    /// INIT to another core of the sandbox (AP start-up): the monitor holds that core until
    /// the STARTUP that follows; nothing is sent.
    Init(u32),
    /// STARTUP (SIPI) to another core of the sandbox with this vector: the monitor launches
    /// that core in real mode at `vector * 4096`.
    Startup(u32, u8),
}

/// Decides an intercepted WRMSR. `own_apic_ids`: the sandbox's cores; `self_id`: the APIC id
/// of the core that wrote.
pub fn msr_write(msr: u32, value: u64, own_apic_ids: &[u32], self_id: u32) -> MsrWrite {
    match msr {
        MSR_EFER => MsrWrite::Efer(value | EFER_SVME),
        MSR_X2APIC_ICR => icr_write(value, own_apic_ids, self_id),
        // The only writable bits are EN, EXTD and the (x2APIC-unused) base: a write keeping
        // EN and EXTD changes nothing the sandbox may change.
        MSR_APIC_BASE if value & (APIC_BASE_EN | APIC_BASE_EXTD) == APIC_BASE_EN | APIC_BASE_EXTD => MsrWrite::Ignore,
        MSR_APIC_BASE => MsrWrite::DeniedApicBase(value),
        _ => MsrWrite::Ignore,
    }
}

/// The sandbox's cores an x2APIC ICR value addresses (bit k = `own[k]`), and whether it
/// addresses any core outside them. x2APIC logical destinations are (cluster << 16) | bit
/// mask, where a core's cluster is its APIC id >> 4 and its bit is 1 << (id & 15) (SDM
/// 10.12.10.2; AMD APM 16.14).
fn icr_targets(icr: u64, own: &[u32]) -> (u64, bool) {
    let dest = (icr >> 32) as u32;
    let logical = icr & (1 << 11) != 0;
    let mut cores = 0u64;
    for (k, &id) in own.iter().enumerate().take(64) {
        let hit = if logical { dest >> 16 == id >> 4 && dest & 0xffff & (1 << (id & 15)) != 0 } else { dest == id || dest == u32::MAX };
        if hit {
            cores |= 1 << k;
        }
    }
    let outside = if logical {
        // Does the mask name an id in that cluster that is not the sandbox's?
        (0..16u32).any(|b| dest & (1 << b) != 0 && !own.contains(&(((dest >> 16) << 4) | b)))
    } else {
        dest == u32::MAX || !own.contains(&dest)
    };
    (cores, outside)
}

fn icr_write(value: u64, own: &[u32], self_id: u32) -> MsrWrite {
    let shorthand = (value >> 18) & 3;
    let dest = (value >> 32) as u32;
    let logical = value & (1 << 11) != 0;
    let mode = (value >> 8) & 7;
    // Physical mode, no shorthand, destination filled in per core.
    let base = value & 0xffff_ffff & !((3 << 18) | (1 << 11));
    match (shorthand, mode) {
        (0, 5) if !logical && own.contains(&dest) => MsrWrite::Init(dest),
        (0, 6) if !logical && own.contains(&dest) => MsrWrite::Startup(dest, value as u8),
        (_, 5 | 6) => MsrWrite::DeniedIpi(value), // never INIT or SIPI anyone else, nor many at once
        (1, _) => MsrWrite::Ipi(value),           // self
        (0, _) if !logical && dest != u32::MAX && own.contains(&dest) => MsrWrite::Ipi(value),
        (0, _) => match icr_targets(value, own) {
            (cores, false) if cores != 0 => MsrWrite::Multicast { icr: base, cores },
            _ => MsrWrite::DeniedIpi(value),
        },
        // All including self (2) / all excluding self (3): "all" is the sandbox's own cores.
        (sh, _) => {
            let me = own.iter().position(|&id| id == self_id).map_or(0, |k| 1u64 << k);
            let all = if own.len() >= 64 { u64::MAX } else { (1u64 << own.len()) - 1 };
            MsrWrite::Multicast { icr: base, cores: if sh == 3 { all & !me } else { all } }
        }
    }
}
/// An intercepted RDMSR's result.
pub fn msr_read(msr: u32, guest_efer: u64) -> u64 {
    match msr {
        MSR_EFER => guest_efer,
        MSR_ARCH_CAPABILITIES => ARCH_CAP_XAPIC_DISABLE,
        MSR_XAPIC_DISABLE_STATUS => LEGACY_XAPIC_DISABLED,
        _ => 0,
    }
}

/// QEMU's isa-debug-exit port, which a Quest kernel writes to power off.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// What to do with an I/O access to a port the sandbox does not own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoAction {
    /// IN: the value is all ones (an absent device), of the access size.
    ReadAllOnes,
    /// OUT: dropped.
    Ignore,
    /// OUT to the debug-exit port: the sandbox powers off with this code.
    PowerOff(u32),
}

/// Decides an intercepted I/O access.
pub fn io(port: u16, input: bool, value: u32) -> IoAction {
    match (input, port) {
        (true, _) => IoAction::ReadAllOnes,
        (false, DEBUG_EXIT_PORT) => IoAction::PowerOff(value),
        (false, _) => IoAction::Ignore,
    }
}

/// A vendor-neutral exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Cpuid,
    Io { port: u16, size: u8, input: bool, string: bool, next_rip: u64 },
    Rdmsr,
    Wrmsr,
    Hypercall,
    NestedFault { gpa: u64, write: bool, exec: bool, present: bool },
    Shutdown,
    Init,
    /// An intercepted instruction the sandbox may not use (VMRUN, MWAIT, ...).
    Forbidden(&'static str),
    /// The VMCB was refused by the CPU (a monitor bug: stop and report).
    Invalid,
    /// Anything else (code given).
    Unexpected(u64),
}

impl Exit {
    /// The counter this exit goes to.
    pub fn reason(&self) -> ExitReason {
        match self {
            Exit::Cpuid => ExitReason::Cpuid,
            Exit::Io { .. } => ExitReason::Io,
            Exit::Rdmsr | Exit::Wrmsr => ExitReason::Msr,
            Exit::Hypercall => ExitReason::Hypercall,
            Exit::NestedFault { .. } => ExitReason::NestedPageFault,
            Exit::Shutdown => ExitReason::Shutdown,
            Exit::Init => ExitReason::Init,
            Exit::Forbidden(_) | Exit::Invalid | Exit::Unexpected(_) => ExitReason::Other,
        }
    }
}

/// Per-CPU exit counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; abi::EXIT_REASONS]);

impl Counters {
    pub fn count(&mut self, r: ExitReason) {
        self.0[r as usize] += 1;
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Serialises exit statistics for [`abi::HC_EXIT_STATS`]: header, then one record per CPU
/// (cpu, sandbox, exit counts, nanoseconds the monitor spent on them).
pub fn exit_stats_bytes(cpus: &[(u32, u32, Counters, Counters)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(abi::ExitStatsHeader::buffer_len(cpus.len()));
    v.extend_from_slice(&(cpus.len() as u32).to_le_bytes());
    v.extend_from_slice(&(abi::EXIT_REASONS as u32).to_le_bytes());
    for (cpu, sandbox, c, ns) in cpus {
        v.extend_from_slice(&cpu.to_le_bytes());
        v.extend_from_slice(&sandbox.to_le_bytes());
        for n in c.0.iter().chain(&ns.0) {
            v.extend_from_slice(&n.to_le_bytes());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> SandboxView {
        SandboxView {
            id: 1,
            count: 2,
            console_port: 0x2f8,
            console_irq: 3,
            tsc_khz: 2_000_000,
            cpu: 1,
            channels: vec![(153, 4096, 0x800_0000, 1)],
            apic_ids: vec![1, 2],
            pci_functions: 0,
            kvm_signature: false,
        }
    }

    #[test]
    fn cpuid_hides_svm_and_answers_questv() {
        let v = view();
        assert_eq!(cpuid(&v, 1, 0, [0, 0, 1 << 5, 0])[2], 1 << 31);
        assert_eq!(cpuid(&v, 0x8000_0001, 0, [0, 0, 0xffff_ffff, 0])[2] & (1 << 2), 0);
        assert_eq!(cpuid(&v, 0x8000_000a, 0, [1, 16, 0, 0xff]), [0; 4]);
        let s = cpuid(&v, abi::LEAF_SIGNATURE, 0, [0; 4]);
        assert_eq!(abi::signature_of(s[1], s[2], s[3]), abi::SIGNATURE);
        assert_eq!(cpuid(&v, abi::LEAF_SANDBOX, 0, [0; 4]), [1, 2, 0x2f8 | (3 << 16), 2_000_000]);
        let with_pci = SandboxView { pci_functions: 2, ..v.clone() };
        assert_eq!(cpuid(&with_pci, abi::LEAF_SANDBOX, 0, [0; 4]), [1, 2, 0x2f8 | (3 << 16) | (2 << 24), 2_000_000]);
        assert_eq!(cpuid(&v, abi::LEAF_PLATFORM, 0, [0; 4]), [1, 0, abi::ABI_VERSION, 1]);
        assert_eq!(cpuid(&v, abi::LEAF_CHANNEL, 0, [0; 4]), [153, 4096, 0x800_0001, 0]);
        assert_eq!(cpuid(&v, abi::LEAF_CHANNEL, 1, [0; 4]), [0; 4]);
        assert_eq!(cpuid(&v, abi::LEAF_CPUS, 1, [0; 4]), [2, 2, 0, 0]);
        assert_eq!(cpuid(&v, abi::LEAF_CPUS, 2, [0; 4]), [u32::MAX, 2, 0, 0]);
        assert_eq!(cpuid(&v, 7, 0, [1, 2, 3, 4]), [1, 2, 3, 4 | CPUID7_EDX_ARCH_CAPABILITIES]);
        // What a Linux guest would otherwise use: MONITOR/MWAIT (intercepted), MWAITX, 5-level
        // paging (the monitor's guest walk has 4 levels).
        assert_eq!(cpuid(&v, 1, 0, [0, 0, 1 << 3, 0])[2], 1 << 31);
        assert_eq!(cpuid(&v, 7, 0, [0, 0, (1 << 16) | 1, 0])[2], 1);
        assert_eq!(cpuid(&v, 7, 1, [0, 0, 1 << 16, 0])[2], 1 << 16);
        assert_eq!(cpuid(&v, 0x8000_0001, 0, [0, 0, 1 << 29, 0])[2], 0);
    }

    #[test]
    fn kvm_signature_only_when_asked_and_without_features() {
        let host = [7, 8, 9, 10];
        let v = view();
        assert_eq!(cpuid(&v, KVM_LEAF_BASE, 0, host), host);
        let k = SandboxView { kvm_signature: true, ..view() };
        let s = cpuid(&k, KVM_LEAF_BASE, 0, host);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&s[1].to_le_bytes());
        sig[4..8].copy_from_slice(&s[2].to_le_bytes());
        sig[8..].copy_from_slice(&s[3].to_le_bytes());
        assert_eq!(&sig, b"KVMKVMKVM\0\0\0");
        assert_eq!(s[0], 0x4000_0101);
        assert_eq!(cpuid(&k, 0x4000_0101, 0, host), [0; 4], "no KVM features, no hints");
        // The Quest-V leaves do not move.
        let q = cpuid(&k, abi::LEAF_SIGNATURE, 0, [0; 4]);
        assert_eq!(abi::signature_of(q[1], q[2], q[3]), abi::SIGNATURE);
        assert_eq!(cpuid(&k, abi::LEAF_SIGNATURE, 0, [0; 4]), cpuid(&v, abi::LEAF_SIGNATURE, 0, [0; 4]));
    }

    #[test]
    fn io_map_passes_only_owned_ports() {
        let m = io_permission_map(&[PortRange { first: 0x2f8, last: 0x2ff }]);
        assert_eq!(m.len(), 12288);
        assert!(!io_intercepted(&m, 0x2f8) && !io_intercepted(&m, 0x2ff));
        assert!(io_intercepted(&m, 0x2f7) && io_intercepted(&m, 0x300) && io_intercepted(&m, 0x3f8) && io_intercepted(&m, 0xf4));
        assert_eq!(io(0xf4, false, 0x10), IoAction::PowerOff(0x10));
        assert_eq!(io(0x3f8, true, 0), IoAction::ReadAllOnes);
        assert_eq!(io(0x20, false, 0x11), IoAction::Ignore);
    }

    #[test]
    fn msr_map_bits() {
        let m = msr_permission_map();
        assert_eq!(m.len(), 8192);
        let bit = msrpm_bit(MSR_EFER).unwrap();
        assert_eq!(bit, 0x800 * 8 + 0x80 * 2);
        assert_eq!(m[bit / 8] >> (bit % 8) & 3, 0b10); // write only
        let bit = msrpm_bit(MSR_VM_HSAVE_PA).unwrap();
        assert_eq!(m[bit / 8] >> (bit % 8) & 3, 0b11);
        let bit = msrpm_bit(0x6e0).unwrap(); // TSC deadline: not intercepted
        assert_eq!(m[bit / 8] >> (bit % 8) & 3, 0);
        assert_eq!(msrpm_bit(0x4000_0000), None);
    }

    #[test]
    fn ipis_only_to_own_cores() {
        let own = [1u32];
        let msr_write = |m, v, own: &[u32]| msr_write(m, v, own, 1);
        assert_eq!(msr_write(MSR_X2APIC_ICR, (1 << 32) | 0xf1, &own), MsrWrite::Ipi((1 << 32) | 0xf1));
        assert_eq!(msr_write(MSR_X2APIC_ICR, 0xf1, &own), MsrWrite::DeniedIpi(0xf1)); // to core 0
        assert_eq!(msr_write(MSR_X2APIC_ICR, (1 << 18) | 0xf1, &own), MsrWrite::Ipi((1 << 18) | 0xf1)); // self
        assert_eq!(msr_write(MSR_X2APIC_ICR, (3 << 18) | 0x4500, &own), MsrWrite::DeniedIpi((3 << 18) | 0x4500)); // INIT all-but-self
        assert_eq!(msr_write(MSR_X2APIC_ICR, (1 << 32) | 0x4500, &own), MsrWrite::Init(1));
        assert_eq!(msr_write(MSR_X2APIC_ICR, (1 << 32) | 0x4608, &own), MsrWrite::Startup(1, 8));
        assert_eq!(msr_write(MSR_X2APIC_ICR, 0x4608, &own), MsrWrite::DeniedIpi(0x4608)); // SIPI to core 0
        assert_eq!(msr_write(MSR_X2APIC_ICR, (1 << 18) | 0x4500, &own), MsrWrite::DeniedIpi((1 << 18) | 0x4500)); // INIT self
        assert_eq!(msr_write(MSR_EFER, 0xd01, &own), MsrWrite::Efer(0xd01 | EFER_SVME));
        assert_eq!(msr_write(MSR_VM_HSAVE_PA, 0x1000, &own), MsrWrite::Ignore);
        // Broadcast to all but self from a one-core sandbox: nobody.
        assert_eq!(msr_write(MSR_X2APIC_ICR, (3 << 18) | 0xf1, &own), MsrWrite::Multicast { icr: 0xf1, cores: 0 });
    }

    #[test]
    fn shorthands_and_logical_destinations_stay_inside() {
        let own = [1u32, 2];
        // Linux's reschedule IPI to all but self, from APIC id 2: core 0 (id 1) only.
        assert_eq!(msr_write(MSR_X2APIC_ICR, (3 << 18) | 0xfd, &own, 2), MsrWrite::Multicast { icr: 0xfd, cores: 0b01 });
        assert_eq!(msr_write(MSR_X2APIC_ICR, (2 << 18) | 0xfd, &own, 2), MsrWrite::Multicast { icr: 0xfd, cores: 0b11 });
        // An NMI to all but self keeps its delivery mode.
        assert_eq!(msr_write(MSR_X2APIC_ICR, (3 << 18) | 0x400, &own, 1), MsrWrite::Multicast { icr: 0x400, cores: 0b10 });
        // INIT or STARTUP by shorthand: never.
        assert!(matches!(msr_write(MSR_X2APIC_ICR, (3 << 18) | 0x4608, &own, 1), MsrWrite::DeniedIpi(_)));
        // Physical broadcast (destination 0xffffffff) is not "own cores only".
        assert!(matches!(msr_write(MSR_X2APIC_ICR, (0xffff_ffffu64 << 32) | 0xfd, &own, 1), MsrWrite::DeniedIpi(_)));
        // x2APIC logical: cluster 0, bits 1 and 2 = APIC ids 1 and 2, both own.
        let logical = |dest: u64| (dest << 32) | (1 << 11) | 0xec;
        assert_eq!(msr_write(MSR_X2APIC_ICR, logical(0b110), &own, 1), MsrWrite::Multicast { icr: 0xec, cores: 0b11 });
        assert_eq!(msr_write(MSR_X2APIC_ICR, logical(0b100), &own, 1), MsrWrite::Multicast { icr: 0xec, cores: 0b10 });
        // Bit 0 is APIC id 0: another sandbox's core.
        assert!(matches!(msr_write(MSR_X2APIC_ICR, logical(0b101), &own, 1), MsrWrite::DeniedIpi(_)));
        // Cluster 1 (ids 16..31): none of them.
        assert!(matches!(msr_write(MSR_X2APIC_ICR, logical((1 << 16) | 0b10), &own, 1), MsrWrite::DeniedIpi(_)));
        assert!(matches!(msr_write(MSR_X2APIC_ICR, logical(0), &own, 1), MsrWrite::DeniedIpi(_)));
    }

    #[test]
    fn x2apic_stays_on_and_locked() {
        let en = APIC_BASE_EN | APIC_BASE_EXTD | 0xfee0_0000;
        assert_eq!(msr_write(MSR_APIC_BASE, en, &[1], 1), MsrWrite::Ignore);
        assert_eq!(msr_write(MSR_APIC_BASE, APIC_BASE_EN | 0xfee0_0000, &[1], 1), MsrWrite::DeniedApicBase(APIC_BASE_EN | 0xfee0_0000));
        assert_eq!(msr_write(MSR_APIC_BASE, 0, &[1], 1), MsrWrite::DeniedApicBase(0));
        assert_eq!(msr_read(MSR_ARCH_CAPABILITIES, 0), ARCH_CAP_XAPIC_DISABLE);
        assert_eq!(msr_read(MSR_XAPIC_DISABLE_STATUS, 0), LEGACY_XAPIC_DISABLED);
        assert_eq!(cpuid(&view(), 7, 0, [0; 4])[3], CPUID7_EDX_ARCH_CAPABILITIES);
        let m = msr_permission_map();
        for (msr, want) in [(MSR_APIC_BASE, 0b10), (MSR_ARCH_CAPABILITIES, 0b11), (MSR_XAPIC_DISABLE_STATUS, 0b11)] {
            let bit = msrpm_bit(msr).unwrap();
            assert_eq!(m[bit / 8] >> (bit % 8) & 3, want, "{msr:#x}");
        }
    }

    #[test]
    fn stats_layout_matches_abi() {
        let mut c = Counters::default();
        c.count(ExitReason::Io);
        c.count(ExitReason::Io);
        let mut ns = Counters::default();
        ns.0[ExitReason::Io as usize] = 7;
        let b = exit_stats_bytes(&[(0, 0, c, ns), (1, 1, Counters::default(), Counters::default())]);
        assert_eq!(b.len(), abi::ExitStatsHeader::buffer_len(2));
        assert_eq!(&b[0..8], &[2, 0, 0, 0, 8, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(b[16 + 8..16 + 16].try_into().unwrap()), 2);
        let io_ns = 16 + 8 * abi::EXIT_REASONS + 8 * ExitReason::Io as usize;
        assert_eq!(u64::from_le_bytes(b[io_ns..io_ns + 8].try_into().unwrap()), 7);
        assert_eq!(Exit::Io { port: 1, size: 1, input: true, string: false, next_rip: 0 }.reason(), ExitReason::Io);
    }
}
