//! Boot and console tests: each boots a real ISO in QEMU and talks to the serial console.
use anyhow::Result;
use quest_tests::{Config, EXIT_FAILURE, Quest};

fn banner_checks(out: &str, firmware: &str) {
    assert!(out.contains(&format!("booted by GRUB")), "{out}");
    assert!(out.contains(&format!("via {firmware}")), "{out}");
    assert!(out.contains("CPUs: 1 found (ACPI MADT)"), "{out}");
    assert!(out.contains("memory map: "), "{out}");
    assert!(out.contains("heap: ok (Vec, Box, BTreeMap)"), "{out}");
}

#[test]
fn bios_boot_shows_banner_and_powers_off_cleanly() -> Result<()> {
    let q = Quest::boot(&Config::from_env(false)?)?;
    let out = q.power_off_ok()?;
    banner_checks(&out, "BIOS");
    assert!(out.contains("Quest-RS: powering off."), "{out}");
    Ok(())
}

#[test]
fn uefi_boot_shows_banner_and_powers_off_cleanly() -> Result<()> {
    let q = Quest::boot(&Config::from_env(false)?.uefi_from_env()?)?;
    let out = q.power_off_ok()?;
    banner_checks(&out, "UEFI");
    Ok(())
}

#[test]
fn smp_machine_reports_every_cpu() -> Result<()> {
    let mut cfg = Config::from_env(true)?;
    cfg.smp = 4;
    let mut q = Quest::boot(&cfg)?;
    let cpus = q.shell("cpus")?;
    assert!(cpus.contains("4 CPUs:"), "{cpus}");
    let out = q.power_off_ok()?;
    assert!(out.contains("CPUs: 4 found (ACPI MADT)"), "{out}");
    Ok(())
}

/// Typed input reaches the console through the UART's receive interrupt (the console only
/// reads the interrupt handler's buffer), including a long line that fills the UART FIFO many
/// times over.
#[test]
fn console_receives_typed_lines() -> Result<()> {
    let mut q = Quest::boot(&Config::from_env(true)?)?;
    assert_eq!(q.shell("echo hello quest")?.trim(), "hello quest");
    let long: String = (0..300).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    assert_eq!(q.shell(&format!("echo {long}"))?.trim(), long);
    let help = q.shell("help")?;
    assert!(help.contains("poweroff"), "{help}");
    let unknown = q.shell("frobnicate")?;
    assert!(unknown.contains("frobnicate: unknown command"), "{unknown}");
    q.power_off_ok()?;
    Ok(())
}

/// The serial console is a driver on the driver model: registered on COM1's ISA ports and IRQ
/// 4, its bottom half on an IO VCPU, its interrupts counted by the device (typed input goes
/// through its top half); `register` refuses what the model does not support (a PCI function,
/// an IRQ beyond 15, another UART) and ports that are not its device.
#[test]
fn serial_console_is_a_registered_driver() -> Result<()> {
    let mut q = Quest::boot(&Config::from_env(true)?)?;
    let d = q.shell("devices")?;
    assert!(d.contains("1 devices"), "{d}");
    let line = d.lines().find(|l| l.starts_with("serial: ")).unwrap_or_else(|| panic!("{d}"));
    assert!(line.contains("ISA ports 0x3f8-0x3ff, IRQ 4; bottom half on IO VCPU "), "{line}");
    let irqs: u32 = line.rsplit(';').next().unwrap().split_whitespace().next().unwrap().parse()?;
    assert!(irqs > 0, "typed input raised no interrupt through the device: {line}");
    let k = q.shell("ktest drivers")?;
    for want in [
        "drivers: PCI 00:1f.7: no such device",
        "drivers: ISA ports 0x3f8-0x3ff, IRQ 20: ISA IRQs beyond 15: not supported yet",
        "drivers: ISA ports 0x2f8-0x2ff, IRQ 3: a UART other than the console's: not supported yet",
        "drivers: ISA ports 0x60-0x64, IRQ 1: not a device of this driver",
        "drivers: 1 registered device(s); probe checks passed",
    ] {
        assert!(k.contains(want), "missing {want:?} in:\n{k}");
    }
    q.power_off_ok()?;
    Ok(())
}

