//! The virtual IOAPIC a Linux sandbox that owns PCI functions sees.
//!
//! The real IOAPIC is the monitor's. A Linux kernel routes its PCI INTx lines through an
//! IOAPIC listed in the MADT, so the monitor lists one at the architectural address
//! ([`BASE`], GSI base 0, [`PINS`] pins) but leaves its page out of the sandbox's nested page
//! tables: every access is a nested page fault that the monitor decodes
//! (`crate::insn::decode_mov`) and hands to [`VirtualIoApic`]. Its registers:
//!
//! * IOREGSEL (offset 0x00) and IOWIN (0x10): the indirect register window;
//! * ID (0), version (1: [`VERSION`], an IOAPIC with the EOI register, 24 pins) and
//!   arbitration (2);
//! * the redirection entries (0x10 + 2n, 0x11 + 2n);
//! * the EOI register (offset 0x40).
//!
//! Pin n is GSI n, which is the ISA IRQ (the Interrupt Line) the firmware gave the function:
//! the DSDT's `_PRT` names it (`crate::linux`). Only the pins of the sandbox's own functions
//! ([`VirtualIoApic::new`]'s `pins`) take effect: each write to one of their entries becomes an
//! [`Effect::Program`] for the real pin, with the vector, mask, trigger mode and physical
//! destination the guest wrote, after checking that the destination is one of the sandbox's
//! own cores and the delivery fixed (as Jailhouse does with its IOAPIC cells). The polarity is
//! the platform's, whatever the guest says (a wrong polarity on a level line would be an
//! interrupt storm). Every other pin reads masked and its writes are dropped: Linux masks every
//! pin at boot, so those writes are normal and not reported.
//!
//! **EOI.** A level-triggered interrupt leaves the real pin's Remote IRR set until an EOI. Linux
//! (`ioapic_ack_level`) acknowledges it at its local APIC; the local APIC, whose TMR bit is set
//! for a level interrupt from the real IOAPIC, broadcasts the EOI to the IOAPIC, which clears
//! Remote IRR: no exit. Only when the TMR bit is clear does Linux also EOI the pin itself,
//! through the EOI register of a version 0x20 IOAPIC (here [`Effect::Eoi`] for the sandbox's
//! pins with that vector, which the monitor carries out pin by pin, never as a broadcast that
//! could clear another sandbox's line) or, on older versions, by setting the entry edge-
//! triggered and back, which the forwarding of the trigger mode carries to the real pin.
use alloc::string::String;
use alloc::vec::Vec;

/// The virtual IOAPIC's guest-physical page.
pub const BASE: u64 = 0xfec0_0000;
/// Its pins (= GSIs 0..24).
pub const PINS: usize = 24;
/// The version register: version 0x20 (has the EOI register), PINS - 1 as the highest entry.
pub const VERSION: u32 = 0x20 | ((PINS as u32 - 1) << 16);
/// The IOAPIC id in the MADT and the ID register.
pub const ID: u8 = 0;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const EOI: u64 = 0x40;
const MASKED: u32 = 1 << 16;
/// Low dword bits the guest may set: vector, delivery mode, destination mode, polarity,
/// trigger mode, mask (delivery status and Remote IRR are read-only).
const LOW_WRITABLE: u32 = 0xff | (7 << 8) | (1 << 11) | (1 << 13) | (1 << 15) | MASKED;
/// Delivery status and Remote IRR, read from the real pin.
const LOW_STATUS: u32 = (1 << 12) | (1 << 14);

/// What the monitor must do to the real IOAPIC after a guest access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Program the real pin `pin` (an ISA IRQ of one of the sandbox's functions): `vector` to
    /// APIC id `dest`, masked or not, level- or edge-triggered, with the platform's polarity.
    Program { pin: u8, vector: u8, dest: u32, masked: bool, level: bool },
    /// End of interrupt for each of these pins (bit n = pin n): clear Remote IRR.
    Eoi(u32),
    /// The entry of `pin` was refused (programmed masked instead): the reason, for a report.
    Refused { pin: u8, why: String },
}

/// The sandbox's virtual IOAPIC.
#[derive(Clone, Debug)]
pub struct VirtualIoApic {
    sel: u32,
    id: u32,
    /// The entries as the guest wrote them (low, high).
    rte: [(u32, u32); PINS],
    /// Bit n: pin n belongs to the sandbox.
    own: u32,
    apic_ids: Vec<u32>,
}

impl VirtualIoApic {
    /// A virtual IOAPIC whose pins `pins` (ISA IRQs of the sandbox's functions; others are
    /// ignored) take effect, targeting only `apic_ids` (the sandbox's cores). All masked.
    pub fn new(pins: &[u8], apic_ids: Vec<u32>) -> VirtualIoApic {
        let own = pins.iter().filter(|&&p| usize::from(p) < PINS).fold(0, |m, &p| m | (1 << p));
        VirtualIoApic { sel: 0, id: u32::from(ID) << 24, rte: [(MASKED, 0); PINS], own, apic_ids }
    }

