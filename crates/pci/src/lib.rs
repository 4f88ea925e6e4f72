//! PCI logic without hardware, shared by hal (which performs the accesses) and the kernel (which
//! enumerates and decides): configuration addresses for mechanism 1 (ports 0xCF8/0xCFC) and
//! ECAM (the memory-mapped window the ACPI MCFG describes), the type 0/1 header, BAR sizing
//! arithmetic, capability-list walks, MSI messages, and the interrupt-storm rule.
//!
//! Everything a device returns is treated as untrusted: a configuration space of all ones, an
//! unknown header type, a BAR that wraps or overlaps RAM, a capability list that loops — each is
//! reported as [`Probe::Nonsense`] or an `Err` naming the problem, never a panic.
//!
//! Written by hand: the PCI crates on crates.io (`pci_types`) cover the header layout but not the
//! robustness rules above, and the kernel needs the decisions (what to leave alone) host-tested.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

/// A PCI function's address: bus, device (0..32), function (0..8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    /// `None` if `device` or `function` is out of range.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Bdf> {
        if device < 32 && function < 8 { Some(Bdf { bus, device, function }) } else { None }
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// The CONFIG_ADDRESS value (port 0xCF8) of mechanism 1 for the dword at `off` (aligned down);
/// `None` if the function is invalid or `off` is beyond the 256 bytes mechanism 1 reaches.
pub fn mech1_address(bdf: Bdf, off: u16) -> Option<u32> {
    if bdf.device >= 32 || bdf.function >= 8 || off >= 256 {
        return None;
    }
    Some(
        0x8000_0000
            | (u32::from(bdf.bus) << 16)
            | (u32::from(bdf.device) << 11)
            | (u32::from(bdf.function) << 8)
            | u32::from(off & 0xfc),
    )
}

/// An ECAM window (one MCFG entry of segment 0): physical base and the buses it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ecam {
    pub base: u64,
    pub bus_start: u8,
    pub bus_end: u8,
}

impl Ecam {
    /// Bytes the window spans (1 MiB per bus).
    pub fn len(&self) -> u64 {
        (u64::from(self.bus_end.saturating_sub(self.bus_start)) + 1) << 20
    }

    /// Whether the window is empty (never: at least one bus).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Offset into the window of the dword at `off` (aligned down) of `bdf`; `None` outside.
    pub fn offset(&self, bdf: Bdf, off: u16) -> Option<u64> {
        if bdf.bus < self.bus_start || bdf.bus > self.bus_end || bdf.device >= 32 || bdf.function >= 8 || off >= 4096 {
            return None;
        }
        Some(
            (u64::from(bdf.bus - self.bus_start) << 20)
                | (u64::from(bdf.device) << 15)
                | (u64::from(bdf.function) << 12)
                | u64::from(off & 0xffc),
        )
    }

    /// Checks an MCFG entry: a 1 MiB-aligned base, buses in order, no wrap-around.
    pub fn check(base: u64, bus_start: u8, bus_end: u8) -> Result<Ecam, &'static str> {
        if bus_end < bus_start {
            return Err("MCFG entry: end bus before start bus");
        }
        if base & 0xf_ffff != 0 {
            return Err("MCFG entry: base not 1 MiB aligned");
        }
        let e = Ecam { base, bus_start, bus_end };
        base.checked_add(e.len()).ok_or("MCFG entry: window wraps around")?;
        Ok(e)
    }
}

/// Reads configuration dwords (hal's accessor, or a table in the tests).
pub trait ConfigRead {
    fn read32(&self, bdf: Bdf, off: u16) -> u32;
    fn read16(&self, bdf: Bdf, off: u16) -> u16 {
        (self.read32(bdf, off & !3) >> ((off & 2) * 8)) as u16
    }
    fn read8(&self, bdf: Bdf, off: u16) -> u8 {
        (self.read32(bdf, off & !3) >> ((off & 3) * 8)) as u8
    }
}

/// The fields of the common header the kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub vendor: u16,
    pub device: u16,
    pub command: u16,
    pub status: u16,
    pub revision: u8,
    pub prog_if: u8,
    pub subclass: u8,
    pub class: u8,
    /// 0 (device), 1 (PCI-PCI bridge), 2 (CardBus bridge).
    pub header_type: u8,
    pub multifunction: bool,
    /// 0 = none, 1..4 = INTA..INTD.
    pub interrupt_pin: u8,
    /// What firmware wrote (the ISA IRQ on PC platforms; 0xff = unknown).
    pub interrupt_line: u8,
    /// Bridges: the secondary and subordinate bus numbers.
    pub secondary_bus: u8,
    pub subordinate_bus: u8,
}

