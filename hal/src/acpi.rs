//! ACPI: what the boot path needs from the firmware tables (through the `acpi` crate): the
//! processors and IOAPICs of the MADT, the FADT's PM1 control register for power-off, and the
//! MCFG's PCI ECAM window.
use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use spin::Once;

use crate::mm::phys_to_virt;

/// Maps ACPI tables through the kernel's direct map of physical memory.
#[derive(Clone, Copy, Debug)]
struct DirectMap;

impl AcpiHandler for DirectMap {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virt = phys_to_virt(physical_address as u64) as *mut T;
        // SAFETY:
        // 1. The direct map covers all RAM and the low 4 GiB (where firmware tables live), so
        //    `virt` is mapped for `size` bytes; it is never null (the map starts at a high base).
        // 2. The caller (the acpi crate) guarantees the region holds a `T`.
        unsafe { PhysicalMapping::new(physical_address, NonNull::new_unchecked(virt), size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// What the boot path learned from ACPI.
#[derive(Clone, Debug, Default)]
pub struct Platform {
    /// APIC ids of the enabled (or online-capable) processors, boot CPU first.
    pub apic_ids: [u32; MAX_CPUS],
    pub cpu_count: usize,
    /// Processors the MADT listed beyond [`MAX_CPUS`].
    pub cpus_ignored: usize,
    pub ioapic_count: usize,
    /// PM1a control I/O port and the S5 sleep type, for power-off.
    pub pm1a_cnt: Option<u16>,
    pub s5_slp_typ: Option<u16>,
    /// The MCFG's ECAM window for PCI segment 0: (base, first bus, last bus).
    pub mcfg: Option<(u64, u8, u8)>,
}

/// CPUs the kernel tracks (the seed's default maximum).
pub const MAX_CPUS: usize = 8;

static PLATFORM: Once<Platform> = Once::new();

/// Reads the MADT and FADT from the RSDT/XSDT at `root` (from the boot loader's RSDP copy).
pub(crate) fn init(root: Option<(u8, u64)>) -> Result<&'static Platform, &'static str> {
    let (rev, addr) = root.ok_or("the boot loader gave no ACPI RSDP")?;
    // SAFETY: `addr` is the RSDT (revision 0) or XSDT address from the RSDP that the boot loader
    // copied out of firmware memory; firmware tables stay in reserved memory for the whole run.
    let tables = unsafe { AcpiTables::from_rsdt(DirectMap, rev, addr as usize) }
        .map_err(|_| "ACPI root table (RSDT/XSDT) is invalid")?;
    let mut p = Platform::default();
    let madt = tables.find_table::<Madt>().map_err(|_| "no ACPI MADT")?;
    for e in madt.get().entries() {
        let (id, flags) = match e {
            MadtEntry::LocalApic(l) => (u32::from(l.apic_id), l.flags),
            MadtEntry::LocalX2Apic(l) => (l.x2apic_id, l.flags),
            MadtEntry::IoApic(io) => {
                p.ioapic_count += 1;
                crate::ioapic::add(u64::from(io.io_apic_address), io.global_system_interrupt_base);
                continue;
            }
            MadtEntry::InterruptSourceOverride(o) => {
                let flags = o.flags;
                crate::ioapic::set_override(
                    o.irq,
                    crate::ioapic::IsaRoute {
                        gsi: o.global_system_interrupt,
                        active_low: flags & 0b11 == 0b11,
                        level: (flags >> 2) & 0b11 == 0b11,
                    },
                );
                continue;
            }
            _ => continue,
        };
        // Bit 0: enabled; bit 1: online capable (may be enabled later).
        if flags & 3 == 0 {
            continue;
        }
        if p.cpu_count < MAX_CPUS {
            p.apic_ids[p.cpu_count] = id;
            p.cpu_count += 1;
        } else {
            p.cpus_ignored += 1;
        }
    }
    if let Ok(mcfg) = tables.find_table::<acpi::mcfg::Mcfg>() {
        use acpi::AcpiTable;
        // The crate computes the entry count from the header's length without checking it is
        // at least the table's fixed part: checked here first.
        let len = mcfg.get().header().length as usize;
        if len >= 44 {
            p.mcfg = mcfg
                .get()
                .entries()
                .iter()
                .find(|e| e.pci_segment_group == 0)
                .map(|e| (e.base_address, e.bus_number_start, e.bus_number_end));
        }
    }
    if let Ok(fadt) = tables.find_table::<acpi::fadt::Fadt>() {
        if let Ok(reg) = fadt.pm1a_control_block() {
            if matches!(reg.address_space, acpi::address::AddressSpace::SystemIo) {
                p.pm1a_cnt = u16::try_from(reg.address).ok();
            }
        }
        if let Ok(dsdt) = fadt.dsdt_address() {
            let hdr = phys_to_virt(dsdt as u64) as *const u8;
            // SAFETY: the DSDT address comes from the FADT; the table starts with a 36-byte
            // header whose bytes 4..8 are its length; it is firmware memory, mapped by the
            // direct map, and never written by anyone.
            let len = unsafe { core::ptr::read_unaligned(hdr.add(4) as *const u32) } as usize;
            if (36..(16 << 20)).contains(&len) {
                // SAFETY: as above, for `len` bytes.
                let aml = unsafe { core::slice::from_raw_parts(hdr, len) };
                p.s5_slp_typ = s5_sleep_type(aml);
            }
        }
    }
    Ok(PLATFORM.call_once(|| p))
}

/// The platform information, once [`init`] has succeeded.
pub fn platform() -> Option<&'static Platform> {
    PLATFORM.get()
}

/// Finds `\_S5_`'s first package element (SLP_TYPa) in DSDT AML without an AML interpreter:
/// `NameOp "_S5_" PackageOp PkgLength NumElements <Integer>`.
pub fn s5_sleep_type(aml: &[u8]) -> Option<u16> {
    let pos = aml.windows(4).position(|w| w == b"_S5_")?;
    let mut i = pos + 4;
    if *aml.get(i)? != 0x12 {
        return None;
    }
    i += 1;
    let lead = *aml.get(i)?;
    i += 1 + (lead >> 6) as usize; // PkgLength: extra bytes in bits 6..7
    i += 1; // NumElements
    match *aml.get(i)? {
        0x00 => Some(0),        // ZeroOp
        0x01 => Some(1),        // OneOp
        0x0a => aml.get(i + 1).map(|&b| u16::from(b)), // BytePrefix
        b if b < 0x0a => Some(u16::from(b)),
        _ => None,
    }
}

/// Enters ACPI S5 (soft off) if the FADT told us how; returns if it could not.
pub fn power_off() {
    let Some(p) = PLATFORM.get() else { return };
    let (Some(port), Some(typ)) = (p.pm1a_cnt, p.s5_slp_typ) else { return };
    let mut pm1a = x86_64::instructions::port::Port::<u16>::new(port);
    // SAFETY: `port` is the PM1a control register the FADT names; writing SLP_TYP with SLP_EN
    // set is the architected way to enter a sleep state, here S5 (power off).
    unsafe { pm1a.write((typ << 10) | (1 << 13)) };
}
