//! In-kernel test hooks (feature `ktest`, used by the QEMU test suite): deliberate faults, so
//! the tests can check the fault reports, and workloads that need the running kernel
//! (budget enforcement, semaphores across CPUs, timer latency).
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hal::println;
use vcpu_sched::VcpuParams;

use crate::sched;
use crate::sync::Semaphore;

// Unbounded on purpose: it runs into the stack's guard page.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = [depth; 64];
    // black_box keeps the frame (and the recursion) from being optimised away.
    core::hint::black_box(&pad);
    recurse(depth + 1) + core::hint::black_box(pad[3])
}

#[inline(never)]
fn page_fault() {
    let p = core::hint::black_box(0xdead_0000_usize) as *const u64;
    // A read through an address nothing maps: the kernel must report the page fault.
    hal::cpu::trigger_page_fault(p as u64);
}

pub(crate) fn arg<T: core::str::FromStr>(args: &[&str], i: usize, default: T) -> T {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

pub(crate) fn cpu_or(args: &[&str], i: usize, default: usize) -> usize {
    let c = arg(args, i, default);
    if c < hal::percpu::online() { c } else { 0 }
}

/// Two CPU-bound threads on Main VCPUs (20 ms, 100 ms) and (30 ms, 100 ms) plus a best-effort
/// hog on one PCPU for `secs` seconds: prints each thread's share of the CPU.
fn budget(args: &[&str]) {
    let cpu = cpu_or(args, 0, 1);
    let ms: u64 = arg(args, 1, 2000);
    let want = match args.get(2).copied() {
        Some("strict") => Some(false),
        Some("bg") => Some(true),
        _ => None,
    };
    if let Some(on) = want {
        if let Err(e) = sched::set_background(cpu, on) {
            return println!("budget: cannot change cpu {cpu}'s background policy: {e}");
        }
    }
    let mode = if sched::background(cpu) == Some(true) { "work-conserving (background on)" } else { "strict (background off)" };
    let stop = Arc::new(AtomicBool::new(false));
    let mut vcpus = Vec::new();
    let mut tids = Vec::new();
    for (name, params) in [("hog-20", Some(VcpuParams::main(20_000, 100_000))), ("hog-30", Some(VcpuParams::main(30_000, 100_000))), ("hog-be", None)] {
        let v = match params {
            Some(p) => match sched::create_vcpu(cpu, p) {
                Ok(v) => {
                    vcpus.push(v);
                    Some(v)
                }
                Err(e) => return println!("budget: vcpu_create failed: {e}"),
            },
            None => None,
        };
        let s = stop.clone();
        match sched::spawn(name, cpu, v, move || {
            while !s.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }) {
            Ok(t) => tids.push((name, t)),
            Err(e) => return println!("budget: spawn failed: {e}"),
        }
    }
    let t0 = hal::time::now_ns();
    let r0: Vec<u64> = tids.iter().map(|&(_, t)| sched::runtime_ns(t).unwrap_or(0)).collect();
    let _ = sched::sleep_until(t0 + ms * 1_000_000);
    let t1 = hal::time::now_ns();
    let r1: Vec<u64> = tids.iter().map(|&(_, t)| sched::runtime_ns(t).unwrap_or(0)).collect();
    stop.store(true, Ordering::Relaxed);
    let span = (t1 - t0).max(1);
    println!("budget: cpu {cpu}, {mode}, {} ms of guest time", span / 1_000_000);
    for (i, (name, _)) in tids.iter().enumerate() {
        let used = r1[i] - r0[i];
        let permille = used * 100_000 / span; // thousandths of a percent
        println!("budget: {name} {}.{:03}%", permille / 1000, permille % 1000);
    }
    // Let the hogs exit, then remove their VCPUs. The CPU keeps the policy asked for (changing
    // it again would replace its scheduler and with it the trace the tests read next).
    let _ = sched::sleep_ns(300_000_000);
    for v in vcpus {
        if let Err(e) = sched::destroy_vcpu(cpu, v) {
            println!("budget: vcpu_destroy: {e}");
        }
    }
}

/// Semaphore ping-pong between two threads of one CPU: round-trip cost.
fn sem_pingpong(args: &[&str]) {
    let rounds: u64 = arg(args, 0, 1000);
    let cpu = cpu_or(args, 1, 0);
    let ping = Arc::new(Semaphore::new(0));
    let pong = Arc::new(Semaphore::new(0));
    let done = Arc::new(Semaphore::new(0));
    let (p2, q2, d2) = (ping.clone(), pong.clone(), done.clone());
    let sw0 = sched::context_switches();
    let t0 = hal::time::now_ns();
    let _ = sched::spawn("pong", cpu, None, move || {
        for _ in 0..rounds {
            p2.down();
            q2.up();
        }
        d2.up();
    });
    let (p3, q3, d3) = (ping.clone(), pong.clone(), done.clone());
    let _ = sched::spawn("ping", cpu, None, move || {
        for _ in 0..rounds {
            p3.up();
            q3.down();
        }
        d3.up();
    });
    done.down();
    done.down();
    let t1 = hal::time::now_ns();
    let sw = sched::context_switches() - sw0;
    println!(
        "sem: {rounds} round trips on cpu {cpu}, {} ns per round trip, {sw} context switches",
        (t1 - t0) / rounds.max(1)
    );
}

/// Producer on one CPU, consumer on another, through a bounded buffer guarded by semaphores.
fn prodcons(args: &[&str]) {
    let items: u64 = arg(args, 0, 10_000);
    let pc = cpu_or(args, 1, 1);
    let cc = cpu_or(args, 2, 2);
    const CAP: usize = 8;
    struct Shared {
        slots: [AtomicU64; CAP],
        empty: Semaphore,
        full: Semaphore,
    }
    let sh = Arc::new(Shared {
        slots: [const { AtomicU64::new(0) }; CAP],
        empty: Semaphore::new(CAP as u64),
        full: Semaphore::new(0),
    });
    let done = Arc::new(Semaphore::new(0));
    let result = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicBool::new(true));
    let (s1, d1) = (sh.clone(), done.clone());
    let _ = sched::spawn("producer", pc, None, move || {
        for i in 0..items {
            s1.empty.down();
            s1.slots[(i % CAP as u64) as usize].store(i, Ordering::Release);
            s1.full.up();
        }
        d1.up();
    });
    let (s2, d2, r2, ok2) = (sh.clone(), done.clone(), result.clone(), ok.clone());
    let _ = sched::spawn("consumer", cc, None, move || {
        let mut sum = 0u64;
        for i in 0..items {
            s2.full.down();
            let v = s2.slots[(i % CAP as u64) as usize].load(Ordering::Acquire);
            if v != i {
                ok2.store(false, Ordering::Relaxed);
            }
            sum += v;
            s2.empty.up();
        }
        r2.store(sum, Ordering::Relaxed);
        d2.up();
    });
    done.down();
    done.down();
    println!(
        "prodcons: {items} items from cpu {pc} to cpu {cc}, {}, sum {}",
        if ok.load(Ordering::Relaxed) { "in order" } else { "OUT OF ORDER" },
        result.load(Ordering::Relaxed)
    );
}

