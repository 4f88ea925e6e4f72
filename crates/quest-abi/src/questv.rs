//! The Quest-V monitor/sandbox ABI: what a sandbox kernel learns from the monitor through CPUID
//! hypervisor leaves, and the hypercalls (`vmmcall`) it may make.
//!
//! The monitor intercepts CPUID (only ever executed at boot by the Quest kernel) and answers
//! the leaves below; everything else a sandbox needs to know is in the multiboot2 information
//! the monitor builds for it (memory map, modules, command line). Nothing here is ever needed
//! in steady state: a sandbox that has booted makes no exits unless it asks for statistics.
//!
//! # CPUID leaves
//! * [`LEAF_SIGNATURE`] (`0x4000_0000`): `eax` = highest leaf ([`LEAF_CPUS`]),
//!   `ebx, ecx, edx` = [`SIGNATURE`] (12 bytes, little-endian registers as in KVM's "KVMKVMKVM").
//! * [`LEAF_SANDBOX`] (`0x4000_0001`): `eax` = sandbox id, `ebx` = number of sandboxes,
//!   `ecx` = console I/O base in bits 0..16, its ISA IRQ in bits 16..24 and the number of PCI
//!   functions the sandbox owns in bits 24..32 (0: nothing answers in configuration space but
//!   the monitor's all ones, so the kernel skips enumeration), `edx` = TSC
//!   frequency in kHz (so sandboxes never calibrate against the shared PIT).
//! * [`LEAF_PLATFORM`] (`0x4000_0002`): `eax` = number of channels, `ebx` = IOAPIC physical
//!   base (the sandbox may program only its own devices' pins; the monitor maps the page),
//!   `ecx` = [`ABI_VERSION`], `edx` = physical CPU index of this core.
//! * [`LEAF_CHANNEL`] (`0x4000_0003`), sub-leaf `i < channels`: `eax` = key, `ebx` = size in
//!   bytes, `ecx` = guest-physical address bits 12..32 with the kind ([`ChannelKindCode`]) in
//!   bits 0..12, `edx` = guest-physical address bits 32..64.
//! * [`LEAF_CPUS`] (`0x4000_0004`), sub-leaf `i`: `eax` = APIC id of the sandbox's CPU `i`
//!   (`u32::MAX` past the end), `ebx` = number of CPUs. The first is the boot processor; the
//!   kernel starts the others with INIT-SIPI-SIPI (x2APIC ICR writes, which the monitor turns
//!   into launches of those cores).
//!
//! # Hypercalls
//! `vmmcall` with the function in `rax`, arguments in `rbx, rcx, rdx`; result in `rax`
//! (negative = `-errno`).
//! * [`HC_EXIT_STATS`]: `rbx` = guest-physical address of a buffer, `rcx` = its length. The
//!   monitor writes an [`ExitStatsHeader`] followed by one [`CpuExitStats`] per CPU it runs
//!   and returns the number of bytes written (`-EINVAL` if the buffer is outside the sandbox's
//!   RAM, too small, or not 8-byte aligned).
//! * [`HC_ROUTE_ISA_IRQ`]: `rbx` = ISA IRQ, `rcx` = vector (32..=255). The monitor programs the
//!   IOAPIC pin for the calling core if the IRQ belongs to one of the sandbox's devices (its
//!   console); `-EPERM` otherwise, `-EINVAL` for a bad vector.
//! * [`HC_ROUTE_PCI_INTX`]: `rbx` = ISA IRQ (the Interrupt Line of one of the sandbox's PCI
//!   functions), `rcx` = vector (32..=255), `rdx` = 0 to route the line (level-triggered) to the
//!   calling core, 1 to mask it (an interrupt storm). `-EPERM` if no function of the sandbox is
//!   on that line, `-EINVAL` for a bad vector.

/// CPUID leaf: signature and highest leaf.
pub const LEAF_SIGNATURE: u32 = 0x4000_0000;
/// CPUID leaf: sandbox id, count, console, TSC frequency.
pub const LEAF_SANDBOX: u32 = 0x4000_0001;
/// CPUID leaf: channel count, IOAPIC base, ABI version, physical CPU.
pub const LEAF_PLATFORM: u32 = 0x4000_0002;
/// CPUID leaf: channel `ecx` (sub-leaf).
pub const LEAF_CHANNEL: u32 = 0x4000_0003;
/// CPUID leaf: the sandbox's CPUs (sub-leaf = index).
pub const LEAF_CPUS: u32 = 0x4000_0004;
/// The signature in `ebx, ecx, edx` of [`LEAF_SIGNATURE`].
pub const SIGNATURE: [u8; 12] = *b"Quest-V-RS\0\0";
/// Version of this ABI.
pub const ABI_VERSION: u32 = 1;

/// Channel kinds as [`LEAF_CHANNEL`] reports them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKindCode {
    /// Not fixed by the configuration: the creator decides.
    Any = 0,
    /// Simpson four-slot.
    Async = 1,
    /// FIFO ring.
    Sync = 2,
}