impl Header {
    /// BARs this header type has (6 for a device, 2 for a PCI-PCI bridge, none for CardBus).
    pub fn bar_count(&self) -> u8 {
        match self.header_type {
            0 => 6,
            1 => 2,
            _ => 0,
        }
    }
    /// Whether the function has a capability list (status bit 4).
    pub fn has_capabilities(&self) -> bool {
        self.status & (1 << 4) != 0
    }
}

/// What a configuration read at a function found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nothing answers (vendor 0xffff).
    Absent,
    /// Something answers but its header makes no sense: leave it alone (the reason).
    Nonsense(&'static str),
    Present(Header),
}

/// Reads and checks the header of `bdf`.
pub fn probe(cfg: &dyn ConfigRead, bdf: Bdf) -> Probe {
    let id = cfg.read32(bdf, 0);
    let vendor = id as u16;
    if vendor == 0xffff {
        return Probe::Absent;
    }
    if vendor == 0 {
        return Probe::Nonsense("vendor id 0000");
    }
    let cmd_status = cfg.read32(bdf, 4);
    let class = cfg.read32(bdf, 8);
    let misc = cfg.read32(bdf, 0xc);
    if cmd_status == u32::MAX && class == u32::MAX && misc == u32::MAX {
        return Probe::Nonsense("configuration space reads all ones");
    }
    let ht = (misc >> 16) as u8;
    let header_type = ht & 0x7f;
    if header_type > 2 {
        return Probe::Nonsense("unknown header type");
    }
    let int = cfg.read32(bdf, 0x3c);
    let buses = if header_type == 1 { cfg.read32(bdf, 0x18) } else { 0 };
    let interrupt_pin = (int >> 8) as u8;
    if interrupt_pin > 4 {
        return Probe::Nonsense("interrupt pin beyond INTD");
    }
    Probe::Present(Header {
        vendor,
        device: (id >> 16) as u16,
        command: cmd_status as u16,
        status: (cmd_status >> 16) as u16,
        revision: class as u8,
        prog_if: (class >> 8) as u8,
        subclass: (class >> 16) as u8,
        class: (class >> 24) as u8,
        header_type,
        multifunction: ht & 0x80 != 0,
        interrupt_pin,
        interrupt_line: int as u8,
        secondary_bus: (buses >> 8) as u8,
        subordinate_bus: (buses >> 16) as u8,
    })
}

/// A BAR's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    Mem64,
}

/// A decoded, sized BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub index: u8,
    pub kind: BarKind,
    pub base: u64,
    pub size: u64,
    pub prefetchable: bool,
}

impl Bar {
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            BarKind::Io => write!(f, "BAR{} I/O ports {:#x} [size={:#x}]", self.index, self.base, self.size),
            BarKind::Mem32 | BarKind::Mem64 => write!(
                f,
                "BAR{} memory at {:#x} ({}-bit, {}) [size={:#x}]",
                self.index,
                self.base,
                if self.kind == BarKind::Mem64 { 64 } else { 32 },
                if self.prefetchable { "prefetchable" } else { "non-prefetchable" },
                self.size
            ),
        }
    }
}

/// Whether a BAR's low dword says it is the first half of a 64-bit memory BAR.
pub fn is_64bit(low: u32) -> bool {
    low & 1 == 0 && (low >> 1) & 3 == 2
}

