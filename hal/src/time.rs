//! Monotonic time from the TSC. The frequency comes from CPUID leaf 0x15/0x16 when the CPU
//! reports it, else from a calibration against the PIT (channel 2, gate-controlled, no IRQ).
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// ns = (tsc * MULT) >> SHIFT.
static MULT: AtomicU64 = AtomicU64::new(0);
const SHIFT: u32 = 32;

/// Whether the TSC runs at a constant rate in all power states (CPUID 0x80000007 EDX bit 8).
pub fn tsc_invariant() -> bool {
    crate::cpu::cpuid(0x8000_0000, 0).eax >= 0x8000_0007 && crate::cpu::cpuid(0x8000_0007, 0).edx & (1 << 8) != 0
}

fn pit_calibrate() -> u64 {
    const PIT_HZ: u64 = 1_193_182;
    const TICKS: u16 = 11_932; // 10 ms
    let mut p61 = Port::<u8>::new(0x61);
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch2 = Port::<u8>::new(0x42);
    // SAFETY: ports 0x42/0x43/0x61 are the PIT channel 2 and its gate on every PC; nothing else
    // in the kernel uses channel 2 (the speaker line is kept off: bit 1 of port 0x61 cleared).
    unsafe {
        let v = p61.read();
        p61.write((v & !0x02) | 0x01); // gate on, speaker off
        cmd.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        ch2.write(TICKS as u8);
        ch2.write((TICKS >> 8) as u8);
        // Restart the count: toggle the gate.
        let v = p61.read();
        p61.write(v & !0x01);
        p61.write(v | 0x01);
        let t0 = crate::cpu::rdtsc();
        while p61.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        let t1 = crate::cpu::rdtsc();
        (t1 - t0) * PIT_HZ / u64::from(TICKS)
    }
}

fn cpuid_hz() -> Option<u64> {
    let max = crate::cpu::cpuid(0, 0).eax;
    if max >= 0x15 {
        let r = crate::cpu::cpuid(0x15, 0);
        if r.eax != 0 && r.ebx != 0 && r.ecx != 0 {
            return Some(u64::from(r.ecx) * u64::from(r.ebx) / u64::from(r.eax));
        }
    }
    None
}

/// Determines the TSC frequency. Boot CPU, once.
pub(crate) fn init() -> u64 {
    // Under Quest-V the monitor measured the TSC once for everybody: sandboxes never touch the
    // PIT, which is shared hardware.
    let monitor_hz = crate::questv::sandbox().map(|s| u64::from(s.tsc_khz) * 1000).filter(|&hz| hz > 0);
    let hz = monitor_hz.or_else(cpuid_hz).unwrap_or_else(pit_calibrate).max(1_000_000);
    TSC_HZ.store(hz, Ordering::Relaxed);
    MULT.store(((1_000_000_000u128 << SHIFT) / u128::from(hz)) as u64, Ordering::Relaxed);
    TSC_AT_BOOT.store(crate::cpu::rdtsc(), Ordering::Relaxed);
    crate::apic::calibrate();
    hz
}

pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since `init` on the boot CPU (monotonic; TSCs are synchronised at reset).
pub fn now_ns() -> u64 {
    let d = crate::cpu::rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    ((u128::from(d) * u128::from(MULT.load(Ordering::Relaxed))) >> SHIFT) as u64
}

/// TSC value at monotonic time `ns`.
pub fn ns_to_tsc(ns: u64) -> u64 {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    TSC_AT_BOOT.load(Ordering::Relaxed) + (u128::from(ns) * u128::from(hz) / 1_000_000_000) as u64
}

/// Spins for `ns` nanoseconds.
pub fn spin_ns(ns: u64) {
    let end = now_ns() + ns;
    while now_ns() < end {
        core::hint::spin_loop();
    }
}
