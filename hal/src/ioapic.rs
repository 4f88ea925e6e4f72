//! IOAPIC: routes legacy ISA IRQs (through the MADT's interrupt source overrides) to vectors
//! on a chosen CPU. When the IOAPIC is in use the 8259 PICs are fully masked.
use spin::Mutex;

use crate::mm::phys_to_virt;

#[derive(Clone, Copy, Debug)]
struct IoApic {
    base: u64,
    gsi_base: u32,
    entries: u32,
}

/// An ISA IRQ's global system interrupt and polarity/trigger, from the MADT overrides.
#[derive(Clone, Copy, Debug, Default)]
pub struct IsaRoute {
    pub gsi: u32,
    pub active_low: bool,
    pub level: bool,
}

struct State {
    apics: [Option<IoApic>; 8],
    isa: [IsaRoute; 16],
}

static STATE: Mutex<State> = Mutex::new(State {
    apics: [None; 8],
    isa: [IsaRoute { gsi: 0, active_low: false, level: false }; 16],
});

fn reg_read(base: u64, reg: u32) -> u32 {
    let sel = phys_to_virt(base) as *mut u32;
    // SAFETY: `base` is an IOAPIC's MMIO base from the MADT; the direct map maps it uncached
    // (not RAM). IOREGSEL is at +0 and IOWIN at +0x10, 32-bit accesses; callers hold STATE's lock
    // so the select/access pair is not interleaved.
    unsafe {
        core::ptr::write_volatile(sel, reg);
        core::ptr::read_volatile(sel.add(4))
    }
}

fn reg_write(base: u64, reg: u32, v: u32) {
    let sel = phys_to_virt(base) as *mut u32;
    // SAFETY: as in `reg_read`.
    unsafe {
        core::ptr::write_volatile(sel, reg);
        core::ptr::write_volatile(sel.add(4), v);
    }
}

/// Registers an IOAPIC found in the MADT.
pub(crate) fn add(base: u64, gsi_base: u32) {
    let mut s = STATE.lock();
    let entries = ((reg_read(base, 1) >> 16) & 0xff) + 1;
    if let Some(slot) = s.apics.iter_mut().find(|a| a.is_none()) {
        *slot = Some(IoApic { base, gsi_base, entries });
        // Mask everything it has.
        for i in 0..entries {
            reg_write(base, 0x10 + 2 * i, 1 << 16);
        }
    }
}

/// Records an interrupt source override (ISA `irq` is delivered on `gsi`).
pub fn set_override(irq: u8, route: IsaRoute) {
    if let Some(r) = STATE.lock().isa.get_mut(irq as usize) {
        *r = route;
    }
}

/// Whether any IOAPIC is known.
pub fn present() -> bool {
    STATE.lock().apics.iter().any(Option::is_some)
}

/// The IOAPIC pin (apic base, index) and route of ISA `irq`.
fn isa_pin(s: &State, irq: u8) -> Result<(u64, u32, IsaRoute), &'static str> {
    let r = s.isa.get(irq as usize).copied().ok_or("ISA IRQ out of range")?;
    let gsi = if r.gsi == 0 && irq != 0 { u32::from(irq) } else { r.gsi };
    let a = s
        .apics
        .iter()
        .flatten()
        .find(|a| (a.gsi_base..a.gsi_base + a.entries).contains(&gsi))
        .ok_or("no IOAPIC serves this interrupt")?;
    Ok((a.base, gsi - a.gsi_base, r))
}

/// Routes a PCI INTx line that firmware wired to ISA IRQ `irq` (the function's Interrupt Line)
/// to `vector` on APIC `dest`: level-triggered always; the polarity of the MADT's override if
/// it has one, else PCI's active-low.
pub fn route_pci_line(irq: u8, vector: u8, dest: u32) -> Result<(), &'static str> {
    crate::cpu::without_interrupts(|| {
        let s = STATE.lock();
        let (base, idx, r) = isa_pin(&s, irq)?;
        let has_override = r.gsi != 0 || irq == 0;
        let active_low = if has_override { r.active_low } else { true };
        let mut low = u32::from(vector) | (1 << 15);
        if active_low {
            low |= 1 << 13;
        }
        reg_write(base, 0x11 + 2 * idx, (dest & 0xff) << 24);
        reg_write(base, 0x10 + 2 * idx, low);
        Ok(())
    })
}

