//! Helpers shared by the QEMU test files (not a test of its own).
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