/// A CPU-bound thread on every CPU for `ms`: each must make progress.
fn smp(args: &[&str]) {
    let ms: u64 = arg(args, 0, 200);
    let n = hal::percpu::online();
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Semaphore::new(0));
    for cpu in 0..n {
        let (c, s, d) = (counts.clone(), stop.clone(), done.clone());
        let _ = sched::spawn("spin", cpu, None, move || {
            let me = hal::percpu::cpu_index();
            while !s.load(Ordering::Relaxed) {
                c[me].fetch_add(1, Ordering::Relaxed);
            }
            d.up();
        });
    }
    let _ = sched::sleep_ns(ms * 1_000_000);
    stop.store(true, Ordering::Relaxed);
    for _ in 0..n {
        done.down();
    }
    for (cpu, c) in counts.iter().enumerate() {
        println!("smp: cpu {cpu} ran {} iterations", c.load(Ordering::Relaxed));
    }
}

/// Timer interrupt-to-thread latency: a thread on its own Main VCPU sleeps until absolute
/// times 1 ms apart and records how late it ran.
fn latency(args: &[&str]) {
    let n: usize = arg(args, 0, 200);
    let cpu = cpu_or(args, 1, 1);
    let v = match sched::create_vcpu(cpu, VcpuParams::main(1000, 10_000)) {
        Ok(v) => v,
        Err(e) => return println!("latency: vcpu_create failed: {e}"),
    };
    let done = Arc::new(Semaphore::new(0));
    let out = Arc::new(hal::sync::IrqLock::new(Vec::<u64>::new()));
    let (d, o) = (done.clone(), out.clone());
    let _ = sched::spawn("latency", cpu, Some(v), move || {
        let start = hal::time::now_ns() + 1_000_000;
        for k in 0..n as u64 {
            let at = start + k * 1_000_000;
            let _ = sched::sleep_until(at);
            let late = hal::time::now_ns() - at;
            o.lock().push(late);
        }
        d.up();
    });
    done.down();
    let mut v2 = core::mem::take(&mut *out.lock());
    v2.sort_unstable();
    if v2.is_empty() {
        return;
    }
    println!(
        "latency: {} wake-ups, min {} ns, median {} ns, p99 {} ns, max {} ns",
        v2.len(),
        v2[0],
        v2[v2.len() / 2],
        v2[v2.len() * 99 / 100],
        v2[v2.len() - 1]
    );
    let _ = sched::sleep_ns(10_000_000);
    let _ = sched::destroy_vcpu(cpu, v);
}

