//! CPU control: interrupts, halting, identification, and leaving the machine (QEMU exit device,
//! ACPI power-off).
use x86_64::instructions::{hlt, interrupts, port::Port};

/// Runs `f` with interrupts disabled on this CPU, restoring the previous state after.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    interrupts::without_interrupts(f)
}

pub fn enable_interrupts() {
    interrupts::enable();
}

pub fn disable_interrupts() {
    interrupts::disable();
}

pub fn interrupts_enabled() -> bool {
    interrupts::are_enabled()
}

/// Waits for the next interrupt if `ready()` is false, without the race between testing a
/// condition an interrupt handler sets and halting: the test runs with interrupts off and
/// `sti; hlt` enables them only for the halt itself.
pub fn wait_until(mut ready: impl FnMut() -> bool) {
    loop {
        interrupts::disable();
        if ready() {
            interrupts::enable();
            return;
        }
        interrupts::enable_and_hlt();
    }
}

/// Stops this CPU for good (interrupts off, halt forever).
pub fn halt_forever() -> ! {
    interrupts::disable();
    loop {
        hlt();
    }
}

/// `cpuid` leaf/subleaf.
pub fn cpuid(leaf: u32, sub: u32) -> core::arch::x86_64::CpuidResult {
    // `cpuid` is available on every x86_64 CPU and has no side effects besides its outputs.
    core::arch::x86_64::__cpuid_count(leaf, sub)
}

/// The CPU's brand string (CPUID 0x80000002..4), trimmed.
pub fn brand(buf: &mut [u8; 48]) -> &str {
    if cpuid(0x8000_0000, 0).eax < 0x8000_0004 {
        return "unknown CPU";
    }
    for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
        let r = cpuid(leaf, 0);
        for (j, w) in [r.eax, r.ebx, r.ecx, r.edx].iter().enumerate() {
            buf[i * 16 + j * 4..i * 16 + j * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(48);
    core::str::from_utf8(&buf[..end]).unwrap_or("unknown CPU").trim()
}

/// Whether the hypervisor bit is set (we run in a VM).
pub fn in_vm() -> bool {
    cpuid(1, 0).ecx & (1 << 31) != 0
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the counter; CR4.TSD is clear (we never set it), so it cannot
    // fault in ring 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Status a test build reports through QEMU's `isa-debug-exit` device (iobase 0xf4). QEMU exits
/// with `(code << 1) | 1`: 33 for success, 35 for failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    Success = 0x10,
    Failure = 0x11,
}

/// I/O port of QEMU's `isa-debug-exit` device (as the test harness configures it).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Leaves QEMU through `isa-debug-exit` if present; returns if it is not (real hardware).
pub fn qemu_exit(code: ExitCode) {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is unassigned on PC hardware and is the debug-exit device in our QEMU
    // configuration; writing it has no other effect.
    unsafe { port.write(code as u32) };
}

/// Powers the machine off: QEMU's exit device first, then ACPI S5 through the FADT's PM1 control
/// registers, then halts (a machine without either stays halted).
pub fn power_off(code: ExitCode) -> ! {
    interrupts::disable();
    qemu_exit(code);
    crate::acpi::power_off();
    halt_forever()
}

/// Writes to physical address `phys` through the direct map: the Quest-V containment test
/// (an address outside the sandbox's partition stops the sandbox). Refused (`Err`) for an
/// address in RAM this kernel manages, where the write could hit its own memory. Test builds
/// only (feature `ktest`).
#[cfg(feature = "ktest")]
pub fn trigger_wild_write(phys: u64) -> Result<(), &'static str> {
    let phys = phys & !7;
    if !crate::mm::outside_managed_ram(phys, phys + 8) {
        return Err("the address is RAM this kernel manages (or beyond the direct map)");
    }
    let va = crate::mm::phys_to_virt(phys);
    // SAFETY: the direct map covers `phys` (`outside_managed_ram` checked it is below the
    // direct-map limit) and it is not RAM this kernel manages, so no Rust reference covers it:
    // it is device memory or memory another party owns (outside this sandbox's RAM, so the
    // monitor stops us first), which is what the test means to write.
    unsafe { core::ptr::write_volatile(va as *mut u64, 0x5157_5157_5157_5157) };
    Ok(())
}

/// Reads (`write` = `None`) or writes a byte at I/O port `port`: the Quest-V containment test
/// (a port the sandbox does not own is the monitor's to refuse). Refused below 0x1000 (legacy
/// devices, the configuration ports, hal's UARTs) and for ports of a BAR this kernel claimed.
/// Test builds only (feature `ktest`).
#[cfg(feature = "ktest")]
pub fn trigger_port_access(port: u16, write: Option<u8>) -> Result<u8, &'static str> {
    if port < 0x1000 {
        return Err("ports below 0x1000 belong to legacy devices");
    }
    if crate::pci::io_claimed(port) {
        return Err("the port belongs to a device this kernel drives");
    }
    let mut p = x86_64::instructions::port::Port::<u8>::new(port);
    // SAFETY: the port is no legacy device's and no device this kernel drives (checked above),
    // so no driver's state can be disturbed; a port access has no effect on memory Rust knows
    // of (devices this kernel does not drive have bus mastering as the firmware left it, which
    // the test accepts, as it accepts the wild write above).
    unsafe {
        match write {
            Some(v) => {
                p.write(v);
                Ok(v)
            }
            None => Ok(p.read()),
        }
    }
}

