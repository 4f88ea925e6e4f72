//! Running a sandbox: each core's launch into its sandbox and the exit loop — the few exits
//! the policy intercepts (`monitor_core::policy`), hypercalls, and stopping a sandbox with a
//! report.
use super::*;

/// Every core: run this core's sandbox, or idle.
pub(crate) fn cpu_main(cpu: usize) -> ! {
    hal::cpu::disable_interrupts();
    let id = CPU_SANDBOX.get(cpu).map_or(NO_SANDBOX, |a| a.load(Ordering::Relaxed));
    let Some(rt) = SANDBOXES.get().and_then(|s| s.get(id as usize)) else {
        hal::cpu::halt_forever()
    };
    let boot_cpu = rt.view.cpu as usize == cpu;
    let vector = if boot_cpu {
        None
    } else {
        // An application processor of the sandbox: wait for its kernel's STARTUP IPI.
        loop {
            if matches!(rt.state.load(Ordering::Acquire), POWERED_OFF | STOPPED) {
                hal::cpu::halt_forever();
            }
            let v = SIPI[cpu].load(Ordering::Acquire);
            if v != 0 {
                break Some((v - 1) as u8);
            }
            core::hint::spin_loop();
        }
    };
    match launch(cpu, rt, vector) {
        Ok(never) => match never {},
        Err(e) => {
            stop(cpu, rt, STOPPED, &format!("cannot launch: {e}"));
            hal::cpu::halt_forever()
        }
    }
}

pub(crate) struct Vcpu {
    vmcb: PhysRegion,
    host_extra: PhysRegion,
    regs: GuestRegs,
}

impl Vcpu {
    fn get(&self, off: usize) -> u64 {
        self.vmcb.read_u64(off as u64)
    }
    fn set(&self, off: usize, v: u64) {
        self.vmcb.write_u64(off as u64, v)
    }
}

