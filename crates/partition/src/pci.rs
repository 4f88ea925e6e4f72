//! PCI device assignment rules.
//!
//! Two kinds of check, both pure:
//!
//! - [`static_problems`] (part of `Config::validate`/`Plan::validate`): what the configuration
//!   alone shows. Only functions on bus 0 (a guest finds a bus behind a bridge only through the
//!   bridge, and bridges are never assigned); a function other than 0 only together with
//!   function 0 of its device (a guest's enumeration skips a device whose function 0 does not
//!   answer). Linux sandboxes may own functions as Quest sandboxes do (the monitor gives them
//!   a PCI root bridge in their ACPI and a virtual IOAPIC for the INTx lines, see
//!   docs/questv.md).
//! - [`check_devices`] (run by the monitor at boot, after it has probed bus 0): what the
//!   machine shows. The function exists and is sane; it is not a bridge (the host bridge, the
//!   ISA bridge and PCI-PCI bridges stay the monitor's: their registers remap memory and
//!   buses); its I/O BARs are above the legacy range and clear of every port another grant
//!   holds; its memory BARs are clear of every planned RAM range and the APIC window, do not
//!   share a 4 KiB page with another function's BAR (nested paging maps whole pages) and, as
//!   the monitor maps them at the same guest-physical address, are clear of the sandbox's guest
//!   RAM and channel windows; its INTx line (an IOAPIC pin, which goes to one core) is not
//!   also the line of another sandbox's function or console.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::Error;
use crate::model::{Console, Image, PciAddr, PhysRange, PortRange};
use crate::plan::Plan;

/// The local APIC and IOAPIC window (never mapped for a sandbox).
const APIC_WINDOW: PhysRange = PhysRange::new(0xfec0_0000, 0xff00_0000);
const PAGE: u64 = 4096;

/// What the monitor found at one PCI address at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundFunction {
    /// Its address.
    pub addr: PciAddr,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Header type (without the multi-function bit).
    pub header_type: u8,
    /// The ISA IRQ its INTx pin reaches (its Interrupt Line), if it has a pin and the firmware
    /// routed it to one of 0..=15.
    pub irq: Option<u8>,
    /// I/O BARs: (index, ports).
    pub io: Vec<(u8, PortRange)>,
    /// Memory BARs: (index, host-physical range).
    pub mem: Vec<(u8, PhysRange)>,
    /// Why the probe found it unusable (a BAR that makes no sense...), if it did.
    pub nonsense: Option<String>,
}

/// The ISA IRQ of a PC console UART.
fn console_irq(c: Console) -> Option<u8> {
    match c {
        Console::Com(1) | Console::Com(3) => Some(4),
        Console::Com(2) | Console::Com(4) => Some(3),
        _ => None,
    }
}

fn page_range(r: &PhysRange) -> PhysRange {
    PhysRange::new(r.start & !(PAGE - 1), r.end.saturating_add(PAGE - 1) & !(PAGE - 1))
}

/// The configuration-only problems of function `addr` in a sandbox booting `image` that lists
/// `all` (each a phrase for [`Error::PciRefused`]).
pub(crate) fn static_problems(image: &Image, all: &[PciAddr], addr: PciAddr) -> Vec<String> {
    let mut out = Vec::new();
    // Both kinds of kernel: the same rules (a Linux sandbox's INTx lines go through the
    // monitor's virtual IOAPIC, a Quest sandbox's through its hypercall).
    let _ = image;
    if addr.bus != 0 {
        out.push(format!(
            "is on bus {:02x}: only functions on bus 0 can be assigned (a guest reaches other \
             buses through bridges, which stay with the monitor)",
            addr.bus
        ));
    }
    if addr.func != 0
        && !all
            .iter()
            .any(|a| a.bus == addr.bus && a.dev == addr.dev && a.func == 0)
    {
        out.push(format!(
            "is function {} of a device whose function 0 ({:02x}:{:02x}.0) the sandbox does not \
             own: a guest finds a device's other functions only through function 0",
            addr.func, addr.bus, addr.dev
        ));
    }
    out
}

