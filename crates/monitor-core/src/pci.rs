//! PCI configuration space as one sandbox sees it (configuration mechanism 1, ports
//! 0xCF8..=0xCFF, every access an exit).
//!
//! A sandbox that owns PCI functions sees exactly the host bridge (read-only: writes are
//! ignored) and its own
//! functions; every other address reads as all ones (no device) and writes to it are refused.
//! A sandbox that owns none sees nothing at all, not even the address latch: the ports behave
//! as any it does not own (IN all ones, OUT dropped), so a Linux sandbox's probes find no PCI,
//! exactly as before device assignment. What the owner may do to its functions:
//!
//! - **BARs** stay where the firmware put them (the monitor maps exactly those ranges): the
//!   sizing protocol (write all ones, read the size mask, write the old value back) is emulated
//!   from values the monitor measured at boot, never reaching the device; any other BAR value is
//!   refused. The expansion ROM BAR reads as 0 (no ROM) and writes to it are dropped.
//! - **Command register**: passed through with bus mastering forced off (no IOMMU: a bus-master
//!   device could DMA anywhere, and an MSI is a DMA write). Turning decoding on is refused when
//!   the function's BARs no longer hold the boot values (after a function reset), since a BAR
//!   reset to 0 would decode the legacy ports and low memory of the whole machine.
//! - **MSI** address and data writes are checked: fixed delivery of a vector >= 32 to one of the
//!   sandbox's own cores by physical APIC id (no redirection hint, no logical mode, high address
//!   0); enabling MSI checks the message already programmed. MSI-X tables live in a memory BAR
//!   and are not checked: with bus mastering off no message, MSI or MSI-X, leaves the device.
//! - Anything else is written through (device-specific registers are the device's business).
//!
//! Hand-written (no crate models a filtered configuration space); the decisions are host-tested
//! here and the monitor performs them with `hal::pci`.
use alloc::vec::Vec;

/// The first and last mechanism 1 port.
pub const CONFIG_PORTS: (u16, u16) = (0xcf8, 0xcff);
/// Command register bits.
const CMD_IO: u32 = 1;
const CMD_MEM: u32 = 2;
const CMD_BUS_MASTER: u32 = 4;

/// A PCI function's address (bus, device, function).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// One implemented BAR register of an assigned function, as measured at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarShadow {
    /// Register index 0..=5 (the upper half of a 64-bit BAR has its own entry).
    pub reg: u8,
    /// The value the firmware left there.
    pub value: u32,
    /// What the register reads after all ones were written (the size mask).
    pub probe: u32,
}

/// Where an MSI capability keeps its fields (`pci::msi_layout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    pub cap: u16,
    pub control: u16,
    pub address_lo: u16,
    pub address_hi: Option<u16>,
    pub data: u16,
}

/// A function the sandbox owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    pub bdf: Bdf,
    pub bars: Vec<BarShadow>,
    pub msi: Option<Msi>,
}

/// What the monitor does for a guest write to the data port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing more to do (latched, emulated, or dropped without a report).
    Handled,
    /// Write `value` (`size` bytes) at byte `off` of `bdf`'s configuration space.
    Write { bdf: Bdf, off: u16, size: u8, value: u32 },
    /// Refused: drop it, count it and report it.
    Refused { bdf: Bdf, off: u16, why: &'static str },
}

/// Which functions an address is for this sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Hidden,
    HostBridge,
    Owned(usize),
}

/// One sandbox's view of configuration space and its mechanism 1 address latch.
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    host_bridge: Option<Bdf>,
    functions: Vec<Assigned>,
    apic_ids: Vec<u32>,
    address: u32,
    /// Per function: a bit per BAR register in the middle of sizing.
    sizing: Vec<u8>,
}

/// Whether an MSI message address targets one of `apic_ids`: the interrupt window, physical
/// destination mode, no redirection hint.
pub fn msi_address_ok(address: u32, apic_ids: &[u32]) -> bool {
    address & 0xfff0_0000 == 0xfee0_0000 && address & 0b1100 == 0 && apic_ids.contains(&((address >> 12) & 0xff))
}

