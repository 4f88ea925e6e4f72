//! Helpers shared by the QEMU test files (not a test of its own; each file uses some).
#![allow(dead_code)]
use anyhow::{Result, bail};
use quest_tests::Quest;
use vcpu_sched::trace;

/// The kernel console's `trace CPU` (test build): the schedule trace collected since the last
/// call, parsed; also written to target/quest/kernel-trace-cpuN.txt for plotting.
pub fn fetch_trace(q: &mut Quest, cpu: usize) -> Result<Vec<vcpu_sched::TraceEvent>> {
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

/// A Quest sandbox's `ktest budget 0 2000` beside something else: its two Main VCPUs (20 ms
/// and 30 ms every 100 ms) got their shares (`budget_out`), and its schedule trace (`trace 0`'s
/// output) shows each received its budget by every replenishment deadline.
pub fn check_budget_run(budget_out: &str, trace_out: &str, beside: &str) -> Result<()> {
    use anyhow::Context;
    use vcpu_sched::check;
    for (name, want) in [("hog-20", 20.0), ("hog-30", 30.0)] {
        let line = budget_out.lines().find(|l| l.contains(&format!("budget: {name} "))).context(budget_out.to_string())?;
        let pct: f64 = line.rsplit(' ').next().unwrap().trim().trim_end_matches('%').parse()?;
        if (pct - want).abs() > 1.0 {
            bail!("{name} got {pct}% {beside}:\n{budget_out}");
        }
    }
    let head = trace_out.lines().next().unwrap_or("");
    if !head.contains(" 0 dropped") {
        bail!("trace lost events: {head}");
    }
    let body: String = trace_out.lines().skip(1).take_while(|l| !l.starts_with("# end of trace")).map(|l| format!("{l}\n")).collect();
    let events = trace::parse(&body).map_err(|e| anyhow::anyhow!("trace does not parse: {e}"))?;
    let mut checked = 0;
    for (key, c) in &check::created(&events) {
        // The hogs: Main VCPUs with T = 100 ms, backlogged for the 2 s of the run.
        if c.kind != vcpu_sched::VcpuKind::Main || c.period != 100_000_000 {
            continue;
        }
        let n = check::replenishment_deadlines(&events, *key, c.t + 1_900_000_000, 50_000).map_err(|v| {
            anyhow::anyhow!("VCPU {key:?} (C={} T={}) missed budget {beside}: released {} by {}, consumed {}", c.c, c.period, v.released, v.release, v.consumed)
        })?;
        if n < 15 {
            bail!("only {n} replenishment deadlines checked for {key:?}");
        }
        checked += 1;
    }
    if checked != 2 {
        bail!("expected the two hogs' Main VCPUs in the trace, found {checked}");
    }
    if check::misses(&events) != 0 {
        bail!("the kernel recorded deadline misses");
    }
    Ok(())
}
