//! `cargo xtask bench`: Quest-RS beside Linux on the same emulated machine.
//!
//! Both systems boot in QEMU/TCG with `-icount shift=0,sleep=off` (guest time advances one
//! nanosecond per guest instruction; idle periods are skipped in host time but counted in guest
//! time), the same CPU model ([`quest_tests::ICOUNT_CPU`]), memory and `-smp 1` (Debian's Linux
//! hangs bringing up a second CPU under icount: docs/benchmarks.md). Each runs
//! `bench/qbench.c` (one static musl binary): Quest-RS from `/boot/init.conf`, Linux as the
//! initramfs's init. The program prints `@BENCH` records (`quest_tests::bench`), which are
//! collected with their host arrival times (the secondary, wall-clock figure).
//!
//! The peer is Debian's stock kernel: the dependency of `linux-image-amd64` that the
//! configured apt sources offer, fetched with `apt-get download` and unpacked with
//! `dpkg-deb -x` into target/debian (never installed on the host; `crate::debian`).
//!
//! Output: target/bench/results.md, results.json, ratios.svg, and the consoles in
//! target/bench/logs/.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use quest_tests::bench::{Report, Sample, parse_timed};

use crate::{cc, image, root};

/// Memory and CPUs of the machine both systems boot on.
const MEM_MIB: u32 = 256;
const SMP: u32 = 1;

/// The Main VCPU qbench runs on in Quest-RS (init.conf `@C/T`, µs). Quest-RS gives a VCPU no
/// more than its budget even when the CPU is otherwise idle, and the default VCPU 0 has
/// C/T = 5 ms / 50 ms (10 %): qbench gets 70 %, the most admission control accepts beside
/// VCPU 0 (the utilization bound for two VCPUs is 82.8 %; 90 % is refused). Its threads and
/// children inherit the VCPU.
pub const QUEST_VCPU: &str = "@7000/10000";

/// A boot that prints no record for this long (host time) has failed (hang detection only).
const QUIET_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Default, PartialEq)]
pub struct Opts {
    pub quick: bool,
    pub runs: usize,
    pub quest_only: bool,
    pub debug_kernel: bool,
    /// Benchmark groups to run (qbench names); empty = all.
    pub only: Vec<String>,
}

impl Opts {
    pub fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts::default();
        let mut runs = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--quest-only" => o.quest_only = true,
                "--debug-kernel" => o.debug_kernel = true,
                "--runs" => {
                    let v = it.next().context("--runs needs a value")?;
                    let n: usize = v.parse().context("--runs: not a number")?;
                    if n == 0 {
                        bail!("--runs must be at least 1");
                    }
                    runs = Some(n);
                }
                s if s.starts_with('-') => bail!("bench: unknown option '{s}'"),
                s => o.only.push(s.to_string()),
            }
        }
        o.runs = runs.unwrap_or(if o.quick { 1 } else { 3 });
        Ok(o)
    }

    /// qbench's arguments.
    fn qbench_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if self.quick {
            a.push("--quick".to_string());
        }
        a.push("--poweroff".to_string());
        a.extend(self.only.iter().filter(|n| !crate::bench_rt::GROUPS.contains(&n.as_str())).cloned());
        a
    }

    /// Whether qbench's single-CPU boots run: not when only `bench_rt` groups are named.
    fn main_boots(&self) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| !crate::bench_rt::GROUPS.contains(&n.as_str()))
    }

    /// Whether the `bench_rt` group `g` runs.
    fn runs_group(&self, g: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == g)
    }
}

/// The table's rows, in order: qbench name, what it measures, how to show it.
pub struct Row {
    pub name: &'static str,
    pub what: &'static str,
}

pub const ROWS: &[Row] = &[
    Row { name: "null_syscall", what: "null system call (getppid)" },
    Row { name: "pipe_pingpong", what: "pipe ping-pong between 2 processes, round trip (2 switches)" },
    Row { name: "fork_exit_wait", what: "fork + child _exit + waitpid" },
    Row { name: "thread_create_join", what: "pthread_create + pthread_join" },
    Row { name: "futex_pingpong", what: "futex ping-pong between 2 threads, round trip" },
    Row { name: "msg_pipe", what: "message passing: 64-byte messages through a pipe, per message" },
    Row {
        name: "msg_shm",
        what: "message passing: 64-byte messages through shared memory, per message (Quest-RS: shmcomm sync channel, user-level data path; Linux: MAP_SHARED ring + futex)",
    },
    Row {
        name: "msg_shm_sys",
        what: "msg_shm through shmcomm's system-call path (QUEST_SHMCOMM_SYSCALL=1: the kernel copies each packet; Linux: the same ring)",
    },
    Row { name: "wakeup_latency", what: "periodic wake-up latency (1 ms, TIMER_ABSTIME)" },
    Row { name: "wakeup_jitter", what: "wake-up jitter (median column: p99 - p1; max: max - min)" },
    Row { name: "timerfd_latency", what: "timerfd-driven 1 ms periodic loop: lateness of each read() after the expiry it counts (histogram below)" },
    Row { name: "timerfd_p99", what: "timerfd periodic loop: 99th percentile lateness" },
    Row { name: "boot_to_user", what: "boot: reset to the benchmark's first instruction (guest time)" },
    Row { name: "kernel_size", what: "kernel image text+data+bss" },
    Row { name: "tm_basic", what: "Thread-Metric basic processing (no kernel calls; sanity row)" },
    Row { name: "tm_coop", what: "Thread-Metric cooperative context switch (5 threads, sched_yield)" },
    Row { name: "tm_preempt", what: "Thread-Metric preemptive context switch (5-thread semaphore ring)" },
    Row { name: "tm_interrupt", what: "Thread-Metric interrupt processing (trap + semaphore post/get)" },
    Row { name: "tm_msgq", what: "Thread-Metric message queue (16-byte send + receive)" },
    Row { name: "tm_sem", what: "Thread-Metric semaphore get + put" },
    Row { name: "tm_malloc", what: "Thread-Metric memory allocation (malloc + free 128 bytes)" },
    Row { name: "questv_exits", what: "Quest-V (2 sandboxes): VM exits per second in steady state, shells idle (Linux: no equivalent)" },
    Row { name: "questv_latency", what: "Quest-V: one-way message latency between sandboxes through a shmcomm channel window (Linux: no equivalent)" },
    Row { name: "questv_q2l_latency", what: "Quest-V: one-way latency Quest → Linux sandbox, shmcomm window (Linux side: /dev/mem library, polling process)" },
    Row { name: "questv_l2q_latency", what: "Quest-V: one-way latency Linux sandbox → Quest (Quest side: polling on its own Main VCPU)" },
    Row { name: "questv_q2l_stream", what: "Quest-V: Quest → Linux sandbox, 64-byte packets through a sync shmcomm channel, time per packet (throughput = 1 / this; a blocked Linux side polls every 200 µs)" },
    Row { name: "questv_l2q_stream", what: "Quest-V: Linux sandbox → Quest, 64-byte packets through a sync shmcomm channel, time per packet (a blocked Quest side polls every 1 ms)" },
    Row { name: "questv_boomerang_delay", what: "Boomerang pipeline Quest → Linux stage → Quest (T = 10 ms per stage, two CPU hogs on Linux's core): end-to-end delay; its guaranteed bound is 80 ms (4T per hop)" },
    Row { name: "can_rx_latency", what: "CAN (two kvaser_pci on one bus, 1 Mbit/s): interrupt to read() returning the frame (Linux: not run; needs its kvaser_pci module)" },
    Row {
        name: "cyclictest",
        what: "rt-tests' cyclictest, unmodified (static musl): `-S -p 80 -i 1000 -m`, SCHED_FIFO 80, mlockall, clock_nanosleep(TIMER_ABSTIME) every 1 ms: average latency (max); Quest-RS typed at the shell",
    },
    Row { name: "parallel_1", what: "parallel, -smp 4: 1 thread of fixed work, guest instructions per work unit (all CPUs' instructions / units done; -icount: see docs/benchmarks.md)" },
    Row { name: "parallel_2", what: "parallel, -smp 4: 2 threads of fixed work each, guest instructions per work unit" },
    Row { name: "parallel_4", what: "parallel, -smp 4: 4 threads of fixed work each, guest instructions per work unit" },
    Row { name: "parallelism_1", what: "parallel, -smp 4, 1 thread: CPU time of the threads / elapsed time (100 % = one CPU busy)" },
    Row { name: "parallelism_2", what: "parallel, -smp 4, 2 threads: CPU time of the threads / elapsed time (200 % = two at once all along)" },
    Row { name: "parallelism_4", what: "parallel, -smp 4, 4 threads: CPU time of the threads / elapsed time (400 % = four at once all along)" },
    Row { name: "can_rate_1mbit", what: "CAN: highest paced rate of 8-byte standard frames (of 1k..8.9k/s, the 1 Mbit/s maximum) received with no loss, frames/s (Linux: not run)" },
];

