//! In-kernel scheduling tests (feature `ktest`): the glue between the scheduler and the machine
//! must keep the promises `vcpu-sched` makes in its simulator.
//!
//! * `wakeglue io|main|rr [cpu]`: the three ways a wake that does not preempt used to leave no
//!   timer for the next scheduling event (issue 13). Each prints one `wakeglue:` line with the
//!   measured delay; the QEMU tests bound it.
//! * `schedrand [seed sets ms]`: random admitted sets of Main VCPUs (and an IO VCPU with a
//!   bottom-half thread) on every CPU, with threads that spin, sleep, block on semaphores that
//!   other threads (also on other CPUs) signal, and wait for I/O. The kernel's own schedule
//!   trace of each set is checked with the crate's checkers: every Main VCPU backlogged for a
//!   whole period after a release gets the budget released by then, none runs in the
//!   foreground beyond the budget released so far, and every IO VCPU keeps to PIBS.
//!   Reproducible from the seed (the sets and the threads' choices; the interleaving is
//!   deterministic too under `-icount`).
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use hal::println;
use hal::sync::IrqLock;
use vcpu_sched::{TraceEvent, VcpuId, VcpuKind, VcpuParams, check};

use crate::ktest::{arg, cpu_or};
use crate::sched::{self, Tid};
use crate::sync::Semaphore;

fn now() -> u64 {
    hal::time::now_ns()
}

fn spin_for(ns: u64) {
    let end = now() + ns;
    while now() < end {
        core::hint::spin_loop();
    }
}

/// xorshift64*: small, seedable, good enough to pick workloads.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi` (`hi > lo`).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

// ---- wakeglue -----------------------------------------------------------------------------

pub fn wakeglue(args: &[&str]) {
    let cpu = cpu_or(args, 1, 1);
    match args.first().copied() {
        Some("io") => wake_io(cpu),
        Some("main") => wake_main(cpu),
        Some("rr") => wake_rr(cpu),
        _ => println!("wakeglue: expected io, main or rr"),
    }
}

/// An IO VCPU (U = 10 %, own period 100 us) whose thread runs 10 us per activation, so it is
/// eligible again 100 us after each start; a best-effort hog on the same CPU wakes it 50 us
/// after each start. It must run at the eligibility time, not when the hog's budget ends.
fn wake_io(cpu: usize) {
    const ROUNDS: usize = 20;
    let _ = sched::drain_trace(cpu);
    let io = match sched::create_vcpu(cpu, VcpuParams::io(10, 100)) {
        Ok(v) => v,
        Err(e) => return println!("wakeglue: io vcpu: {e}"),
    };
    let starts = Arc::new(IrqLock::new(Vec::<u64>::new()));
    let waiting = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Semaphore::new(0));
    let io_tid = Arc::new(AtomicU32::new(0));
    let (st, w, d) = (starts.clone(), waiting.clone(), done.clone());
    let tid = sched::spawn("wg-io", cpu, Some(io), move || {
        for _ in 0..ROUNDS {
            let t = now();
            st.lock().push(t);
            spin_for(10_000);
            w.store(true, Ordering::Release);
            let _ = sched::block_current();
        }
        d.up();
    });
    let Ok(tid) = tid else { return println!("wakeglue: spawn failed") };
    io_tid.store(tid, Ordering::Relaxed);
    let (st, w, it, d) = (starts.clone(), waiting.clone(), io_tid.clone(), done.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let _ = sched::spawn("wg-hog", cpu, None, move || {
        while !s2.load(Ordering::Relaxed) {
            let last = st.lock().last().copied().unwrap_or(0);
            if w.load(Ordering::Acquire) && now() >= last + 50_000 {
                w.store(false, Ordering::Relaxed);
                let _ = sched::wake(it.load(Ordering::Relaxed));
            }
            core::hint::spin_loop();
        }
        d.up();
    });
    done.down();
    stop.store(true, Ordering::Relaxed);
    done.down();
    let s = core::mem::take(&mut *starts.lock());
    let gaps: Vec<u64> = s.windows(2).map(|w| w[1] - w[0]).collect();
    let (min, max) = (gaps.iter().copied().min().unwrap_or(0), gaps.iter().copied().max().unwrap_or(0));
    // From the scheduler's trace: each activation ends with `ELIG start used at`; the next
    // run of the IO VCPU should be at `at` (its eligibility, start + used / U), not later.
    let (ev, _) = sched::drain_trace(cpu);
    let mut late: Vec<u64> = Vec::new();
    for (k, e) in ev.iter().enumerate() {
        if let (Some(v), vcpu_sched::EventKind::Elig { at, .. }) = (e.vcpu, e.kind) {
            if v != io {
                continue;
            }
            let next = ev[k..].iter().find(|r| r.vcpu == Some(io) && matches!(r.kind, vcpu_sched::EventKind::Run { .. }) && r.t >= e.t);
            if let Some(r) = next {
                late.push(r.t.saturating_sub(at));
            }
        }
    }
    println!(
        "wakeglue: io: {} activations, gap between starts min {} ns, max {} ns; started after its eligibility time by at most {} ns ({} checked)",
        s.len(),
        min,
        max,
        late.iter().copied().max().unwrap_or(u64::MAX),
        late.len()
    );
    let _ = sched::sleep_ns(1_000_000);
    let _ = sched::destroy_vcpu(cpu, io);
}

