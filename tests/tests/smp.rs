//! SMP for programs (issue 24): processes and threads spread over the CPUs, affinity, the
//! Linux scheduling-policy API with SCHED_DEADLINE as an admitted Main VCPU, and reservations
//! kept beside parallel programs. Under `-icount` (guest time = instructions), so every figure
//! is deterministic.
//!
//! Under `-icount` QEMU runs the vCPUs in turn and counts every vCPU's instructions on the one
//! virtual clock, so in guest time each of N busy CPUs executes at 1/N of one CPU's speed: N
//! threads of fixed work take N times one thread's time whatever the scheduler does (measured:
//! one thread of 4000 units 16.1 ms, four of 1000 units 16.2 ms, four of 4000 units 64.4 ms).
//! A parallel speed-up cannot show as a shorter elapsed guest time; what shows is that the
//! threads run on different CPUs *at the same time*: the sum of their CPU time (the scheduler's
//! account, CLOCK_THREAD_CPUTIME_ID) over the elapsed time — on real hardware, the speed-up.
//!
//! The same round-robin makes timers late. QEMU's round-robin loop (accel/tcg, `rr_cpu_thread_fn`)
//! handles timers and computes one instruction budget per round, (next deadline - now) / N,
//! and then runs each vCPU for that budget in turn. A deadline a CPU programs during the round
//! (a Main VCPU's budget end, just set by the scheduler) does not shorten the other CPUs'
//! turns, so its interrupt can come a whole turn late, and the guest time passes as if the
//! frozen CPU were still running what it ran. On CPU 1 it is common (`ktest smp 500` on 2
//! CPUs, kernel threads that never move: every budget exhaustion on CPU 1 late, by up to 5 ms);
//! on CPU 0 it is rare but happens: one run in about six froze CPU 0 inside the scheduler for
//! 2.34 ms after it armed a 2 ms budget timer, and the trace charged the Main VCPU a 2.34 ms
//! run (in CI one period was 2.80 ms). So the reservations whose traces are checked here are on
//! CPU 0, and the checks allow one such period per run and the sporadic server's pay-back of
//! an overrun in the periods after it.
use anyhow::{Context, Result};
use quest_tests::{Config, Quest};

mod common;

/// The optimised kernel with the user shell, `smp` CPUs, under -icount.
fn release(smp: u32) -> Result<Quest> {
    let mut cfg = Config::from_env(false)?;
    cfg.iso = std::env::var_os("QUEST_RELEASE_ISO").context("QUEST_RELEASE_ISO is not set: run with `cargo xtask test`")?.into();
    cfg.smp = smp;
    cfg.icount = true;
    cfg.timeout = cfg.timeout.max(std::time::Duration::from_secs(600));
    Quest::boot(&cfg)
}

/// The test kernel (console with `trace`), `smp` CPUs, under -icount.
fn ktest(smp: u32) -> Result<Quest> {
    let mut cfg = Config::from_env(true)?;
    cfg.smp = smp;
    cfg.icount = true;
    cfg.timeout = cfg.timeout.max(std::time::Duration::from_secs(900));
    Quest::boot(&cfg)
}

fn line<'a>(out: &'a str, prefix: &str) -> Result<&'a str> {
    out.lines().find(|l| l.starts_with(prefix)).with_context(|| format!("no '{prefix}' line in:\n{out}"))
}

/// The number after `word` in `line`.
fn after(line: &str, word: &str) -> Result<u64> {
    let rest = line.split(word).nth(1).with_context(|| format!("no '{word}' in: {line}"))?;
    let n: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit()).collect();
    n.parse().with_context(|| format!("no number after '{word}' in: {line}"))
}

/// The number before `word` in `line`.
fn before(line: &str, word: &str) -> Result<f64> {
    let head = line.split(word).next().with_context(|| format!("no '{word}' in: {line}"))?;
    let n: String = head.trim_end().chars().rev().take_while(|c| c.is_ascii_digit() || *c == '.').collect::<Vec<_>>().into_iter().rev().collect();
    n.parse().with_context(|| format!("no number before '{word}' in: {line}"))
}

/// `smp_test par`'s line: (distinct CPUs, elapsed us, parallelism).
fn par(out: &str) -> Result<(u64, u64, f64)> {
    let l = line(out, "smp_test: par ")?;
    let par: f64 = l.split("parallelism").nth(1).context(l.to_string())?.trim().parse()?;
    Ok((before(l, "distinct")? as u64, before(l, "us,")? as u64, par))
}