/// Benchmarks of the issue that this run cannot measure, with the reason (kept in the table).
pub const NOT_MEASURED: &[(&str, &str)] = &[(
    "msg_tpipe",
    "message passing through a tuned pipe: its data path is the pipe's (msg_pipe) plus VCPU binding; see tests/tests/channels.rs for its delay-bound test",
)];

/// One system's results over all runs: per row, the per-run samples.
#[derive(Default)]
struct Collected {
    samples: BTreeMap<String, Vec<Sample>>,
    info: BTreeMap<String, String>,
    hist: BTreeMap<String, Vec<(String, u64)>>,
    boot_wall: Vec<Duration>,
}

impl Collected {
    fn add(&mut self, r: Report, wall: Duration) {
        for s in r.samples {
            self.samples.entry(s.name.clone()).or_default().push(s);
        }
        self.info.extend(r.info);
        self.hist.extend(r.hist);
        self.boot_wall.push(wall);
    }
}

/// The figure of one system for one row, over the runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub unit: String,
    /// Median over the runs of each run's median.
    pub median: u64,
    /// Max over the runs.
    pub max: u64,
    pub n: u64,
    pub runs: usize,
    /// Median host wall time of the benchmark (ms), if known.
    pub wall_ms: Option<f64>,
}

fn median_u64(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn median_f64(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Combines the runs' samples of one benchmark.
pub fn combine(samples: &[Sample]) -> Option<Figure> {
    let first = samples.first()?;
    let mut med: Vec<u64> = samples.iter().map(|s| s.median).collect();
    let mut walls: Vec<f64> = samples.iter().filter_map(|s| s.wall).map(|w| w.as_secs_f64() * 1e3).collect();
    Some(Figure {
        unit: first.unit.clone(),
        median: median_u64(&mut med),
        max: samples.iter().map(|s| s.max).max().unwrap_or(0),
        n: first.n,
        runs: samples.len(),
        wall_ms: (!walls.is_empty()).then(|| median_f64(&mut walls)),
    })
}

/// Quest-RS's cost relative to Linux: > 1 means Quest-RS is slower (or bigger). For
/// throughputs (`ops/...`) and parallelism (`%`) that is Linux / Quest-RS, otherwise Quest-RS / Linux.
pub fn ratio(quest: &Figure, linux: &Figure) -> Option<f64> {
    let (q, l) = (quest.median as f64, linux.median as f64);
    if quest.unit.starts_with("ops") || quest.unit == "%" {
        (q > 0.0).then(|| l / q)
    } else {
        (l > 0.0).then(|| q / l)
    }
}

/// A value with its unit, readable: ns below 10 ms, ms above; KiB for sizes.
pub fn show(v: u64, unit: &str) -> String {
    match unit {
        "ns" if v >= 10_000_000 => format!("{:.1} ms", v as f64 / 1e6),
        "ns" => format!("{} ns", group(v)),
        "bytes" => format!("{} KiB", group(v.div_ceil(1024))),
        u => format!("{} {u}", group(v)),
    }
}

fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

pub fn run(args: &[String]) -> Result<()> {
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        let name = args.get(i + 1).context("--profile needs a benchmark name")?;
        let after: Vec<String> = args
            .iter()
            .position(|a| a == "--after")
            .and_then(|j| args.get(j + 1))
            .map(|v| v.split(',').map(String::from).collect())
            .unwrap_or_default();
        let flag = |f: &str| args.iter().any(|a| a == f);
        return crate::bench_profile::run(name, &after, flag("--full"), flag("--debug-kernel"));
    }
    let o = Opts::parse(args)?;
    let t = setup::tools()?;
    let dir = root().join("target/bench");
    fs::create_dir_all(dir.join("logs"))?;

    // The benchmark program and the Quest-RS image (qbench started by init.conf).
    let qbench = dir.join("qbench");
    cc::cc(&qbench, &[root().join("bench/qbench.c")])?;
    let conf = dir.join("init.conf");
    fs::write(&conf, format!("# cargo xtask bench\nqbench {} {QUEST_VCPU}\n", o.qbench_args().join(" ")))?;
    let (profile, flavour) =
        if o.debug_kernel { (image::PROFILE, "bench-debug") } else { (image::BENCH_PROFILE, "bench") };
    let img = image::build_with(profile, false, flavour, &crate::boot_files(&[conf])?)?;
    // The same kernel with the default init.conf: qbench is typed at the shell.
    let shell_img = image::build_with(profile, false, &format!("{flavour}-shell"), &crate::boot_files(&[])?)?;
    let quest_elf = fs::read(&img.elf)?;

    let linux = if o.quest_only { None } else { Some(linux::prepare(&dir.join("linux"), &qbench, &o.qbench_args())?) };

    let timeout = Duration::from_secs(if o.quick { 900 } else { 3600 });
    let mut quest = Collected::default();
    let mut shell = Collected::default();
    let mut lin = Collected::default();
    for i in 0..if o.main_boots() { o.runs } else { 0 } {
        println!("xtask: bench run {}/{}: Quest-RS ({profile})", i + 1, o.runs);
        let mut a = machine_args();
        a.extend(["-cdrom".into(), img.iso.display().to_string(), "-boot".into(), "d".into()]);
        let (r, wall, code) = boot(&t.qemu, &a, &dir.join(format!("logs/quest-{i}.log")), timeout, None)?;
        if code != Some(quest_tests::EXIT_SUCCESS) || !r.done {
            bail!("Quest-RS run {i} did not finish cleanly (exit {code:?}); see target/bench/logs/quest-{i}.log");
        }
        quest.add(r, wall);
        // The way a user runs it: typed at the shell, on the default (best-effort) VCPU.
        println!("xtask: bench run {}/{}: Quest-RS ({profile}), qbench typed at the shell", i + 1, o.runs);
        let mut a = machine_args();
        a.extend(["-cdrom".into(), shell_img.iso.display().to_string(), "-boot".into(), "d".into()]);
        let typed = format!("qbench {}", o.qbench_args().join(" "));
        let (r, wall, code) = boot(&t.qemu, &a, &dir.join(format!("logs/quest-shell-{i}.log")), timeout, Some(&typed))?;
        if code != Some(quest_tests::EXIT_SUCCESS) || !r.done {
            bail!("Quest-RS shell run {i} did not finish cleanly (exit {code:?}); see target/bench/logs/quest-shell-{i}.log");
        }
        shell.add(r, wall);
        if let Some(l) = &linux {
            println!("xtask: bench run {}/{}: Linux {}", i + 1, o.runs, l.version);
            let mut a = machine_args();
            a.extend([
                "-kernel".into(),
                l.vmlinuz.display().to_string(),
                "-initrd".into(),
                l.initramfs.display().to_string(),
                "-append".into(),
                l.cmdline.clone(),
            ]);
            let (r, wall, code) = boot(&t.qemu, &a, &dir.join(format!("logs/linux-{i}.log")), timeout, None)?;
            if code != Some(0) || !r.done {
                bail!("Linux run {i} did not finish cleanly (exit {code:?}); see target/bench/logs/linux-{i}.log");
            }
            lin.add(r, wall);
        }
    }

    if o.only.is_empty() || o.only.iter().any(|n| n.starts_with("questv")) {
        println!("xtask: bench: Quest-V (two sandboxes)");
        for smp in questv(&t, o.quick)? {
            quest.samples.entry(smp.name.clone()).or_default().push(smp);
        }
        if linux.is_some() {
            println!("xtask: bench: Quest-V (Quest beside a Linux sandbox)");
            for smp in questv_linux(&t, o.quick)? {
                quest.samples.entry(smp.name.clone()).or_default().push(smp);
            }
        }
    }

    if o.only.is_empty() || o.only.iter().any(|n| n.starts_with("can")) {
        println!("xtask: bench: CAN (two kvaser_pci on one bus)");
        for smp in can(&t, &shell_img.iso, o.quick)? {
            quest.samples.entry(smp.name.clone()).or_default().push(smp);
        }
    }

    // Issues 24 and 25: cyclictest and the parallel row, each on its own machine
    // (xtask/src/bench_rt.rs). Quest-RS's figures go in the shell column (typed at the shell).
    let mut rt_notes = Vec::new();
    let vmlinuz = linux.as_ref().map(|l| l.vmlinuz.clone());
    let take = |r: crate::bench_rt::Out, shell: &mut Collected, lin: &mut Collected, notes: &mut Vec<String>| {
        for s in r.quest {
            shell.samples.entry(s.name.clone()).or_default().push(s);
        }
        for s in r.linux {
            lin.samples.entry(s.name.clone()).or_default().push(s);
        }
        notes.extend(r.notes);
    };
    if o.runs_group("cyclictest") {
        println!("xtask: bench: rt-tests' cyclictest (-smp 1)");
        match crate::bench_rt::cyclictest(&t, profile, flavour, o.quick, vmlinuz.as_deref(), &dir.join("logs")) {
            Ok(r) => take(r, &mut shell, &mut lin, &mut rt_notes),
            Err(e) => {
                println!("xtask: bench: cyclictest not measured: {e:#}");
                rt_notes.push(format!("cyclictest not measured: {}", format!("{e:#}").lines().next().unwrap_or("")));
            }
        }
    }
    if o.runs_group("parallel") {
        println!("xtask: bench: parallel row (-smp {})", crate::bench_rt::PARALLEL_CPUS);
        take(crate::bench_rt::parallel(&t, &shell_img.iso, &qbench, o.quick, vmlinuz.as_deref(), &dir.join("logs"))?, &mut shell, &mut lin, &mut rt_notes);
    }

    // Kernel sizes (deterministic; one "sample" each).
    let size_sample = |s: Sizes| Sample {
        name: "kernel_size".into(),
        unit: "bytes".into(),
        median: s.total(),
        max: s.total(),
        n: 1,
        wall: None,
    };
    let qsize = elf_sizes(&quest_elf)?;
    quest.samples.insert("kernel_size".into(), vec![size_sample(qsize)]);
    let lsize = match &linux {
        Some(l) => {
            let s = elf_sizes(&fs::read(&l.vmlinux)?)?;
            lin.samples.insert("kernel_size".into(), vec![size_sample(s)]);
            Some(s)
        }
        None => None,
    };

    let meta = Meta {
        date: utc_date(),
        qemu: format!("{}.{}.{}", t.qemu_version.0, t.qemu_version.1, t.qemu_version.2),
        quest_profile: profile.to_string(),
        linux: linux.as_ref().map(|l| l.version.clone()),
        runs: o.runs,
        quick: o.quick,
        quest_wall: median_wall(&quest.boot_wall),
        linux_wall: median_wall(&lin.boot_wall),
        quest_size: qsize,
        linux_size: lsize,
    };
    let table = rows(&quest, &shell, &lin);
    let mut md = markdown(&meta, &table, &quest, &lin);
    for n in &rt_notes {
        md.push_str(&format!("{n}.\n\n"));
    }
    fs::write(dir.join("results.md"), &md)?;
    fs::write(dir.join("results.json"), json(&meta, &table))?;
    fs::write(dir.join("ratios.svg"), svg(&meta, &table))?;
    println!("{md}");
    println!("xtask: wrote target/bench/results.md, results.json, ratios.svg");
    Ok(())
}

/// Quest-V figures: boots configs/two-quest.toml under -icount and measures, from the
/// sandboxes' shells, the VM exits over one second (`vmexits 1000`, less its own hypercall)
/// and the one-way latency between the sandboxes (`qv_latency`).
fn questv(t: &crate::setup::Tools, quick: bool) -> Result<Vec<Sample>> {
    let files = crate::boot_files(&[])?;
    let qv = crate::questv::build(&root().join("configs/two-quest.toml"), false, &files)?;
    let cfg = questv_config(t, &qv, Duration::from_secs(600));
    let mut m = quest_tests::QuestV::start(&cfg, qv.serials)?;
    for com in [1, 2] {
        let c = m.com(com);
        c.expect("user mode:")?;
        c.expect_prompt()?;
    }
    let out = m.com(2).shell("vmexits 1000")?;
    let mut exits = 0u64;
    for l in out.lines().filter(|l| l.starts_with("vmexits: cpu ")) {
        let total: u64 = l.split(" total ").nth(1).and_then(|s| s.split_whitespace().next()).context(l.to_string())?.parse()?;
        exits += total;
    }
    let exits = exits.saturating_sub(1); // vmexits' own second reading
    let n = if quick { 50 } else { 200 };
    m.com(2).send_line(&format!("qv_latency recv {n}"))?;
    m.com(1).shell(&format!("qv_latency send {n}"))?;
    let out = m.com(2).expect_prompt()?;
    let (median, max) = qv_latency_ns(&out)?;
    Ok(vec![
        Sample { name: "questv_exits".into(), unit: "exits/s".into(), median: exits, max: exits, n: 1, wall: None },
        Sample { name: "questv_latency".into(), unit: "ns".into(), median, max, n, wall: None },
    ])
}

/// The harness configuration for a Quest-V image under `-icount` (the bench's guest time).
fn questv_config(t: &crate::setup::Tools, qv: &crate::questv::QuestV, timeout: Duration) -> quest_tests::Config {
    quest_tests::Config {
        qemu: t.qemu.clone(),
        iso: qv.iso.clone(),
        firmware: quest_tests::Firmware::Bios,
        smp: qv.cpus,
        mem_mib: qv.mem_mib,
        cpu: "max".into(),
        icount: true,
        echo: false,
        extra_args: vec![],
        timeout,
        settle: None,
    }
}

/// `qv_latency`'s result line → (median, max) in ns.
fn qv_latency_ns(out: &str) -> Result<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("one-way latency")).with_context(|| format!("qv_latency printed no result:\n{out}"))?;
    let us = |key: &str| -> Result<u64> {
        let v: f64 = line
            .split(key)
            .nth(1)
            .and_then(|s| s.split('(').nth(1))
            .and_then(|s| s.split_whitespace().next())
            .with_context(|| line.to_string())?
            .parse()?;
        Ok((v * 1000.0).round() as u64)
    };
    Ok((us("median ")?, us("max ")?))
}