/// A Main VCPU (1 ms, 10 ms) blocks with no budget left; a thread of a (40 ms, 100 ms) VCPU
/// wakes it 2 ms in and spins on. It must run at its replenishment (10 ms), not when the
/// waker's budget ends (42 ms). The first thread exhausts its budget, then runs in the
/// background (nothing else is ready) before it blocks.
fn wake_main(cpu: usize) {
    let was = sched::background(cpu);
    if was != Some(true) && sched::set_background(cpu, true).is_err() {
        return println!("wakeglue: cpu {cpu} is busy");
    }
    let a = sched::create_vcpu(cpu, VcpuParams::main(1_000, 10_000));
    let b = sched::create_vcpu(cpu, VcpuParams::main(40_000, 100_000));
    let (Ok(a), Ok(b)) = (a, b) else { return println!("wakeglue: vcpu_create failed") };
    let t0 = Arc::new(AtomicU64::new(0));
    let ran = Arc::new(AtomicU64::new(0));
    let blocked = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Semaphore::new(0));
    let (t0a, r, bl, d) = (t0.clone(), ran.clone(), blocked.clone(), done.clone());
    let ta = sched::spawn("wg-a", cpu, Some(a), move || {
        let me = sched::current();
        t0a.store(now(), Ordering::Release);
        while sched::runtime_ns(me).unwrap_or(0) < 1_500_000 {
            core::hint::spin_loop();
        }
        bl.store(true, Ordering::Release);
        let _ = sched::block_current();
        r.store(now(), Ordering::Release);
        d.up();
    });
    let Ok(ta) = ta else { return println!("wakeglue: spawn failed") };
    let (t0b, bl, d) = (t0.clone(), blocked.clone(), done.clone());
    let _ = sched::spawn("wg-b", cpu, Some(b), move || {
        while t0b.load(Ordering::Acquire) == 0 {
            let _ = sched::sleep_ns(100_000);
        }
        let t0 = t0b.load(Ordering::Acquire);
        let _ = sched::sleep_until(t0 + 2_000_000);
        let woke_blocked = bl.load(Ordering::Acquire);
        let _ = sched::wake(ta);
        spin_for((t0 + 60_000_000).saturating_sub(now()));
        if !woke_blocked {
            println!("wakeglue: main: the first thread had not blocked by 2 ms");
        }
        d.up();
    });
    done.down();
    done.down();
    let at = ran.load(Ordering::Acquire).saturating_sub(t0.load(Ordering::Acquire));
    println!("wakeglue: main: the (1 ms, 10 ms) VCPU, woken at 2 ms without budget, ran at {at} ns (replenished at 10000000 ns)");
    let _ = sched::sleep_ns(1_000_000);
    let _ = sched::destroy_vcpu(cpu, a);
    let _ = sched::destroy_vcpu(cpu, b);
    if was == Some(false) {
        let _ = sched::set_background(cpu, false);
    }
}

