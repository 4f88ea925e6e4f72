//! Local APIC (x2APIC through MSRs when the CPU has it, xAPIC through MMIO otherwise): enable,
//! end-of-interrupt, inter-processor interrupts, and the one-shot timer (TSC-deadline mode when
//! available, else the count-down timer with a calibrated frequency).
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::registers::model_specific::Msr;

use crate::mm::phys_to_virt;

/// Vector of the LAPIC timer.
pub const TIMER_VECTOR: u8 = 0xf0;
/// Vector of the "reschedule" IPI.
pub const RESCHED_VECTOR: u8 = 0xf1;
/// Vector of the "stop" IPI (panic on another CPU).
pub const STOP_VECTOR: u8 = 0xf2;
/// Spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const IA32_TSC_DEADLINE: u32 = 0x6e0;

// Register offsets (xAPIC MMIO offset; x2APIC MSR = 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3e0;

static X2APIC: AtomicBool = AtomicBool::new(false);
static TSC_DEADLINE: AtomicBool = AtomicBool::new(false);
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0xfee0_0000);
/// LAPIC timer ticks per second (divide by 16), calibrated on the boot CPU.
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);

/// Whether the CPU offers x2APIC mode.
pub fn has_x2apic() -> bool {
    crate::cpu::cpuid(1, 0).ecx & (1 << 21) != 0
}

/// Whether the LAPIC timer has TSC-deadline mode.
pub fn has_tsc_deadline() -> bool {
    crate::cpu::cpuid(1, 0).ecx & (1 << 24) != 0
}

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is enabled on this CPU, so MSR 0x800 + reg/16 is an APIC register;
        // reading it has no side effect for the registers this module reads.
        unsafe { Msr::new(0x800 + reg / 16).read() as u32 }
    } else {
        let p = phys_to_virt(XAPIC_BASE.load(Ordering::Relaxed) + reg as u64) as *const u32;
        // SAFETY: the xAPIC page is mapped uncached by the direct map (it is not RAM) and `reg`
        // is a valid 16-byte-aligned register offset; APIC registers need 32-bit accesses.
        unsafe { core::ptr::read_volatile(p) }
    }
}

fn write(reg: u32, v: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: as in `read`; every register written here is writable in x2APIC mode.
        unsafe { Msr::new(0x800 + reg / 16).write(u64::from(v)) }
    } else {
        let p = phys_to_virt(XAPIC_BASE.load(Ordering::Relaxed) + reg as u64) as *mut u32;
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(p, v) }
    }
}

/// Enables this CPU's local APIC (x2APIC mode when available) and its spurious vector.
/// The first call (boot CPU) decides the mode for all CPUs.
pub(crate) fn init_cpu(bsp: bool) {
    if bsp {
        X2APIC.store(has_x2apic(), Ordering::Relaxed);
        TSC_DEADLINE.store(has_tsc_deadline() && crate::time::tsc_invariant(), Ordering::Relaxed);
    }
    let mut base = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting the global-enable bit (11) and,
    // where supported, the x2APIC bit (10) only changes how the LAPIC is addressed, and the
    // base address is kept.
    unsafe {
        let v = base.read();
        if bsp {
            XAPIC_BASE.store(v & 0x000f_ffff_ffff_f000, Ordering::Relaxed);
        }
        let mut nv = v | (1 << 11);
        if X2APIC.load(Ordering::Relaxed) {
            nv |= 1 << 10;
        }
        if nv != v {
            base.write(nv);
        }
    }
    write(REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(REG_LVT_TIMER, 1 << 16); // masked until programmed
    write(REG_TIMER_DIV, 0x3); // divide by 16
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    if X2APIC.load(Ordering::Relaxed) { read(REG_ID) } else { read(REG_ID) >> 24 }
}

pub fn x2apic_enabled() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

pub fn tsc_deadline_enabled() -> bool {
    TSC_DEADLINE.load(Ordering::Relaxed)
}

/// Acknowledges the interrupt being serviced.
pub fn eoi() {
    write(REG_EOI, 0);
}

fn icr(dest: u32, low: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode: the ICR is the single 64-bit MSR 0x830; destination in the high half.
        unsafe { Msr::new(0x830).write((u64::from(dest) << 32) | u64::from(low)) }
    } else {
        write(REG_ICR_HIGH, dest << 24);
        write(REG_ICR_LOW, low);
        while read(REG_ICR_LOW) & (1 << 12) != 0 {
            core::hint::spin_loop();
        }
    }
}

/// Sends fixed interrupt `vector` to the CPU with APIC id `dest`.
pub fn send_ipi(dest: u32, vector: u8) {
    icr(dest, u32::from(vector));
}

/// Sends INIT to `dest` (AP start-up).
pub fn send_init(dest: u32) {
    icr(dest, 0x4500);
}

/// Sends a STARTUP IPI with the real-mode page `page` (trampoline at `page * 4096`).
pub(crate) fn send_startup(dest: u32, page: u8) {
    icr(dest, 0x4600 | u32::from(page));
}

/// Calibrates the count-down timer against the TSC (boot CPU, after `time::init`).
pub(crate) fn calibrate() {
    write(REG_LVT_TIMER, 1 << 16);
    write(REG_TIMER_DIV, 0x3);
    write(REG_TIMER_INIT, u32::MAX);
    let t0 = crate::time::now_ns();
    while crate::time::now_ns() - t0 < 10_000_000 {
        core::hint::spin_loop();
    }
    let cur = read(REG_TIMER_CUR);
    let elapsed = crate::time::now_ns() - t0;
    write(REG_TIMER_INIT, 0);
    let ticks = u64::from(u32::MAX - cur);
    TIMER_HZ.store(ticks * 1_000_000_000 / elapsed.max(1), Ordering::Relaxed);
}

/// LAPIC timer frequency (ticks/s after the divider), 0 if uncalibrated.
pub fn timer_hz() -> u64 {
    TIMER_HZ.load(Ordering::Relaxed)
}

/// Programs this CPU's timer to fire once at monotonic time `deadline_ns` (or as soon as
/// possible if that has passed). `None` stops it.
pub fn set_deadline(deadline_ns: Option<u64>) {
    let Some(deadline) = deadline_ns else {
        if TSC_DEADLINE.load(Ordering::Relaxed) {
            // SAFETY: TSC-deadline mode is enabled; writing 0 disarms the timer.
            unsafe { Msr::new(IA32_TSC_DEADLINE).write(0) };
        } else {
            write(REG_TIMER_INIT, 0);
        }
        return;
    };
    if TSC_DEADLINE.load(Ordering::Relaxed) {
        write(REG_LVT_TIMER, u32::from(TIMER_VECTOR) | (0b10 << 17));
        let tsc = crate::time::ns_to_tsc(deadline).max(1);
        // SAFETY: TSC-deadline mode is selected in the LVT (above); the MSR arms the timer.
        unsafe { Msr::new(IA32_TSC_DEADLINE).write(tsc) };
    } else {
        write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
        let now = crate::time::now_ns();
        let delta = deadline.saturating_sub(now);
        let ticks = (u128::from(delta) * u128::from(timer_hz()) / 1_000_000_000).clamp(1, u128::from(u32::MAX));
        write(REG_TIMER_INIT, ticks as u32);
    }
}