pub(crate) fn launch(cpu: usize, rt: &'static SandboxRt, ap_vector: Option<u8>) -> Result<core::convert::Infallible, &'static str> {
    let hsave = PhysRegion::alloc(1, 1).ok_or("out of memory for the host save area")?;
    hal::svm::enable(&hsave)?;
    let v = Vcpu {
        vmcb: PhysRegion::alloc(1, 1).ok_or("out of memory for the VMCB")?,
        host_extra: PhysRegion::alloc(1, 1).ok_or("out of memory for the host state")?,
        regs: match (ap_vector, rt.entry) {
            (None, Entry::Multiboot { mbi, .. }) => GuestRegs { rbx: mbi, ..GuestRegs::default() },
            (None, Entry::Linux { zero_page, .. }) => GuestRegs { rsi: zero_page, ..GuestRegs::default() },
            (Some(_), _) => GuestRegs::default(),
        },
    };
    let (entry, mbi) = match rt.entry {
        Entry::Multiboot { entry, mbi } => (entry, mbi as u32),
        Entry::Linux { entry, .. } => (entry, 0),
    };
    let setup = vmcb::Setup { asid: u32::from(rt.id) + 1, iopm: rt.iopm.phys(), msrpm: rt.msrpm.phys(), ncr3: rt.ncr3, entry, mbi };
    let image = match (ap_vector, rt.entry) {
        (None, Entry::Multiboot { .. }) => vmcb::boot_vmcb(&setup),
        (None, Entry::Linux { .. }) => vmcb::linux_vmcb(&setup),
        (Some(vector), _) => vmcb::ap_vmcb(&setup, vector),
    };
    v.vmcb.write(0, &image.0[..]);
    if ap_vector.is_none() {
        rt.state.store(RUNNING, Ordering::Release);
    }
    IN_GUEST[cpu].store(true, Ordering::Release);
    run(cpu, rt, v)
}

pub(crate) fn count(cpu: usize, r: ExitReason) {
    COUNTERS[cpu][r as usize].fetch_add(1, Ordering::Relaxed);
}

/// The exit loop.
pub(crate) fn run(cpu: usize, rt: &'static SandboxRt, mut v: Vcpu) -> ! {
    loop {
        hal::svm::run(&v.vmcb, &v.host_extra, &mut v.regs);
        let t0 = hal::time::now_ns();
        // The first VMRUN flushed this ASID's TLB; later ones need not.
        v.vmcb.write(ctl::TLB_CONTROL as u64, &[0]);
        let exit = vmcb::decode_exit(v.get(ctl::EXITCODE), v.get(ctl::EXITINFO1), v.get(ctl::EXITINFO2));
        count(cpu, exit.reason());
        if rt.state.load(Ordering::Acquire) != RUNNING {
            // Stopped from another core (its INIT brought us here): halt with it.
            hal::cpu::halt_forever();
        }
        if let Err(why) = handle(cpu, rt, &mut v, exit) {
            stop(cpu, rt, STOPPED, &why);
            hal::cpu::halt_forever();
        }
        if rt.state.load(Ordering::Acquire) != RUNNING {
            hal::cpu::halt_forever();
        }
        MONITOR_NS[cpu][exit.reason() as usize].fetch_add(hal::time::now_ns().saturating_sub(t0), Ordering::Relaxed);
    }
}

/// Handles one exit; `Err` stops the sandbox with that report.
pub(crate) fn handle(cpu: usize, rt: &SandboxRt, v: &mut Vcpu, exit: Exit) -> Result<(), String> {
    let rip = v.get(save::RIP);
    match exit {
        Exit::Cpuid => {
            let leaf = v.get(save::RAX) as u32;
            let sub = v.regs.rcx as u32;
            let h = hal::cpu::cpuid(leaf, sub);
            let mut view = rt.view.clone();
            view.cpu = cpu as u32;
            let [a, b, c, d] = policy::cpuid(&view, leaf, sub, [h.eax, h.ebx, h.ecx, h.edx]);
            v.set(save::RAX, u64::from(a));
            v.regs.rbx = u64::from(b);
            v.regs.rcx = u64::from(c);
            v.regs.rdx = u64::from(d);
            skip(rt, v, insn::Insn::Cpuid)
        }
        Exit::Io { port, size, input, string, next_rip } => {
            if string {
                return Err(format!("string I/O to port {port:#x}, which it does not own (rip {rip:#x})"));
            }
            let mask = match size {
                1 => 0xff,
                2 => 0xffff,
                _ => 0xffff_ffff,
            };
            let rax = v.get(save::RAX);
            if monitor_core::pci::ConfigSpace::is_config_port(port) {
                if let Some(val) = devices::config_access(rt, port, size, input, (rax & mask) as u32) {
                    v.set(save::RAX, (rax & !mask) | (u64::from(val) & mask));
                }
                v.set(save::RIP, next_rip);
                return Ok(());
            }
            if let Some(owner) = devices::owner_of(Some(port), None) {
                devices::refused(rt, &format!("I/O port {port:#x} ({}) refused: {owner}", if input { "read" } else { "write" }));
            }
            match policy::io(port, input, (rax & mask) as u32) {
                IoAction::ReadAllOnes => v.set(save::RAX, (rax & !mask) | mask),
                IoAction::Ignore => {}
                IoAction::PowerOff(code) => {
                    let (state, why) = match rt.entry {
                        // The port is the reset and sleep control register of a Linux
                        // sandbox's ACPI; its warm-boot flag says reboot or panic
                        // (monitor_core::linux::PowerEvent). A panic is not a clean end.
                        Entry::Linux { .. } => {
                            let flag = rt.read_byte(linux::WARM_BOOT_FLAG).zip(rt.read_byte(linux::WARM_BOOT_FLAG + 1));
                            let ev = linux::PowerEvent::of(code as u8, flag.map(|(lo, hi)| u16::from_le_bytes([lo, hi])));
                            (if ev == linux::PowerEvent::Panic { STOPPED } else { POWERED_OFF }, ev.to_string())
                        }
                        Entry::Multiboot { .. } => (POWERED_OFF, format!("powered off (code {code:#x})")),
                    };
                    stop(cpu, rt, state, &why);
                    return Ok(());
                }
            }
            v.set(save::RIP, next_rip);
            Ok(())
        }
        Exit::Rdmsr => {
            let val = policy::msr_read(v.regs.rcx as u32, v.get(save::EFER));
            v.set(save::RAX, val & 0xffff_ffff);
            v.regs.rdx = val >> 32;
            skip(rt, v, insn::Insn::Rdmsr)
        }
        Exit::Wrmsr => {
            let msr = v.regs.rcx as u32;
            let value = (v.regs.rdx << 32) | (v.get(save::RAX) & 0xffff_ffff);
            match policy::msr_write(msr, value, &rt.apic_ids, hal::percpu::apic_id_of(cpu)) {
                MsrWrite::Efer(e) => v.set(save::EFER, e),
                MsrWrite::Ipi(icr) => hal::svm::send_x2apic_icr(icr).map_err(|e| format!("IPI: {e}"))?,
                MsrWrite::Multicast { icr, cores } => {
                    for (k, &id) in rt.apic_ids.iter().enumerate().take(64) {
                        if cores & (1 << k) != 0 {
                            hal::svm::send_x2apic_icr(icr | (u64::from(id) << 32)).map_err(|e| format!("IPI: {e}"))?;
                        }
                    }
                }
                MsrWrite::Ignore => {}
                MsrWrite::DeniedIpi(icr) => report(rt, &format!("IPI outside the sandbox refused (ICR {icr:#x})")),
                MsrWrite::DeniedApicBase(v) => report(rt, &format!("APIC_BASE write {v:#x} refused: the APIC stays enabled in x2APIC mode")),
                MsrWrite::Init(_) => {} // the core waits in the monitor until its STARTUP
                MsrWrite::Startup(dest, vector) => {
                    if let Some(k) = rt.apic_ids.iter().position(|&a| a == dest) {
                        let target = rt.cpus[k] as usize;
                        // Only the first STARTUP counts (the kernel sends two, as on hardware).
                        let _ = SIPI[target].compare_exchange(0, u32::from(vector) + 1, Ordering::AcqRel, Ordering::Acquire);
                    }
                }
            }
            skip(rt, v, insn::Insn::Wrmsr)
        }
        Exit::Hypercall => {
            let r = hypercall(rt, cpu, v);
            v.set(save::RAX, r as u64);
            skip(rt, v, insn::Insn::Vmmcall)
        }
        Exit::NestedFault { gpa, write, exec: false, .. } if rt.vioapic.is_some() && gpa & !0xfff == monitor_core::vioapic::BASE => {
            ioapic_access(rt, v, gpa & 0xfff, write)
        }
        Exit::NestedFault { gpa, write, exec, present } => Err(format!(
            "{} guest-physical {gpa:#x} outside its partition ({}), rip {rip:#x}{}",
            if exec { "executed" } else if write { "wrote" } else { "read" },
            if present { "protection" } else { "not mapped" },
            if gpa & !0xfff == 0xfee0_0000 {
                String::from(" (the xAPIC page: sandboxes must use x2APIC)")
            } else {
                devices::owner_of(None, Some(gpa)).map_or(String::new(), |o| format!(" ({o})"))
            }
        )),
        Exit::Shutdown => Err(format!("triple fault (shutdown), rip {rip:#x}")),
        Exit::Init => Err("received INIT (another sandbox tried to reset this core)".into()),
        Exit::Forbidden(what) => Err(format!("used {what} at rip {rip:#x}")),
        Exit::Invalid => Err("the CPU refused its VMCB (VMEXIT_INVALID): monitor bug".into()),
        Exit::Unexpected(c) => Err(format!("unexpected exit {c:#x} at rip {rip:#x}")),
    }
}

/// The up to 15 bytes at the guest's RIP (fewer where its memory ends), how many, and whether
/// it runs 64-bit code.
fn fetch_insn(rt: &SandboxRt, v: &Vcpu) -> ([u8; 15], usize, bool) {
    let regs = walk::PagingRegs { cr0: v.get(save::CR0), cr3: v.get(save::CR3), cr4: v.get(save::CR4), efer: v.get(save::EFER) };
    let rip = v.get(save::RIP);
    let cs_base = if regs.long_mode() { 0 } else { v.get(save::CS + 8) };
    let mut buf = [0u8; 15];
    let n = walk::fetch(&regs, cs_base.wrapping_add(rip), &mut buf, |gpa| rt.read_byte(gpa));
    (buf, n, regs.long_mode() && v.get(save::CS) >> 16 & (1 << 9) != 0)
}

/// General-purpose register `n` (0..16, in encoding order) of the guest.
fn gpr(v: &Vcpu, n: u8) -> u64 {
    let r = &v.regs;
    match n & 15 {
        0 => v.get(save::RAX),
        1 => r.rcx,
        2 => r.rdx,
        3 => r.rbx,
        4 => v.get(save::RSP),
        5 => r.rbp,
        6 => r.rsi,
        7 => r.rdi,
        8 => r.r8,
        9 => r.r9,
        10 => r.r10,
        11 => r.r11,
        12 => r.r12,
        13 => r.r13,
        14 => r.r14,
        _ => r.r15,
    }
}

fn set_gpr(v: &mut Vcpu, n: u8, val: u64) {
    match n & 15 {
        0 => v.set(save::RAX, val),
        4 => v.set(save::RSP, val),
        k => {
            let r = &mut v.regs;
            *match k {
                1 => &mut r.rcx,
                2 => &mut r.rdx,
                3 => &mut r.rbx,
                5 => &mut r.rbp,
                6 => &mut r.rsi,
                7 => &mut r.rdi,
                8 => &mut r.r8,
                9 => &mut r.r9,
                10 => &mut r.r10,
                11 => &mut r.r11,
                12 => &mut r.r12,
                13 => &mut r.r13,
                14 => &mut r.r14,
                _ => &mut r.r15,
            } = val;
        }
    }
}

/// A Linux sandbox's access to its virtual IOAPIC's page (offset `off`): the `MOV` at its RIP
/// decoded and emulated (`monitor_core::vioapic`), the real pins of its own functions
/// programmed as it asks. Anything but a memory `MOV` in the fault's direction stops it.
fn ioapic_access(rt: &SandboxRt, v: &mut Vcpu, off: u64, write: bool) -> Result<(), String> {
    use insn::{MovKind, Reg};
    use monitor_core::vioapic::Effect;
    let Some(vioapic) = rt.vioapic.as_ref() else { return Err("IOAPIC access without a virtual IOAPIC (monitor bug)".into()) };
    let rip = v.get(save::RIP);
    let (buf, n, long_mode) = fetch_insn(rt, v);
    let m = insn::decode_mov(&buf[..n], long_mode).map_err(|e| {
        format!("{} its IOAPIC at offset {off:#x} with an instruction the monitor does not emulate, at rip {rip:#x}: {e:?}", if write { "wrote" } else { "read" })
    })?;
    if m.writes() != write {
        return Err(format!("IOAPIC access at rip {rip:#x}: the instruction there does not match the fault"));
    }
    let size_mask = if m.size == 8 { u64::MAX } else { (1u64 << (8 * m.size)) - 1 };
    match m.kind {
        MovKind::Load(reg) => {
            let val = if m.size == 4 {
                let hw = |pin: u8| hal::ioapic::pci_line_low(pin).unwrap_or(0);
                u64::from(vioapic.lock().read(off, 4, hw))
            } else {
                size_mask // only dword registers: anything else reads all ones
            };
            match reg {
                Reg::HighByte(r) => set_gpr(v, r, (gpr(v, r) & !0xff00) | ((val & 0xff) << 8)),
                Reg::Gpr(r) if m.size >= 4 => set_gpr(v, r, val & size_mask),
                Reg::Gpr(r) => set_gpr(v, r, (gpr(v, r) & !size_mask) | (val & size_mask)),
            }
        }
        MovKind::Store(_) | MovKind::StoreImm(_) => {
            let val = match m.kind {
                MovKind::Store(Reg::HighByte(r)) => (gpr(v, r) >> 8) & 0xff,
                MovKind::Store(Reg::Gpr(r)) => gpr(v, r) & size_mask,
                MovKind::StoreImm(i) => i & size_mask,
                MovKind::Load(_) => 0,
            };
            let effect = vioapic.lock().write(off, m.size, val as u32);
            match effect {
                Effect::None => {}
                Effect::Program { pin, vector, dest, masked, level } => {
                    hal::ioapic::program_pci_line(pin, vector, dest, masked, level).map_err(|e| format!("programming IOAPIC pin {pin}: {e}"))?
                }
                Effect::Eoi(pins) => {
                    for pin in (0..24u8).filter(|p| pins & (1 << p) != 0) {
                        hal::ioapic::eoi_pci_line(pin).map_err(|e| format!("EOI of IOAPIC pin {pin}: {e}"))?;
                    }
                }
                Effect::Refused { pin, why } => {
                    let _ = hal::ioapic::program_pci_line(pin, 0, 0, true, true);
                    devices::refused(rt, &why);
                }
            }
        }
    }
    v.set(save::RIP, rip + m.len as u64);
    Ok(())
}

/// Moves RIP past the intercepted instruction `want` (decoded: no next-RIP save on TCG).
pub(crate) fn skip(rt: &SandboxRt, v: &mut Vcpu, want: insn::Insn) -> Result<(), String> {
    let rip = v.get(save::RIP);
    let (buf, n, long_mode) = fetch_insn(rt, v);
    match insn::decode(&buf[..n], long_mode) {
        Ok((got, len)) if got == want => {
            v.set(save::RIP, rip + len as u64);
            Ok(())
        }
        Ok((got, _)) => Err(format!("expected {want:?} at rip {rip:#x}, found {got:?}")),
        Err(e) => Err(format!("cannot decode the instruction at rip {rip:#x}: {e:?}")),
    }
}

pub(crate) fn hypercall(rt: &SandboxRt, cpu: usize, v: &Vcpu) -> i64 {
    const EINVAL: i64 = -22;
    const EPERM: i64 = -1;
    const ENOSYS: i64 = -38;
    match v.get(save::RAX) {
        abi::HC_EXIT_STATS => {
            let (gpa, len) = (v.regs.rbx, v.regs.rcx);
            let records: Vec<(u32, u32, Counters, Counters)> = (0..hal::percpu::online())
                .map(|c| {
                    let mut k = Counters::default();
                    let mut ns = Counters::default();
                    for i in 0..EXIT_REASONS {
                        k.0[i] = COUNTERS[c][i].load(Ordering::Relaxed);
                        ns.0[i] = MONITOR_NS[c][i].load(Ordering::Relaxed);
                    }
                    (c as u32, CPU_SANDBOX[c].load(Ordering::Relaxed), k, ns)
                })
                .collect();
            let bytes = policy::exit_stats_bytes(&records);
            if gpa % 8 != 0 || len < bytes.len() as u64 {
                return EINVAL;
            }
            match rt.offset_of(gpa, bytes.len() as u64) {
                Some(off) => {
                    rt.ram.write(off, &bytes);
                    bytes.len() as i64
                }
                None => EINVAL,
            }
        }
        abi::HC_ROUTE_ISA_IRQ => {
            let (irq, vector) = (v.regs.rbx, v.regs.rcx);
            if !(32..=255).contains(&vector) || irq > 15 {
                return EINVAL;
            }
            if rt.console_irq != Some(irq as u8) {
                report(rt, &format!("refused to route IRQ {irq}: not one of its devices"));
                return EPERM;
            }
            let _g = REPORT.lock();
            match hal::ioapic::route_isa(irq as u8, vector as u8, hal::percpu::apic_id_of(cpu)) {
                Ok(()) => 0,
                Err(_) => EINVAL,
            }
        }
        abi::HC_ROUTE_PCI_INTX => {
            let (irq, vector, mask) = (v.regs.rbx, v.regs.rcx, v.regs.rdx);
            if !(32..=255).contains(&vector) || irq > 15 || mask > 1 {
                return EINVAL;
            }
            if !rt.pci_irqs.contains(&(irq as u8)) {
                report(rt, &format!("refused to route IRQ {irq}: no PCI function of its is on that line"));
                return EPERM;
            }
            let _g = REPORT.lock();
            let r = if mask == 1 {
                hal::ioapic::set_isa_masked(irq as u8, true)
            } else {
                hal::ioapic::route_pci_line(irq as u8, vector as u8, hal::percpu::apic_id_of(cpu))
            };
            match r {
                Ok(()) => 0,
                Err(_) => EINVAL,
            }
        }
        _ => ENOSYS,
    }
}

pub(crate) fn report(rt: &SandboxRt, what: &str) {
    let _g = REPORT.lock();
    println!("Quest-V: sandbox {} ({}): {what}", rt.name, rt.id);
}

/// Stops a sandbox (this core halts after returning); powers the machine off once every
/// sandbox has stopped.
pub(crate) fn stop(cpu: usize, rt: &SandboxRt, state: u8, why: &str) {
    rt.state.store(state, Ordering::Release);
    // Its devices' interrupt lines: masked (nobody will acknowledge them now).
    for &irq in &rt.pci_irqs {
        let _ = hal::ioapic::set_isa_masked(irq, true);
    }
    IN_GUEST[cpu].store(false, Ordering::Release);
    // Its other cores run guest code without exits: an INIT (intercepted) brings each back to
    // the monitor, which sees the state and halts.
    for (k, &c) in rt.cpus.iter().enumerate() {
        if c as usize != cpu && IN_GUEST[c as usize].swap(false, Ordering::AcqRel) {
            hal::apic::send_init(rt.apic_ids[k]);
        }
    }
    let counts: Vec<String> = ExitReason::ALL
        .iter()
        .filter_map(|&r| {
            let n = COUNTERS[cpu][r as usize].load(Ordering::Relaxed);
            (n > 0).then(|| format!("{} {n}", r.name()))
        })
        .collect();
    report(
        rt,
        &format!(
            "{} on CPU {cpu}: {why} [exits: {}]",
            if state == POWERED_OFF { "stopped" } else { "STOPPED" },
            if counts.is_empty() { String::from("none") } else { counts.join(", ") }
        ),
    );
    let all = SANDBOXES.get().map_or(&[][..], |s| &s[..]);
    if all.iter().all(|s| matches!(s.state.load(Ordering::Acquire), POWERED_OFF | STOPPED)) {
        let clean = all.iter().all(|s| s.state.load(Ordering::Acquire) == POWERED_OFF);
        println!("Quest-V: every sandbox has stopped; powering off");
        hal::cpu::power_off(if clean { hal::cpu::ExitCode::Success } else { hal::cpu::ExitCode::Failure });
    }
}
