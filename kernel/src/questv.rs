//! Quest-V from inside a sandbox: the monitor's exit counters (`vmexits`), read through the
//! monitor's hypercall, optionally over a window of guest time with a periodic task running
//! (the steady-state check: an idle shell plus a periodic real-time task should cause no exits).
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use quest_abi::questv::{EXIT_REASONS, ExitReason};
use vcpu_sched::VcpuParams;

use crate::sched;

/// One CPU's counters: (cpu, sandbox, exit counts, nanoseconds the monitor spent on them).
pub type CpuCounts = (u32, u32, [u64; EXIT_REASONS], [u64; EXIT_REASONS]);

/// Words per CPU record: cpu and sandbox, counts, nanoseconds.
const RECORD: usize = 1 + 2 * EXIT_REASONS;

/// Reads the monitor's counters for every CPU.
pub fn snapshot() -> Result<Vec<CpuCounts>, &'static str> {
    hal::questv::sandbox().ok_or("not running under the Quest-V monitor")?;
    let mut buf = vec![0u64; quest_abi::questv::ExitStatsHeader::buffer_len(hal::percpu::MAX_CPUS.max(16)) / 8];
    let n = hal::questv::exit_stats(&mut buf).map_err(|_| "the monitor refused the statistics hypercall")?;
    let cpus = (buf[0] & 0xffff_ffff) as usize;
    let reasons = (buf[0] >> 32) as usize;
    if reasons != EXIT_REASONS || n < 8 * (1 + cpus * RECORD) || cpus > hal::percpu::MAX_CPUS.max(16) {
        return Err("the monitor's statistics have an unexpected layout");
    }
    Ok((0..cpus)
        .map(|i| {
            let r = &buf[1 + i * RECORD..1 + (i + 1) * RECORD];
            let mut c = [0u64; EXIT_REASONS];
            let mut ns = [0u64; EXIT_REASONS];
            c.copy_from_slice(&r[1..1 + EXIT_REASONS]);
            ns.copy_from_slice(&r[1 + EXIT_REASONS..]);
            ((r[0] & 0xffff_ffff) as u32, (r[0] >> 32) as u32, c, ns)
        })
        .collect())
}

/// `vmexits: cpu C sandbox S total N cpuid N io N ...`, then, for the reasons that occurred,
/// the monitor's mean handling time: `| monitor ns/exit: msr 1234 ...`.
fn line(out: &mut String, cpu: u32, sandbox: u32, c: &[u64; EXIT_REASONS], ns: &[u64; EXIT_REASONS]) {
    let total: u64 = c.iter().sum();
    let sb = if sandbox == u32::MAX { String::from("-") } else { alloc::format!("{sandbox}") };
    let _ = write!(out, "vmexits: cpu {cpu} sandbox {sb} total {total}");
    for r in ExitReason::ALL {
        let _ = write!(out, " {} {}", r.name(), c[r as usize]);
    }
    if total > 0 {
        out.push_str(" | monitor ns/exit:");
        for r in ExitReason::ALL.into_iter().filter(|&r| c[r as usize] > 0) {
            let _ = write!(out, " {} {}", r.name(), ns[r as usize] / c[r as usize]);
        }
    }
    out.push('\n');
}

/// `vmexits`: counters since launch. `vmexits MS`: the exits during MS milliseconds of guest
/// time while a periodic task (Main VCPU C=1 ms, T=10 ms, waking every 10 ms) runs here; this
/// command's own second hypercall is not counted.
pub fn vmexits(ms: u64) -> Result<String, &'static str> {
    let mut out = String::new();
    if ms == 0 {
        for (cpu, sb, c, ns) in snapshot()? {
            line(&mut out, cpu, sb, &c, &ns);
        }
        return Ok(out);
    }
    let cpu = hal::percpu::cpu_index();
    let v = sched::create_vcpu(cpu, VcpuParams::main(1_000, 10_000)).map_err(|_| "cannot create the periodic task's VCPU")?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let wakeups = Arc::new(core::sync::atomic::AtomicU64::new(0));
    let w = wakeups.clone();
    let spawned = sched::spawn("periodic", cpu, Some(v), move || {
        let mut next = hal::time::now_ns();
        while !s.load(Ordering::Relaxed) {
            next += 10_000_000;
            let _ = sched::sleep_until(next);
            w.fetch_add(1, Ordering::Relaxed);
            let t = hal::time::now_ns();
            while hal::time::now_ns() - t < 100_000 {
                core::hint::spin_loop();
            }
        }
    });
    if spawned.is_err() {
        let _ = sched::destroy_vcpu(cpu, v);
        return Err("cannot start the periodic task");
    }
    let a = snapshot()?;
    let t0 = hal::time::now_ns();
    let _ = sched::sleep_until(t0 + ms * 1_000_000);
    let b = snapshot()?;
    let span = hal::time::now_ns() - t0;
    stop.store(true, Ordering::Relaxed);
    let _ = sched::sleep_ns(30_000_000);
    let _ = sched::destroy_vcpu(cpu, v);
    let me = hal::questv::sandbox().map_or(u32::MAX, |s| s.cpu);
    let _ = writeln!(
        out,
        "vmexits: {} ms of guest time, periodic task woke {} times",
        span / 1_000_000,
        wakeups.load(Ordering::Relaxed)
    );
    for ((cpu, sb, c1, ns1), (_, _, c0, ns0)) in b.iter().zip(&a) {
        let mut d = [0u64; EXIT_REASONS];
        let mut dns = [0u64; EXIT_REASONS];
        for i in 0..EXIT_REASONS {
            d[i] = c1[i].saturating_sub(c0[i]);
            dns[i] = ns1[i].saturating_sub(ns0[i]);
        }
        if *cpu == me {
            // The second snapshot is counted but its time is not (the monitor adds it after
            // answering), while the first one's time is: one hypercall, one time.
            d[ExitReason::Hypercall as usize] = d[ExitReason::Hypercall as usize].saturating_sub(1);
        }
        line(&mut out, *cpu, *sb, &d, &dns);
    }
    Ok(out)
}