/// Four CPU-bound threads of a program on an idle 4-CPU machine: placed on four different CPUs
/// (their `sched_getcpu`, and `ps -t` while they run), running at the same time (parallelism
/// at least 3.3 of 4; 3.44 to 3.9 measured: thread start-up, the joins, and each vCPU's clock
/// running ahead of the others by up to a round-robin time slice under -icount take the
/// rest), never moved; confined to one CPU by affinity, the same program gets
/// parallelism 1. Affinity is honoured (a thread pinned to CPU 2 beside four CPU-bound
/// threads never runs elsewhere), other CPUs' translations of an unmapped page are shot down,
/// and the policy calls answer as documented.
#[test]
fn four_threads_run_on_four_cpus_at_once() -> Result<()> {
    let mut q = release(4)?;
    let out = q.shell("smp_test par 4 16000")?;
    let (distinct, four_us, p) = par(&out)?;
    println!("{}", line(&out, "smp_test: par")?);
    assert_eq!(distinct, 4, "four threads did not start on four CPUs:\n{out}");
    assert!(out.contains(" 0 moves"), "a thread moved although every CPU had one:\n{out}");
    assert!(p >= 3.3, "four threads on four CPUs ran {p} at a time:\n{out}");

    // The control: the same program confined to CPU 0 (threads inherit the affinity).
    let out = q.shell("smp_test par 4 16000 0")?;
    let (distinct, one_us, p) = par(&out)?;
    assert_eq!(distinct, 1, "{out}");
    assert!(p <= 1.05, "{out}");
    // -icount's one clock: the same work takes the same guest time either way (module doc).
    let diff = four_us.abs_diff(one_us) as f64 / one_us as f64;
    assert!(diff < 0.05, "4 CPUs {four_us} us, 1 CPU {one_us} us");

    // ps -t while a longer run is going: the four workers on four different PCPUs.
    let _ = q.shell("nowait smp_test par 4 50000")?;
    let ps = q.shell("ps -t")?;
    let mut cpus: Vec<u64> = ps
        .lines()
        .filter(|l| l.contains("/boot/smp_test") && (l.contains("running") || l.contains("ready")))
        .map(|l| l.split_whitespace().nth(4).and_then(|c| c.parse().ok()).context(l.to_string()))
        .collect::<Result<_>>()?;
    cpus.sort_unstable();
    assert_eq!(cpus, [0, 1, 2, 3], "ps -t:\n{ps}");

    // Pinned beside the four workers (idle pulls and placement must both respect it).
    let out = q.shell("smp_test pin 2 200")?;
    let l = line(&out, "smp_test: pinned to cpu 2")?;
    assert!(l.ends_with(" 0 elsewhere"), "{out}");
    assert!(after(l, "cpu 2:")? > 1000, "{l}");
    let _ = q.shell("wait")?;

    // TLB shootdown: a page a thread on CPU 1 keeps reading, unmapped by a thread on CPU 0,
    // faults on CPU 1 once munmap has returned (without the flush IPI it read on through the
    // stale translation).
    let out = q.shell("smp_test unmap")?;
    assert!(out.contains("smp_test: unmap: reader on cpu 1 after munmap on cpu 0: faulted"), "{out}");

    let out = q.shell("smp_test policy")?;
    for want in [
        "setscheduler(FIFO, 50) = 0, getscheduler = 1, priority 50, fifo range 1..99, other range 0..0",
        "RR 100: Invalid argument; back to OTHER: 0; nice 0, nice(5) = 5, now 5; 4 CPUs allowed of 4",
    ] {
        assert!(out.contains(want), "no '{want}' in:\n{out}");
    }
    q.power_off_ok()?;
    Ok(())
}

/// SCHED_DEADLINE through admission control: one (6 ms, 10 ms) reservation fits beside each
/// CPU's best-effort VCPU, so on 2 CPUs two such requests are admitted and the third gets EBUSY,
/// as does a full CPU; malformed requests get EINVAL.
#[test]
fn sched_deadline_oversubscription_gets_ebusy() -> Result<()> {
    let mut q = ktest(2)?;
    let out = q.shell("smp_test overload")?;
    let want = "smp_test: overload: 2 admitted, 1 EBUSY of 3; full CPU: Resource busy; runtime > deadline: Invalid argument; \
                runtime < 1024 ns: Invalid argument; deadline < runtime, period 0: Invalid argument";
    assert!(out.contains(want), "no '{want}' in:\n{out}");
    // The reservations ended with their threads.
    let v = q.shell("ps -v")?;
    let left = v.lines().filter(|l| l.split_whitespace().nth(3) == Some("6000")).count();
    assert_eq!(left, 0, "a SCHED_DEADLINE reservation outlived its thread:\n{v}");
    q.power_off_ok()?;
    Ok(())
}

