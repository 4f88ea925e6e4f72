//! PCI device assignment: the monitor probes bus 0 at boot (only when some sandbox owns PCI
//! functions), checks the assignment against what it found (`partition::check_devices`), keeps
//! bus mastering off, and then, for each sandbox, answers its configuration accesses
//! (`monitor_core::pci::ConfigSpace`), routes its functions' INTx lines on request, and names
//! the owner when a sandbox probes another's device.
use super::*;

use monitor_core::pci::{Assigned, BarShadow, Bdf, ConfigSpace, Decision, Msi};
use partition::{FoundFunction, PciAddr, PortRange};

/// What bus 0 holds (empty when no sandbox owns PCI functions).
pub(crate) struct Bus {
    pub found: Vec<FoundFunction>,
    /// Per found function: its BAR registers as measured (value, size probe).
    pub shadows: Vec<Vec<BarShadow>>,
    pub msi: Vec<Option<Msi>>,
    pub host_bridge: Bdf,
}

/// Every assigned function's BARs with their owner, for reports.
pub(crate) static OWNED_BARS: Once<Vec<(u8, PciAddr, Option<PortRange>, Option<PhysRange>)>> = Once::new();

fn hal_bdf(a: PciAddr) -> Option<hal::pci::Bdf> {
    hal::pci::Bdf::new(a.bus, a.dev, a.func)
}

pub(crate) fn core_bdf(a: PciAddr) -> Bdf {
    Bdf { bus: a.bus, dev: a.dev, func: a.func }
}

/// The register values a BAR reads back after all ones are written, from its decoded form.
fn shadows_of(bdf: hal::pci::Bdf, b: &hal::pci::Bar) -> Vec<BarShadow> {
    let reg = b.index;
    let value = hal::pci::read32(bdf, 0x10 + 4 * u16::from(reg));
    let mask = !(b.size - 1);
    match b.kind {
        hal::pci::BarKind::Io => alloc::vec![BarShadow { reg, value, probe: (mask as u32 & !3) | 1 }],
        hal::pci::BarKind::Mem32 => alloc::vec![BarShadow { reg, value, probe: (mask as u32 & !0xf) | (value & 0xf) }],
        hal::pci::BarKind::Mem64 => alloc::vec![
            BarShadow { reg, value, probe: (mask as u32 & !0xf) | (value & 0xf) },
            BarShadow { reg: reg + 1, value: hal::pci::read32(bdf, 0x10 + 4 * u16::from(reg) + 4), probe: (mask >> 32) as u32 },
        ],
    }
}