/// Quest beside Debian's kernel (tests/fixtures/questv-linux-1cpu.toml: one core each, as
/// `-icount` allows) under -icount: `qv_latency` one way and then the other, over the async
/// windows 154 (Quest → Linux) and 157 (Linux → Quest).
fn questv_linux(t: &crate::setup::Tools, quick: bool) -> Result<Vec<Sample>> {
    let files = crate::boot_files(&[])?;
    let qv = crate::questv::build(&root().join("tests/fixtures/questv-linux-1cpu.toml"), false, &files)?;
    let cfg = questv_config(t, &qv, Duration::from_secs(900));
    const LINUX_PROMPT: &str = "linux:/# ";
    let mut m = quest_tests::QuestV::start(&cfg, qv.serials)?;
    m.com(1).expect("user mode:")?;
    m.com(1).expect_prompt()?;
    m.com(2).expect(LINUX_PROMPT)?;
    let n = if quick { 50 } else { 200 };
    // Quest → Linux.
    m.com(2).send_line(&format!("qv_latency recv {n} 154"))?;
    m.com(1).shell(&format!("qv_latency send {n} 154"))?;
    let out = m.com(2).expect(LINUX_PROMPT)?;
    let (q2l_med, q2l_max) = qv_latency_ns(&out)?;
    // Linux → Quest.
    m.com(1).send_line(&format!("qv_latency recv {n} 157"))?;
    m.com(2).send_line(&format!("qv_latency send {n} 157"))?;
    m.com(2).expect(LINUX_PROMPT)?;
    let out = m.com(1).expect_prompt()?;
    let (l2q_med, l2q_max) = qv_latency_ns(&out)?;
    let mut v = vec![
        Sample { name: "questv_q2l_latency".into(), unit: "ns".into(), median: q2l_med, max: q2l_max, n, wall: None },
        Sample { name: "questv_l2q_latency".into(), unit: "ns".into(), median: l2q_med, max: l2q_max, n, wall: None },
    ];
    // Streams over the sync channels 155 (Quest → Linux) and 156 (Linux → Quest).
    let packets = if quick { 2000 } else { 20_000 };
    m.com(2).send_line(&format!("shm_stream recv 155 {packets}"))?;
    m.com(1).shell(&format!("shm_stream send 155 {packets}"))?;
    let q2l = shm_stream_ns_per_packet(&m.com(2).expect(LINUX_PROMPT)?, packets)?;
    m.com(2).send_line(&format!("shm_stream send 156 {packets}"))?;
    let l2q = shm_stream_ns_per_packet(&m.com(1).shell(&format!("shm_stream recv 156 {packets}"))?, packets)?;
    m.com(2).expect(LINUX_PROMPT)?;
    v.push(Sample { name: "questv_q2l_stream".into(), unit: "ns".into(), median: q2l, max: q2l, n: 1, wall: None });
    v.push(Sample { name: "questv_l2q_stream".into(), unit: "ns".into(), median: l2q, max: l2q, n: 1, wall: None });
    // Boomerang: the relay on Linux beside two CPU hogs, the ends on Quest.
    for cmd in ["while :; do :; done &", "while :; do :; done &", "boomerang relay 158 159 > /tmp/relay 2>&1 &"] {
        m.com(2).send_line(cmd)?;
        m.com(2).expect(LINUX_PROMPT)?;
    }
    let count = if quick { 200 } else { 1000 };
    let out = m.com(1).shell(&format!("boomerang ends 158 159 {count}"))?;
    let (med, max) = boomerang_delay_ns(&out)?;
    v.push(Sample { name: "questv_boomerang_delay".into(), unit: "ns".into(), median: med, max, n: count, wall: None });
    Ok(v)
}