    /// Whether pin `pin` is the sandbox's.
    pub fn owns(&self, pin: usize) -> bool {
        pin < PINS && self.own & (1 << pin) != 0
    }

    /// A read of `size` bytes at `offset` in the page. `hw_low(pin)` is the real entry's low
    /// dword of one of the sandbox's pins (for its delivery status and Remote IRR).
    pub fn read(&self, offset: u64, size: u8, hw_low: impl FnOnce(u8) -> u32) -> u32 {
        if size != 4 || !offset.is_multiple_of(4) {
            return u32::MAX;
        }
        match offset {
            IOREGSEL => self.sel,
            IOWIN => match self.sel {
                0 => self.id,
                1 => VERSION,
                2 => self.id,
                r @ 0x10..=0x3f => {
                    let pin = ((r - 0x10) / 2) as usize;
                    let (low, high) = self.rte[pin];
                    match (r % 2 == 0, self.owns(pin)) {
                        (true, true) => (low & !LOW_STATUS) | (hw_low(pin as u8) & LOW_STATUS),
                        (true, false) => MASKED,
                        (false, true) => high,
                        (false, false) => 0,
                    }
                }
                _ => 0,
            },
            _ => 0,
        }
    }

    /// A write of `size` bytes of `value` at `offset` in the page.
    pub fn write(&mut self, offset: u64, size: u8, value: u32) -> Effect {
        if size != 4 || !offset.is_multiple_of(4) {
            return Effect::None;
        }
        match offset {
            IOREGSEL => {
                self.sel = value & 0xff;
                Effect::None
            }
            IOWIN => match self.sel {
                0 => {
                    self.id = value & (0xf << 24);
                    Effect::None
                }
                r @ 0x10..=0x3f => {
                    let pin = ((r - 0x10) / 2) as usize;
                    if !self.owns(pin) {
                        return Effect::None;
                    }
                    if r % 2 == 0 {
                        self.rte[pin].0 = value & LOW_WRITABLE;
                    } else {
                        self.rte[pin].1 = value & 0xff00_0000;
                    }
                    self.effect(pin)
                }
                _ => Effect::None,
            },
            EOI => {
                let vector = value & 0xff;
                let pins = (0..PINS).filter(|&p| self.owns(p) && self.rte[p].0 & 0xff == vector).fold(0, |m, p| m | (1 << p));
                if pins == 0 { Effect::None } else { Effect::Eoi(pins) }
            }
            _ => Effect::None,
        }
    }