/// Probes bus 0 (mechanism 1) if any sandbox owns PCI functions and checks the assignment;
/// refuses to start on any problem.
pub(crate) fn probe(plan: &Plan) -> Bus {
    let mut bus = Bus { found: Vec::new(), shadows: Vec::new(), msi: Vec::new(), host_bridge: Bdf { bus: 0, dev: 0, func: 0 } };
    if plan.sandboxes.iter().all(|s| s.pci.is_empty()) {
        return bus;
    }
    if let Err(e) = hal::pci::init(true) {
        refuse(&format!("PCI functions are assigned but PCI is unavailable: {e}"));
    }
    let cfg = hal::pci::Config;
    for dev in 0..32u8 {
        for func in 0..8u8 {
            let Some(bdf) = hal::pci::Bdf::new(0, dev, func) else { continue };
            let addr = PciAddr { bus: 0, dev, func };
            let h = match pci::probe(&cfg, bdf) {
                pci::Probe::Absent => {
                    if func == 0 {
                        break;
                    }
                    continue;
                }
                pci::Probe::Nonsense(why) => {
                    bus.found.push(FoundFunction {
                        addr,
                        vendor: 0xffff,
                        device: 0xffff,
                        class: 0xff,
                        subclass: 0xff,
                        header_type: 0xff,
                        irq: None,
                        io: Vec::new(),
                        mem: Vec::new(),
                        nonsense: Some(why.into()),
                    });
                    bus.shadows.push(Vec::new());
                    bus.msi.push(None);
                    if func == 0 {
                        break;
                    }
                    continue;
                }
                pci::Probe::Present(h) => h,
            };
            let mut f = FoundFunction {
                addr,
                vendor: h.vendor,
                device: h.device,
                class: h.class,
                subclass: h.subclass,
                header_type: h.header_type,
                irq: (h.interrupt_pin != 0 && h.interrupt_line < 16).then_some(h.interrupt_line),
                io: Vec::new(),
                mem: Vec::new(),
                nonsense: None,
            };
            let mut shadows = Vec::new();
            for b in hal::pci::bars(bdf, h.header_type) {
                match b {
                    Ok(b) if b.kind == hal::pci::BarKind::Io => {
                        f.io.push((b.index, PortRange { first: b.base as u16, last: (b.end() - 1) as u16 }));
                        shadows.extend(shadows_of(bdf, &b));
                    }
                    Ok(b) => {
                        f.mem.push((b.index, PhysRange::new(b.base, b.end())));
                        shadows.extend(shadows_of(bdf, &b));
                    }
                    Err((i, why)) => f.nonsense = Some(format!("BAR{i}: {why}")),
                }
            }
            if h.class == 0x06 && h.subclass == 0x00 && addr == (PciAddr { bus: 0, dev: 0, func: 0 }) {
                bus.host_bridge = core_bdf(addr);
            }
            let msi = pci::capabilities(&cfg, bdf, &h).find(|&(id, _)| id == pci::CAP_MSI).map(|(_, cap)| {
                let control = (hal::pci::read32(bdf, u16::from(cap)) >> 16) as u16;
                let l = pci::msi_layout(cap, control);
                Msi { cap: u16::from(cap), control: l.control, address_lo: l.address_lo, address_hi: l.address_hi, data: l.data }
            });
            bus.found.push(f);
            bus.shadows.push(shadows);
            bus.msi.push(msi);
            if func == 0 && !h.multifunction {
                break;
            }
        }
    }
    println!("Quest-V: PCI bus 0: {} function(s) (configuration mechanism 1)", bus.found.len());
    if let Err(errs) = partition::check_devices(plan, &bus.found) {
        println!("Quest-V: the PCI assignment does not fit this machine:");
        for e in &errs {
            println!("  - {e}");
        }
        refuse(&format!("{} error(s) in the PCI assignment", errs.len()));
    }
    let mut owned = Vec::new();
    for sb in &plan.sandboxes {
        for &a in &sb.pci {
            let Some(f) = bus.found.iter().find(|f| f.addr == a) else { continue };
            // No DMA (no IOMMU) and so no MSI: bus mastering off, decoding as the firmware left it.
            if let Some(bdf) = hal_bdf(a) {
                let cmd = hal::pci::read32(bdf, 4);
                hal::pci::set_decode(bdf, cmd & 1 != 0, cmd & 2 != 0);
            }
            println!(
                "Quest-V: PCI {a} [{:04x}:{:04x}] -> sandbox {} ({}){}{}",
                f.vendor,
                f.device,
                sb.name,
                sb.id,
                f.irq.map_or(String::new(), |i| format!(", INTx on IRQ {i}")),
                f.io.iter().map(|(i, p)| format!(", BAR{i} I/O {p}")).chain(f.mem.iter().map(|(i, r)| format!(", BAR{i} memory {r}"))).collect::<String>()
            );
            for &(_, p) in &f.io {
                owned.push((sb.id, a, Some(p), None));
            }
            for &(_, r) in &f.mem {
                owned.push((sb.id, a, None, Some(r)));
            }
        }
    }
    OWNED_BARS.call_once(|| owned);
    bus
}

