//! The real-time SMP kernel: CPUs, budget enforcement, the sporadic-server window check from
//! the kernel's own schedule trace, semaphores across CPUs, timer latency. Timing tests run
//! under `-icount` (guest time = instructions executed), so they are deterministic.
use anyhow::{Context, Result, bail};
use quest_tests::{Config, Quest};
use vcpu_sched::check;
use vcpu_sched::trace;

fn ktest(smp: u32, icount: bool) -> Result<Quest> {
    let mut cfg = Config::from_env(true)?;
    cfg.smp = smp;
    cfg.icount = icount;
    // Guest seconds under -icount take host minutes on a loaded 2-core machine.
    cfg.timeout = cfg.timeout.max(std::time::Duration::from_secs(600));
    Quest::boot(&cfg)
}

/// `name X.YYY%` from the budget report.
fn share(out: &str, name: &str) -> Result<f64> {
    let line = out
        .lines()
        .find(|l| l.contains(&format!("budget: {name} ")))
        .with_context(|| format!("no line for {name}:\n{out}"))?;
    let pct = line.rsplit(' ').next().unwrap().trim_end_matches('%');
    Ok(pct.parse()?)
}

fn fetch_trace(q: &mut Quest, cpu: usize) -> Result<Vec<vcpu_sched::TraceEvent>> {
    let out = q.shell(&format!("trace {cpu}"))?;
    let head = out.lines().next().unwrap_or("");
    if !head.contains(" 0 dropped") {
        bail!("trace lost events: {head}");
    }
    let body: String = out
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("# end of trace"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::create_dir_all("../target/quest")?;
    std::fs::write(format!("../target/quest/kernel-trace-cpu{cpu}.txt"), &body)?;
    trace::parse(&body).map_err(|e| anyhow::anyhow!("trace does not parse: {e}"))
}

#[test]
fn every_cpu_runs_threads() -> Result<()> {
    let mut q = ktest(4, false)?;
    let out = q.shell("ktest smp 100")?;
    for cpu in 0..4 {
        let line = out.lines().find(|l| l.starts_with(&format!("smp: cpu {cpu} ran"))).context(out.clone())?;
        let n: u64 = line.split_whitespace().nth(4).unwrap().parse()?;
        assert!(n > 0, "cpu {cpu} made no progress:\n{out}");
    }
    q.power_off_ok()?;
    Ok(())
}

/// Two CPU-bound threads on Main VCPUs (20 ms, 100 ms) and (30 ms, 100 ms) and a best-effort
/// hog on one PCPU for 2 s of guest time get 20% and 30% within one percentage point, and the
/// kernel's trace shows no window of length T in which a Main VCPU ran more than C.
#[test]
fn budgets_are_enforced_and_windows_hold() -> Result<()> {
    let mut q = ktest(2, true)?;
    let out = q.shell("ktest budget 1 2000 sliding")?;
    let (a, b, be) = (share(&out, "hog-20")?, share(&out, "hog-30")?, share(&out, "hog-be")?);
    assert!((a - 20.0).abs() <= 1.0, "hog-20 got {a}%:\n{out}");
    assert!((b - 30.0).abs() <= 1.0, "hog-30 got {b}%:\n{out}");
    assert!((be - 10.0).abs() <= 1.0, "best-effort hog got {be}%:\n{out}");

    let events = fetch_trace(&mut q, 1)?;
    let end = events.last().map(|e| e.t).unwrap_or(0);
    let created = check::created(&events);
    let runs = check::foreground(&events, end);
    let mut checked = 0;
    for (key, c) in &created {
        if c.kind != vcpu_sched::VcpuKind::Main {
            continue;
        }
        let Some(iv) = runs.get(key) else { continue };
        // Tolerance: one timer granularity (interrupt-to-scheduler latency under icount).
        let worst = check::sliding_window(iv, c.c, c.period, 50_000)
            .map_err(|v| anyhow::anyhow!("VCPU {key:?} (C={} T={}) ran {} ns in the window from {}", c.c, c.period, v.amount, v.start))?;
        assert!(worst > 0);
        checked += 1;
    }
    assert!(checked >= 3, "expected the three Main VCPUs in the trace, checked {checked}");
    q.power_off_ok()?;
    Ok(())
}

/// The default (POSIX-corrected) rules give each backlogged VCPU its share too.
#[test]
fn posix_rules_give_each_vcpu_its_share() -> Result<()> {
    let mut q = ktest(2, true)?;
    let out = q.shell("ktest budget 1 1000 posix")?;
    assert!((share(&out, "hog-20")? - 20.0).abs() <= 1.0, "{out}");
    assert!((share(&out, "hog-30")? - 30.0).abs() <= 1.0, "{out}");
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn semaphores_ping_pong_and_cross_cpu_producer_consumer() -> Result<()> {
    let mut q = ktest(3, true)?;
    let out = q.shell("ktest sem 500 0")?;
    assert!(out.contains("sem: 500 round trips on cpu 0"), "{out}");
    let out = q.shell("ktest prodcons 5000 1 2")?;
    // 0 + 1 + ... + 4999
    assert!(out.contains("prodcons: 5000 items from cpu 1 to cpu 2, in order, sum 12497500"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn timer_wakeups_are_prompt() -> Result<()> {
    let mut q = ktest(2, true)?;
    let out = q.shell("ktest latency 100 1")?;
    let line = out.lines().find(|l| l.starts_with("latency: 100 wake-ups")).context(out.clone())?;
    // "max N ns": a wake-up later than 1 ms would mean a missed or late timer.
    let max: u64 = line.rsplit("max ").next().unwrap().trim_end_matches(" ns").parse()?;
    assert!(max < 1_000_000, "{line}");
    q.power_off_ok()?;
    Ok(())
}

/// The serial bottom half runs on an IO VCPU; typed input still arrives while other CPUs are
/// busy, and ps lists the VCPUs the seed's way.
#[test]
fn ps_lists_vcpus_and_threads() -> Result<()> {
    let mut q = ktest(2, false)?;
    let v = q.shell("ps -v")?;
    assert!(v.contains("VCPU PCPU Type      C      T  num_tasks"), "{v}");
    assert!(v.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", "0", "main", "5000", "50000", "1"]), "{v}");
    assert!(v.lines().any(|l| l.contains(" io ") && l.contains("1000") && l.contains("10000")), "{v}");
    let t = q.shell("ps -t")?;
    assert!(t.contains("serial-bh") && t.contains("console") && t.contains("idle/1"), "{t}");
    q.power_off_ok()?;
    Ok(())
}