/// Whether MSI data asks for fixed delivery of a vector >= 32 (not NMI, SMI, INIT, ...).
pub fn msi_data_ok(data: u32) -> bool {
    (data >> 8) & 7 == 0 && data & 0xff >= 32
}

impl ConfigSpace {
    /// The view of a sandbox owning `functions` (the host bridge shown only if it owns one),
    /// whose cores have `apic_ids`.
    pub fn new(host_bridge: Bdf, functions: Vec<Assigned>, apic_ids: Vec<u32>) -> ConfigSpace {
        let sizing = alloc::vec![0; functions.len()];
        ConfigSpace { host_bridge: (!functions.is_empty()).then_some(host_bridge), functions, apic_ids, address: 0, sizing }
    }

    /// Whether `port` is one of mechanism 1's.
    pub fn is_config_port(port: u16) -> bool {
        (CONFIG_PORTS.0..=CONFIG_PORTS.1).contains(&port)
    }

    fn access(&self, bdf: Bdf) -> Access {
        if let Some(i) = self.functions.iter().position(|f| f.bdf == bdf) {
            Access::Owned(i)
        } else if self.host_bridge == Some(bdf) {
            Access::HostBridge
        } else {
            Access::Hidden
        }
    }

    /// The latched function and register, if the enable bit is set.
    fn target(&self) -> Option<(Bdf, u16)> {
        let a = self.address;
        (a & 0x8000_0000 != 0).then(|| {
            (Bdf { bus: (a >> 16) as u8, dev: ((a >> 11) & 0x1f) as u8, func: ((a >> 8) & 7) as u8 }, (a & 0xfc) as u16)
        })
    }

    /// The dword at `reg` of `bdf` as the sandbox sees it; `hw` reads the real one.
    fn dword(&self, bdf: Bdf, reg: u16, hw: &mut dyn FnMut(Bdf, u16) -> u32) -> u32 {
        match self.access(bdf) {
            Access::Hidden => u32::MAX,
            Access::HostBridge => hw(bdf, reg),
            Access::Owned(i) => {
                if (0x10..0x28).contains(&reg) {
                    let r = ((reg - 0x10) / 4) as u8;
                    if let Some(b) = self.functions[i].bars.iter().find(|b| b.reg == r)
                        && self.sizing[i] & (1 << r) != 0
                    {
                        return b.probe;
                    }
                    hw(bdf, reg)
                } else if reg == 0x30 {
                    0
                } else {
                    hw(bdf, reg)
                }
            }
        }
    }

    /// A guest IN of `size` bytes from `port` (a mechanism 1 port).
    pub fn read(&mut self, port: u16, size: u8, hw: &mut dyn FnMut(Bdf, u16) -> u32) -> u32 {
        let ones = if size >= 4 { u32::MAX } else { (1u32 << (8 * u32::from(size))) - 1 };
        if self.functions.is_empty() {
            return ones; // no PCI at all, as for any port it does not own
        }
        if port == 0xcf8 && size == 4 {
            return self.address;
        }
        if port < 0xcfc || u16::from(size) + (port - 0xcfc) > 4 {
            return ones;
        }
        let Some((bdf, reg)) = self.target() else { return ones };
        (self.dword(bdf, reg, hw) >> (8 * (port - 0xcfc))) & ones
    }