/// Worst-case heap allocation time on an aged heap: `n` blocks of pseudo-random sizes (16 B to
/// 2 KiB) are allocated and every other one freed, leaving about `n / 2` free holes; then `m`
/// allocations of 16 B to 4 KiB are timed one by one with interrupts off. Under `-icount` guest
/// time counts instructions, so the figures are deterministic.
fn heap(args: &[&str]) {
    let n: usize = arg(args, 0, 4000);
    let m: usize = arg::<usize>(args, 1, 2000).max(1);
    let mut x: u32 = 0x9e37_79b9;
    let mut rand = move |lo: usize, hi: usize| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        lo + x as usize % (hi - lo)
    };
    let mut aged: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(rand(16, 2048))).collect();
    let mut i = 0;
    aged.retain(|_| {
        i += 1;
        i % 2 == 0
    });
    let mut kept = Vec::with_capacity(m);
    let mut times = Vec::with_capacity(m);
    for _ in 0..m {
        let size = rand(16, 4096);
        let (v, dt) = hal::cpu::without_interrupts(|| {
            let t0 = hal::time::now_ns();
            let v: Vec<u8> = Vec::with_capacity(size);
            (v, hal::time::now_ns() - t0)
        });
        kept.push(v);
        times.push(dt);
    }
    times.sort_unstable();
    println!(
        "heap: {m} allocations after {n} aged: median {} ns, p99 {} ns, max {} ns",
        times[m / 2],
        times[m * 99 / 100],
        times[m - 1]
    );
    drop(kept);
    drop(aged);
}

/// `/boot/spin` (a user program that spins without system calls) started on `cpu` and killed
/// from this CPU: the kill reaches it by IPI and it ends at its next return to user mode
/// (before issue 22 it spun on forever: kills were noticed only at system-call boundaries).
fn killcpu(args: &[&str]) {
    let cpu = cpu_or(args, 0, 1);
    let me = hal::percpu::cpu_index();
    let pid = Arc::new(core::sync::atomic::AtomicU32::new(0));
    let started = Arc::new(Semaphore::new(0));
    let (pid2, started2) = (pid.clone(), started.clone());
    let spawned = sched::spawn("killcpu", cpu, None, move || {
        match crate::process::spawn(&crate::initrd::get(), "spin", &[], 0) {
            Ok(p) => pid2.store(p.pid, Ordering::Relaxed),
            Err(e) => println!("killcpu: cannot start /boot/spin: {e}"),
        }
        started2.up();
    });
    if let Err(e) = spawned {
        return println!("killcpu: spawn failed: {e}");
    }
    started.down();
    let Some(p) = crate::process::get(pid.load(Ordering::Relaxed)) else { return };
    let _ = sched::sleep_ns(100_000_000); // it spins
    let t0 = hal::time::now_ns();
    if let Err(e) = crate::process::kill(p.pid, crate::process::killed_by(9)) {
        return println!("killcpu: kill failed: {e}");
    }
    while !p.dead.load(Ordering::Acquire) {
        if hal::time::now_ns() - t0 > 2_000_000_000 {
            return println!("killcpu: task {} on cpu {cpu} still runs 2000 ms after the kill from cpu {me}", p.pid);
        }
        let _ = sched::sleep_ns(1_000_000);
    }
    println!("killcpu: task {} spinning on cpu {cpu} ended {} ms after the kill from cpu {me}", p.pid, (hal::time::now_ns() - t0) / 1_000_000);
}

