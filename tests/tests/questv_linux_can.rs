//! Quest-V device assignment to a Linux sandbox (tests/fixtures/questv-linux-can.toml): a
//! Quest sandbox (COM1, CPU 0) owns the `kvaser_pci` CAN controller at 00:04.0, Debian's stock
//! kernel (COM2, CPUs 1 and 2) the one at 00:06.0, both on one `-object can-bus`; COM3 is the monitor.
//! Linux drives its controller with Debian's own modules (kvaser_pci, sja1000, can-dev,
//! can-raw) and can-utils, its INTx line routed through the monitor's virtual IOAPIC; frames
//! cross both ways between Linux's `cansend`/`candump` and Quest's, every byte checked. Linux
//! keeps x2APIC (KVM's CPUID signature, no features), sees only its own controller, and its
//! CPUs make no exit for the frames' interrupts and none but its own IPIs while idle.
use std::time::Duration;

use anyhow::{Context, Result};
use quest_tests::{Config, QuestV};

const QUEST: usize = 1;
const LINUX: usize = 2;
const MONITOR: usize = 3;
const LINUX_PROMPT: &str = "linux:/# ";

fn config() -> Result<Config> {
    let mut cfg = Config::from_env(true)?;
    let var = "QUEST_QUESTV_LINUX_CAN_ISO";
    cfg.iso = std::env::var_os(var).map(Into::into).with_context(|| format!("{var} is not set: run the QEMU tests with `cargo xtask test --long`"))?;
    cfg.smp = 3;
    cfg.mem_mib = 512;
    cfg.timeout = cfg.timeout.max(Duration::from_secs(600));
    cfg.extra_args
        .extend(["-object", "can-bus,id=canbus0", "-device", "kvaser_pci,canbus=canbus0,addr=4", "-device", "kvaser_pci,canbus=canbus0,addr=6"].map(String::from));
    Ok(cfg)
}

/// Types `cmd` at the Linux shell and returns what it printed before the next prompt.
fn linux(m: &mut QuestV, cmd: &str) -> Result<String> {
    let c = m.com(LINUX);
    c.send_line(cmd)?;
    let out = c.expect(LINUX_PROMPT)?.replace('\r', "");
    Ok(out.split_once(cmd).map_or(&out[..], |(_, after)| after).trim().to_string())
}

/// candump's frame lines, blanks collapsed (Quest's candump and can-utils' print the same
/// fields; can-utils pads a standard identifier to the width of an extended one).
fn dump_lines(all: &str) -> Vec<String> {
    all.replace('\r', "").lines().filter_map(|l| l.find("can0  ").map(|i| l[i..].split_whitespace().collect::<Vec<_>>().join(" "))).collect()
}

/// Every byte value, standard and extended identifiers, an empty frame: (cansend argument,
/// candump line).
fn all_bytes() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for i in 0..32u32 {
        let data: Vec<u8> = (0..8).map(|k| (i * 8 + k) as u8).collect();
        let hex: String = data.iter().map(|b| format!("{b:02X}")).collect();
        let spaced: String = data.iter().map(|b| format!(" {b:02X}")).collect();
        let id = if i % 2 == 0 { format!("{:03X}", 0x100 + i) } else { format!("{:08X}", 0x1234_5600 + i) };
        v.push((format!("{id}#{hex}"), format!("  can0  {id}   [8] {spaced}")));
    }
    v.push(("7FF#".into(), "  can0  7FF   [0]".into()));
    v.push(("1FFFFFFF#11.22".into(), "  can0  1FFFFFFF   [2]  11 22".into()));
    v
}

/// Linux's CPUs.
const LINUX_CPUS: [u32; 2] = [1, 2];

/// The count after `name` in a `vmexits` line.
fn field(line: &str, name: &str) -> u64 {
    line.split(" | ").next().unwrap_or("").split_whitespace().collect::<Vec<_>>().windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse().ok()).unwrap_or(u64::MAX)
}

