//! Per-CPU data, reached through the GS base: `gs:[0]` holds the block's own address, `gs:[8]`
//! the CPU index (0 = boot CPU). The kernel keeps its own per-CPU state in arrays indexed by
//! [`cpu_index`].
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use x86_64::registers::model_specific::GsBase;
use x86_64::VirtAddr;

/// CPUs supported (the seed's default maximum 8; the `cpus256` feature raises it to 256).
pub const MAX_CPUS: usize = if cfg!(feature = "cpus256") { 256 } else { 8 };

#[repr(C, align(64))]
pub struct PerCpu {
    self_ptr: AtomicU64,
    index: AtomicU64,
    apic_id: AtomicU32,
    _pad: AtomicU32,
    /// gs:[24]: kernel stack top for entries from user mode (the `syscall` stub loads it).
    pub(crate) kernel_rsp: AtomicU64,
    /// gs:[32]: the user stack pointer, saved by the `syscall` stub.
    pub(crate) user_rsp: AtomicU64,
    /// This CPU's TSS (RSP0 must follow the running thread's kernel stack).
    pub(crate) tss: AtomicU64,
}

/// Offsets the assembly stubs use.
pub const KERNEL_RSP_OFFSET: usize = 24;
pub const USER_RSP_OFFSET: usize = 32;
const _: () = assert!(core::mem::offset_of!(PerCpu, kernel_rsp) == KERNEL_RSP_OFFSET);
const _: () = assert!(core::mem::offset_of!(PerCpu, user_rsp) == USER_RSP_OFFSET);

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: PerCpu = PerCpu {
    self_ptr: AtomicU64::new(0),
    index: AtomicU64::new(0),
    apic_id: AtomicU32::new(0),
    _pad: AtomicU32::new(0),
    kernel_rsp: AtomicU64::new(0),
    user_rsp: AtomicU64::new(0),
    tss: AtomicU64::new(0),
};

static CPUS: [PerCpu; MAX_CPUS] = [EMPTY; MAX_CPUS];
static ONLINE: AtomicUsize = AtomicUsize::new(0);

/// Points this CPU's GS base at block `index` (called once per CPU while it starts).
pub(crate) fn init_cpu(index: usize, apic_id: u32) {
    let p = &CPUS[index];
    p.self_ptr.store(p as *const PerCpu as u64, Ordering::Relaxed);
    p.index.store(index as u64, Ordering::Relaxed);
    p.apic_id.store(apic_id, Ordering::Relaxed);
    GsBase::write(VirtAddr::new(p as *const PerCpu as u64));
    ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// Index of the CPU running this code.
pub fn cpu_index() -> usize {
    let v: u64;
    // SAFETY: GS base points at this CPU's `PerCpu` (set by `init_cpu` before any caller can
    // run on this CPU); offset 8 is `index`, an aligned u64.
    unsafe { core::arch::asm!("mov {}, gs:[8]", out(reg) v, options(nostack, readonly, preserves_flags)) };
    v as usize
}

/// This CPU's block.
pub(crate) fn this_cpu() -> &'static PerCpu {
    &CPUS[cpu_index()]
}

/// APIC id of CPU `index`.
pub fn apic_id_of(index: usize) -> u32 {
    CPUS[index].apic_id.load(Ordering::Relaxed)
}

/// CPUs that have started.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}