    /// A guest OUT of `size` bytes of `value` to `port` (a mechanism 1 port); `hw` reads the
    /// real configuration space (for the checks that need the current state).
    pub fn write(&mut self, port: u16, size: u8, value: u32, hw: &mut dyn FnMut(Bdf, u16) -> u32) -> Decision {
        if self.functions.is_empty() {
            return Decision::Handled;
        }
        if port == 0xcf8 && size == 4 {
            self.address = value;
            return Decision::Handled;
        }
        // 0xCF9 is the chipset's reset control register, and the rest of 0xCF8..0xCFB is no
        // configuration access: dropped.
        if port < 0xcfc {
            return Decision::Handled;
        }
        let Some((bdf, reg)) = self.target() else { return Decision::Handled };
        let off = reg + (port - 0xcfc);
        if u16::from(size) + (port - 0xcfc) > 4 {
            return Decision::Refused { bdf, off, why: "access crosses a dword" };
        }
        let i = match self.access(bdf) {
            Access::Hidden => return Decision::Refused { bdf, off, why: "not one of its PCI functions" },
            // Read-only, and every kernel's enumeration sizes its BARs: ignored, not reported.
            Access::HostBridge => return Decision::Handled,
            Access::Owned(i) => i,
        };
        let mut value = value;
        if (0x10..0x28).contains(&reg) {
            let r = ((reg - 0x10) / 4) as u8;
            let Some(b) = self.functions[i].bars.iter().find(|b| b.reg == r).copied() else {
                return Decision::Handled; // not implemented: reads 0 whatever is written
            };
            if size != 4 {
                return Decision::Refused { bdf, off, why: "partial write of a BAR" };
            }
            if value == u32::MAX {
                self.sizing[i] |= 1 << r;
                return Decision::Handled;
            }
            // The low dword's type bits are read-only; the upper dword of a 64-bit BAR is all
            // address.
            let is_low = self.functions[i].bars.iter().all(|o| !(o.reg + 1 == r && crate::pci::is_64bit_low(o.value)));
            let mask = if !is_low { u32::MAX } else if b.value & 1 == 1 { !3 } else { !0xf };
            if value & mask == b.value & mask {
                self.sizing[i] &= !(1 << r);
                return Decision::Handled;
            }
            return Decision::Refused { bdf, off, why: "BAR re-programming refused (BARs stay where the firmware put them)" };
        }
        if reg == 0x30 {
            return Decision::Handled;
        }
        if off == 4 {
            value &= !CMD_BUS_MASTER;
            if value & (CMD_IO | CMD_MEM) != 0 {
                let f = &self.functions[i];
                if f.bars.iter().any(|b| hw(bdf, 0x10 + 4 * u16::from(b.reg)) != b.value) {
                    return Decision::Refused { bdf, off, why: "decoding refused: its BARs no longer hold the boot values (function reset?)" };
                }
            }
        }
        if let Some(m) = self.functions[i].msi {
            let touches = |field: u16, len: u16| off < field + len && field < off + u16::from(size);
            if touches(m.address_lo, 4) {
                if off != m.address_lo || size != 4 {
                    return Decision::Refused { bdf, off, why: "partial write of the MSI address" };
                }
                if !msi_address_ok(value, &self.apic_ids) {
                    return Decision::Refused { bdf, off, why: "MSI address refused: not one of its own cores (physical destination)" };
                }
            }
            if let Some(hi) = m.address_hi
                && touches(hi, 4)
                && (off != hi || size != 4 || value != 0)
            {
                return Decision::Refused { bdf, off, why: "MSI high address refused: must be 0" };
            }
            if touches(m.data, 2) {
                if off != m.data {
                    return Decision::Refused { bdf, off, why: "partial write of the MSI data" };
                }
                if !msi_data_ok(value & 0xffff) {
                    return Decision::Refused { bdf, off, why: "MSI data refused: only fixed delivery of a vector >= 32" };
                }
            }
            if touches(m.control, 1) {
                let shift = 8 * u32::from(m.control - off.min(m.control));
                let enable = off <= m.control && (value >> shift) & 1 != 0;
                if enable {
                    let addr = hw(bdf, m.address_lo);
                    let high_ok = m.address_hi.is_none_or(|h| hw(bdf, h) == 0);
                    let data = hw(bdf, m.data & !3) >> (8 * u32::from(m.data & 3)) & 0xffff;
                    if !msi_address_ok(addr, &self.apic_ids) || !high_ok || !msi_data_ok(data) {
                        return Decision::Refused { bdf, off, why: "MSI enable refused: the programmed message does not target its own cores" };
                    }
                }
            }
        }
        Decision::Write { bdf, off, size, value }
    }

    /// The address latch (for tests).
    pub fn address(&self) -> u32 {
        self.address
    }
}

