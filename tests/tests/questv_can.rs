//! Quest-V device assignment: two Quest sandboxes (tests/fixtures/questv-can.toml, the test
//! build's kernel console), each owning one of two `kvaser_pci` CAN controllers on one
//! `-object can-bus`: 00:04.0 is sandbox can0's, 00:06.0 sandbox can1's (COM3 = the monitor).
//! Each sandbox sees only its own controller (as its /dev/can0) and the host bridge; frames
//! cross between the sandboxes through the emulated bus; a sandbox that pokes the other's
//! controller (configuration write, I/O ports) is refused and reported, and the other's
//! traffic goes on.
use anyhow::{Context, Result};
use quest_tests::{Config, EXIT_SUCCESS, QuestV};

const MONITOR: usize = 3;

fn config(devices: bool) -> Result<Config> {
    let mut cfg = Config::from_env(true)?;
    let var = "QUEST_QUESTV_CAN_ISO";
    cfg.iso = std::env::var_os(var).map(Into::into).with_context(|| format!("{var} is not set: run the QEMU tests with `cargo xtask test`"))?;
    cfg.smp = 2;
    cfg.mem_mib = 512;
    if devices {
        cfg.extra_args.extend(
            ["-object", "can-bus,id=canbus0", "-device", "kvaser_pci,canbus=canbus0,addr=4", "-device", "kvaser_pci,canbus=canbus0,addr=6", "-device", "edu,addr=5"]
                .map(String::from),
        );
    }
    Ok(cfg)
}

fn boot() -> Result<QuestV> {
    let mut m = QuestV::start(&config(true)?, 3)?;
    for (com, id) in [(1, 0), (2, 1)] {
        let c = m.com(com);
        c.expect(&format!("Quest-V: sandbox {id} of 2 on CPU {id}"))?;
        c.expect_prompt()?;
    }
    m.com(MONITOR).expect("Quest-V: 2 CPU(s) online")?;
    Ok(m)
}

/// candump's lines (whatever precedes them on their line).
fn dump_lines(all: &str) -> Vec<String> {
    all.replace('\r', "").lines().filter_map(|l| l.find("  can0  ").map(|i| l[i..].to_string())).collect()
}

/// Sends `frames` (cansend syntax) from COM `from` while candump in COM `to` waits for them;
/// returns candump's lines and the lines expected.
fn exchange(m: &mut QuestV, from: usize, to: usize, frames: &[(String, String)]) -> Result<(Vec<String>, Vec<String>)> {
    let before = m.com(to).output().len();
    m.com(to).send_line(&format!("candump -n {} can0", frames.len()))?;
    let mut want = Vec::new();
    for (send, shown) in frames {
        let out = m.com(from).shell(&format!("cansend can0 {send}"))?;
        assert!(!out.contains("cansend:"), "{out}");
        want.push(shown.clone());
    }
    m.com(to).expect_prompt()?;
    let got = dump_lines(&m.com(to).output()[before..]);
    Ok((got, want))
}

/// The monitor's counters line for CPU `cpu`, read from COM1.
fn exits(m: &mut QuestV, cpu: u32) -> Result<String> {
    let out = m.com(1).shell("vmexits")?;
    out.lines().find(|l| l.starts_with(&format!("vmexits: cpu {cpu} "))).map(String::from).with_context(|| out.clone())
}

/// The count after `name` in a `vmexits` line.
fn field(line: &str, name: &str) -> u64 {
    line.split(" | ").next().unwrap_or("").split_whitespace().collect::<Vec<_>>().windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse().ok()).unwrap_or(u64::MAX)
}

/// Every byte value, standard and extended identifiers.
fn all_bytes() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for i in 0..32u32 {
        let data: Vec<u8> = (0..8).map(|k| (i * 8 + k) as u8).collect();
        let hex: String = data.iter().map(|b| format!("{b:02X}")).collect();
        let spaced: String = data.iter().map(|b| format!(" {b:02X}")).collect();
        let id = if i % 2 == 0 { format!("{:03X}", 0x100 + i) } else { format!("{:08X}", 0x1234_5600 + i) };
        v.push((format!("{id}#{hex}"), format!("  can0  {id}   [8] {spaced}")));
    }
    v.push(("7FF#".into(), "  can0  7FF   [0] ".into()));
    v.push(("1FFFFFFF#11.22".into(), "  can0  1FFFFFFF   [2]  11 22".into()));
    v
}