/// Two threads of one (50 ms, 100 ms) VCPU: the running one wakes the other and spins on. The
/// woken thread must get the CPU when the 10 ms round-robin quantum ends, not when the VCPU's
/// budget does.
fn wake_rr(cpu: usize) {
    let v = match sched::create_vcpu(cpu, VcpuParams::main(50_000, 100_000)) {
        Ok(v) => v,
        Err(e) => return println!("wakeglue: {e}"),
    };
    let start = Arc::new(AtomicU64::new(0));
    let ran = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Semaphore::new(0));
    let (r, s, d) = (ran.clone(), stop.clone(), done.clone());
    let t2 = sched::spawn("wg-rr2", cpu, Some(v), move || {
        let _ = sched::block_current();
        r.store(now(), Ordering::Release);
        s.store(true, Ordering::Release);
        d.up();
    });
    let Ok(t2) = t2 else { return println!("wakeglue: spawn failed") };
    let _ = sched::sleep_ns(1_000_000); // let it block
    let (st, s, d) = (start.clone(), stop.clone(), done.clone());
    let _ = sched::spawn("wg-rr1", cpu, Some(v), move || {
        st.store(now(), Ordering::Release);
        spin_for(1_000_000);
        let _ = sched::wake(t2);
        let end = now() + 60_000_000;
        while !s.load(Ordering::Acquire) && now() < end {
            core::hint::spin_loop();
        }
        d.up();
    });
    done.down();
    done.down();
    let at = ran.load(Ordering::Acquire).saturating_sub(start.load(Ordering::Acquire));
    println!("wakeglue: rr: the woken thread ran {at} ns after its VCPU started (quantum 10000000 ns, budget 50000000 ns)");
    let _ = sched::sleep_ns(1_000_000);
    let _ = sched::destroy_vcpu(cpu, v);
}

// ---- why a block returns ------------------------------------------------------------------

