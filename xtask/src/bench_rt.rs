//! The benchmark rows of issues 24 and 25 that need their own machine: rt-tests' `cyclictest`
//! (unmodified, `rt_tests.rs`) and the parallel row (qbench's `parallel` group on 4 CPUs).
//! Both systems boot on the benchmark's machine (`-icount shift=0,sleep=off`,
//! [`quest_tests::ICOUNT_CPU`], 256 MiB); Quest-RS runs the program typed at its shell (the
//! default best-effort VCPU, as a user runs it), Linux as init (cyclictest through
//! user/tools/initrun.c, which gives it /proc, /sys and /dev and powers off; qbench is its own
//! init). Figures: docs/benchmarks.md.
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use quest_tests::bench::Sample;
use quest_tests::linux::Machine;

use crate::rt_tests;

/// Benchmark names (for `cargo xtask bench NAME...`) that are measured here, not by qbench's
/// single-CPU boots.
pub const GROUPS: &[&str] = &["cyclictest", "parallel"];

/// CPUs of the parallel row's machine.
pub const PARALLEL_CPUS: u32 = 4;

/// One system's samples and the lines worth keeping in the results' notes.
#[derive(Default)]
pub struct Out {
    pub quest: Vec<Sample>,
    pub linux: Vec<Sample>,
    pub notes: Vec<String>,
}

fn quest_config(t: &crate::setup::Tools, iso: &Path, cpus: u32) -> quest_tests::Config {
    quest_tests::Config {
        qemu: t.qemu.clone(),
        iso: iso.to_path_buf(),
        firmware: quest_tests::Firmware::Bios,
        smp: cpus,
        mem_mib: 256,
        cpu: "max".into(), // -icount: the harness uses ICOUNT_CPU
        icount: true,
        echo: false,
        extra_args: vec![],
        timeout: Duration::from_secs(1800),
        settle: None,
    }
}

/// cyclictest on both systems: `-l` 1,000 loops (--quick) or 10,000.
pub fn cyclictest(t: &crate::setup::Tools, profile: &str, flavour: &str, quick: bool, vmlinuz: Option<&Path>, logs: &Path) -> Result<Out> {
    let c = rt_tests::cyclictest()?;
    let img = crate::image::build_with(profile, false, &format!("{flavour}-rt"), &crate::boot_files(std::slice::from_ref(&c.bin))?)?;
    let loops = if quick { 1000 } else { 10_000 };
    let mut args: Vec<String> = rt_tests::OPTIONS.iter().map(|s| s.to_string()).collect();
    args.extend(["-l".into(), loops.to_string()]);
    let mut out = Out::default();
    let sample = |s: &rt_tests::Summary| Sample { name: "cyclictest".into(), unit: "ns".into(), median: s.avg, max: s.max, n: s.cycles, wall: None };

    let mut q = quest_tests::Quest::boot(&quest_config(t, &img.iso, 1))?;
    let text = q.shell(&format!("cyclictest {}", args.join(" ")))?;
    let _ = q.power_off_ok();
    fs::write(logs.join("cyclictest-quest.log"), &text)?;
    let s = rt_tests::parse_summary(&text, 0).with_context(|| format!("cyclictest printed no summary on Quest-RS:\n{text}"))?;
    check(&s, loops, "Quest-RS", &text)?;
    out.quest.push(sample(&s));
    out.notes.push(format!("cyclictest (rt-tests {}) on Quest-RS: min {} ns, avg {} ns, max {} ns over {} loops", c.version, s.min, s.avg, s.max, s.cycles));

    if let Some(vmlinuz) = vmlinuz {
        let initrun = logs.parent().context("logs dir")?.join("initrun");
        crate::cc::cc(&initrun, &[crate::root().join("user/tools/initrun.c")])?;
        let mut a: Vec<&str> = vec!["/boot/cyclictest"];
        a.extend(args.iter().map(String::as_str));
        let text = quest_tests::linux::run_init_on(&t.qemu, vmlinuz, &initrun, std::slice::from_ref(&c.bin), &a, &Machine::icount(1), Duration::from_secs(1800))?;
        fs::write(logs.join("cyclictest-linux.log"), &text)?;
        let s = rt_tests::parse_summary(&text, 0).with_context(|| format!("cyclictest printed no summary on Linux:\n{text}"))?;
        check(&s, loops, "Linux", &text)?;
        out.linux.push(sample(&s));
        out.notes.push(format!("cyclictest on Linux: min {} ns, avg {} ns, max {} ns over {} loops", s.min, s.avg, s.max, s.cycles));
    }
    Ok(out)
}

/// A summary of the run asked for: every loop done at priority 80 with a 1 ms interval.
fn check(s: &rt_tests::Summary, loops: u64, sys: &str, text: &str) -> Result<()> {
    if s.cycles != loops || s.prio != 80 || s.interval_us != 1000 || !(s.min <= s.avg && s.avg <= s.max) {
        bail!("cyclictest on {sys}: unexpected summary {s:?}:\n{text}");
    }
    Ok(())
}

/// qbench's `parallel` group on a 4-CPU machine, on both systems.
pub fn parallel(t: &crate::setup::Tools, shell_iso: &Path, qbench: &Path, quick: bool, vmlinuz: Option<&Path>, logs: &Path) -> Result<Out> {
    let mut args = vec!["parallel"];
    if quick {
        args.insert(0, "--quick");
    }
    let mut out = Out::default();
    let mut q = quest_tests::Quest::boot(&quest_config(t, shell_iso, PARALLEL_CPUS))?;
    let text = q.shell(&format!("qbench {}", args.join(" ")))?;
    let _ = q.power_off_ok();
    fs::write(logs.join("parallel-quest.log"), &text)?;
    let r = quest_tests::bench::parse(&text);
    if !r.done || r.samples.iter().filter(|s| s.name.starts_with("parallel")).count() != 6 {
        bail!("qbench parallel did not finish on Quest-RS:\n{text}");
    }
    out.notes.push(distinct_note("Quest-RS", &r.info));
    out.quest.extend(r.samples.into_iter().filter(|s| s.name.starts_with("parallel")));
    if let Some(vmlinuz) = vmlinuz {
        args.push("--poweroff");
        let text = quest_tests::linux::run_init_on(&t.qemu, vmlinuz, qbench, &[], &args, &Machine::icount(PARALLEL_CPUS), Duration::from_secs(1800))?;
        fs::write(logs.join("parallel-linux.log"), &text)?;
        let r = quest_tests::bench::parse(&text);
        if !r.done || r.samples.iter().filter(|s| s.name.starts_with("parallel")).count() != 6 {
            bail!("qbench parallel did not finish on Linux:\n{text}");
        }
        out.notes.push(distinct_note("Linux", &r.info));
        out.linux.extend(r.samples.into_iter().filter(|s| s.name.starts_with("parallel")));
    }
    Ok(out)
}

fn distinct_note(sys: &str, info: &std::collections::BTreeMap<String, String>) -> String {
    let d = |n: u32| info.get(&format!("parallel_{n}_distinct_cpus")).cloned().unwrap_or_else(|| "?".into());
    format!(
        "parallel row, {sys} ({} CPUs online): distinct CPUs the threads started on: N=1 {}, N=2 {}, N=4 {}",
        info.get("parallel_cpus_online").map(String::as_str).unwrap_or("?"),
        d(1),
        d(2),
        d(4)
    )
}
