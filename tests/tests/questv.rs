//! Quest-V: the monitor partitions a two-CPU machine into two Quest sandboxes
//! (configs/two-quest.toml: COM1 = sandbox quest0 on CPU 0, COM2 = sandbox quest1 on CPU 1,
//! COM3 = the monitor). QEMU emulates AMD SVM with nested paging (`-cpu max` / EPYC).
use anyhow::{Context, Result};
use quest_tests::{Config, EXIT_FAILURE, EXIT_SUCCESS, QuestV, TEST_INIT_DONE};

mod common;

const MONITOR: usize = 3;

fn config(ktest: bool, icount: bool) -> Result<Config> {
    let mut cfg = Config::from_env(ktest)?;
    let var = if ktest { "QUEST_QUESTV_KTEST_ISO" } else { "QUEST_QUESTV_ISO" };
    cfg.iso = std::env::var_os(var).map(Into::into).with_context(|| format!("{var} is not set: run the QEMU tests with `cargo xtask test`"))?;
    cfg.smp = 2;
    cfg.mem_mib = 512;
    cfg.icount = icount;
    if icount {
        // QEMU 10 aborts on x2APIC timer reads under -icount ("Bad icount read"), so the timed
        // tests use EPYC's xAPIC (the monitor then maps each core's APIC page into its
        // sandbox); the untimed tests run with -cpu max and x2APIC.
        cfg.timeout = cfg.timeout.max(std::time::Duration::from_secs(600));
    }
    Ok(cfg)
}

/// Boots and waits for both sandboxes' prompts (the normal build's shells finish the test
/// init.conf first).
fn boot(ktest: bool, icount: bool) -> Result<QuestV> {
    let cfg = config(ktest, icount)?;
    let mut m = QuestV::start(&cfg, 3)?;
    for (com, id) in [(1, 0), (2, 1)] {
        let c = m.com(com);
        c.expect(&format!("Quest-V: sandbox {id} of 2 on CPU {id}"))?;
        if !ktest {
            c.expect(TEST_INIT_DONE)?;
            c.expect("\n")?;
            c.send_line("")?;
        }
        c.expect_prompt()?;
    }
    m.com(MONITOR).expect("Quest-V: 2 CPU(s) online")?;
    Ok(m)
}

fn power_off_both(m: &mut QuestV) -> Result<i32> {
    m.com(1).send_line("poweroff")?;
    m.com(MONITOR).expect("sandbox quest0 (0): stopped on CPU 0: powered off")?;
    m.com(2).send_line("poweroff")?;
    m.com(MONITOR).expect("every sandbox has stopped; powering off")?;
    m.wait_exit()
}

/// Two sandboxes boot the unmodified Quest kernel on their own cores, each with its own
/// console and user shell; programs run in each independently.
#[test]
fn two_sandboxes_each_with_its_own_shell() -> Result<()> {
    let mut m = boot(false, false)?;
    let monitor = m.com(MONITOR).output();
    assert!(monitor.contains("sandbox quest0 (0): quest CPU [0]") && monitor.contains("sandbox quest1 (1): quest CPU [1]"), "{monitor}");
    for com in [1, 2] {
        let out = m.com(com).shell("hello_world")?;
        assert!(out.contains("Hello World!"), "COM{com}: {out}");
    }
    // Each console carries only its own sandbox.
    assert!(!m.com(1).contains("sandbox 1 of 2") && !m.com(2).contains("sandbox 0 of 2"));
    // The monitor's exit counters from the user shell: boot exits only, then none at all while
    // both shells sit idle (one hypercall: the program's own second reading).
    let out = m.com(2).shell("vmexits")?;
    assert!(out.contains("vmexits: cpu 0 sandbox 0 total ") && out.contains("vmexits: cpu 1 sandbox 1 total "), "{out}");
    let out = m.com(2).shell("vmexits 500")?;
    for l in out.lines().filter(|l| l.starts_with("vmexits: cpu ")) {
        let total: u64 = l.split(" total ").nth(1).and_then(|s| s.split_whitespace().next()).context(l.to_string())?.parse()?;
        let hc = l.contains(" hypercall 1 ");
        assert!(total == 0 || (total == 1 && hc), "exits while idle: {l}");
    }
    let out = m.com(1).shell("vmexits")?;
    assert!(out.contains("vmexits: cpu 0 sandbox 0"), "{out}");
    assert_eq!(power_off_both(&mut m)?, EXIT_SUCCESS);
    Ok(())
}

/// The seed's shmcomm pair across sandboxes: key 153 is the configured channel window, so
/// async_send in sandbox 0 and async_recv in sandbox 1 meet in memory only they map.
#[test]
fn shmcomm_between_sandboxes() -> Result<()> {
    let mut m = boot(false, false)?;
    // Nothing created yet: the receiver finds no channel.
    let out = m.com(2).shell("async_recv")?;
    assert!(out.contains("Value of res: -1") && out.contains("Error"), "receiver before sender:\n{out}");
    let out = m.com(1).shell("async_send")?;
    assert!(!out.contains("Error"), "sender:\n{out}");
    let out = m.com(2).shell("async_recv")?;
    assert!(out.contains("Recv Channel Key: 153") && out.contains("Received X=10"), "receiver:\n{out}");
    // A key without a window stays inside its sandbox: created in sandbox 0, unknown in 1.
    let out = m.com(2).shell("shmcomm_errors")?;
    assert!(out.contains("errors: ") && !out.contains("UNEXPECTED"), "local channels in a sandbox:\n{out}");
    assert_eq!(power_off_both(&mut m)?, EXIT_SUCCESS);
    Ok(())
}

