//! PCI: enumeration at boot, the function table (`pci` at the kernel console), and interrupt
//! delivery to drivers — MSI when the function offers it, else its INTx line through the IOAPIC,
//! shared by every function wired to it.
//!
//! Enumeration walks bus 0 and every bus behind a PCI-PCI bridge (each bus once), reading
//! headers through `hal::pci` (ECAM when the ACPI MCFG gives a window, configuration mechanism 1
//! otherwise, or with `pci=conf1` on the command line). A function that reports nonsense — a
//! configuration space of all ones, an unknown header type, a BAR that wraps or lies on RAM —
//! gets one log line and is left alone: listed, never handed to a driver.
//!
//! INTx routing takes the function's Interrupt Line (written by the firmware: SeaBIOS and OVMF
//! do under QEMU) as the ISA IRQ the line reaches the IOAPIC on, level-triggered. Interpreting
//! ACPI `_PRT` (AML) for lines beyond the ISA IRQs is not supported yet. A line that keeps
//! interrupting with no driver claiming it (`STORM_LIMIT` in a row) is masked for good with a
//! log line naming the functions on it; the kernel goes on.
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use hal::pci::{Bar, BarKind, Bdf};
use hal::sync::IrqLock;
use pci::{Header, Probe, StormGuard};
use spin::Once;

/// Unclaimed interrupts in a row that make a line a storm.
pub const STORM_LIMIT: u32 = 10_000;

/// One enumerated function.
#[derive(Clone, Debug)]
pub struct Function {
    pub bdf: Bdf,
    /// `None`: something answered with a header that makes no sense.
    pub header: Option<Header>,
    pub bars: Vec<Bar>,
    pub msi: bool,
    /// Why the function is left alone (no driver may claim it), if it is.
    pub left_alone: Option<String>,
}

static FUNCTIONS: Once<Vec<Function>> = Once::new();
static METHOD: Once<Result<&'static str, &'static str>> = Once::new();

/// Enumerates the buses (once, at boot) and logs what was found and what is left alone.
pub fn init(cmdline: &str) {
    let force1 = cmdline.split_whitespace().any(|o| o == "pci=conf1");
    let method = *METHOD.call_once(|| hal::pci::init(force1));
    let list = FUNCTIONS.call_once(|| match method {
        Ok(_) => enumerate(),
        Err(_) => Vec::new(),
    });
    match method {
        Ok(m) => hal::println!("pci: {} function(s) via {m}", list.len()),
        Err(e) => hal::println!("pci: {e}"),
    }
    for f in list {
        if let Some(why) = &f.left_alone {
            hal::println!("pci {}: {why}: device left alone", f.bdf);
        }
    }
}

fn enumerate() -> Vec<Function> {
    let cfg = hal::pci::Config;
    let mut out = Vec::new();
    let mut buses = alloc::vec![0u8];
    let mut seen = [false; 256];
    while let Some(bus) = buses.pop() {
        if core::mem::replace(&mut seen[usize::from(bus)], true) {
            continue;
        }
        for dev in 0..32 {
            for func in 0..8 {
                let Some(bdf) = Bdf::new(bus, dev, func) else { continue };
                match pci::probe(&cfg, bdf) {
                    Probe::Absent => {
                        if func == 0 {
                            break;
                        }
                        continue;
                    }
                    Probe::Nonsense(why) => {
                        out.push(Function { bdf, header: None, bars: Vec::new(), msi: false, left_alone: Some(why.into()) });
                        if func == 0 {
                            break;
                        }
                    }
                    Probe::Present(h) => {
                        let mut f = Function { bdf, header: Some(h), bars: Vec::new(), msi: false, left_alone: None };
                        for b in hal::pci::bars(bdf, h.header_type) {
                            match b {
                                Ok(b) => f.bars.push(b),
                                Err((i, why)) => f.left_alone = Some(alloc::format!("BAR{i}: {why}")),
                            }
                        }
                        // A memory BAR must not touch RAM the kernel manages (checked where the
                        // direct map reaches: below 4 GiB).
                        for b in &f.bars {
                            if b.kind != BarKind::Io && b.base != 0 && !hal::mm::outside_managed_ram(b.base, b.end()) && b.end() <= 1 << 32 {
                                f.left_alone = Some(alloc::format!("BAR{} {:#x}-{:#x} overlaps RAM", b.index, b.base, b.end() - 1));
                            }
                        }
                        f.msi = hal::pci::msi_capability(bdf).is_some();
                        if h.header_type == 1 && h.secondary_bus != 0 {
                            buses.push(h.secondary_bus);
                        }
                        let multi = h.multifunction;
                        out.push(f);
                        if func == 0 && !multi {
                            break;
                        }
                    }
                }
            }
        }
    }
    out.sort_by_key(|f| f.bdf);
    out
}

/// The enumerated functions (empty before `init` or without PCI).
pub fn functions() -> &'static [Function] {
    FUNCTIONS.get().map_or(&[], |v| v.as_slice())
}

/// The function at `bdf`, if enumerated.
pub fn function(bdf: Bdf) -> Option<&'static Function> {
    functions().iter().find(|f| f.bdf == bdf)
}

/// Functions with this vendor and device id.
pub fn find(vendor: u16, device: u16) -> impl Iterator<Item = &'static Function> {
    functions().iter().filter(move |f| f.header.is_some_and(|h| h.vendor == vendor && h.device == device))
}

