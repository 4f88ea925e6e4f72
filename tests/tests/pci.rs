//! PCI: enumeration through ECAM (q35's MCFG) checked against configuration mechanism 1, BAR
//! sizing of I/O and memory BARs, the lspci-like `pci` listing, interrupts by MSI and by INTx
//! through the IOAPIC (QEMU's `edu` device raises them on demand), and an interrupt storm that
//! the kernel masks and survives.
use anyhow::Result;
use quest_tests::{Config, Quest};

fn boot_with(devices: &[&str]) -> Result<Quest> {
    let mut cfg = Config::from_env(true)?;
    for d in devices {
        let (k, v) = d.split_once(' ').unwrap();
        cfg.extra_args.push(k.into());
        cfg.extra_args.push(v.into());
    }
    Quest::boot(&cfg)
}

#[test]
fn functions_are_listed_sized_and_interrupt_by_msi_and_intx() -> Result<()> {
    let mut q = boot_with(&["-device edu", "-device edu", "-object can-bus,id=canbus0", "-device kvaser_pci,canbus=canbus0"])?;
    let boot = q.output();
    assert!(boot.contains("via ECAM (ACPI MCFG)"), "{boot}");

    let out = q.shell("pci -v")?;
    // q35's host bridge, the two edu devices and the Kvaser card.
    assert!(out.contains("00:00.0 Host bridge [0600]: 8086:29c0"), "{out}");
    assert_eq!(out.matches("1234:11e8").count(), 2, "{out}");
    let kvaser = out.split("10e8:8406").nth(1).expect("kvaser_pci listed");
    let kvaser: Vec<&str> = kvaser.lines().skip(1).take_while(|l| l.starts_with('\t')).collect();
    assert!(kvaser.iter().any(|l| l.contains("Interrupt: pin A routed to IRQ")), "{kvaser:?}");
    for (bar, size) in [("BAR0", "0x80"), ("BAR1", "0x80"), ("BAR2", "0x8")] {
        assert!(kvaser.iter().any(|l| l.contains(&format!("{bar} I/O ports 0x")) && l.ends_with(&format!("[size={size}]"))), "{bar}: {kvaser:?}");
    }
    let edu = out.split("1234:11e8").nth(1).unwrap();
    assert!(edu.lines().any(|l| l.contains("BAR0 memory at 0x") && l.contains("32-bit, non-prefetchable) [size=0x100000]")), "{out}");
    assert!(edu.lines().take(5).any(|l| l.contains("Capabilities: MSI")), "{out}");

    let out = q.shell("ktest pcicmp")?;
    assert!(out.contains("and mechanism 1 agree on "), "{out}");

    let out = q.shell("ktest pci")?;
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("pci: edu")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("(MSI vector 0x") && lines[0].contains("3 of 3 interrupts handled, 3 claimed, bottom half ran yes"), "{out}");
    assert!(lines[1].contains("(INTx, IRQ ") && lines[1].contains("3 of 3 interrupts handled, 3 claimed, bottom half ran yes"), "{out}");
    assert!(out.contains("interrupt storm (10000 interrupts in a row no driver claimed): line masked, left alone: edu (PCI "), "{out}");
    assert!(out.contains("masked after 1000") && out.contains("; kernel goes on"), "{out}");
    // The kernel goes on.
    assert_eq!(q.shell("echo still here")?.trim(), "still here");
    let out = q.shell("devices")?;
    assert!(out.contains("edu: PCI") && out.contains("(MSI vector"), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// The i440FX machine (`-machine pc`) has no MCFG: enumeration goes through configuration
/// mechanism 1, and both interrupt paths work there too (PIIX routes INTx to ISA IRQs).
#[test]
fn mechanism_1_without_mcfg() -> Result<()> {
    let mut q = boot_with(&["-machine pc", "-device edu", "-device edu"])?;
    let boot = q.output();
    assert!(boot.contains("via configuration mechanism 1 (ports 0xcf8/0xcfc)"), "{boot}");
    let out = q.shell("pci")?;
    assert!(out.contains("00:00.0 Host bridge [0600]: 8086:1237"), "{out}");
    assert!(out.contains("ISA bridge [0601]: 8086:7000"), "{out}");
    assert_eq!(out.matches("1234:11e8").count(), 2, "{out}");
    assert!(q.shell("ktest pcicmp")?.contains("no ECAM window in use"));
    let out = q.shell("ktest pci")?;
    assert_eq!(out.matches("3 of 3 interrupts handled, 3 claimed, bottom half ran yes").count(), 2, "{out}");
    assert!(out.contains("(MSI vector 0x") && out.contains("(INTx, IRQ "), "{out}");
    q.power_off_ok()?;
    Ok(())
}

/// Under UEFI (OVMF writes the Interrupt Line registers too): enumeration and both interrupt
/// paths.
#[test]
fn interrupts_under_uefi() -> Result<()> {
    let mut cfg = Config::from_env(true)?.uefi_from_env()?;
    cfg.extra_args.extend(["-device".into(), "edu".into(), "-device".into(), "edu".into()]);
    let mut q = Quest::boot(&cfg)?;
    let out = q.shell("ktest pci")?;
    assert_eq!(out.matches("3 of 3 interrupts handled, 3 claimed, bottom half ran yes").count(), 2, "{out}");
    q.power_off_ok()?;
    Ok(())
}