/// Triple-faults this CPU: loads an empty IDT and raises a breakpoint (no handler → #GP → no
/// handler → #DF → no handler → shutdown). Test builds only: on bare metal this resets the
/// machine; in a Quest-V sandbox the monitor stops the sandbox.
#[cfg(feature = "ktest")]
pub fn trigger_triple_fault() -> ! {
    let empty = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
    interrupts::disable();
    // SAFETY: deliberately fatal: after the empty IDT is loaded the next exception shuts the
    // CPU down; nothing runs after it, so no Rust state can be observed broken.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3", options(nomem, nostack));
    }
    halt_forever()
}

/// Deliberate faults for the in-kernel tests (feature `ktest`; the fault reporter is what they
/// test). Each raises its exception; the kernel's fault path never returns to the caller.
/// `addr` must be unmapped (a mapped one panics instead: the read could reach a device).
#[cfg(feature = "ktest")]
#[inline(always)] // the fault is reported at the caller's RIP (what the tests look for)
pub fn trigger_page_fault(addr: u64) -> ! {
    assert!(crate::mm::translate(addr).is_none(), "trigger_page_fault: {addr:#x} is mapped");
    // SAFETY: a read from an address no page table maps (checked just above): the CPU raises
    // #PF before anything is read, and the fault handler stops the machine.
    unsafe { core::arch::asm!("mov {0}, [{1}]", out(reg) _, in(reg) addr, options(nostack)) };
    halt_forever()
}

/// See [`trigger_page_fault`]: raises #UD.
#[cfg(feature = "ktest")]
pub fn trigger_invalid_opcode() -> ! {
    // SAFETY: `ud2` only raises #UD; the fault handler stops the machine.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    halt_forever()
}

/// See [`trigger_page_fault`]: raises #GP (a load through a non-canonical address).
#[cfg(feature = "ktest")]
pub fn trigger_general_protection() -> ! {
    // SAFETY: a non-canonical address faults with #GP before any access; the handler stops.
    unsafe { core::arch::asm!("mov {0}, [{1}]", out(reg) _, in(reg) 0x8000_0000_0000_0000u64, options(nostack)) };
    halt_forever()
}

/// See [`trigger_page_fault`]: raises #DE (a hardware division by zero).
#[cfg(feature = "ktest")]
pub fn trigger_divide_error() -> ! {
    // SAFETY: `div` by zero raises #DE before writing any register; the handler stops.
    unsafe {
        core::arch::asm!("xor edx, edx", "mov eax, 1", "xor ecx, ecx", "div ecx",
            out("eax") _, out("edx") _, out("ecx") _, options(nomem, nostack))
    };
    halt_forever()
}

/// CR2: the address of the last page fault.
pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}