/// Quest's `vmexits ARGS` lines for Linux's CPUs.
fn linux_lines(m: &mut QuestV, args: &str) -> Result<Vec<String>> {
    let out = m.com(QUEST).shell(&format!("vmexits {args}").trim_end().to_string())?;
    LINUX_CPUS.iter().map(|c| out.lines().find(|l| l.starts_with(&format!("vmexits: cpu {c} "))).map(String::from).with_context(|| out.clone())).collect()
}

/// The sum of the count after `name` over Linux's CPUs since boot, and the lines.
fn exits(m: &mut QuestV, name: &str) -> Result<(u64, String)> {
    let lines = linux_lines(m, "")?;
    Ok((lines.iter().map(|l| field(l, name)).sum(), lines.join("\n")))
}

#[test]
#[ignore = "boots Debian's current kernel and fetches can-utils and iproute2: cargo xtask test --long"]
fn linux_drives_its_own_can_controller_beside_quest() -> Result<()> {
    let mut m = QuestV::start(&config()?, 3)?;
    m.com(QUEST).expect("Quest-V: sandbox 0 of 2 on CPU 0")?;
    m.com(QUEST).expect_prompt()?;
    let mon = m.com(MONITOR).expect("Quest-V: 3 CPU(s) online")?;
    assert!(mon.contains("Quest-V: PCI 00:06.0 [10e8:8406] -> sandbox linux (1), INTx on IRQ"), "{mon}");
    assert!(!mon.contains("noapic"), "no noapic for a Linux sandbox with PCI functions: {mon}");

    let log = m.com(LINUX).expect("Quest-V Linux sandbox: Linux ")?;
    m.com(LINUX).expect(LINUX_PROMPT)?;
    assert!(!log.contains("Kernel panic"), "{log}");
    // Long command lines stay on one line of the echo; the kernel's late messages stay off
    // the console (they would land in the middle of command output).
    linux(&mut m, "stty cols 1000; dmesg -n 1")?;
    let (npf_boot, boot) = exits(&mut m, "npf")?;
    println!("Linux CPU at boot: {boot}");
    assert!(npf_boot > 0, "Linux programmed its IOAPIC through the monitor: {boot}");

    // x2APIC kept without interrupt remapping: Linux found "KVM" (no features) and so kept the
    // mode the monitor entered it in, with physical destinations; it found the IOAPIC.
    let dmesg = linux(&mut m, "dmesg | grep -i -e x2apic -e 'APIC routing' -e 'Hypervisor detected' -e IOAPIC -e 'kvm' -e 'PCI.*INT' -e PRT")?;
    println!("{dmesg}");
    assert!(dmesg.contains("Hypervisor detected: KVM"), "{dmesg}");
    assert!(dmesg.contains("physical x2apic"), "{dmesg}");
    assert!(!dmesg.contains("IRQ remapping doesn't support X2APIC mode"), "{dmesg}");
    assert!(dmesg.contains("IOAPIC[0]: apic_id 0, version 32, address 0xfec00000, GSI 0-23"), "{dmesg}");
    assert!(!dmesg.to_lowercase().contains("kvm-clock") && !dmesg.contains("steal") && !dmesg.contains("PV IPI"), "no KVM paravirtual feature in use: {dmesg}");
    assert!(dmesg.contains("PV spinlocks disabled, forced by \"nopvspin\" parameter"), "native queued spinlocks: {dmesg}");
    assert_eq!(linux(&mut m, "grep -c ^processor /proc/cpuinfo")?, "2");

    // Linux sees the host bridge and its own controller only.
    let pci = linux(&mut m, "ls /sys/bus/pci/devices")?;
    assert_eq!(pci.split_whitespace().collect::<Vec<_>>(), ["0000:00:00.0", "0000:00:06.0"], "{pci}");
    let ids = linux(&mut m, "cat /sys/bus/pci/devices/0000:00:06.0/vendor /sys/bus/pci/devices/0000:00:06.0/device")?;
    assert_eq!(ids.split_whitespace().collect::<Vec<_>>(), ["0x10e8", "0x8406"]);

    // Debian's modules, then the interface at 500 kbit/s.
    let ins = linux(&mut m, "for x in $(cat /lib/modules/can.order); do insmod /lib/modules/$x.ko || echo \"insmod $x failed\"; done; echo loaded")?;
    assert!(!ins.contains("failed") && ins.ends_with("loaded"), "{ins}");
    let mods = linux(&mut m, "cat /proc/modules | cut -d' ' -f1 | sort | tr '\\n' ' '")?;
    for want in ["can", "can_dev", "can_raw", "kvaser_pci", "sja1000"] {
        assert!(mods.split_whitespace().any(|x| x == want), "{want} not loaded: {mods}");
    }
    let v = linux(&mut m, "/sbin/ip -V")?;
    assert!(v.contains("iproute2"), "Debian's ip, not busybox's: {v}");
    let up = linux(&mut m, "/sbin/ip link set can0 up type can bitrate 500000; echo rc=$?")?;
    assert!(up.ends_with("rc=0"), "{up}");
    let details = linux(&mut m, "/sbin/ip -details link show can0")?;
    assert!(details.contains("bitrate 500000") && details.contains("state UP"), "{details}");
    let irq = linux(&mut m, "grep -i -e can0 -e kvaser /proc/interrupts")?;
    println!("{irq}");
    assert!(irq.contains("IO-APIC") && irq.contains("fasteoi"), "the INTx line through the virtual IOAPIC, level: {irq}");

    let (npf0, line0) = exits(&mut m, "npf")?;
    println!("Linux CPU after set-up: {line0}");

    // Quest -> Linux: every byte value.
    let frames = all_bytes();
    linux(&mut m, &format!("candump -n {} can0 > /tmp/rx & echo started", frames.len()))?;
    std::thread::sleep(Duration::from_millis(500));
    for (send, _) in &frames {
        let out = m.com(QUEST).shell(&format!("cansend can0 {send}"))?;
        assert!(!out.contains("cansend:"), "{out}");
    }
    let rx = linux(&mut m, "wait; cat /tmp/rx")?;
    println!("Linux's candump:\n{rx}");
    let want: Vec<String> = frames.iter().map(|f| f.1.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(dump_lines(&rx), want, "Linux's candump");

    // Linux -> Quest.
    let before = m.com(QUEST).output().len();
    m.com(QUEST).send_line(&format!("candump -n {} can0", frames.len()))?;
    std::thread::sleep(Duration::from_millis(500));
    for (send, _) in &frames {
        let out = linux(&mut m, &format!("cansend can0 {send}; echo rc=$?"))?;
        assert!(out.ends_with("rc=0"), "{out}");
    }
    m.com(QUEST).expect_prompt()?;
    let got = dump_lines(&m.com(QUEST).output()[before..]);
    assert_eq!(got, want, "Quest's candump");

    // Interrupts with no exit: the receive and transmit interrupts of 68 frames on Linux's CPU
    // (the EOI is its local APIC's, which the real IOAPIC hears).
    let (npf1, line1) = exits(&mut m, "npf")?;
    println!("Linux CPU after 2 x {} frames: {line1}", frames.len());
    println!("virtual IOAPIC accesses during the frames: {}", npf1 - npf0);
    assert_eq!(npf1, npf0, "no IOAPIC access per frame: {line0} -> {line1}");
    let stats = linux(&mut m, "/sbin/ip -s link show can0")?;
    println!("{stats}");
    // Each frame's interrupt was acknowledged once, with no storm on the level-triggered line.
    let irq = linux(&mut m, "grep can0 /proc/interrupts")?;
    let n: u64 = irq.split_whitespace().skip(1).take(LINUX_CPUS.len()).map(|c| c.parse::<u64>().unwrap_or(u64::MAX / 4)).sum();
    println!("can0 interrupts after 68 frames: {n} ({irq})");
    assert!((68..=300).contains(&n), "{irq}");
    let cared = linux(&mut m, "dmesg | grep -c 'nobody cared'")?;
    assert_eq!(cared, "0");

    // The virtual IOAPIC from root's /dev/mem: the pin of Quest's controller (IRQ 10) reads
    // masked and ignores writes; Linux's own pin (IRQ 11) aimed at Quest's core is refused,
    // reported and masked; put back, Linux's controller works again.
    let rd = |m: &mut QuestV, reg: u32| -> Result<u32> {
        let out = linux(m, &format!("devmem 0xfec00000 32 {reg:#x}; devmem 0xfec00010 32"))?;
        let v = out.lines().last().unwrap_or("").trim().trim_start_matches("0x").to_string();
        u32::from_str_radix(&v, 16).with_context(|| out.clone())
    };
    assert_eq!(rd(&mut m, 0x01)?, 0x0017_0020, "version 0x20, 24 pins");
    linux(&mut m, "devmem 0xfec00000 32 0x24; devmem 0xfec00010 32 0x30")?;
    assert_eq!(rd(&mut m, 0x24)?, 0x0001_0000, "Quest's pin stays masked for Linux");
    let own_high = rd(&mut m, 0x27)?;
    let own_low = rd(&mut m, 0x26)?;
    println!("Linux's entry for pin 11: {own_high:#010x}_{own_low:08x}");
    assert_eq!(own_low & 0x1_8000, 0x8000, "unmasked, level-triggered: {own_low:#x}");
    linux(&mut m, "devmem 0xfec00000 32 0x27; devmem 0xfec00010 32 0")?;
    m.com(MONITOR).expect("IOAPIC pin 11 entry")?;
    let mon = m.com(MONITOR).expect("not one of its cores")?;
    assert!(mon.contains("destination APIC id 0"), "{mon}");
    linux(&mut m, &format!("devmem 0xfec00000 32 0x27; devmem 0xfec00010 32 {own_high:#x}"))?;
    assert_eq!(rd(&mut m, 0x27)?, own_high);
    let few = &frames[..2];
    linux(&mut m, &format!("candump -n {} can0 > /tmp/rx2 & echo started", few.len()))?;
    std::thread::sleep(Duration::from_millis(500));
    for (send, _) in few {
        m.com(QUEST).shell(&format!("cansend can0 {send}"))?;
    }
    let rx = linux(&mut m, "wait; cat /tmp/rx2")?;
    assert_eq!(dump_lines(&rx), want[..2], "Linux's candump after its entry was put back");
    let before = m.com(QUEST).output().len();
    m.com(QUEST).send_line(&format!("candump -n {} can0", few.len()))?;
    std::thread::sleep(Duration::from_millis(500));
    for (send, _) in few {
        linux(&mut m, &format!("cansend can0 {send}"))?;
    }
    m.com(QUEST).expect_prompt()?;
    assert_eq!(dump_lines(&m.com(QUEST).output()[before..]), want[..2], "Quest's controller untouched");

    // Idle: over 1 s of guest time no exit on Linux's CPUs but the IPIs its kernel sends between
    // them (x2APIC ICR writes the monitor checks). Without its queshe daemon: with no queshe
    // channel in this sandbox, qshd's janitor asks CPUID for channel windows every 50 ms (40
    // exits a second, measured; user/linux/qshd.c), which is not the kernel's doing.
    linux(&mut m, "kill $(pidof qshd); echo killed")?;
    for line in linux_lines(&mut m, "1000")? {
        println!("idle: {line}");
        assert_eq!(field(&line, "total"), field(&line, "msr"), "an exit other than an IPI: {line}");
    }

    // Linux never reached for Quest's controller, and nothing stopped. (Its PCI probes write
    // to functions nobody owns at boot, which the monitor drops and reports.)
    let mon = m.com(MONITOR).output();
    for l in mon.lines().filter(|l| l.contains("refused")) {
        println!("{l}");
        assert!(!l.contains("00:04.0") && !l.contains("sandbox quest"), "{l}");
        assert!(!l.contains("IOAPIC") || l.contains("IOAPIC pin 11 entry 0x00000000_"), "only the refusal provoked above: {l}");
    }
    assert!(!mon.contains("STOPPED"), "{mon}");
    Ok(())
}