/// Whether a BAR's low dword says it is the first half of a 64-bit memory BAR.
pub fn is_64bit_low(low: u32) -> bool {
    low & 1 == 0 && (low >> 1) & 3 == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec;

    const BRIDGE: Bdf = Bdf { bus: 0, dev: 0, func: 0 };
    const MINE: Bdf = Bdf { bus: 0, dev: 4, func: 0 };
    const OTHER: Bdf = Bdf { bus: 0, dev: 5, func: 0 };

    /// A fake configuration space: dwords by (function, register).
    struct Hw(BTreeMap<(Bdf, u16), u32>);

    impl Hw {
        fn new() -> Hw {
            let mut m = BTreeMap::new();
            for (f, id) in [(BRIDGE, 0x29c0_8086u32), (MINE, 0x8406_10e8), (OTHER, 0x8406_10e8)] {
                m.insert((f, 0), id);
                m.insert((f, 4), 0x0000_0001);
            }
            m.insert((MINE, 0x14), 0xc081);
            m.insert((MINE, 0x18), 0xfe00_000c); // 64-bit prefetchable memory BAR, low half
            m.insert((MINE, 0x1c), 0);
            m.insert((MINE, 0x30), 0xfeb0_0000);
            m.insert((MINE, 0x50), 0x0080_6005); // MSI capability: 64-bit, disabled
            m.insert((MINE, 0x54), 0);
            m.insert((MINE, 0x58), 0);
            m.insert((MINE, 0x5c), 0);
            Hw(m)
        }
        fn read(&mut self) -> impl FnMut(Bdf, u16) -> u32 + '_ {
            |b, r| self.0.get(&(b, r)).copied().unwrap_or(if b == MINE || b == OTHER || b == BRIDGE { 0 } else { u32::MAX })
        }
    }

    fn space() -> ConfigSpace {
        let mine = Assigned {
            bdf: MINE,
            bars: vec![
                BarShadow { reg: 1, value: 0xc081, probe: 0xffff_ff81 },
                BarShadow { reg: 2, value: 0xfe00_000c, probe: 0xfff0_000c },
                BarShadow { reg: 3, value: 0, probe: u32::MAX },
            ],
            msi: Some(Msi { cap: 0x50, control: 0x52, address_lo: 0x54, address_hi: Some(0x58), data: 0x5c }),
        };
        ConfigSpace::new(BRIDGE, vec![mine], vec![0, 1])
    }

    fn addr(b: Bdf, reg: u16) -> u32 {
        0x8000_0000 | (u32::from(b.bus) << 16) | (u32::from(b.dev) << 11) | (u32::from(b.func) << 8) | u32::from(reg)
    }

    fn rd(s: &mut ConfigSpace, hw: &mut Hw, b: Bdf, off: u16, size: u8) -> u32 {
        assert_eq!(s.write(0xcf8, 4, addr(b, off & 0xfc), &mut hw.read()), Decision::Handled);
        s.read(0xcfc + (off & 3), size, &mut hw.read())
    }

    fn wr(s: &mut ConfigSpace, hw: &mut Hw, b: Bdf, off: u16, size: u8, v: u32) -> Decision {
        s.write(0xcf8, 4, addr(b, off & 0xfc), &mut hw.read());
        s.write(0xcfc + (off & 3), size, v, &mut hw.read())
    }

    #[test]
    fn sees_the_host_bridge_and_its_own_functions_only() {
        let (mut s, mut hw) = (space(), Hw::new());
        assert_eq!(rd(&mut s, &mut hw, BRIDGE, 0, 4), 0x29c0_8086);
        assert_eq!(rd(&mut s, &mut hw, MINE, 0, 4), 0x8406_10e8);
        assert_eq!(rd(&mut s, &mut hw, MINE, 2, 2), 0x8406);
        assert_eq!(rd(&mut s, &mut hw, MINE, 1, 1), 0x10);
        assert_eq!(rd(&mut s, &mut hw, OTHER, 0, 4), u32::MAX);
        assert_eq!(rd(&mut s, &mut hw, OTHER, 0, 2), 0xffff);
        // The enable bit clear: nothing.
        s.write(0xcf8, 4, addr(MINE, 0) & !0x8000_0000, &mut hw.read());
        assert_eq!(s.read(0xcfc, 4, &mut hw.read()), u32::MAX);
        // A sandbox owning nothing sees no PCI at all, as before device assignment: not even
        // the address latch (Linux's type 1 probe reads it back), and its writes are dropped
        // like those to any port it does not own.
        let mut none = ConfigSpace::new(BRIDGE, vec![], vec![0]);
        assert_eq!(rd(&mut none, &mut hw, BRIDGE, 0, 4), u32::MAX);
        assert_eq!(none.read(0xcf8, 4, &mut hw.read()), u32::MAX);
        assert_eq!(wr(&mut none, &mut hw, MINE, 4, 2, 0), Decision::Handled);
        // The expansion ROM is hidden.
        assert_eq!(rd(&mut s, &mut hw, MINE, 0x30, 4), 0);
    }

    #[test]
    fn writes_to_others_are_refused() {
        let (mut s, mut hw) = (space(), Hw::new());
        assert!(matches!(wr(&mut s, &mut hw, OTHER, 4, 2, 0), Decision::Refused { bdf: OTHER, off: 4, why: "not one of its PCI functions" }));
        // The host bridge is read-only: writes are ignored (every enumeration sizes its BARs).
        assert_eq!(wr(&mut s, &mut hw, BRIDGE, 0x60, 4, 1), Decision::Handled);
        assert_eq!(wr(&mut s, &mut hw, BRIDGE, 0x10, 4, u32::MAX), Decision::Handled);
        assert_eq!(rd(&mut s, &mut hw, BRIDGE, 0x10, 4), 0);
        // 0xCF9 (reset control) and byte writes to the address port are dropped.
        assert_eq!(s.write(0xcf9, 1, 6, &mut hw.read()), Decision::Handled);
    }

    #[test]
    fn bar_sizing_is_emulated_and_reprogramming_refused() {
        let (mut s, mut hw) = (space(), Hw::new());
        assert_eq!(wr(&mut s, &mut hw, MINE, 0x14, 4, u32::MAX), Decision::Handled);
        assert_eq!(rd(&mut s, &mut hw, MINE, 0x14, 4), 0xffff_ff81);
        assert_eq!(wr(&mut s, &mut hw, MINE, 0x14, 4, 0xc081), Decision::Handled);
        assert_eq!(rd(&mut s, &mut hw, MINE, 0x14, 4), 0xc081);
        // 64-bit: both halves.
        wr(&mut s, &mut hw, MINE, 0x18, 4, u32::MAX);
        wr(&mut s, &mut hw, MINE, 0x1c, 4, u32::MAX);
        assert_eq!((rd(&mut s, &mut hw, MINE, 0x18, 4), rd(&mut s, &mut hw, MINE, 0x1c, 4)), (0xfff0_000c, u32::MAX));
        assert_eq!(wr(&mut s, &mut hw, MINE, 0x18, 4, 0xfe00_0000), Decision::Handled);
        assert_eq!(wr(&mut s, &mut hw, MINE, 0x1c, 4, 0), Decision::Handled);
        assert_eq!(rd(&mut s, &mut hw, MINE, 0x18, 4), 0xfe00_000c);
        // Anything else never reaches the device.
        assert!(matches!(wr(&mut s, &mut hw, MINE, 0x14, 4, 0x3f9), Decision::Refused { off: 0x14, .. }));
        assert!(matches!(wr(&mut s, &mut hw, MINE, 0x1c, 4, 1), Decision::Refused { off: 0x1c, .. }));
        assert!(matches!(wr(&mut s, &mut hw, MINE, 0x14, 2, 0xffff), Decision::Refused { why: "partial write of a BAR", .. }));
        // The ROM BAR: dropped.
        assert_eq!(wr(&mut s, &mut hw, MINE, 0x30, 4, u32::MAX), Decision::Handled);
    }

    #[test]
    fn bus_mastering_stays_off_and_decoding_needs_the_boot_bars() {
        let (mut s, mut hw) = (space(), Hw::new());
        assert_eq!(wr(&mut s, &mut hw, MINE, 4, 2, 0x0407), Decision::Write { bdf: MINE, off: 4, size: 2, value: 0x0403 });
        assert_eq!(wr(&mut s, &mut hw, MINE, 4, 4, 0xf900_0005), Decision::Write { bdf: MINE, off: 4, size: 4, value: 0xf900_0001 });
        assert_eq!(wr(&mut s, &mut hw, MINE, 4, 1, 0x04), Decision::Write { bdf: MINE, off: 4, size: 1, value: 0 });
        // After a function reset the BARs read 0: decoding stays off.
        hw.0.insert((MINE, 0x14), 0x1);
        assert!(matches!(wr(&mut s, &mut hw, MINE, 4, 2, 1), Decision::Refused { off: 4, .. }));
        assert_eq!(wr(&mut s, &mut hw, MINE, 4, 2, 0x400), Decision::Write { bdf: MINE, off: 4, size: 2, value: 0x400 });
        // Device-specific registers pass.
        assert_eq!(wr(&mut s, &mut hw, MINE, 0x44, 1, 0x5a), Decision::Write { bdf: MINE, off: 0x44, size: 1, value: 0x5a });
    }

    #[test]
    fn msi_may_only_target_its_own_cores() {
        let (mut s, mut hw) = (space(), Hw::new());
        assert!(msi_address_ok(0xfee0_1000, &[0, 1]));
        assert!(!msi_address_ok(0xfee0_2000, &[0, 1]), "APIC id 2 is another sandbox's");
        assert!(!msi_address_ok(0xfee0_0004, &[0, 1]), "logical destination");
        assert!(!msi_address_ok(0xfee0_0008, &[0, 1]), "redirection hint");
        assert!(!msi_address_ok(0x1000_0000, &[0, 1]), "a plain memory write");
        assert!(msi_data_ok(0x41) && !msi_data_ok(0x10) && !msi_data_ok(0x441) && !msi_data_ok(0x541));
        assert!(matches!(wr(&mut s, &mut hw, MINE, 0x54, 4, 0xfee0_2000), Decision::Refused { off: 0x54, .. }));
        assert_eq!(wr(&mut s, &mut hw, MINE, 0x54, 4, 0xfee0_1000), Decision::Write { bdf: MINE, off: 0x54, size: 4, value: 0xfee0_1000 });
        assert!(matches!(wr(&mut s, &mut hw, MINE, 0x58, 4, 1), Decision::Refused { off: 0x58, .. }));
        assert!(matches!(wr(&mut s, &mut hw, MINE, 0x5c, 2, 0x0400 | 0x41), Decision::Refused { off: 0x5c, .. }));
        assert_eq!(wr(&mut s, &mut hw, MINE, 0x5c, 2, 0x41), Decision::Write { bdf: MINE, off: 0x5c, size: 2, value: 0x41 });
        // Enabling checks what the device holds: nothing yet (the writes above were decisions
        // only), so refused; once the message is there, allowed.
        assert!(matches!(wr(&mut s, &mut hw, MINE, 0x52, 2, 1), Decision::Refused { off: 0x52, .. }));
        hw.0.insert((MINE, 0x54), 0xfee0_1000);
        hw.0.insert((MINE, 0x5c), 0x41);
        assert_eq!(wr(&mut s, &mut hw, MINE, 0x52, 2, 0x81), Decision::Write { bdf: MINE, off: 0x52, size: 2, value: 0x81 });
        assert_eq!(wr(&mut s, &mut hw, MINE, 0x50, 4, 0x0081_0000), Decision::Write { bdf: MINE, off: 0x50, size: 4, value: 0x0081_0000 });
        hw.0.insert((MINE, 0x54), 0xfee0_3000);
        assert!(matches!(wr(&mut s, &mut hw, MINE, 0x50, 4, 0x0081_0000), Decision::Refused { off: 0x50, .. }));
    }
}