/// Checks every sandbox's PCI functions against what the machine has (`found`: every function
/// the monitor probed, assigned or not). Reports every problem.
pub fn check_devices(plan: &Plan, found: &[FoundFunction]) -> Result<(), Vec<Error>> {
    let mut errs = Vec::new();
    let find = |a: PciAddr| found.iter().find(|f| f.addr == a);
    let owner_of = |a: PciAddr| plan.sandboxes.iter().find(|s| s.pci.contains(&a));
    for sb in &plan.sandboxes {
        for &addr in &sb.pci {
            let mut refuse = |why: String| {
                errs.push(Error::PciRefused {
                    sandbox: sb.name.clone(),
                    addr,
                    why,
                })
            };
            let Some(f) = find(addr) else {
                refuse(String::from(
                    "does not exist on this machine (nothing answers at that address)",
                ));
                continue;
            };
            if let Some(why) = &f.nonsense {
                refuse(format!("reports nonsense ({why}): left alone"));
                continue;
            }
            if f.class == 0x06 {
                let kind = match f.subclass {
                    0x00 => "the host bridge",
                    0x01 => "an ISA bridge",
                    0x04 => "a PCI-PCI bridge",
                    _ => "a bridge",
                };
                refuse(format!(
                    "is {kind} (class 06{:02x}): bridges stay with the monitor",
                    f.subclass
                ));
                continue;
            }
            if f.header_type != 0 {
                refuse(format!(
                    "has header type {}: only endpoints (type 0) can be assigned",
                    f.header_type
                ));
                continue;
            }
            for &(i, ports) in &f.io {
                if ports.first < 0x1000 {
                    refuse(format!(
                        "BAR{i} I/O ports {ports} lie in the legacy range below 0x1000"
                    ));
                    continue;
                }
                for other in &plan.sandboxes {
                    let grants = other.io_ports.iter().copied().chain(other.console.ports());
                    for g in grants {
                        if g.intersection(&ports).is_some() {
                            refuse(format!(
                                "BAR{i} I/O ports {ports} overlap ports {g} given to sandbox '{}'",
                                other.name
                            ));
                        }
                    }
                }
                for g in found.iter().filter(|g| g.addr != addr) {
                    for &(j, p) in &g.io {
                        if p.intersection(&ports).is_some() {
                            refuse(format!(
                                "BAR{i} I/O ports {ports} overlap BAR{j} of {}",
                                g.addr
                            ));
                        }
                    }
                }
            }
            for &(i, r) in &f.mem {
                let pages = page_range(&r);
                let mut ram: Vec<(String, PhysRange)> = Vec::new();
                if let Some(m) = plan.monitor {
                    ram.push((String::from("the monitor"), m));
                }
                for s in &plan.sandboxes {
                    ram.push((format!("sandbox '{}'", s.name), s.ram));
                }
                for c in &plan.channels {
                    ram.push((format!("channel {}", c.key), c.phys));
                }
                for (who, range) in ram {
                    if range.overlaps(&pages) {
                        refuse(format!("BAR{i} {r} overlaps the RAM of {who} at {range}"));
                    }
                }
                if pages.overlaps(&APIC_WINDOW) {
                    refuse(format!(
                        "BAR{i} {r} overlaps the IOAPIC/local APIC window {APIC_WINDOW}"
                    ));
                }
                if pages.end > crate::GUEST_PHYS_LIMIT {
                    refuse(format!(
                        "BAR{i} {r} lies beyond the guest-physical limit {:#x}",
                        crate::GUEST_PHYS_LIMIT
                    ));
                }
                for g in found {
                    for &(j, p) in &g.mem {
                        if (g.addr, j) != (addr, i) && page_range(&p).overlaps(&pages) {
                            refuse(format!(
                                "BAR{i} {r} shares a 4 KiB page with BAR{j} of {}: nested paging \
                                 cannot give it to one sandbox alone",
                                g.addr
                            ));
                        }
                    }
                }
                for g in sb.guest_ram() {
                    let gr = PhysRange::new(g.guest, g.guest + g.len);
                    if gr.overlaps(&pages) {
                        refuse(format!(
                            "BAR{i} {r} is mapped at the same guest-physical address, where the \
                             sandbox has its RAM {gr}"
                        ));
                    }
                }
                for (c, gpa) in plan.channels_of(sb.id) {
                    let w = PhysRange::new(gpa, gpa + c.phys.len());
                    if w.overlaps(&pages) {
                        refuse(format!(
                            "BAR{i} {r} is mapped at the same guest-physical address, where the \
                             sandbox has channel {}'s window {w}",
                            c.key
                        ));
                    }
                }
            }
            if let Some(irq) = f.irq {
                for other in plan.sandboxes.iter().filter(|o| o.id != sb.id) {
                    if console_irq(other.console) == Some(irq) {
                        refuse(format!(
                            "has its INTx on IRQ {irq}, the IRQ of sandbox '{}''s console {}: an \
                             interrupt line goes to one sandbox",
                            other.name, other.console
                        ));
                    }
                }
                // Reported once per pair, at the later sandbox.
                for g in found.iter().filter(|g| g.addr != addr && g.irq == Some(irq)) {
                    if let Some(o) = owner_of(g.addr)
                        && o.id < sb.id
                    {
                        refuse(format!(
                            "has its INTx on IRQ {irq}, shared with {} of sandbox '{}': an \
                             interrupt line goes to one sandbox",
                            g.addr, o.name
                        ));
                    }
                }
            }
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Config, Machine, Sandbox};
    use crate::{MIB, plan};
    use alloc::string::ToString;
    use alloc::vec;

    fn addr(s: &str) -> PciAddr {
        PciAddr::parse(s).unwrap()
    }

    fn found(a: &str, class: u8, sub: u8, irq: Option<u8>, io: &[(u8, u16, u16)], mem: &[(u8, u64, u64)]) -> FoundFunction {
        FoundFunction {
            addr: addr(a),
            vendor: 0x10e8,
            device: 0x8406,
            class,
            subclass: sub,
            header_type: 0,
            irq,
            io: io.iter().map(|&(i, a, b)| (i, PortRange { first: a, last: b })).collect(),
            mem: mem.iter().map(|&(i, a, b)| (i, PhysRange::new(a, b))).collect(),
            nonsense: None,
        }
    }

    /// A PC-like bus 0: host bridge, ISA bridge, two CAN cards, a card with a memory BAR.
    fn machine_bus() -> Vec<FoundFunction> {
        vec![
            found("00:00.0", 0x06, 0x00, None, &[], &[]),
            found("00:1f.0", 0x06, 0x01, None, &[], &[]),
            found("00:04.0", 0xff, 0x00, Some(10), &[(0, 0xc000, 0xc07f), (1, 0xc080, 0xc0ff)], &[]),
            found("00:05.0", 0xff, 0x00, Some(11), &[(0, 0xc100, 0xc17f), (1, 0xc180, 0xc1ff)], &[]),
            found("00:06.0", 0x00, 0xff, Some(11), &[], &[(0, 0xfe00_0000, 0xfe10_0000)]),
        ]
    }

    fn two(pci0: &[&str], pci1: &[&str]) -> Plan {
        let mut a = Sandbox::quest("a", &[0], 64 * MIB);
        a.console = Console::Com(1);
        a.pci = pci0.iter().map(|s| addr(s)).collect();
        let mut b = Sandbox::quest("b", &[1], 64 * MIB);
        b.console = Console::Com(2);
        b.pci = pci1.iter().map(|s| addr(s)).collect();
        let cfg = Config { machine: None, monitor_memory: None, sandboxes: vec![a, b], channels: vec![] };
        plan(&cfg, &Machine { cpus: 2, memory_bytes: 512 * MIB }, &[]).unwrap()
    }

    fn messages(r: Result<(), Vec<Error>>) -> Vec<String> {
        r.err().unwrap_or_default().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn one_card_each_is_accepted() {
        assert_eq!(messages(check_devices(&two(&["00:04.0"], &["00:05.0", "00:06.0"]), &machine_bus())), Vec::<String>::new());
    }

    #[test]
    fn a_function_that_is_not_there_is_refused() {
        assert_eq!(
            messages(check_devices(&two(&["00:07.0"], &[]), &machine_bus())),
            ["sandbox 'a' PCI function 00:07.0 does not exist on this machine (nothing answers at that address)"]
        );
    }

    #[test]
    fn bridges_are_refused() {
        let m = messages(check_devices(&two(&["00:00.0"], &["00:1f.0"]), &machine_bus()));
        assert_eq!(
            m,
            [
                "sandbox 'a' PCI function 00:00.0 is the host bridge (class 0600): bridges stay with the monitor",
                "sandbox 'b' PCI function 00:1f.0 is an ISA bridge (class 0601): bridges stay with the monitor",
            ]
        );
    }

    #[test]
    fn a_shared_interrupt_line_is_refused() {
        // 00:05.0 and 00:06.0 are both on IRQ 11.
        let m = messages(check_devices(&two(&["00:05.0"], &["00:06.0"]), &machine_bus()));
        assert_eq!(
            m,
            ["sandbox 'b' PCI function 00:06.0 has its INTx on IRQ 11, shared with 00:05.0 of sandbox 'a': an interrupt line goes to one sandbox"]
        );
        // A line that is another sandbox's console IRQ.
        let mut bus = machine_bus();
        bus[2].irq = Some(3);
        let m = messages(check_devices(&two(&["00:04.0"], &[]), &bus));
        assert_eq!(m, ["sandbox 'a' PCI function 00:04.0 has its INTx on IRQ 3, the IRQ of sandbox 'b''s console COM2: an interrupt line goes to one sandbox"]);
    }

    #[test]
    fn bad_bars_are_refused() {
        let mut bus = machine_bus();
        bus[2].io[0].1 = PortRange { first: 0x3f8, last: 0x3ff };
        bus[3].io[1].1 = PortRange { first: 0xc000, last: 0xc0ff };
        bus[4].mem[0].1 = PhysRange::new(0x0200_0800, 0x0200_0900);
        bus.push(found("00:07.0", 0xff, 0, None, &[], &[(2, 0x0200_0000, 0x0200_0100)]));
        let m = messages(check_devices(&two(&["00:04.0"], &["00:05.0", "00:06.0"]), &bus));
        assert!(m.contains(&"sandbox 'a' PCI function 00:04.0 BAR0 I/O ports 0x3f8-0x3ff lie in the legacy range below 0x1000".to_string()), "{m:?}");
        assert!(m.contains(&"sandbox 'a' PCI function 00:04.0 BAR1 I/O ports 0xc080-0xc0ff overlap BAR1 of 00:05.0".to_string()), "{m:?}");
        assert!(m.contains(&"sandbox 'b' PCI function 00:05.0 BAR1 I/O ports 0xc000-0xc0ff overlap BAR1 of 00:04.0".to_string()), "{m:?}");
        assert!(m.iter().any(|e| e.starts_with("sandbox 'b' PCI function 00:06.0 BAR0 0x200_0800..0x200_0900 overlaps the RAM of sandbox")), "{m:?}");
        assert!(m.iter().any(|e| e.starts_with("sandbox 'b' PCI function 00:06.0 BAR0 0x200_0800..0x200_0900 shares a 4 KiB page with BAR2 of 00:07.0")), "{m:?}");
        assert!(m.iter().any(|e| e.contains("is mapped at the same guest-physical address, where the sandbox has its RAM")), "{m:?}");
        let mut bus = machine_bus();
        bus[4].mem[0].1 = PhysRange::new(0xfee0_0000, 0xfee0_1000);
        let m = messages(check_devices(&two(&[], &["00:06.0"]), &bus));
        assert_eq!(m, ["sandbox 'b' PCI function 00:06.0 BAR0 0xfee0_0000..0xfee0_1000 overlaps the IOAPIC/local APIC window 0xfec0_0000..0xff00_0000"]);
    }

    #[test]
    fn nonsense_is_refused() {
        let mut bus = machine_bus();
        bus[2].nonsense = Some("BAR1: wraps around".into());
        let m = messages(check_devices(&two(&["00:04.0"], &[]), &bus));
        assert_eq!(m, ["sandbox 'a' PCI function 00:04.0 reports nonsense (BAR1: wraps around): left alone"]);
    }

    #[test]
    fn configuration_rules() {
        let q = Image::Quest;
        assert!(static_problems(&q, &[addr("00:04.0")], addr("00:04.0")).is_empty());
        assert!(static_problems(&q, &[addr("00:1f.0"), addr("00:1f.2")], addr("00:1f.2")).is_empty());
        assert_eq!(
            static_problems(&q, &[addr("00:1f.2")], addr("00:1f.2")),
            ["is function 2 of a device whose function 0 (00:1f.0) the sandbox does not own: a guest finds a device's other functions only through function 0"]
        );
        assert_eq!(
            static_problems(&q, &[addr("01:00.0")], addr("01:00.0")),
            ["is on bus 01: only functions on bus 0 can be assigned (a guest reaches other buses through bridges, which stay with the monitor)"]
        );
        let linux = Image::Linux { kernel: "k".into(), initrd: None, cmdline: String::new() };
        assert!(static_problems(&linux, &[addr("00:04.0")], addr("00:04.0")).is_empty(), "Linux sandboxes may own functions");
        assert_eq!(static_problems(&linux, &[addr("00:1f.2")], addr("00:1f.2")).len(), 1, "by the same rules");
    }
}