#[test]
fn frames_cross_between_two_sandboxes_each_owning_a_controller() -> Result<()> {
    let mut m = boot()?;
    let monitor = m.com(MONITOR).output();
    assert!(monitor.contains("Quest-V: PCI 00:04.0 [10e8:8406] -> sandbox can0 (0), INTx on IRQ"), "{monitor}");
    assert!(monitor.contains("Quest-V: PCI 00:06.0 [10e8:8406] -> sandbox can1 (1), INTx on IRQ"), "{monitor}");
    assert!(monitor.contains("Quest-V: PCI 00:05.0 [1234:11e8] -> sandbox can0 (0)"), "{monitor}");
    for (com, mine, other, count) in [(1, "00:04.0", "00:06.0", 3), (2, "00:06.0", "00:04.0", 2)] {
        let boot = m.com(com).output();
        assert!(boot.contains(&format!("can0: kvaser_pci at {mine}")), "COM{com}: {boot}");
        assert!(!boot.contains("can1: kvaser_pci"), "COM{com}: {boot}");
        // The listing: the host bridge and its own controller, nothing else.
        let out = m.com(com).shell("pci")?;
        assert!(out.contains(&format!("pci: {count} function(s) via configuration mechanism 1 (through the Quest-V monitor)")), "COM{com}: {out}");
        assert_eq!(out.contains("00:05.0 "), com == 1, "COM{com}: {out}");
        assert!(out.contains("00:00.0 ") && out.contains(&format!("{mine} Unassigned class [ff00]: 10e8:8406")), "COM{com}: {out}");
        assert!(!out.contains(other), "COM{com}: {out}");
        // No second controller.
        let out = m.com(com).shell("candump -n 1 can1")?;
        assert!(out.contains("candump: /dev/can1: No such device"), "COM{com}: {out}");
    }
    // Sandbox can0 to sandbox can1, every byte checked, then back. The receiving sandbox's
    // device ports and interrupts cost no exits: no I/O exit on its CPU meanwhile (its
    // controller's ports, its console UART are its own; the interrupt and its EOI need none).
    let before = exits(&mut m, 1)?;
    let (got, want) = exchange(&mut m, 1, 2, &all_bytes())?;
    assert_eq!(got, want);
    let after = exits(&mut m, 1)?;
    eprintln!("CPU 1 exits before the 34 frames: {before}\nafter: {after}");
    assert_eq!(field(&before, "io"), field(&after, "io"), "before: {before}\nafter: {after}");
    assert_eq!(field(&after, "npf"), 0, "{after}");
    let back: Vec<(String, String)> = all_bytes().into_iter().rev().take(5).collect();
    let (got, want) = exchange(&mut m, 2, 1, &back)?;
    assert_eq!(got, want);
    // No configuration access was refused along the way.
    assert!(!m.com(MONITOR).output().contains("refused"), "{}", m.com(MONITOR).output());
    for com in [1, 2] {
        m.com(com).send_line("poweroff")?;
    }
    m.com(MONITOR).expect("every sandbox has stopped; powering off")?;
    assert_eq!(m.wait_exit()?, EXIT_SUCCESS);
    Ok(())
}