pub fn run(what: &str) {
    let mut it = what.split_whitespace();
    let name = it.next().unwrap_or("");
    let args: Vec<&str> = it.collect();
    match name {
        "pf" => page_fault(),
        "ud" => hal::cpu::trigger_invalid_opcode(),
        "gp" => hal::cpu::trigger_general_protection(),
        "de" => hal::cpu::trigger_divide_error(),
        "stack" => {
            println!("ktest: recursing until the stack guard page");
            println!("{}", recurse(0));
        }
        "panic" => panic!("ktest: deliberate panic"),
        "budget" => budget(&args),
        "sem" => sem_pingpong(&args),
        "prodcons" => prodcons(&args),
        "smp" => smp(&args),
        "latency" => latency(&args),
        "wakeglue" => crate::ktest_sched::wakeglue(&args),
        "schedrand" => crate::ktest_sched::schedrand(&args),
        "blockwhy" => crate::ktest_sched::blockwhy(),
        "heap" => heap(&args),
        "killcpu" => killcpu(&args),
        "drivers" => crate::drivers::ktest(),
        "pci" => crate::drivers::edu::ktest(),
        "pcicmp" => crate::drivers::pci::ktest_compare(),
        "canerr" => crate::drivers::can::ktest_errors(),
        "triple" => {
            println!("ktest: triple fault");
            hal::cpu::trigger_triple_fault();
        }
        "wild" => {
            // Quest-V containment: write physical memory outside this sandbox's RAM.
            let addr = args.first().and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok()).unwrap_or(0x3000_0000);
            println!("ktest: writing physical address {addr:#x}");
            match hal::cpu::trigger_wild_write(addr) {
                Ok(()) => println!("ktest: the write to {addr:#x} went through"),
                Err(e) => println!("ktest: refused to write {addr:#x}: {e}"),
            }
        }
        "pcipoke" => {
            // Quest-V containment: turn off decoding of a PCI function (another sandbox's: the
            // monitor refuses the configuration write).
            let bdf = args.first().and_then(|a| {
                let (bus, rest) = a.split_once(':')?;
                let (dev, func) = rest.split_once('.')?;
                hal::pci::Bdf::new(u8::from_str_radix(bus, 16).ok()?, u8::from_str_radix(dev, 16).ok()?, func.parse().ok()?)
            });
            let Some(bdf) = bdf else { return println!("ktest: pcipoke BB:DD.F") };
            println!("ktest: turning off decoding of PCI {bdf}");
            hal::pci::trigger_command_write(bdf, 0);
            println!("ktest: pcipoke done; command register now reads {:#06x}", hal::pci::read32(bdf, 4) & 0xffff);
        }
        "port" => {
            // Quest-V containment: a byte read or write of an I/O port this sandbox does not own.
            let num = |a: &&str| u16::from_str_radix(a.trim_start_matches("0x"), 16).ok();
            let Some(port) = args.first().and_then(num) else { return println!("ktest: port HEXPORT [HEXBYTE]") };
            let value = args.get(1).and_then(num).map(|v| v as u8);
            match hal::cpu::trigger_port_access(port, value) {
                Ok(v) if value.is_some() => println!("ktest: wrote {v:#04x} to port {port:#x}"),
                Ok(v) => println!("ktest: port {port:#x} reads {v:#04x}"),
                Err(e) => println!("ktest: refused port {port:#x}: {e}"),
            }
        }
        "ipi" => {
            // Quest-V containment: an IPI to another core (another sandbox's). With x2APIC the
            // monitor checks the ICR write; with the xAPIC page mapped it cannot.
            let (Some(dest), Some(kind)) = (args.first().and_then(|a| a.parse::<u32>().ok()), args.get(1)) else {
                return println!("ktest: ipi APICID init|VECTOR");
            };
            println!("ktest: sending {kind} to APIC id {dest} ({})", if hal::apic::x2apic_enabled() { "x2APIC" } else { "xAPIC" });
            match *kind {
                "init" => hal::apic::send_init(dest),
                v => match v.parse::<u8>() {
                    Ok(vector) if vector >= 32 => hal::apic::send_ipi(dest, vector),
                    _ => return println!("ktest: ipi: VECTOR must be 32..=255"),
                },
            }
            println!("ktest: ipi sent");
        }
        _ => println!(
            "ktest: unknown test '{name}' (pf, ud, gp, de, stack, panic, budget [cpu ms strict|bg], wakeglue io|main|rr [cpu], schedrand [seed sets ms], blockwhy, sem [n cpu], prodcons [n cpu cpu], smp [ms], latency [n cpu], heap [n m], killcpu [cpu], drivers, wild [HEXADDR], triple, ipi APICID init|VECTOR, pcipoke BB:DD.F, port HEXPORT [HEXBYTE])"
        ),
    }
}