/// `ktest blockwhy`: the three ways a block ends, as the blocked thread sees them.
pub fn blockwhy() {
    let out = Arc::new(IrqLock::new(Vec::<(&'static str, sched::Wake)>::new()));
    let done = Arc::new(Semaphore::new(0));
    let (o, d) = (out.clone(), done.clone());
    let t = sched::spawn("bw", 0, None, move || {
        o.lock().push(("deadline", sched::block(Some(now() + 1_000_000))));
        o.lock().push(("wake", sched::block_current()));
        o.lock().push(("interrupt", sched::block_current()));
        // Interrupted lasts: the next block returns at once, even with a deadline.
        o.lock().push(("again", sched::block(Some(now() + 50_000_000))));
        d.up();
    });
    let Ok(t) = t else { return println!("blockwhy: spawn failed") };
    let _ = sched::sleep_ns(5_000_000);
    let _ = sched::wake(t);
    let _ = sched::sleep_ns(1_000_000);
    let _ = sched::interrupt(t);
    let t0 = now();
    done.down();
    let took = now() - t0;
    for (what, why) in out.lock().iter() {
        println!("blockwhy: {what}: {why:?}");
    }
    println!("blockwhy: the interrupted thread finished {} us after the interrupt", took / 1000);
}

// ---- schedrand ----------------------------------------------------------------------------

/// Tolerance of the trace checks: interrupt-to-switch latency of the kernel under `-icount`,
/// per VCPU that can delay another (a late timer lets one run past its budget by this much).
const TOLERANCE_NS: u64 = 50_000;

struct Io {
    cpu: usize,
    vcpu: VcpuId,
    bh: AtomicU32,
    /// Requests: (thread, its VCPU, done flag).
    queue: IrqLock<VecDeque<(Tid, VcpuId, Arc<AtomicBool>)>>,
}

struct Shared {
    stop: AtomicBool,
    all_done: AtomicBool,
    sems: Vec<Arc<Semaphore>>,
    ios: Vec<Arc<Io>>,
    done: Semaphore,
}

#[derive(Default)]
struct Totals {
    sets: u64,
    mains: u64,
    ios: u64,
    rejected: u64,
    threads: u64,
    deadlines: u64,
    accounting: u64,
    activations: u64,
    violations: u64,
    dropped: u64,
    max_excess: u64,
}

pub fn schedrand(args: &[&str]) {
    let seed: u64 = arg(args, 0, 1);
    let sets: u64 = arg(args, 1, 4);
    let ms: u64 = arg(args, 2, 300);
    let cpus = hal::percpu::online();
    let mut tot = Totals::default();
    for set in 0..sets {
        one_set(seed, set, ms, cpus, &mut tot);
    }
    println!(
        "schedrand: seed {seed}: {} sets on {cpus} CPU(s), {} Main + {} IO VCPUs ({} rejected by admission), {} threads; {} deadlines, {} accounting checks, {} PIBS activations checked; {} violations, {} trace events lost, largest overrun {} ns",
        tot.sets, tot.mains, tot.ios, tot.rejected, tot.threads, tot.deadlines, tot.accounting, tot.activations, tot.violations, tot.dropped, tot.max_excess
    );
}

fn one_set(seed: u64, set: u64, ms: u64, cpus: usize, tot: &mut Totals) {
    let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(set));
    for cpu in 0..cpus {
        let _ = sched::drain_trace(cpu);
    }
    // The set: 1-4 Main VCPUs per CPU, admitted beside what is there (best-effort, serial IO),
    // and maybe an IO VCPU.
    const PERIODS_US: [u32; 8] = [1_000, 2_000, 2_500, 4_000, 5_000, 8_000, 10_000, 20_000];
    let mut mains: Vec<(usize, VcpuId, VcpuParams)> = Vec::new();
    let mut ios: Vec<Arc<Io>> = Vec::new();
    for cpu in 0..cpus {
        let n = rng.range(1, 5);
        for _ in 0..n {
            let t = PERIODS_US[rng.range(0, PERIODS_US.len() as u64) as usize];
            let pct = rng.range(2, 1 + 70 / n) as u32;
            let p = VcpuParams::main((t * pct / 100).max(50), t);
            match sched::create_vcpu(cpu, p) {
                Ok(v) => mains.push((cpu, v, p)),
                Err(_) => tot.rejected += 1,
            }
        }
        if rng.range(0, 2) == 1 {
            let p = VcpuParams::io(rng.range(3, 15) as u32, 100);
            match sched::create_vcpu(cpu, p) {
                Ok(v) => ios.push(Arc::new(Io { cpu, vcpu: v, bh: AtomicU32::new(0), queue: IrqLock::new(VecDeque::new()) })),
                Err(_) => tot.rejected += 1,
            }
        }
    }
    // Threads: 1-3 per Main VCPU, each with its own semaphore and random choices.
    let mut plan: Vec<(usize, VcpuId, u64)> = Vec::new();
    for &(cpu, v, _) in &mains {
        for _ in 0..rng.range(1, 4) {
            plan.push((cpu, v, rng.next()));
        }
    }
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        all_done: AtomicBool::new(false),
        sems: (0..plan.len()).map(|_| Arc::new(Semaphore::new(0))).collect(),
        ios: ios.clone(),
        done: Semaphore::new(0),
    });
    let mut spawned = 0u64;
    for io in &ios {
        let (sh2, io2) = (sh.clone(), io.clone());
        if let Ok(t) = sched::spawn("sr-iobh", io.cpu, Some(io.vcpu), move || io_bottom_half(&sh2, &io2, seed ^ set)) {
            io.bh.store(t, Ordering::Release);
        }
    }
    for (k, &(cpu, v, tseed)) in plan.iter().enumerate() {
        let sh2 = sh.clone();
        if sched::spawn("sr-task", cpu, Some(v), move || task(&sh2, k, cpu, v, tseed)).is_ok() {
            spawned += 1;
        }
    }
    // A waker on CPU 0's best-effort VCPU signals random semaphores every millisecond, so no
    // thread stays blocked for good.
    let (sh2, n) = (sh.clone(), plan.len() as u64);
    let _ = sched::spawn("sr-waker", 0, None, move || {
        let mut r = Rng::new(seed ^ 0x5eed ^ set);
        while !sh2.all_done.load(Ordering::Acquire) {
            let _ = sched::sleep_ns(1_000_000);
            if n > 0 {
                sh2.sems[r.range(0, n) as usize].up();
            }
            if sh2.stop.load(Ordering::Acquire) {
                for s in &sh2.sems {
                    s.up();
                }
            }
        }
        sh2.done.up();
    });
    // Collect the trace while it runs (the rings are bounded).
    let mut events: Vec<Vec<TraceEvent>> = (0..cpus).map(|_| Vec::new()).collect();
    let t_start = now();
    let horizon = t_start + ms * 1_000_000;
    let mut dropped = 0;
    while now() < horizon {
        let _ = sched::sleep_ns(5_000_000);
        for cpu in 0..cpus {
            let (mut e, d) = sched::drain_trace(cpu);
            dropped = d;
            events[cpu].append(&mut e);
        }
    }
    sh.stop.store(true, Ordering::Release);
    for _ in 0..spawned {
        sh.done.down();
    }
    sh.all_done.store(true, Ordering::Release);
    for io in &ios {
        let _ = sched::wake(io.bh.load(Ordering::Acquire));
    }
    sh.done.down(); // the waker
    for _ in 0..ios.len() {
        sh.done.down();
    }
    for cpu in 0..cpus {
        let (mut e, d) = sched::drain_trace(cpu);
        dropped = dropped.max(d);
        events[cpu].append(&mut e);
    }
    // Every IO VCPU of every CPU (this set's and the serial driver's), before teardown.
    let io_list: Vec<(usize, VcpuId, VcpuParams)> = (0..cpus)
        .flat_map(|cpu| sched::vcpus(cpu).into_iter().filter(|i| i.params.kind == VcpuKind::Io).map(move |i| (cpu, i.id, i.params)))
        .collect();
    let _ = sched::sleep_ns(2_000_000); // the exited threads are reaped
    for &(cpu, v, _) in &mains {
        let _ = sched::destroy_vcpu(cpu, v);
    }
    for io in &ios {
        let _ = sched::destroy_vcpu(io.cpu, io.vcpu);
    }

    // Check the kernel's trace of the set up to the horizon.
    let mut all: Vec<TraceEvent> = events.into_iter().flatten().collect();
    all.sort_by_key(|e| (e.pcpu, e.t));
    let (mut deadlines, mut accounting, mut activations, mut violations) = (0u64, 0u64, 0u64, 0u64);
    for &(cpu, v, p) in &mains {
        let key = (cpu as u32, v);
        let tol = TOLERANCE_NS * (1 + mains.iter().filter(|m| m.0 == cpu).count() as u64);
        match check::backlogged_deadlines(&all, key, horizon, tol) {
            Ok(n) => deadlines += n as u64,
            Err(e) => {
                violations += 1;
                println!("schedrand: set {set}: cpu {cpu} VCPU {} ({}, {}) us missed: {e:?}", v.0, p.c_us, p.t_us);
            }
        }
        match check::budget_accounting(&all, key, horizon, tol) {
            Ok(x) => {
                accounting += 1;
                tot.max_excess = tot.max_excess.max(x);
            }
            Err(e) => {
                violations += 1;
                println!("schedrand: set {set}: cpu {cpu} VCPU {} ({}, {}) us over its budget: {e:?}", v.0, p.c_us, p.t_us);
            }
        }
    }
    for &(cpu, v, p) in &io_list {
        match check::pibs(&all, (cpu as u32, v), p.c_ns(), p.t_ns(), horizon, TOLERANCE_NS) {
            Ok(n) => activations += n as u64,
            Err(e) => {
                violations += 1;
                println!("schedrand: set {set}: cpu {cpu} IO VCPU {} ({}/{}): {e:?}", v.0, p.c_us, p.t_us);
            }
        }
    }
    println!(
        "schedrand: set {set}: {} Main + {} IO VCPUs, {spawned} threads, {} events; {deadlines} deadlines, {accounting} accounting checks, {activations} PIBS activations; {violations} violations",
        mains.len(),
        ios.len(),
        all.len()
    );
    tot.sets += 1;
    tot.mains += mains.len() as u64;
    tot.ios += ios.len() as u64;
    tot.threads += spawned;
    tot.deadlines += deadlines;
    tot.accounting += accounting;
    tot.activations += activations;
    tot.violations += violations;
    tot.dropped += dropped;
}