    /// The real pin's programming for the guest's entry of `pin`.
    fn effect(&self, pin: usize) -> Effect {
        let (low, high) = self.rte[pin];
        let vector = (low & 0xff) as u8;
        let dest = high >> 24;
        let masked = low & MASKED != 0;
        let level = low & (1 << 15) != 0;
        let pin = pin as u8;
        if masked {
            return Effect::Program { pin, vector, dest, masked, level };
        }
        let why = if low & (7 << 8) != 0 {
            Some(alloc::format!("delivery mode {} (only fixed is allowed)", (low >> 8) & 7))
        } else if low & (1 << 11) != 0 {
            Some("logical destination mode (only physical is allowed)".into())
        } else if vector < 32 {
            Some(alloc::format!("vector {vector} (below 32)"))
        } else if !self.apic_ids.contains(&dest) {
            Some(alloc::format!("destination APIC id {dest}, not one of its cores"))
        } else {
            None
        };
        match why {
            Some(why) => Effect::Refused { pin, why: alloc::format!("IOAPIC pin {pin} entry {high:#010x}_{low:08x} refused: {why}") },
            None => Effect::Program { pin, vector, dest, masked, level },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg_write(v: &mut VirtualIoApic, reg: u32, val: u32) -> Effect {
        assert_eq!(v.write(IOREGSEL, 4, reg), Effect::None);
        v.write(IOWIN, 4, val)
    }

    fn reg_read(v: &mut VirtualIoApic, reg: u32, hw: u32) -> u32 {
        v.write(IOREGSEL, 4, reg);
        v.read(IOWIN, 4, |_| hw)
    }

    #[test]
    fn identification_registers() {
        let mut v = VirtualIoApic::new(&[10], alloc::vec![1, 2]);
        assert_eq!(reg_read(&mut v, 1, 0), 0x0017_0020);
        assert_eq!(reg_read(&mut v, 0, 0), 0);
        reg_write(&mut v, 0, 0x0300_0000);
        assert_eq!(reg_read(&mut v, 0, 0), 0x0300_0000);
        assert_eq!(v.read(IOREGSEL, 4, |_| 0), 0);
        assert_eq!(v.read(IOWIN, 2, |_| 0), u32::MAX, "only dword accesses");
    }

    #[test]
    fn own_pins_are_forwarded_with_the_guests_vector_mask_and_destination() {
        let mut v = VirtualIoApic::new(&[10], alloc::vec![1, 2]);
        // As Linux writes an entry: high (destination) first, then low.
        assert_eq!(reg_write(&mut v, 0x11 + 20, 2 << 24), Effect::Program { pin: 10, vector: 0, dest: 2, masked: true, level: false });
        let low = 0x41 | (1 << 13) | (1 << 15);
        assert_eq!(reg_write(&mut v, 0x10 + 20, low), Effect::Program { pin: 10, vector: 0x41, dest: 2, masked: false, level: true });
        // Read back with the real pin's Remote IRR; the guest cannot set it itself.
        assert_eq!(reg_read(&mut v, 0x10 + 20, 1 << 14 | 0xff), low | 1 << 14);
        reg_write(&mut v, 0x10 + 20, low | 1 << 14);
        assert_eq!(reg_read(&mut v, 0x10 + 20, 0), low);
        assert_eq!(reg_read(&mut v, 0x11 + 20, 0), 2 << 24);
        // Masking.
        assert_eq!(reg_write(&mut v, 0x10 + 20, low | MASKED), Effect::Program { pin: 10, vector: 0x41, dest: 2, masked: true, level: true });
    }

    #[test]
    fn other_pins_read_masked_and_ignore_writes() {
        let mut v = VirtualIoApic::new(&[10], alloc::vec![1]);
        for pin in [0u32, 4, 9, 11, 23] {
            assert_eq!(reg_write(&mut v, 0x11 + 2 * pin, 1 << 24), Effect::None);
            assert_eq!(reg_write(&mut v, 0x10 + 2 * pin, 0x30), Effect::None);
            assert_eq!(reg_read(&mut v, 0x10 + 2 * pin, 0), MASKED);
            assert_eq!(reg_read(&mut v, 0x11 + 2 * pin, 0), 0);
        }
        // Registers past the last entry, and pins past 23 given at creation.
        assert_eq!(reg_write(&mut v, 0x40, 0x30), Effect::None);
        assert_eq!(reg_read(&mut v, 0x40, 0), 0);
        assert!(!VirtualIoApic::new(&[24, 200], alloc::vec![1]).owns(24));
    }

    #[test]
    fn entries_outside_the_sandbox_are_refused() {
        let mut v = VirtualIoApic::new(&[11], alloc::vec![1]);
        reg_write(&mut v, 0x11 + 22, 0 << 24);
        assert!(matches!(reg_write(&mut v, 0x10 + 22, 0x41), Effect::Refused { pin: 11, ref why } if why.contains("destination APIC id 0")));
        reg_write(&mut v, 0x11 + 22, 1 << 24);
        assert!(matches!(reg_write(&mut v, 0x10 + 22, 0x41 | 4 << 8), Effect::Refused { ref why, .. } if why.contains("delivery mode 4")));
        assert!(matches!(reg_write(&mut v, 0x10 + 22, 0x41 | 1 << 11), Effect::Refused { ref why, .. } if why.contains("logical")));
        assert!(matches!(reg_write(&mut v, 0x10 + 22, 0x02), Effect::Refused { ref why, .. } if why.contains("vector 2")));
        assert_eq!(reg_write(&mut v, 0x10 + 22, 0x41), Effect::Program { pin: 11, vector: 0x41, dest: 1, masked: false, level: false });
    }

    #[test]
    fn eoi_register_names_only_own_pins_with_that_vector() {
        let mut v = VirtualIoApic::new(&[10, 11], alloc::vec![1]);
        reg_write(&mut v, 0x11 + 20, 1 << 24);
        reg_write(&mut v, 0x10 + 20, 0x41 | 1 << 15);
        reg_write(&mut v, 0x11 + 22, 1 << 24);
        reg_write(&mut v, 0x10 + 22, 0x42 | 1 << 15);
        assert_eq!(v.write(EOI, 4, 0x41), Effect::Eoi(1 << 10));
        assert_eq!(v.write(EOI, 4, 0x42), Effect::Eoi(1 << 11));
        assert_eq!(v.write(EOI, 4, 0x43), Effect::None);
        // A masked pin at vector 0 of another pin's: only owned pins with that vector.
        assert_eq!(v.write(EOI, 4, 0x00), Effect::None);
    }

    #[test]
    fn any_access_is_safe() {
        let mut v = VirtualIoApic::new(&[10], alloc::vec![1]);
        for off in (0..0x1000u64).step_by(4).chain([1, 2, 3, 0x11]) {
            for size in [1u8, 2, 4, 8] {
                for val in [0, u32::MAX, 0x1f, 0x10 + 20] {
                    let _ = v.write(off, size, val);
                    let _ = v.read(off, size, |_| u32::MAX);
                }
            }
        }
    }
}