/// Foreground service of VCPU `key` in every whole period from its creation up to `end`.
fn periods(events: &[vcpu_sched::TraceEvent], key: (u32, vcpu_sched::VcpuId), c: &vcpu_sched::check::Created, end: u64) -> Vec<u64> {
    let mut v = Vec::new();
    let mut k = 1;
    while c.t + (k + 1) * c.period <= end {
        let (a, b) = (c.t + k * c.period, c.t + (k + 1) * c.period);
        v.push(vcpu_sched::check::service(events, a, b).get(&key).map_or(0, |s| s.0));
        k += 1;
    }
    v
}

/// Two programs of two CPU-bound threads each on 2 CPUs beside a periodic task on a (2 ms,
/// 10 ms) Main VCPU placed by admission: the task's VCPU gets between its job (1.8 ms) and C in
/// every period of the trace and misses no deadline, and the programs share the rest (they
/// run in parallel on both CPUs). Then a SCHED_DEADLINE thread (2 ms every 10 ms) beside two
/// CPU-bound threads gets exactly its runtime in the foreground every period.
#[test]
fn reservations_hold_beside_parallel_programs() -> Result<()> {
    let mut q = ktest(2)?;
    let _ = common::fetch_trace(&mut q, 0)?;
    let _ = common::fetch_trace(&mut q, 1)?;
    let out = q.shell("smp_test beside 2000 10000 1800 500 100000")?;
    let p = line(&out, "smp_test: periodic task")?;
    assert!(p.ends_with(" 0 late"), "{out}");
    let cpu = after(p, "on cpu")? as usize;
    // Worst fit: CPU 0 and 1 have no reservation yet, the tie goes to CPU 0. (The trace checks
    // stay on CPU 0: see the module doc on other CPUs' timers under -icount.)
    assert_eq!(cpu, 0, "{p}");
    let progs: Vec<&str> = out.lines().filter(|l| l.starts_with("smp_test: par 2 threads")).collect();
    assert_eq!(progs.len(), 2, "{out}");
    for l in &progs {
        let par: f64 = l.split("parallelism").nth(1).context(l.to_string())?.trim().parse()?;
        assert!(par >= 0.9, "a program's two threads got {par} CPUs between them: {l}");
    }
    let events = common::fetch_trace(&mut q, cpu)?;
    let created = vcpu_sched::check::created(&events);
    let (key, cr) = created
        .iter()
        .find(|(_, c)| c.kind == vcpu_sched::VcpuKind::Main && c.c == 2_000_000 && c.period == 10_000_000)
        .map(|(k, c)| (*k, *c))
        .context("no (2 ms, 10 ms) VCPU in the trace")?;
    let end = events.iter().filter(|e| e.vcpu == Some(key.1) && e.kind == vcpu_sched::EventKind::Block).map(|e| e.t).next_back().context("no end")?;
    // The periods of its jobs (after them the task only prints and waits for the programs).
    let jobs = after(p, &format!("on cpu {cpu}:"))? as usize;
    let got: Vec<u64> = periods(&events, key, &cr, end).into_iter().take(jobs.saturating_sub(2)).collect();
    assert!(got.len() >= 40, "only {} periods", got.len());
    // Its job (1.8 ms) and at most C in every period, with two allowances for timers that
    // fire late (see the module doc: under -icount QEMU can leave a CPU unexecuted for the
    // other CPU's whole turn, and the time is charged to whatever that CPU was running):
    // - a period may exceed C by one late timer's overrun (0.6 ms, as below), and one period
    //   of the run by more (the CPU frozen with the budget timer due);
    // - the sporadic server takes an overrun back from the next budgets, so a period after
    //   one gets at least C minus the debt left (and the job finishes in the background).
    let svc = |k: u64| vcpu_sched::check::service(&events, cr.t + k * cr.period, cr.t + (k + 1) * cr.period).get(&key).map_or(0, |s| s.0);
    let (job, c) = (1_800_000u64, cr.c);
    let mut debt = svc(0).saturating_sub(c);
    let mut frozen = Vec::new();
    for (k, &g) in got.iter().enumerate() {
        let (a, b) = (cr.t + (k as u64 + 1) * cr.period, cr.t + (k as u64 + 2) * cr.period);
        let window = || -> String { events.iter().filter(|e| e.t + cr.period >= a && e.t <= b).map(|e| format!("{e}\n")).collect() };
        let lo = job.min(c.saturating_sub(debt)).saturating_sub(50_000);
        assert!(g >= lo, "period {k} [{a}, {b}): {g} ns, below min(job 1.8 ms, C 2 ms - debt {debt} ns); VCPU {key:?}; CPU {cpu}'s trace from a period before:\n{}", window());
        if g > c + 600_000 {
            frozen.push((k, g));
        }
        assert!(frozen.len() <= 1, "more than one period beyond C + 0.6 ms: {frozen:?}; VCPU {key:?}; CPU {cpu}'s trace from a period before the last:\n{}", window());
        debt = (debt + g).saturating_sub(c);
    }
    let most = got.iter().max().copied().unwrap_or(0);
    let n = vcpu_sched::check::backlogged_deadlines(&events, key, end, 50_000).map_err(|v| anyhow::anyhow!("{v:?}"))?;
    let over = vcpu_sched::check::budget_accounting(&events, key, end, u64::MAX).map_err(|v| anyhow::anyhow!("{v:?}"))?;
    println!("{p}; {} periods (most in one: {most} ns), {n} backlogged deadlines checked, largest overrun {over} ns, periods beyond C + 0.6 ms: {frozen:?}", got.len());
    let _ = common::fetch_trace(&mut q, 1 - cpu)?;

    // SCHED_DEADLINE beside two CPU-bound threads, confined to CPU 0 (so admitted there).
    let out = q.shell("smp_test deadline 2000 10000 300 2 0")?;
    let l = line(&out, "smp_test: deadline thread on cpu")?;
    assert!(l.ends_with("policy 6 runtime 2000000 deadline 10000000 period 10000000"), "{out}");
    assert!(out.contains("back to SCHED_OTHER: ok, policy now 0"), "{out}");
    let cpu = after(l, "on cpu")? as usize;
    assert_eq!(cpu, 0, "{l}");
    let events = common::fetch_trace(&mut q, cpu)?;
    let created = vcpu_sched::check::created(&events);
    let (key, cr) = created
        .iter()
        .find(|(_, c)| c.kind == vcpu_sched::VcpuKind::Main && c.c == 2_000_000 && c.period == 10_000_000)
        .map(|(k, c)| (*k, *c))
        .context("no SCHED_DEADLINE VCPU in the trace")?;
    let end = events.iter().filter(|e| e.vcpu == Some(key.1) && e.kind == vcpu_sched::EventKind::Destroy).map(|e| e.t).next_back().context("not destroyed")?;
    // A CPU-bound server: backlogged throughout, so every release r is used by r + T; never
    // more than what was released (beyond one late timer: the program's first line goes out
    // on the serial port during the first run, ~0.5 ms with interrupts off); and in all, the
    // runtime in every period of its life.
    let n = vcpu_sched::check::backlogged_deadlines(&events, key, end, 50_000).map_err(|v| anyhow::anyhow!("{v:?}"))?;
    assert!(n >= 25, "only {n} deadlines checked");
    let excess = vcpu_sched::check::budget_accounting(&events, key, end, 600_000).map_err(|v| anyhow::anyhow!("{v:?}"))?;
    let first = events.iter().find(|e| e.vcpu == Some(key.1) && matches!(e.kind, vcpu_sched::EventKind::Run { .. })).map(|e| e.t).context("never ran")?;
    let fg = vcpu_sched::check::service(&events, first, end).get(&key).map_or(0, |s| s.0);
    let whole = (end - first) / cr.period;
    // (Its first and last periods can each hold a part of a budget.)
    assert!(fg + cr.c >= whole * cr.c && fg <= (whole + 1) * cr.c + 600_000, "{fg} ns of foreground in {whole} whole periods of its life");
    println!("{l}; {n} backlogged deadlines met, {fg} ns in {whole} whole periods, largest overrun {excess} ns");
    q.power_off_ok()?;
    Ok(())
}