/// Inter-sandbox message latency under -icount (guest time): 100 messages over channel window
/// 154, 8 ms apart, polled on a (4 ms, 10 ms) Main VCPU around each expected arrival: every
/// one arrives, none is overwritten, and the worst one-way latency is far below the period.
#[test]
fn inter_sandbox_latency() -> Result<()> {
    let mut m = boot(false, true)?;
    m.com(2).send_line("qv_latency recv 100")?;
    let out = m.com(1).shell("qv_latency send 100")?;
    assert!(out.contains("qv_latency: sent 100 messages"), "{out}");
    let out = m.com(2).expect_prompt()?;
    println!("{out}");
    let line = out.lines().find(|l| l.contains("one-way latency")).context(out.clone())?;
    let n: u32 = line.split_whitespace().nth(1).context(line.to_string())?.parse()?;

    let us = |key: &str| -> Result<f64> {
        let s = line.split(key).nth(1).context(line.to_string())?;
        Ok(s.split('(').nth(1).context(line.to_string())?.split_whitespace().next().context(line.to_string())?.parse()?)
    };
    let (median, max) = (us("median ")?, us("max ")?);
    assert!(n == 100 && line.contains("(0 overwritten"), "messages lost: {line}");
    assert!(median < 500.0 && max < 2000.0, "latency beyond the bound: {line}");
    Ok(())
}