impl Bus {
    /// The configuration view, I/O ports, memory pages (page-rounded), INTx lines of `sb`, and
    /// what a Linux sandbox's ACPI says about them (`linux::PciRoot`: device, pin and IRQ of each
    /// INTx line, its memory BARs as they are).
    pub(crate) fn for_sandbox(&self, sb: &partition::PlannedSandbox, apic_ids: Vec<u32>) -> (ConfigSpace, Vec<PortRange>, Vec<PhysRange>, Vec<u8>, linux::PciRoot) {
        let mut functions = Vec::new();
        let (mut ports, mut mem, mut irqs) = (Vec::new(), Vec::new(), Vec::new());
        let mut root = linux::PciRoot::default();
        for &a in &sb.pci {
            let Some(i) = self.found.iter().position(|f| f.addr == a) else { continue };
            let f = &self.found[i];
            functions.push(Assigned { bdf: core_bdf(a), bars: self.shadows[i].clone(), msi: self.msi[i] });
            ports.extend(f.io.iter().map(|&(_, p)| p));
            mem.extend(f.mem.iter().map(|&(_, r)| PhysRange::new(r.start & !0xfff, (r.end + 0xfff) & !0xfff)));
            irqs.extend(f.irq);
            root.mem.extend(f.mem.iter().map(|&(_, r)| (r.start, r.end)));
            if let (Some(irq), Some(bdf)) = (f.irq, hal_bdf(a)) {
                let pin = (hal::pci::read32(bdf, 0x3c) >> 8) as u8;
                if (1..=4).contains(&pin) {
                    root.intx.push((a.dev, pin, irq));
                }
            }
        }
        (ConfigSpace::new(self.host_bridge, functions, apic_ids), ports, mem, irqs, root)
    }
}

/// The owner of an assigned function's I/O port or memory address, for reports.
pub(crate) fn owner_of(port: Option<u16>, gpa: Option<u64>) -> Option<String> {
    let sbs = SANDBOXES.get()?;
    OWNED_BARS.get()?.iter().find_map(|&(id, a, p, r)| {
        let hit = port.zip(p).is_some_and(|(x, p)| (p.first..=p.last).contains(&x)) || gpa.zip(r).is_some_and(|(x, r)| (r.start..r.end).contains(&x));
        hit.then(|| format!("a BAR of PCI {a}, which sandbox {} owns", sbs.get(usize::from(id)).map_or("?", |s| s.name.as_str())))
    })
}

/// Reports a refused access: the first 16 of each sandbox, then every 1024th.
pub(crate) fn refused(rt: &SandboxRt, what: &str) {
    let n = rt.pci_refused.fetch_add(1, Ordering::Relaxed) + 1;
    if n <= 16 || n.is_multiple_of(1024) {
        report(rt, &format!("{what} ({n} refused so far)"));
    }
}

/// A guest access to a mechanism 1 port: `Some(value)` for an IN.
pub(crate) fn config_access(rt: &SandboxRt, port: u16, size: u8, input: bool, value: u32) -> Option<u32> {
    let mut hw = |b: Bdf, reg: u16| match hal::pci::Bdf::new(b.bus, b.dev, b.func) {
        Some(bdf) => hal::pci::read32(bdf, reg),
        None => u32::MAX,
    };
    let mut space = rt.pci.lock();
    if input {
        return Some(space.read(port, size, &mut hw));
    }
    match space.write(port, size, value, &mut hw) {
        Decision::Handled => {}
        Decision::Write { bdf, off, size, value } => {
            let r = hal::pci::Bdf::new(bdf.bus, bdf.dev, bdf.func).ok_or("invalid function").and_then(|b| hal::pci::guest_config_write(b, off, size, value));
            if let Err(e) = r {
                drop(space);
                refused(rt, &format!("PCI configuration write to {bdf} offset {off:#x} refused: {e}"));
            }
        }
        Decision::Refused { bdf, off, why } => {
            drop(space);
            refused(rt, &format!("PCI configuration write to {bdf} offset {off:#x} refused: {why}"));
        }
    }
    None
}