/// Programs the IOAPIC pin of PCI INTx line `irq` as a sandbox's virtual IOAPIC entry asks:
/// `vector` to APIC id `dest` (physical, fixed), masked or not, level- or edge-triggered, with
/// the platform's polarity (the MADT override's, else PCI's active-low) whatever the guest
/// said. The caller has checked that the line and the destination are the sandbox's.
pub fn program_pci_line(irq: u8, vector: u8, dest: u32, masked: bool, level: bool) -> Result<(), &'static str> {
    crate::cpu::without_interrupts(|| {
        let s = STATE.lock();
        let (base, idx, r) = isa_pin(&s, irq)?;
        let has_override = r.gsi != 0 || irq == 0;
        let active_low = if has_override { r.active_low } else { true };
        let mut low = u32::from(vector);
        if active_low {
            low |= 1 << 13;
        }
        if level {
            low |= 1 << 15;
        }
        // Masked first, so no interrupt is sent with half an entry.
        reg_write(base, 0x10 + 2 * idx, low | (1 << 16));
        reg_write(base, 0x11 + 2 * idx, (dest & 0xff) << 24);
        if !masked {
            reg_write(base, 0x10 + 2 * idx, low);
        }
        Ok(())
    })
}

/// The low dword of the IOAPIC entry of ISA `irq` (its delivery status and Remote IRR).
pub fn pci_line_low(irq: u8) -> Result<u32, &'static str> {
    crate::cpu::without_interrupts(|| {
        let s = STATE.lock();
        let (base, idx, _) = isa_pin(&s, irq)?;
        Ok(reg_read(base, 0x10 + 2 * idx))
    })
}

/// End of interrupt for the level-triggered pin of ISA `irq` alone: the entry is set masked
/// and edge-triggered (which clears Remote IRR) and then restored, as Linux does for IOAPICs
/// without an EOI register. Unlike the EOI register, it touches no other pin.
pub fn eoi_pci_line(irq: u8) -> Result<(), &'static str> {
    crate::cpu::without_interrupts(|| {
        let s = STATE.lock();
        let (base, idx, _) = isa_pin(&s, irq)?;
        let low = reg_read(base, 0x10 + 2 * idx);
        reg_write(base, 0x10 + 2 * idx, (low | (1 << 16)) & !(1 << 15));
        reg_write(base, 0x10 + 2 * idx, low);
        Ok(())
    })
}

/// Masks (or unmasks) the IOAPIC pin of ISA `irq` (an interrupt storm's line).
pub fn set_isa_masked(irq: u8, masked: bool) -> Result<(), &'static str> {
    crate::cpu::without_interrupts(|| {
        let s = STATE.lock();
        let (base, idx, _) = isa_pin(&s, irq)?;
        let low = reg_read(base, 0x10 + 2 * idx);
        reg_write(base, 0x10 + 2 * idx, if masked { low | (1 << 16) } else { low & !(1 << 16) });
        Ok(())
    })
}

/// Routes ISA `irq` to `vector` on the CPU with APIC id `dest` (fixed delivery, unmasked).
pub fn route_isa(irq: u8, vector: u8, dest: u32) -> Result<(), &'static str> {
    crate::cpu::without_interrupts(|| {
        let s = STATE.lock();
        let r = s.isa.get(irq as usize).copied().ok_or("ISA IRQ out of range")?;
        let gsi = if r.gsi == 0 && irq != 0 { u32::from(irq) } else { r.gsi };
        let a = s
            .apics
            .iter()
            .flatten()
            .find(|a| (a.gsi_base..a.gsi_base + a.entries).contains(&gsi))
            .ok_or("no IOAPIC serves this interrupt")?;
        let idx = gsi - a.gsi_base;
        let mut low = u32::from(vector);
        if r.active_low {
            low |= 1 << 13;
        }
        if r.level {
            low |= 1 << 15;
        }
        // Physical destination mode: an 8-bit APIC id in bits 56..63 (also in x2APIC mode,
        // for ids below 256; more needs interrupt remapping).
        let high = (dest & 0xff) << 24;
        reg_write(a.base, 0x11 + 2 * idx, high);
        reg_write(a.base, 0x10 + 2 * idx, low);
        Ok(())
    })
}