/// Steady state: over one second of guest time, with both consoles idle and a periodic
/// real-time task running in sandbox 0, the monitor counts no exit at all on either CPU.
#[test]
fn steady_state_makes_no_exits() -> Result<()> {
    let mut m = boot(true, true)?;
    let boot_exits = m.com(1).shell("vmexits")?;
    let out = m.com(1).shell("vmexits 1000")?;
    println!("exits since launch:\n{boot_exits}\nsteady state:\n{out}");
    let woke: u64 = out
        .lines()
        .find_map(|l| l.split("periodic task woke ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .context(out.clone())?
        .parse()?;
    assert!(woke >= 95, "the periodic task did not run every 10 ms:\n{out}");
    let mut cpus = 0;
    for l in out.lines().filter(|l| l.starts_with("vmexits: cpu ")) {
        let total: u64 = l.split(" total ").nth(1).and_then(|s| s.split_whitespace().next()).context(l.to_string())?.parse()?;
        assert_eq!(total, 0, "exits in steady state: {l}");
        cpus += 1;
    }
    assert_eq!(cpus, 2, "{out}");
    // Boot did exit (CPUID at least): the counters are live.
    assert!(boot_exits.lines().any(|l| l.contains("cpu 0 sandbox 0") && !l.contains("cpuid 0 ")), "{boot_exits}");
    assert_eq!(power_off_both(&mut m)?, EXIT_SUCCESS);
    Ok(())
}

/// Containment: sandbox 1 writes outside its memory and is stopped with a report naming the
/// sandbox, the reason and the address, while sandbox 0 runs a budget test: its Main VCPUs get
/// their shares, and its schedule trace shows every backlogged Main VCPU received its budget C
/// by each replenishment deadline (no missed budget).
#[test]
fn wild_write_stops_only_that_sandbox() -> Result<()> {
    let mut m = boot(true, true)?;
    m.com(1).send_line("ktest budget 0 2000")?;
    m.com(2).send_line("ktest wild 30000000")?;
    m.com(MONITOR).expect("sandbox quest1 (1): STOPPED on CPU 1: wrote guest-physical 0x30000000 outside its partition (not mapped)")?;
    let out = m.com(1).expect_prompt()?;
    let t = m.com(1).shell("trace 0")?;
    common::check_budget_run(&out, &t, "in the surviving sandbox")?;
    m.com(1).send_line("poweroff")?;
    m.com(MONITOR).expect("every sandbox has stopped; powering off")?;
    // Not every sandbox ended cleanly: the monitor reports failure.
    assert_eq!(m.wait_exit()?, EXIT_FAILURE);
    Ok(())
}

/// A triple fault in one sandbox stops it with a report; the other sandbox goes on.
#[test]
fn triple_fault_stops_only_that_sandbox() -> Result<()> {
    let mut m = boot(true, false)?;
    m.com(2).send_line("ktest triple")?;
    m.com(MONITOR).expect("sandbox quest1 (1): STOPPED on CPU 1: triple fault (shutdown)")?;
    let out = m.com(1).shell("echo still here")?;
    assert!(out.contains("still here"), "{out}");
    // A kernel fault in a sandbox: the kernel's own report, then its power-off stops it.
    m.com(1).send_line("ktest ud")?;
    m.com(1).expect("Invalid opcode")?;
    m.com(MONITOR).expect("sandbox quest0 (0): stopped on CPU 0: powered off (code 0x11)")?;
    m.com(MONITOR).expect("every sandbox has stopped; powering off")?;
    assert_eq!(m.wait_exit()?, EXIT_FAILURE);
    Ok(())
}

/// IPIs to another sandbox's core. With x2APIC (`-cpu max`) the monitor checks every ICR
/// write: an INIT to a core that is not the sender's own is refused and reported, and both
/// sandboxes go on. With xAPIC only (EPYC, as under `-icount`, and always for a Linux
/// sandbox) the sandbox has its APIC page mapped and the monitor sees nothing: a fixed
/// interrupt lands in the other sandbox unchecked, and an INIT to the other core resets the
/// whole machine. This is the known limit documented in docs/questv.md (Linux sandboxes).
#[test]
fn ipis_to_another_sandbox() -> Result<()> {
    // x2APIC: the monitor refuses the IPI and reports it; both sandboxes go on.
    let mut m = boot(true, false)?;
    let out = m.com(2).shell("ktest ipi 0 init")?;
    assert!(out.contains("(x2APIC)"), "{out}");
    m.com(MONITOR).expect("Quest-V: sandbox quest1 (1): IPI outside the sandbox refused (ICR 0x4500)")?;
    for com in [1, 2] {
        let out = m.com(com).shell("echo still here")?;
        assert!(out.contains("still here"), "{out}");
    }
    assert_eq!(power_off_both(&mut m)?, EXIT_SUCCESS);

    // xAPIC: nothing checks the sender; a fixed interrupt reaches the other sandbox (no report,
    // its kernel takes a stray interrupt) and both go on. (An INIT through the mapped page is
    // not tested: under TCG it reset the whole machine in one run and did nothing visible in
    // another — a known limit, docs/questv.md.)
    let mut m = boot(true, true)?;
    let out = m.com(2).shell("ktest ipi 0 240")?;
    assert!(out.contains("(xAPIC)") && out.contains("ipi sent"), "{out}");
    let out = m.com(1).shell("echo still here")?;
    assert!(out.contains("still here"), "{out}");
    assert!(!m.com(MONITOR).output().contains("IPI outside the sandbox refused"), "{}", m.com(MONITOR).output());
    assert_eq!(power_off_both(&mut m)?, EXIT_SUCCESS);
    Ok(())
}

/// A two-core sandbox: its kernel starts its second core through the monitor (INIT/STARTUP
/// IPIs become a real-mode launch of that core), threads run on both cores, and stopping the
/// sandbox stops both cores while the one-core sandbox beside it goes on.
#[test]
fn multi_core_sandbox() -> Result<()> {
    let mut cfg = config(true, false)?;
    cfg.iso = std::env::var_os("QUEST_QUESTV_SMP_ISO").map(Into::into).context("QUEST_QUESTV_SMP_ISO is not set")?;
    cfg.smp = 3;
    let mut m = QuestV::start(&cfg, 3)?;
    m.com(1).expect("Quest-V: sandbox 0 of 2 on CPU 0 (2 CPU(s))")?;
    m.com(1).expect("SMP: 2 CPU(s) online")?;
    m.com(1).expect_prompt()?;
    m.com(2).expect("Quest-V: sandbox 1 of 2 on CPU 2 (1 CPU(s))")?;
    m.com(2).expect_prompt()?;
    let out = m.com(1).shell("ktest smp 100")?;
    for cpu in 0..2 {
        let line = out.lines().find(|l| l.starts_with(&format!("smp: cpu {cpu} ran"))).context(out.clone())?;
        let n: u64 = line.split_whitespace().nth(4).context(line.to_string())?.parse()?;
        assert!(n > 0, "cpu {cpu} of the sandbox made no progress:\n{out}");
    }
    m.com(1).send_line("ktest wild 30000000")?;
    m.com(MONITOR).expect("sandbox big (0): STOPPED on CPU")?;
    let out = m.com(2).shell("echo still here")?;
    assert!(out.contains("still here"), "{out}");
    m.com(2).send_line("poweroff")?;
    m.com(MONITOR).expect("every sandbox has stopped; powering off")?;
    assert_eq!(m.wait_exit()?, EXIT_FAILURE);
    Ok(())
}

/// A plan that does not fit the machine (the image is built for 512 MiB; this machine has
/// 256 MiB) is refused at boot with the reason; nothing is launched.
#[test]
fn monitor_refuses_a_plan_that_does_not_fit() -> Result<()> {
    let mut cfg = config(false, false)?;
    cfg.mem_mib = 256;
    let mut m = QuestV::start(&cfg, 3)?;
    m.com(1).expect("the partition plan does not fit this machine")?;
    m.com(1).expect("Quest-V: refusing to start")?;
    assert_eq!(m.wait_exit()?, EXIT_FAILURE);
    let out = m.com(1).output();
    assert!(out.contains("beyond") || out.contains("exceeds") || out.contains("outside"), "{out}");
    assert!(!out.contains("Quest-RS"), "a sandbox started:\n{out}");
    Ok(())
}