/// Hypercall: copy the per-CPU exit counters into a guest buffer.
pub const HC_EXIT_STATS: u64 = 1;
/// Hypercall: route ISA IRQ `rbx` (one of the sandbox's own devices) to vector `rcx` on the
/// calling core. The IOAPIC is shared hardware that only the monitor programs.
pub const HC_ROUTE_ISA_IRQ: u64 = 2;
/// Hypercall: route (`rdx` = 0) or mask (`rdx` = 1) the INTx line on ISA IRQ `rbx` of one of the
/// sandbox's PCI functions, to vector `rcx` on the calling core.
pub const HC_ROUTE_PCI_INTX: u64 = 3;

/// Exit reasons the monitor counts (vendor neutral: SVM and VT-x exits map onto these).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitReason {
    /// CPUID (boot only).
    Cpuid = 0,
    /// An I/O port the sandbox does not own.
    Io = 1,
    /// An intercepted MSR (EFER, APIC base, x2APIC ICR, the SVM MSRs).
    Msr = 2,
    /// A hypercall (`vmmcall`).
    Hypercall = 3,
    /// A guest-physical access outside the sandbox's memory (stops the sandbox).
    NestedPageFault = 4,
    /// Triple fault / shutdown (stops the sandbox).
    Shutdown = 5,
    /// INIT signal sent to this core (stops the sandbox: a sandbox must not reset others).
    Init = 6,
    /// A virtualization instruction or anything else the monitor does not allow.
    Other = 7,
}

/// Number of [`ExitReason`]s.
pub const EXIT_REASONS: usize = 8;

impl ExitReason {
    /// All reasons, in counter order.
    pub const ALL: [ExitReason; EXIT_REASONS] = [
        ExitReason::Cpuid,
        ExitReason::Io,
        ExitReason::Msr,
        ExitReason::Hypercall,
        ExitReason::NestedPageFault,
        ExitReason::Shutdown,
        ExitReason::Init,
        ExitReason::Other,
    ];

    /// Short lower-case name (what `vmexits` prints).
    pub const fn name(self) -> &'static str {
        match self {
            ExitReason::Cpuid => "cpuid",
            ExitReason::Io => "io",
            ExitReason::Msr => "msr",
            ExitReason::Hypercall => "hypercall",
            ExitReason::NestedPageFault => "npf",
            ExitReason::Shutdown => "shutdown",
            ExitReason::Init => "init",
            ExitReason::Other => "other",
        }
    }
}

/// Header of the [`HC_EXIT_STATS`] buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitStatsHeader {
    /// Number of [`CpuExitStats`] records that follow.
    pub cpus: u32,
    /// Counters per record ([`EXIT_REASONS`]).
    pub reasons: u32,
}

/// One CPU's exit counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuExitStats {
    /// Physical CPU index.
    pub cpu: u32,
    /// Sandbox id running on it (`u32::MAX`: none).
    pub sandbox: u32,
    /// Exits by [`ExitReason`] since launch.
    pub counts: [u64; EXIT_REASONS],
    /// Nanoseconds (TSC time) the monitor spent on them, by [`ExitReason`]: from the exit to
    /// the next VMRUN, so the hardware's world switch itself is not in it.
    pub monitor_ns: [u64; EXIT_REASONS],
}

impl ExitStatsHeader {
    /// Bytes a buffer needs for `cpus` records.
    pub const fn buffer_len(cpus: usize) -> usize {
        core::mem::size_of::<ExitStatsHeader>() + cpus * core::mem::size_of::<CpuExitStats>()
    }
}

/// queshe: the channel keys that carry Quest sandbox `n`'s console to a Linux sandbox, by
/// convention (configured like any channel): (`5000 + 2n`: input to Quest, `5001 + 2n`:
/// Quest's output).
pub const fn queshe_keys(n: u32) -> (u32, u32) {
    (QUESHE_KEY_BASE + 2 * n, QUESHE_KEY_BASE + 2 * n + 1)
}
/// The first queshe key.
pub const QUESHE_KEY_BASE: u32 = 5000;

/// Splits a [`LEAF_SIGNATURE`] answer back into bytes.
pub fn signature_of(ebx: u32, ecx: u32, edx: u32) -> [u8; 12] {
    let mut s = [0u8; 12];
    s[0..4].copy_from_slice(&ebx.to_le_bytes());
    s[4..8].copy_from_slice(&ecx.to_le_bytes());
    s[8..12].copy_from_slice(&edx.to_le_bytes());
    s
}

/// The registers of [`LEAF_SIGNATURE`] for [`SIGNATURE`].
pub fn signature_regs() -> (u32, u32, u32) {
    let w = |i: usize| u32::from_le_bytes([SIGNATURE[i], SIGNATURE[i + 1], SIGNATURE[i + 2], SIGNATURE[i + 3]]);
    (w(0), w(4), w(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_roundtrip() {
        let (b, c, d) = signature_regs();
        assert_eq!(signature_of(b, c, d), SIGNATURE);
    }

    #[test]
    fn layout_sizes() {
        assert_eq!(core::mem::size_of::<ExitStatsHeader>(), 8);
        assert_eq!(core::mem::size_of::<CpuExitStats>(), 8 + 16 * EXIT_REASONS);
        assert_eq!(ExitStatsHeader::buffer_len(2), 8 + 2 * 136);
        for (i, r) in ExitReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