/// A thread of the random workload: spins, sleeps, signals another thread (maybe on another
/// CPU), waits for its own semaphore, or does I/O through its CPU's IO VCPU.
fn task(sh: &Shared, me: usize, cpu: usize, vcpu: VcpuId, seed: u64) {
    let mut r = Rng::new(seed);
    let n = sh.sems.len() as u64;
    let io = sh.ios.iter().find(|i| i.cpu == cpu).cloned();
    while !sh.stop.load(Ordering::Acquire) {
        match r.range(0, 100) {
            0..35 => spin_for(r.range(50_000, 3_000_000)),
            35..55 => {
                let _ = sched::sleep_ns(r.range(10_000, 4_000_000));
            }
            55..70 => sh.sems[r.range(0, n) as usize].up(),
            70..85 => sh.sems[me].down(),
            _ => match &io {
                Some(io) => {
                    let done = Arc::new(AtomicBool::new(false));
                    io.queue.lock().push_back((sched::current(), vcpu, done.clone()));
                    sched::io_wait(io.cpu, io.vcpu, vcpu, false);
                    let _ = sched::wake(io.bh.load(Ordering::Acquire));
                    while !done.load(Ordering::Acquire) {
                        let _ = sched::block_current();
                    }
                }
                None => spin_for(r.range(10_000, 200_000)),
            },
        }
    }
    sh.done.up();
}

/// The IO VCPU's thread: serves requests (10-150 us of work each), completes them on the
/// scheduler (priority inheritance ends) and wakes the requester.
fn io_bottom_half(sh: &Shared, io: &Io, seed: u64) {
    let mut r = Rng::new(seed ^ 0x10);
    loop {
        let req = io.queue.lock().pop_front();
        match req {
            Some((tid, v, done)) => {
                spin_for(r.range(10_000, 150_000));
                sched::io_wait(io.cpu, io.vcpu, v, true);
                done.store(true, Ordering::Release);
                let _ = sched::wake(tid);
            }
            None if sh.all_done.load(Ordering::Acquire) => break,
            None => {
                let _ = sched::block_current();
            }
        }
    }
    sh.done.up();
}