/// `shm_stream`'s receiver line → ns per packet (`(T ms)` over `packets`).
fn shm_stream_ns_per_packet(out: &str, packets: u64) -> Result<u64> {
    let line = out.lines().find(|l| l.contains("none lost, duplicated or corrupted")).with_context(|| format!("shm_stream failed:\n{out}"))?;
    let ms: u64 = line.rsplit('(').next().and_then(|s| s.split_whitespace().next()).with_context(|| line.to_string())?.parse()?;
    Ok(ms * 1_000_000 / packets.max(1))
}

/// `boomerang ends`' verdict → (median, max) end-to-end delay in ns; an error unless within
/// its bound with nothing lost.
fn boomerang_delay_ns(out: &str) -> Result<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("within the bound; hop full 0 times")).with_context(|| format!("boomerang failed:\n{out}"))?;
    let us = |key: &str| -> Result<u64> { Ok(line.split(key).nth(1).and_then(|s| s.split_whitespace().next()).with_context(|| line.to_string())?.parse::<u64>()? * 1000) };
    Ok((us("delay median ")?, us(", max ")?))
}

/// CAN figures: boots the bench kernel (default init.conf) under -icount with two kvaser_pci
/// on one `-object can-bus` and runs `canbench` (user/examples/canbench.c) at the shell.
fn can(t: &crate::setup::Tools, iso: &Path, quick: bool) -> Result<Vec<Sample>> {
    let mut extra_args: Vec<String> = vec!["-object".into(), "can-bus,id=canbus0".into()];
    for _ in 0..2 {
        extra_args.extend(["-device".into(), "kvaser_pci,canbus=canbus0".into()]);
    }
    let cfg = quest_tests::Config {
        qemu: t.qemu.clone(),
        iso: iso.to_path_buf(),
        firmware: quest_tests::Firmware::Bios,
        smp: SMP,
        mem_mib: MEM_MIB,
        cpu: "max".into(),
        icount: true,
        echo: false,
        extra_args,
        timeout: Duration::from_secs(600),
        settle: None,
    };
    let mut q = quest_tests::Quest::boot(&cfg)?;
    let out = q.shell(if quick { "canbench --quick" } else { "canbench" })?;
    let r = quest_tests::bench::parse(&out);
    if !r.done {
        bail!("canbench did not finish:\n{out}");
    }
    let _ = q.power_off_ok();
    Ok(r.samples)
}