/// Files given with `--add` (the harness adds tests/fixtures/hello.txt) are in /boot.
#[test]
fn boot_directory_holds_added_files() -> Result<()> {
    let mut q = Quest::boot(&Config::from_env(true)?)?;
    let ls = q.shell("ls")?;
    assert!(ls.contains("/boot/hello.txt"), "{ls}");
    let cat = q.shell("cat /boot/hello.txt")?;
    assert!(cat.contains("Hello from /boot"), "{cat}");
    let missing = q.shell("cat nope")?;
    assert!(missing.contains("no such file"), "{missing}");
    q.power_off_ok()?;
    Ok(())
}

#[test]
fn memory_accounting_is_consistent() -> Result<()> {
    let mut q = Quest::boot(&Config::from_env(true)?)?;
    let mem = q.shell("mem")?;
    // "frames: F of T free (...)": some frames are in use (page tables, heap), most are free.
    let nums: Vec<u64> = mem
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let (free, total) = (nums[0], nums[1]);
    assert!(free < total && free > total / 2, "{mem}");
    q.power_off_ok()?;
    Ok(())
}

fn fault_report(test: &str) -> Result<String> {
    let mut q = Quest::boot(&Config::from_env(true)?)?;
    q.send_line(&format!("ktest {test}"))?;
    let code = q.wait_exit()?;
    let out = q.output();
    assert_eq!(code, EXIT_FAILURE, "a kernel fault must stop the machine with the failure status:\n{out}");
    assert!(out.contains("system halted."), "{out}");
    Ok(out)
}

#[test]
fn kernel_page_fault_is_reported() -> Result<()> {
    let out = fault_report("pf")?;
    assert!(out.contains("!!! CPU EXCEPTION: Page fault (#PF, vector 14) in kernel mode"), "{out}");
    assert!(out.contains("CR2 (faulting address): 0x00000000dead0000 (read of a not-present page"), "{out}");
    for reg in ["RIP: ", "RSP: ", "RAX: ", "RBX: ", "RCX: ", "RDX: ", "RSI: ", "RDI: ", "RBP: ", "R8: ", "R15: "] {
        assert!(out.contains(reg), "missing {reg}: {out}");
    }
    // Symbolized backtrace through the frame-pointer chain.
    assert!(out.contains("<quest::ktest::page_fault+"), "{out}");
    assert!(out.contains("quest::console::run+"), "{out}");
    // The console is a kernel thread: the chain ends in the thread start-up code.
    assert!(out.contains("quest::sched::thread_start+"), "{out}");
    Ok(())
}

#[test]
fn kernel_stack_overflow_is_a_reported_double_fault() -> Result<()> {
    let out = fault_report("stack")?;
    assert!(out.contains("Double fault (#DF, vector 8)"), "{out}");
    assert!(out.contains("cause: kernel stack overflow"), "{out}");
    assert!(out.contains("quest::ktest::recurse+"), "{out}");
    Ok(())
}

#[test]
fn invalid_opcode_general_protection_and_divide_error_are_reported() -> Result<()> {
    for (t, name) in [
        ("ud", "Invalid opcode (#UD, vector 6)"),
        ("gp", "General protection fault (#GP, vector 13)"),
        ("de", "Divide error (#DE, vector 0)"),
    ] {
        let out = fault_report(t)?;
        assert!(out.contains(name), "{t}: {out}");
    }
    Ok(())
}

#[test]
fn kernel_panic_is_reported() -> Result<()> {
    let out = fault_report("panic")?;
    assert!(out.contains("!!! KERNEL PANIC: ktest: deliberate panic"), "{out}");
    assert!(out.contains("kernel/src/ktest.rs"), "{out}");
    assert!(out.contains("backtrace:"), "{out}");
    Ok(())
}

/// Without ACPI (QEMU's `pc` machine with `acpi=off`) the CPUs come from the MP table.
#[test]
fn mp_table_is_the_fallback_without_acpi() -> Result<()> {
    let mut cfg = Config::from_env(true)?;
    cfg.extra_args = vec!["-machine".into(), "pc,acpi=off".into()];
    let mut q = Quest::boot(&cfg)?;
    let cpus = q.shell("cpus")?;
    assert!(cpus.contains("(MP table):"), "{cpus}");
    assert!(q.output().contains("found (MP table; ACPI: the boot loader gave no ACPI RSDP)"), "{}", q.output());
    // Power-off without ACPI: QEMU's exit device still works.
    q.power_off_ok()?;
    Ok(())
}