/// Decodes BAR `index` from its value and the value read back after writing all ones (`probe`)
/// — for a 64-bit BAR also the next register's value and read-back. `Ok(None)`: not
/// implemented (reads back zero). `Err`: nonsense (reserved type, wrap-around).
pub fn decode_bar(index: u8, value: u32, probe: u32, high: Option<(u32, u32)>) -> Result<Option<Bar>, &'static str> {
    if value & 1 == 1 {
        // I/O: 16-bit port space; the upper half may read back as zero on 16-bit decoders.
        let mask = (probe & !3) | 0xffff_0000;
        if probe & !3 & 0xffff == 0 {
            return Ok(None);
        }
        let size = u64::from(!mask) + 1;
        let base = u64::from(value & !3);
        if base + size > 0x1_0000 {
            return Err("I/O BAR beyond the 64 KiB port space");
        }
        return Ok(Some(Bar { index, kind: BarKind::Io, base, size, prefetchable: false }));
    }
    let prefetchable = value & 8 != 0;
    let (kind, base, mask) = match (value >> 1) & 3 {
        0 | 1 => (BarKind::Mem32, u64::from(value & !0xf), u64::from(probe & !0xf) | 0xffff_ffff_0000_0000),
        2 => {
            let (hv, hp) = high.ok_or("64-bit BAR in the last BAR slot")?;
            (
                BarKind::Mem64,
                (u64::from(hv) << 32) | u64::from(value & !0xf),
                (u64::from(hp) << 32) | u64::from(probe & !0xf),
            )
        }
        _ => return Err("memory BAR of reserved type"),
    };
    if mask & 0xffff_ffff == 0 && (kind == BarKind::Mem32 || mask == 0) {
        return Ok(None);
    }
    if mask == 0 {
        return Ok(None);
    }
    // The size is the lowest address bit the device lets us write.
    let size = 1u64 << mask.trailing_zeros();
    if base.checked_add(size).is_none() {
        return Err("memory BAR wraps around the address space");
    }
    Ok(Some(Bar { index, kind, base, size, prefetchable }))
}

/// Whether `[base, base + size)` touches any of `ranges` (`[start, end)`).
pub fn overlaps(base: u64, size: u64, ranges: &[(u64, u64)]) -> bool {
    let end = base.saturating_add(size);
    ranges.iter().any(|&(s, e)| base < e && s < end)
}

/// Walks a function's capability list: `(id, offset)` pairs. Stops at the end of the list, at a
/// pointer into the header (below 0x40) and after 48 entries (a list that loops).
pub struct Capabilities<'a> {
    cfg: &'a dyn ConfigRead,
    bdf: Bdf,
    next: u8,
    steps: u8,
}

/// The capability list of a function whose header says it has one (else an empty walk).
pub fn capabilities<'a>(cfg: &'a dyn ConfigRead, bdf: Bdf, h: &Header) -> Capabilities<'a> {
    let next = if h.has_capabilities() { cfg.read8(bdf, 0x34) & 0xfc } else { 0 };
    Capabilities { cfg, bdf, next, steps: 0 }
}

impl Iterator for Capabilities<'_> {
    type Item = (u8, u8);
    fn next(&mut self) -> Option<(u8, u8)> {
        if self.next < 0x40 || self.steps >= 48 {
            return None;
        }
        self.steps += 1;
        let off = self.next;
        let w = self.cfg.read16(self.bdf, u16::from(off));
        self.next = (w >> 8) as u8 & 0xfc;
        Some((w as u8, off))
    }
}

/// Capability ids.
pub const CAP_MSI: u8 = 0x05;
pub const CAP_MSIX: u8 = 0x11;
pub const CAP_PCIE: u8 = 0x10;

/// Where an MSI capability at `cap` keeps its fields, from its message-control word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiLayout {
    pub control: u16,
    pub address_lo: u16,
    pub address_hi: Option<u16>,
    pub data: u16,
}

pub fn msi_layout(cap: u8, control: u16) -> MsiLayout {
    let cap = u16::from(cap);
    let is64 = control & (1 << 7) != 0;
    MsiLayout {
        control: cap + 2,
        address_lo: cap + 4,
        address_hi: is64.then_some(cap + 8),
        data: if is64 { cap + 12 } else { cap + 8 },
    }
}

/// The MSI message that delivers `vector` to the local APIC `apic_id` (fixed delivery, edge,
/// physical destination): the only messages hal lets a device send.
pub fn msi_message(apic_id: u8, vector: u8) -> (u32, u16) {
    (0xfee0_0000 | (u32::from(apic_id) << 12), u16::from(vector))
}

/// The interrupt-storm rule for one interrupt line: `limit` interrupts in a row that no driver
/// claims mean the line is stuck (a device asserting it for nothing anyone handles); the line
/// is then masked for good and the device left alone.
#[derive(Clone, Copy, Debug)]
pub struct StormGuard {
    unclaimed_run: u32,
    limit: u32,
    pub total: u64,
    pub unclaimed: u64,
}