fn median_wall(v: &[Duration]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64()).collect();
    (!s.is_empty()).then(|| median_f64(&mut s))
}

pub(crate) mod setup {
    pub fn tools() -> anyhow::Result<crate::setup::Tools> {
        crate::setup::ensure(&crate::setup::SetupOptions { need_uefi: false, need_musl: true, quiet: true })
    }
}

/// The machine both systems boot on (everything but the boot media).
pub fn machine_args() -> Vec<String> {
    [
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-cpu",
        quest_tests::ICOUNT_CPU,
        "-smp",
        &SMP.to_string(),
        "-m",
        &format!("{MEM_MIB}M"),
        "-nic",
        "none",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-icount",
        "shift=0,sleep=off",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Boots QEMU with `args`, collects the console (also written to `log`) with host arrival
/// times until QEMU exits; returns the parsed report, the host wall time and the exit code.
///
/// `typed`: a line typed at the console once the kernel's banner is out (its last line,
/// `user mode: ...`): the UART is set up by then (bytes sent before its FIFO reset are lost)
/// and the kernel keeps typed-ahead input for the shell.
fn boot(qemu: &Path, args: &[String], log: &Path, timeout: Duration, typed: Option<&str>) -> Result<(Report, Duration, Option<i32>)> {
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(args)
        .stdin(if typed.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", qemu.display()))?;
    // Kept open until QEMU exits (closing it would end the serial input).
    let mut stdin = child.stdin.take();
    let mut to_type = typed.map(|l| format!("{l}\n"));
    let out = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel::<(Duration, String)>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if tx.send((start.elapsed(), line)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let deadline = start + timeout;
    let mut lines = Vec::new();
    let mut last_record = Instant::now();
    loop {
        let left = deadline.min(last_record + QUIET_TIMEOUT).saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(l) => {
                if l.1.contains('@') {
                    last_record = Instant::now();
                }
                if l.1.starts_with("user mode:") {
                    if let (Some(t), Some(w)) = (to_type.take(), stdin.as_mut()) {
                        use std::io::Write as _;
                        w.write_all(t.as_bytes()).context("typing at the console")?;
                        w.flush()?;
                    }
                }
                lines.push(l)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                write_log(log, &lines)?;
                bail!("timed out (no benchmark output for {QUIET_TIMEOUT:?}, or {timeout:?} in all); console in {}", log.display());
            }
        }
    }
    let _ = reader.join();
    let st = child.wait()?;
    let wall = start.elapsed();
    write_log(log, &lines)?;
    let report = parse_timed(lines.iter().map(|(t, l)| (*t, l.as_str())));
    Ok((report, wall, st.code()))
}

fn write_log(log: &Path, lines: &[(Duration, String)]) -> Result<()> {
    let mut s = String::new();
    for (_, l) in lines {
        s.push_str(l);
    }
    fs::write(log, s).with_context(|| format!("writing {}", log.display()))
}

/// Section sizes in the `size` (Berkeley) sense: text = allocated and not writable (code and
/// read-only data), data = allocated, writable, in the file; bss = allocated, not in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sizes {
    pub text: u64,
    pub data: u64,
    pub bss: u64,
}

impl Sizes {
    pub fn total(&self) -> u64 {
        self.text + self.data + self.bss
    }
}

pub fn elf_sizes(elf: &[u8]) -> Result<Sizes> {
    use object::{Object, ObjectSection, SectionFlags, SectionKind};
    let f = object::File::parse(elf).context("parsing an ELF kernel")?;
    let mut s = Sizes::default();
    for sec in f.sections() {
        let SectionFlags::Elf { sh_flags } = sec.flags() else { continue };
        if sh_flags & u64::from(object::elf::SHF_ALLOC) == 0 {
            continue;
        }
        let nobits = matches!(sec.kind(), SectionKind::UninitializedData | SectionKind::UninitializedTls | SectionKind::Common);
        if nobits {
            s.bss += sec.size();
        } else if sh_flags & u64::from(object::elf::SHF_WRITE) != 0 {
            s.data += sec.size();
        } else {
            s.text += sec.size();
        }
    }
    Ok(s)
}

fn utc_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown date".into())
}

struct Meta {
    date: String,
    qemu: String,
    quest_profile: String,
    linux: Option<String>,
    runs: usize,
    quick: bool,
    quest_wall: Option<f64>,
    linux_wall: Option<f64>,
    quest_size: Sizes,
    linux_size: Option<Sizes>,
}

pub struct TableRow {
    pub name: String,
    pub what: String,
    /// Quest-RS, qbench on its own Main VCPU (init.conf `QUEST_VCPU`).
    pub quest: Option<Figure>,
    /// Quest-RS, qbench typed at the shell (default best-effort VCPU).
    pub shell: Option<Figure>,
    pub linux: Option<Figure>,
    pub ratio: Option<f64>,
    pub shell_ratio: Option<f64>,
}

fn rows(q: &Collected, sh: &Collected, l: &Collected) -> Vec<TableRow> {
    let mut out = Vec::new();
    let fig = |c: &Collected, n: &str| c.samples.get(n).and_then(|s| combine(s));
    for r in ROWS {
        let (qf, sf, lf) = (fig(q, r.name), fig(sh, r.name), fig(l, r.name));
        if qf.is_none() && lf.is_none() && sf.is_none() {
            continue;
        }
        let ratio_to = |x: &Option<Figure>| match (x, &lf) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => None,
        };
        let (ratio, shell_ratio) = (ratio_to(&qf), ratio_to(&sf));
        out.push(TableRow { name: r.name.into(), what: r.what.into(), quest: qf, shell: sf, linux: lf, ratio, shell_ratio });
    }
    out
}