/// The `pci` listing (lspci-like); with `verbose`, BARs and interrupts too.
pub fn listing(verbose: bool) -> String {
    let mut s = String::new();
    match METHOD.get() {
        Some(Ok(m)) => {
            let _ = writeln!(s, "pci: {} function(s) via {m}", functions().len());
        }
        Some(Err(e)) => {
            let _ = writeln!(s, "pci: {e}");
        }
        None => {
            let _ = writeln!(s, "pci: not initialised");
        }
    }
    for f in functions() {
        let Some(h) = f.header else {
            let _ = writeln!(s, "{} (left alone: {})", f.bdf, f.left_alone.as_deref().unwrap_or("?"));
            continue;
        };
        let _ = write!(
            s,
            "{} {} [{:02x}{:02x}]: {:04x}:{:04x} (rev {:02x})",
            f.bdf,
            pci::class_name(h.class, h.subclass),
            h.class,
            h.subclass,
            h.vendor,
            h.device,
            h.revision
        );
        if let Some(why) = &f.left_alone {
            let _ = write!(s, " (left alone: {why})");
        }
        let _ = writeln!(s);
        if verbose {
            if h.interrupt_pin != 0 {
                let _ = writeln!(s, "\tInterrupt: pin {} routed to IRQ {}", (b'A' + h.interrupt_pin - 1) as char, h.interrupt_line);
            }
            for b in &f.bars {
                let _ = writeln!(s, "\t{b}");
            }
            if f.msi {
                let _ = writeln!(s, "\tCapabilities: MSI");
            }
        }
    }
    s
}

static LISTING: Once<String> = Once::new();

/// The verbose listing as a read-only file, `/dev/pci` (what `/boot/lspci` prints): made
/// once, after enumeration, which does not change during a run.
pub fn listing_file() -> &'static [u8] {
    LISTING.call_once(|| listing(true)).as_bytes()
}

/// Something on a shared INTx line: says whether its device was interrupting (and quiets it).
pub trait IntxClient: Sync {
    fn intx(&self) -> bool;
    fn describe(&self) -> String;
}

/// One INTx line (an ISA IRQ of the IOAPIC) and the functions wired to it.
pub struct IntxLine {
    irq: u8,
    clients: IrqLock<Vec<&'static dyn IntxClient>>,
    guard: IrqLock<StormGuard>,
    masked: AtomicBool,
}

impl hal::trap::InterruptHandler for IntxLine {
    fn handle(&self, _frame: &mut hal::trap::TrapFrame) {
        let clients = self.clients.lock().clone();
        let mut claimed = false;
        for c in clients {
            claimed |= c.intx();
        }
        let storm = self.guard.lock().record(claimed);
        if storm && !self.masked.swap(true, Ordering::Relaxed) {
            let _ = hal::trap::mask_pci_intx(self.irq);
            let names: Vec<String> = self.clients.lock().iter().map(|c| c.describe()).collect();
            hal::println!(
                "pci: IRQ {}: interrupt storm ({STORM_LIMIT} interrupts in a row no driver claimed): line masked, left alone: {}",
                self.irq,
                names.join(", ")
            );
        }
    }
}

static LINES: [Once<&'static IntxLine>; 16] = [const { Once::new() }; 16];

/// Attaches `client` to the INTx line of `bdf` (routing it on first use); returns the IRQ.
pub fn attach_intx(bdf: Bdf, client: &'static dyn IntxClient) -> Result<u8, &'static str> {
    let f = function(bdf).ok_or("no such PCI function")?;
    let h = f.header.ok_or("the function is left alone")?;
    if h.interrupt_pin == 0 {
        return Err("the function has no interrupt pin");
    }
    let irq = h.interrupt_line;
    if irq >= 16 {
        return Err("Interrupt Line not set by firmware or beyond the ISA IRQs (no _PRT interpreter): not supported yet");
    }
    let mut err = None;
    let line = *LINES[usize::from(irq)].call_once(|| {
        let line: &'static IntxLine = Box::leak(Box::new(IntxLine {
            irq,
            clients: IrqLock::new(Vec::new()),
            guard: IrqLock::new(StormGuard::new(STORM_LIMIT)),
            masked: AtomicBool::new(false),
        }));
        if let Err(e) = hal::trap::route_pci_intx(irq, hal::trap::Handler::Object(line)) {
            err = Some(e);
        }
        line
    });
    if let Some(e) = err {
        return Err(e);
    }
    if line.masked.load(Ordering::Relaxed) {
        return Err("the line was masked after an interrupt storm");
    }
    line.clients.lock().push(client);
    hal::pci::set_intx(bdf, true);
    Ok(irq)
}

/// (interrupts, unclaimed, masked) of an INTx line, for tests and `pci -v`.
pub fn line_stats(irq: u8) -> Option<(u64, u64, bool)> {
    let l = LINES.get(usize::from(irq))?.get()?;
    let g = *l.guard.lock();
    Some((g.total, g.unclaimed, l.masked.load(Ordering::Relaxed)))
}

/// `ktest pcicmp`: every enumerated function's first 64 bytes read through ECAM and through
/// mechanism 1 agree (the two access paths see one configuration space).
#[cfg(feature = "ktest")]
pub fn ktest_compare() {
    let Some(e) = hal::pci::ecam() else {
        return hal::println!("pci: no ECAM window in use: nothing to compare");
    };
    let mut bad = 0;
    for f in functions() {
        for off in (0..64).step_by(4) {
            let (a, b) = (hal::pci::read32(f.bdf, off), hal::pci::read32_mechanism1(f.bdf, off));
            if a != b {
                bad += 1;
                hal::println!("pci {}: offset {off:#x}: ECAM {a:#010x}, mechanism 1 {b:#010x}", f.bdf);
            }
        }
    }
    hal::println!(
        "pci: ECAM at {:#x} (buses {}-{}) and mechanism 1 {} on {} function(s)",
        e.base,
        e.bus_start,
        e.bus_end,
        if bad == 0 { "agree" } else { "DISAGREE" },
        functions().len()
    );
}