#[test]
fn a_sandbox_cannot_touch_the_other_sandboxs_controller() -> Result<()> {
    let mut m = boot()?;
    let monitor = m.com(MONITOR).output();
    // Sandbox can0's SJA1000 registers: BAR1 of 00:04.0.
    let line = monitor.lines().find(|l| l.contains("Quest-V: PCI 00:04.0")).context("no assignment line")?.to_string();
    let bar1 = line.split("BAR1 I/O ").nth(1).and_then(|s| s.split('-').next()).context(line.clone())?;
    let sja = u16::from_str_radix(bar1.trim_start_matches("0x"), 16)?;
    // can0's edu device: its memory BAR.
    let line = monitor.lines().find(|l| l.contains("Quest-V: PCI 00:05.0")).context("no assignment line")?.to_string();
    let bar0 = line.split("BAR0 memory ").nth(1).and_then(|s| s.split("..").next()).context(line.clone())?;
    let edu = u64::from_str_radix(&bar0.trim_start_matches("0x").replace('_', ""), 16)?;
    // Its owner reaches it (the nested page tables map it; a miss would stop can0).
    let out = m.com(1).shell(&format!("ktest wild {edu:x}"))?;
    assert!(out.contains(&format!("ktest: the write to {edu:#x} went through")), "{out}");

    // A configuration write (turning its decoding off) from sandbox can1: refused, reported.
    let out = m.com(2).shell("ktest pcipoke 00:04.0")?;
    assert!(out.contains("command register now reads 0xffff"), "{out}");
    m.com(MONITOR).expect("Quest-V: sandbox can1 (1): PCI configuration write to 00:04.0 offset 0x4 refused: not one of its PCI functions")?;
    // The SJA1000's mode register: a write would put it in reset mode (off the bus).
    let out = m.com(2).shell(&format!("ktest port {sja:x} 1"))?;
    assert!(out.contains("ktest: wrote 0x01"), "{out}");
    m.com(MONITOR).expect(&format!("Quest-V: sandbox can1 (1): I/O port {sja:#x} (write) refused: a BAR of PCI 00:04.0, which sandbox can0 owns"))?;
    let out = m.com(2).shell(&format!("ktest port {:x}", sja + 2))?;
    assert!(out.contains("reads 0xff"), "{out}");
    m.com(MONITOR).expect(&format!("I/O port {:#x} (read) refused: a BAR of PCI 00:04.0, which sandbox can0 owns", sja + 2))?;
    // Its own controller is left alone by the kernel's port probe (claimed by its driver).
    let own = m.com(MONITOR).output();
    let own_line = own.lines().find(|l| l.contains("Quest-V: PCI 00:06.0")).context("no assignment line")?.to_string();
    let own_bar1 = own_line.split("BAR1 I/O ").nth(1).and_then(|s| s.split('-').next()).context(own_line.clone())?;
    let out = m.com(2).shell(&format!("ktest port {}", own_bar1.trim_start_matches("0x")))?;
    assert!(out.contains("refused port") && out.contains("a device this kernel drives"), "{out}");

    // Sandbox can0's controller still works, both ways.
    let frames: Vec<(String, String)> = all_bytes().into_iter().take(6).collect();
    let (got, want) = exchange(&mut m, 2, 1, &frames)?;
    assert_eq!(got, want);
    let (got, want) = exchange(&mut m, 1, 2, &frames)?;
    assert_eq!(got, want);
    assert!(!m.com(MONITOR).output().contains("STOPPED"), "{}", m.com(MONITOR).output());
    // can1 writing can0's edu registers: stopped, the owner named; can0 goes on.
    m.com(2).send_line(&format!("ktest wild {edu:x}"))?;
    m.com(MONITOR).expect(&format!("Quest-V: sandbox can1 (1): STOPPED on CPU 1: wrote guest-physical {edu:#x} outside its partition (not mapped)"))?;
    m.com(MONITOR).expect("(a BAR of PCI 00:05.0, which sandbox can0 owns)")?;
    let out = m.com(1).shell("pci")?;
    assert!(out.contains("00:04.0 Unassigned class [ff00]: 10e8:8406"), "{out}");
    Ok(())
}

#[test]
fn monitor_refuses_an_assigned_function_that_is_not_there() -> Result<()> {
    // The same image on a machine without the two controllers.
    // (Reported on the monitor's console, COM3: the check follows the console's move.)
    let mut m = QuestV::start(&config(false)?, 3)?;
    m.com(MONITOR).expect("Quest-V: refusing to start")?;
    assert_eq!(m.wait_exit()?, quest_tests::EXIT_FAILURE);
    let out = m.com(MONITOR).output();
    assert!(out.contains("the PCI assignment does not fit this machine"), "{out}");
    assert!(out.contains("sandbox 'can0' PCI function 00:04.0 does not exist on this machine"), "{out}");
    assert!(out.contains("sandbox 'can0' PCI function 00:05.0 does not exist on this machine"), "{out}");
    assert!(out.contains("sandbox 'can1' PCI function 00:06.0 does not exist on this machine"), "{out}");
    assert!(!out.contains("Quest-RS"), "a sandbox started:\n{out}");
    Ok(())
}