fn cell(f: &Option<Figure>) -> String {
    match f {
        Some(f) if f.n > 1 => format!("{} (max {})", show(f.median, &f.unit), show(f.max, &f.unit)),
        Some(f) => show(f.median, &f.unit),
        None => "not measured".into(),
    }
}

fn wall_cell(f: &Option<Figure>) -> String {
    match f.as_ref().and_then(|f| f.wall_ms) {
        Some(w) => format!("{w:.0}"),
        None => "—".into(),
    }
}

fn markdown(m: &Meta, t: &[TableRow], q: &Collected, l: &Collected) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Quest-RS vs Linux — `cargo xtask bench{}`\n", if m.quick { " --quick" } else { "" });
    let _ = writeln!(
        s,
        "{}; QEMU {} (TCG), q35, -cpu `{}`, -smp {SMP}, {MEM_MIB} MiB, -icount shift=0,sleep=off \
         (guest ns = guest instructions while busy); Quest-RS kernel profile `{}`; Linux {}; \
         {} run(s) of each, figures are the median over runs of each run's median.\n",
        m.date,
        m.qemu,
        quest_tests::ICOUNT_CPU,
        m.quest_profile,
        m.linux.as_deref().unwrap_or("not run"),
        m.runs
    );
    let _ = writeln!(s, "Ratio = Quest-RS cost / Linux cost: > 1 means Quest-RS is slower (for ops/interval rows: Linux ops / Quest-RS ops; for size: bigger).\n");
    let _ = writeln!(
        s,
        "Quest-RS (VCPU): qbench on its own Main VCPU ({QUEST_VCPU} in init.conf). Quest-RS (shell): qbench typed at the shell, as a user runs \
         a program, on the default best-effort VCPU (5 ms / 50 ms; the kernel is work-conserving, so an otherwise idle CPU is all its).\n"
    );
    let _ = writeln!(s, "| benchmark | what | Quest-RS (VCPU) | Quest-RS (shell) | Linux | ratio | ratio (shell) | host ms Q / L |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    let r2 = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into());
    for r in t {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} / {} |",
            r.name,
            r.what,
            cell(&r.quest),
            cell(&r.shell),
            cell(&r.linux),
            r2(r.ratio),
            r2(r.shell_ratio),
            wall_cell(&r.quest),
            wall_cell(&r.linux)
        );
    }
    for (n, why) in NOT_MEASURED {
        let _ = writeln!(s, "| `{n}` | — | not measured | not measured | not measured | — | — | {why} |");
    }
    let _ = writeln!(s);
    let ls = m.linux_size.map(|z| format!("text {} + data {} + bss {}", z.text, z.data, z.bss)).unwrap_or_else(|| "—".into());
    let qz = m.quest_size;
    let _ = writeln!(
        s,
        "Kernel sizes (bytes, allocated ELF sections): Quest-RS text {} + data {} + bss {}; Linux vmlinux {ls} \
         (modules not counted; the benchmarks need none).\n",
        qz.text, qz.data, qz.bss
    );
    let w = |x: Option<f64>| x.map(|v| format!("{v:.1} s")).unwrap_or_else(|| "—".into());
    let _ = writeln!(s, "Host wall time of a whole boot-benchmark-power-off (median of runs): Quest-RS {}, Linux {}.\n", w(m.quest_wall), w(m.linux_wall));
    for (sys, c) in [("Quest-RS", q), ("Linux", l)] {
        for (hist, title) in [("wakeup_latency", "Wake-up latency"), ("timerfd_latency", "timerfd periodic loop lateness")] {
            if let Some(h) = c.hist.get(hist) {
                let b: Vec<String> = h.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                let _ = writeln!(s, "{title} histogram, {sys} (1 µs buckets, 100us = ≥ 100 µs): {}\n", b.join(" "));
            }
        }
    }
    s
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_fig(f: &Option<Figure>) -> String {
    match f {
        None => "null".into(),
        Some(f) => format!(
            "{{\"unit\": {}, \"median\": {}, \"max\": {}, \"n\": {}, \"runs\": {}, \"host_wall_ms\": {}}}",
            json_str(&f.unit),
            f.median,
            f.max,
            f.n,
            f.runs,
            f.wall_ms.map(|w| format!("{w:.1}")).unwrap_or_else(|| "null".into())
        ),
    }
}