impl StormGuard {
    pub const fn new(limit: u32) -> StormGuard {
        StormGuard { unclaimed_run: 0, limit, total: 0, unclaimed: 0 }
    }
    /// Records one interrupt; `true` the first time the run of unclaimed ones reaches the limit.
    pub fn record(&mut self, claimed: bool) -> bool {
        self.total += 1;
        if claimed {
            self.unclaimed_run = 0;
            return false;
        }
        self.unclaimed += 1;
        self.unclaimed_run += 1;
        self.unclaimed_run == self.limit
    }
}

/// lspci's name for a class/subclass (a few common ones; otherwise the class's name).
pub fn class_name(class: u8, subclass: u8) -> &'static str {
    match (class, subclass) {
        (0x00, _) => "Non-VGA unclassified device",
        (0x01, 0x01) => "IDE interface",
        (0x01, 0x06) => "SATA controller",
        (0x01, 0x08) => "Non-Volatile memory controller",
        (0x01, _) => "Mass storage controller",
        (0x02, 0x00) => "Ethernet controller",
        (0x02, _) => "Network controller",
        (0x03, 0x00) => "VGA compatible controller",
        (0x03, _) => "Display controller",
        (0x04, _) => "Multimedia controller",
        (0x05, _) => "Memory controller",
        (0x06, 0x00) => "Host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI bridge",
        (0x06, _) => "Bridge",
        (0x07, _) => "Communication controller",
        (0x08, _) => "System peripheral",
        (0x0c, 0x03) => "USB controller",
        (0x0c, 0x05) => "SMBus",
        (0x0c, 0x09) => "CANBUS",
        (0x0c, _) => "Serial bus controller",
        (0xff, _) => "Unassigned class",
        _ => "Unknown class",
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// A config space: 256 dwords per function of a small table, all ones elsewhere.
    struct Table(&'static [(Bdf, [u32; 64])]);
    impl ConfigRead for Table {
        fn read32(&self, bdf: Bdf, off: u16) -> u32 {
            self.0.iter().find(|(b, _)| *b == bdf).map_or(u32::MAX, |(_, s)| s[usize::from(off / 4) % 64])
        }
    }
    const F0: Bdf = Bdf { bus: 0, device: 3, function: 0 };

    const fn kvaser() -> [u32; 64] {
        let mut s = [0u32; 64];
        s[0] = 0x8406_10e8;
        s[1] = 0x0000_0001;
        s[2] = 0x00ff_0000;
        s[4] = 0xc001;
        s[15] = 0x0000_010b;
        s
    }

    #[test]
    fn mechanism_1_and_ecam_addresses() {
        let b = Bdf::new(1, 2, 3).unwrap();
        assert_eq!(mech1_address(b, 0x3e), Some(0x8001_133c));
        assert_eq!(mech1_address(b, 0x100), None);
        assert!(Bdf::new(0, 32, 0).is_none() && Bdf::new(0, 0, 8).is_none());
        let e = Ecam::check(0xb000_0000, 0, 255).unwrap();
        assert_eq!(e.len(), 256 << 20);
        assert_eq!(e.offset(b, 0x104), Some((1 << 20) | (2 << 15) | (3 << 12) | 0x104));
        assert_eq!(e.offset(b, 4096), None);
        let e1 = Ecam::check(0xb000_0000, 2, 3).unwrap();
        assert_eq!(e1.offset(b, 0), None);
        assert!(Ecam::check(0xb000_1000, 0, 1).is_err());
        assert!(Ecam::check(0xb000_0000, 5, 1).is_err());
        assert!(Ecam::check(0xffff_ffff_fff0_0000, 0, 255).is_err());
    }

    #[test]
    fn header_of_a_device_absent_and_nonsense() {
        static T: [(Bdf, [u32; 64]); 3] = [
            (F0, kvaser()),
            (Bdf { bus: 0, device: 4, function: 0 }, {
                let mut s = [u32::MAX; 64];
                s[0] = 0x1234_10e8;
                s
            }),
            (Bdf { bus: 0, device: 5, function: 0 }, {
                let mut s = kvaser();
                s[3] = 0x007f_0000;
                s
            }),
        ];
        let t = Table(&T);
        let Probe::Present(h) = probe(&t, F0) else { panic!() };
        assert_eq!((h.vendor, h.device, h.class, h.subclass, h.header_type), (0x10e8, 0x8406, 0, 0xff, 0));
        assert_eq!((h.interrupt_pin, h.interrupt_line, h.multifunction), (1, 11, false));
        assert_eq!(probe(&t, Bdf { bus: 0, device: 9, function: 0 }), Probe::Absent);
        // All ones but for a vendor id (a broken device): left alone.
        assert_eq!(probe(&t, Bdf { bus: 0, device: 4, function: 0 }), Probe::Nonsense("configuration space reads all ones"));
        assert_eq!(probe(&t, Bdf { bus: 0, device: 5, function: 0 }), Probe::Nonsense("unknown header type"));
    }

    #[test]
    fn bars_are_sized() {
        // I/O BAR of 0x80 ports at 0xc000 (mask reads back 0xffffff81).
        let b = decode_bar(1, 0xc001, 0xffff_ff81, None).unwrap().unwrap();
        assert_eq!((b.kind, b.base, b.size), (BarKind::Io, 0xc000, 0x80));
        // A 16-bit decoder: upper half reads back zero.
        let b = decode_bar(0, 0xc101, 0x0000_ff01, None).unwrap().unwrap();
        assert_eq!(b.size, 0x100);
        // 32-bit memory, 4 KiB, non-prefetchable.
        let b = decode_bar(0, 0xfebf_1000, 0xffff_f000, None).unwrap().unwrap();
        assert_eq!((b.kind, b.base, b.size, b.prefetchable), (BarKind::Mem32, 0xfebf_1000, 0x1000, false));
        // 64-bit prefetchable, 16 KiB above 4 GiB.
        assert!(is_64bit(0xc)); // type 2, prefetchable
        let b = decode_bar(2, 0x0000_000c, 0xffff_c00c, Some((0x8, 0xffff_ffff))).unwrap().unwrap();
        assert_eq!((b.kind, b.base, b.size, b.prefetchable), (BarKind::Mem64, 0x8_0000_0000, 0x4000, true));
        // Not implemented, reserved type, 64-bit in the last slot, I/O beyond 64 KiB.
        assert_eq!(decode_bar(3, 0, 0, None), Ok(None));
        assert!(decode_bar(3, 0x6, 0xffff_fff6, None).is_err());
        assert!(decode_bar(5, 0x4, 0xffff_fff4, None).is_err());
        assert!(decode_bar(0, 0xfff1, 0xffff_ff01, None).is_err());
        assert!(overlaps(0x1000, 0x1000, &[(0, 0x1001)]));
        assert!(!overlaps(0x1000, 0x1000, &[(0, 0x1000), (0x2000, 0x3000)]));
    }

    #[test]
    fn capability_walk_ends_even_on_a_loop() {
        static T: [(Bdf, [u32; 64]); 1] = [(F0, {
            let mut s = kvaser();
            s[1] |= 1 << 20; // capability list
            s[13] = 0x40;
            s[16] = 0x0080_5005; // MSI at 0x40 (64-bit), next 0x50
            s[20] = 0x0000_4010; // PCIe at 0x50, next 0x40: a loop
            s
        })];
        let t = Table(&T);
        let Probe::Present(h) = probe(&t, F0) else { panic!() };
        let caps: std::vec::Vec<_> = capabilities(&t, F0, &h).collect();
        assert_eq!(caps.len(), 48);
        assert_eq!(&caps[..3], &[(CAP_MSI, 0x40), (CAP_PCIE, 0x50), (CAP_MSI, 0x40)]);
        let l = msi_layout(0x40, 0x80);
        assert_eq!((l.address_hi, l.data), (Some(0x48), 0x4c));
        assert_eq!(msi_layout(0x40, 0).data, 0x48);
        assert_eq!(msi_message(3, 0x41), (0xfee0_3000, 0x41));
    }

    #[test]
    fn a_stuck_line_is_a_storm_once() {
        let mut g = StormGuard::new(3);
        assert!(!g.record(false) && !g.record(false));
        assert!(!g.record(true)); // a claimed one resets the run
        assert!(!g.record(false) && !g.record(false));
        assert!(g.record(false));
        assert!(!g.record(false)); // reported once
        assert_eq!((g.total, g.unclaimed), (7, 6));
    }

    proptest::proptest! {
        /// Whatever a device answers, decoding never panics and a decoded BAR never wraps.
        #[test]
        fn any_bar_value_decodes_safely(index in 0u8..6, v: u32, p: u32, hv: u32, hp: u32) {
            if let Ok(Some(b)) = decode_bar(index, v, p, Some((hv, hp))) {
                proptest::prop_assert!(b.size.is_power_of_two());
                proptest::prop_assert!(b.base.checked_add(b.size).is_some());
            }
        }
    }
}