fn json(m: &Meta, t: &[TableRow]) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(s, "  \"date\": {},", json_str(&m.date));
    let _ = writeln!(s, "  \"qemu\": {},", json_str(&m.qemu));
    let _ = writeln!(
        s,
        "  \"machine\": {},",
        json_str(&format!("q35 tcg -cpu {} -smp {SMP} -m {MEM_MIB}M -icount shift=0,sleep=off", quest_tests::ICOUNT_CPU))
    );
    let _ = writeln!(s, "  \"quest_kernel_profile\": {},", json_str(&m.quest_profile));
    let _ = writeln!(s, "  \"linux\": {},", m.linux.as_deref().map(json_str).unwrap_or_else(|| "null".into()));
    let _ = writeln!(s, "  \"runs\": {}, \"quick\": {},", m.runs, m.quick);
    let _ = writeln!(s, "  \"rows\": [");
    for (i, r) in t.iter().enumerate() {
        let _ = writeln!(
            s,
            "    {{\"name\": {}, \"what\": {}, \"quest\": {}, \"quest_shell\": {}, \"linux\": {}, \"ratio\": {}, \"ratio_shell\": {}}}{}",
            json_str(&r.name),
            json_str(&r.what),
            json_fig(&r.quest),
            json_fig(&r.shell),
            json_fig(&r.linux),
            r.ratio.map(|x| format!("{x:.4}")).unwrap_or_else(|| "null".into()),
            r.shell_ratio.map(|x| format!("{x:.4}")).unwrap_or_else(|| "null".into()),
            if i + 1 < t.len() { "," } else { "" }
        );
    }
    let _ = writeln!(s, "  ],");
    let _ = writeln!(s, "  \"not_measured\": [");
    for (i, (n, why)) in NOT_MEASURED.iter().enumerate() {
        let _ = writeln!(s, "    {{\"name\": {}, \"reason\": {}}}{}", json_str(n), json_str(why), if i + 1 < NOT_MEASURED.len() { "," } else { "" });
    }
    let _ = writeln!(s, "  ]\n}}");
    s
}

/// A horizontal bar chart of the ratios on a log scale, centred on 1.
fn svg(m: &Meta, t: &[TableRow]) -> String {
    let rows: Vec<(&str, f64)> = t.iter().filter_map(|r| Some((r.name.as_str(), r.ratio?))).collect();
    let (left, width, row_h, top) = (170.0, 560.0, 22.0, 50.0);
    let lo = rows.iter().map(|r| r.1).fold(1.0f64, f64::min).log10().floor().min(-1.0);
    let hi = rows.iter().map(|r| r.1).fold(1.0f64, f64::max).log10().ceil().max(1.0);
    let x = |v: f64| left + (v.log10() - lo) / (hi - lo) * width;
    let h = top + rows.len() as f64 * row_h + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">",
        left + width + 80.0
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"20\" font-size=\"14\">Quest-RS / Linux cost ratio (log scale; &gt; 1: Quest-RS slower) — {}, QEMU {}, kernel {}</text>",
        m.date, m.qemu, m.quest_profile
    );
    let mut d = lo;
    while d <= hi + 1e-9 {
        let v = 10f64.powf(d);
        let xx = x(v);
        let _ = writeln!(s, "<line x1=\"{xx:.1}\" y1=\"{}\" x2=\"{xx:.1}\" y2=\"{}\" stroke=\"#ccc\"/>", top - 10.0, h - 30.0);
        let _ = writeln!(s, "<text x=\"{xx:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", h - 15.0, if v < 1.0 { format!("{v}") } else { format!("{v:.0}") });
        d += 1.0;
    }
    let one = x(1.0);
    for (i, (name, r)) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let xr = x(*r);
        let (x0, w) = if xr >= one { (one, xr - one) } else { (xr, one - xr) };
        let color = if *r > 1.0 { "#d9534f" } else { "#5cb85c" };
        let _ = writeln!(s, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{name}</text>", left - 8.0, y + 14.0);
        let _ = writeln!(s, "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>", y + 3.0, w.max(1.0), row_h - 6.0);
        let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{:.1}\">{r:.2}</text>", xr.max(one) + 4.0, y + 14.0);
    }
    let _ = writeln!(s, "<line x1=\"{one:.1}\" y1=\"{}\" x2=\"{one:.1}\" y2=\"{}\" stroke=\"black\"/>", top - 10.0, h - 30.0);
    s.push_str("</svg>\n");
    s
}

/// The Linux peer: Debian's kernel and an initramfs with qbench as init.
mod linux {
    use super::*;

    pub struct Linux {
        pub version: String,
        pub vmlinuz: PathBuf,
        /// The uncompressed kernel ELF (for its size).
        pub vmlinux: PathBuf,
        pub initramfs: PathBuf,
        pub cmdline: String,
    }

    pub fn prepare(dir: &Path, qbench: &Path, args: &[String]) -> Result<Linux> {
        fs::create_dir_all(dir)?;
        let k = crate::debian::kernel()?;
        let vmlinux = dir.join("vmlinux");
        crate::debian::vmlinux(&k.vmlinuz, &vmlinux)?;
        let (version, vmlinuz) = (k.release, k.vmlinuz);
        // The initramfs: qbench as /qbench (rdinit=/qbench), /dev for the console node.
        let mut w = cpio::Writer::new();
        w.add_dir("dev", 0o755).map_err(|e| anyhow::anyhow!("cpio: {e:?}"))?;
        w.add_file("qbench", 0o755, &fs::read(qbench)?).map_err(|e| anyhow::anyhow!("cpio: {e:?}"))?;
        let initramfs = dir.join("initramfs.cpio");
        fs::write(&initramfs, w.finish())?;
        let cmdline = format!("console=ttyS0 quiet panic=-1 rdinit=/qbench -- {}", args.join(" "));
        Ok(Linux { version, vmlinuz, vmlinux, initramfs, cmdline })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, unit: &str, median: u64, max: u64, wall_ms: u64) -> Sample {
        Sample { name: name.into(), unit: unit.into(), median, max, n: 10, wall: Some(Duration::from_millis(wall_ms)) }
    }

    #[test]
    fn options() {
        let a = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = Opts::parse(&a("--quick null_syscall")).unwrap();
        assert_eq!((o.quick, o.runs, o.only.clone()), (true, 1, vec!["null_syscall".to_string()]));
        assert_eq!(o.qbench_args(), ["--quick", "--poweroff", "null_syscall"]);
        assert_eq!(Opts::parse(&[]).unwrap().runs, 3);
        assert_eq!(Opts::parse(&a("--runs 5 --quest-only")).unwrap().runs, 5);
        assert!(Opts::parse(&a("--runs 0")).is_err());
        assert!(Opts::parse(&a("--bogus")).is_err());
    }

    #[test]
    fn cyclictest_and_parallel_are_not_qbench_boots() {
        let a = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = Opts::parse(&a("--quick cyclictest parallel")).unwrap();
        assert!(!o.main_boots() && o.runs_group("cyclictest") && o.runs_group("parallel"));
        let o = Opts::parse(&a("null_syscall parallel")).unwrap();
        assert!(o.main_boots() && !o.runs_group("cyclictest"));
        assert_eq!(o.qbench_args(), ["--poweroff", "null_syscall"]);
        let o = Opts::parse(&[]).unwrap();
        assert!(o.main_boots() && o.runs_group("cyclictest") && o.runs_group("parallel"));
        // Parallelism: higher is better, so its ratio is Linux / Quest-RS.
        let f = |unit: &str, median| Figure { unit: unit.into(), median, max: median, n: 1, runs: 1, wall_ms: None };
        assert_eq!(ratio(&f("%", 200), &f("%", 300)), Some(1.5));
        assert_eq!(ratio(&f("ns", 200), &f("ns", 400)), Some(0.5));
    }

    #[test]
    fn combine_takes_medians_and_the_max() {
        let f = combine(&[sample("x", "ns", 10, 50, 5), sample("x", "ns", 30, 40, 7), sample("x", "ns", 20, 90, 6)]).unwrap();
        assert_eq!((f.median, f.max, f.runs), (20, 90, 3));
        assert_eq!(f.wall_ms, Some(6.0));
        assert!(combine(&[]).is_none());
    }

    #[test]
    fn ratio_is_quest_cost_over_linux_cost() {
        let f = |unit: &str, v| combine(&[sample("x", unit, v, v, 1)]).unwrap();
        assert_eq!(ratio(&f("ns", 300), &f("ns", 100)), Some(3.0));
        // Throughput: Quest-RS doing half the operations costs twice as much.
        assert_eq!(ratio(&f("ops/20ms", 50), &f("ops/20ms", 100)), Some(2.0));
        assert_eq!(ratio(&f("ns", 1), &f("ns", 0)), None);
    }

    #[test]
    fn values_are_shown_with_units() {
        assert_eq!(show(409, "ns"), "409 ns");
        assert_eq!(show(12_345, "ns"), "12\u{202f}345 ns");
        assert_eq!(show(25_000_000, "ns"), "25.0 ms");
        assert_eq!(show(2048, "bytes"), "2 KiB");
        assert_eq!(show(9118, "ops/20ms"), "9\u{202f}118 ops/20ms");
    }

    #[test]
    fn outputs_are_well_formed() {
        let mut q = Collected::default();
        let mut l = Collected::default();
        q.add(quest_tests::bench::parse("@BENCH null_syscall ns median=900 max=1000 n=10\n@BENCH tm_sem ops/20ms median=50 max=60 n=3\n@DONE\n"), Duration::from_secs(3));
        l.add(quest_tests::bench::parse("@BENCH null_syscall ns median=300 max=400 n=10\n@BENCH tm_sem ops/20ms median=100 max=100 n=3\n@DONE\n"), Duration::from_secs(2));
        let mut sh = Collected::default();
        sh.add(quest_tests::bench::parse("@BENCH null_syscall ns median=150 max=200 n=10\n@DONE\n"), Duration::from_secs(3));
        let t = rows(&q, &sh, &l);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].ratio, Some(3.0));
        assert_eq!(t[0].shell_ratio, Some(0.5));
        assert_eq!(t[1].ratio, Some(2.0));
        assert_eq!(t[1].shell_ratio, None);
        let m = Meta {
            date: "d".into(),
            qemu: "10.0.2".into(),
            quest_profile: "kernel-release".into(),
            linux: Some("6.1".into()),
            runs: 1,
            quick: true,
            quest_wall: Some(3.0),
            linux_wall: Some(2.0),
            quest_size: Sizes { text: 1, data: 2, bss: 3 },
            linux_size: None,
        };
        let md = markdown(&m, &t, &q, &l);
        assert!(md.contains("| `null_syscall` |") && md.contains("| 3.00 | 0.50 |"), "{md}");
        assert!(md.contains("Quest-RS (shell)"), "{md}");
        assert!(md.contains("`msg_tpipe`") && md.contains("not measured"));
        let js = json(&m, &t);
        assert!(js.contains("\"ratio\": 3.0000") && js.contains("\"ratio_shell\": 0.5000") && js.trim_end().ends_with('}'));
        assert_eq!(js.matches('{').count(), js.matches('}').count());
        let sv = svg(&m, &t);
        assert!(sv.starts_with("<svg") && sv.contains("null_syscall") && sv.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn elf_sizes_of_this_binary() {
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let s = elf_sizes(&me).unwrap();
        assert!(s.text > 100_000 && s.data > 0, "{s:?}");
    }

    #[test]
    fn machine_is_the_icount_machine() {
        let a = machine_args().join(" ");
        assert!(a.contains(quest_tests::ICOUNT_CPU) && a.contains("-icount shift=0,sleep=off") && a.contains("-smp 1"), "{a}");
    }
}
