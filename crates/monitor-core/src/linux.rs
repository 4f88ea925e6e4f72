//! A Linux sandbox's boot image: an unmodified bzImage started by the Linux/x86 boot protocol
//! (Documentation/arch/x86/boot.rst), with everything a stock kernel needs to run on a machine
//! with no emulated legacy devices, at guest-physical addresses:
//!
//! * the protected-mode kernel at its `code32_start` (1 MiB), entered at its 32-bit entry
//!   (protected mode, paging off, flat `__BOOT_CS` = 0x10 / `__BOOT_DS` = 0x18, `esi` = the
//!   `boot_params` "zero page"); the kernel builds its own page tables, enters long mode and
//!   decompresses itself;
//! * the zero page ([`ZERO_PAGE`]): the setup header copied from the image, the command line
//!   pointer, the initramfs, the e820 memory map of the sandbox's own RAM (channel windows
//!   typed reserved) and `acpi_rsdp_addr`;
//! * a hardware-reduced ACPI ([`acpi_tables`]): RSDP → XSDT → FADT (HW_REDUCED_ACPI, no CMOS
//!   RTC, no VGA, no 8042) → DSDT declaring the sandbox's UART (its I/O ports, no interrupt:
//!   the 8250 driver polls it, so the IOAPIC stays the monitor's), and an MADT with the
//!   sandbox's own cores and no IOAPIC. With no FADT PM timer and HW_REDUCED, Linux uses no
//!   PIT, PIC, HPET or RTC. A sandbox that owns PCI functions ([`PciRoot`]) also gets a PCI
//!   root bridge `\_SB.PCI0` (PNP0A03) whose `_PRT` names each function's INTx line as a GSI,
//!   and an IOAPIC in the MADT: the monitor's virtual one (`crate::vioapic`);
//! * the command line: the TSC frequency (`tsc_early_khz=... tsc=reliable`: AMD has no CPUID
//!   leaf 0x15 and there is no PIT to calibrate against), the console, then the configuration's
//!   own additions.
//!
//! The ACPI tables come from the rust-vmm `acpi_tables` crate (checksums, AML encoding); the
//! boot protocol structures are written here by offset because no maintained `no_std` crate
//! covers the zero page (the offsets are the kernel's ABI, listed in boot.rst and
//! zero-page.rst).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use acpi_tables::Aml;
use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;

/// Guest-physical address of the zero page (`struct boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Guest-physical address of the command line.
pub const CMDLINE: u64 = 0x2_0000;
/// Guest-physical address of the ACPI tables (in the reserved area below 1 MiB).
pub const ACPI_BASE: u64 = 0x9_f000;
/// Room for the ACPI tables.
pub const ACPI_LEN: u64 = 0x1000;
/// Conventional memory ends here; up to 1 MiB the map says reserved (the ACPI tables, and
/// where a PC has its EBDA, VGA window and BIOS).
pub const LOW_RAM_END: u64 = ACPI_BASE;
/// 1 MiB.
const MIB1: u64 = 0x10_0000;
/// The 32-bit boot protocol's segment selectors.
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
/// The local APIC's architectural address (listed in the MADT).
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// Oldest boot protocol accepted: 2.14 has `acpi_rsdp_addr` (Linux 4.20+).
pub const MIN_PROTOCOL: u16 = 0x020e;

/// e820 types.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

// Zero-page offsets (Documentation/arch/x86/zero-page.rst and boot.rst).
const BP_ACPI_RSDP_ADDR: usize = 0x070;
const BP_EXT_RAMDISK_IMAGE: usize = 0x0c0;
const BP_EXT_RAMDISK_SIZE: usize = 0x0c4;
const BP_EXT_CMD_LINE_PTR: usize = 0x0c8;
const BP_E820_ENTRIES: usize = 0x1e8;
const HDR_START: usize = 0x1f1;
const HDR_SETUP_SECTS: usize = 0x1f1;
const HDR_BOOT_FLAG: usize = 0x1fe;
const HDR_JUMP: usize = 0x200;
const HDR_MAGIC: usize = 0x202;
const HDR_VERSION: usize = 0x206;
const HDR_TYPE_OF_LOADER: usize = 0x210;
const HDR_LOADFLAGS: usize = 0x211;
const HDR_CODE32_START: usize = 0x214;
const HDR_RAMDISK_IMAGE: usize = 0x218;
const HDR_RAMDISK_SIZE: usize = 0x21c;
const HDR_CMD_LINE_PTR: usize = 0x228;
const HDR_INITRD_ADDR_MAX: usize = 0x22c;
const HDR_KERNEL_ALIGNMENT: usize = 0x230;
const HDR_CMDLINE_SIZE: usize = 0x238;
const HDR_PREF_ADDRESS: usize = 0x258;
const HDR_INIT_SIZE: usize = 0x260;
const BP_E820_TABLE: usize = 0x2d0;
/// The zero page holds at most this many e820 entries.
pub const E820_MAX: usize = 128;
const LOADED_HIGH: u8 = 1;

/// Why a Linux image cannot boot in the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinuxError {
    /// Not a bzImage (the reason says which check failed).
    NotBzImage(&'static str),
    /// Its boot protocol is older than [`MIN_PROTOCOL`].
    OldProtocol(u16),
    /// The kernel, its decompression buffer and the initramfs do not fit in the sandbox's RAM
    /// below 4 GiB.
    TooBig { need: u64, have: u64 },
    /// The command line is longer than the kernel accepts.
    CmdlineTooLong { len: usize, max: usize },
    /// More memory-map entries than the zero page holds.
    TooManyRegions(usize),
    /// Its ACPI tables (with many PCI functions) do not fit in their [`ACPI_LEN`] bytes.
    AcpiTooBig(usize),
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinuxError::NotBzImage(why) => write!(f, "not a Linux bzImage ({why})"),
            LinuxError::OldProtocol(v) => write!(
                f,
                "boot protocol {}.{:02} is too old (need {}.{:02}: Linux 4.20 or later)",
                v >> 8,
                v & 0xff,
                MIN_PROTOCOL >> 8,
                MIN_PROTOCOL & 0xff
            ),
            LinuxError::TooBig { need, have } => write!(
                f,
                "the kernel (with its decompression buffer) and the initramfs need RAM up to {need:#x}; the sandbox's RAM below 3 GiB ends at {have:#x}: give it more memory"
            ),
            LinuxError::CmdlineTooLong { len, max } => write!(f, "the kernel command line is {len} bytes (this kernel takes at most {max})"),
            LinuxError::TooManyRegions(n) => write!(f, "{n} memory-map entries (the zero page holds {E820_MAX})"),
            LinuxError::AcpiTooBig(n) => write!(f, "its ACPI tables take {n} bytes (at most {ACPI_LEN}: fewer PCI functions)"),
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o.checked_add(8)?)?.try_into().ok()?))
}

/// What the monitor needs from a bzImage's setup header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BzImage {
    /// Boot protocol version (0x020f = 2.15).
    pub version: u16,
    /// Where the protected-mode kernel goes and is entered.
    pub code32_start: u32,
    /// The protected-mode kernel's bytes in the image.
    pub kernel: Range<usize>,
    /// The setup header's bytes in the image (copied into the zero page).
    pub header: Range<usize>,
    /// Highest address the initramfs may occupy.
    pub initrd_addr_max: u32,
    /// Longest command line (without the NUL).
    pub cmdline_size: u32,
    /// Where the kernel decompresses itself and how much room that takes from there.
    pub pref_address: u64,
    pub init_size: u32,
    pub kernel_alignment: u32,
}

/// Reads and checks a bzImage's setup header.
pub fn parse_bzimage(img: &[u8]) -> Result<BzImage, LinuxError> {
    if img.len() < 0x270 {
        return Err(LinuxError::NotBzImage("shorter than a setup header"));
    }
    if u16_at(img, HDR_BOOT_FLAG) != Some(0xaa55) {
        return Err(LinuxError::NotBzImage("no 0xAA55 boot flag"));
    }
    if img.get(HDR_MAGIC..HDR_MAGIC + 4) != Some(b"HdrS") {
        return Err(LinuxError::NotBzImage("no HdrS setup header"));
    }
    let version = u16_at(img, HDR_VERSION).unwrap_or(0);
    if version < MIN_PROTOCOL {
        return Err(LinuxError::OldProtocol(version));
    }
    if img[HDR_LOADFLAGS] & LOADED_HIGH == 0 {
        return Err(LinuxError::NotBzImage("not loaded high (a zImage)"));
    }
    let setup_sects = match img[HDR_SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512;
    if start >= img.len() {
        return Err(LinuxError::NotBzImage("no protected-mode kernel after the setup code"));
    }
    let header_end = HDR_MAGIC + usize::from(img[HDR_JUMP + 1]);
    if header_end > start || header_end < HDR_INIT_SIZE + 4 {
        return Err(LinuxError::NotBzImage("setup header length out of range"));
    }
    let code32_start = u32_at(img, HDR_CODE32_START).unwrap_or(0);
    let pref_address = u64_at(img, HDR_PREF_ADDRESS).unwrap_or(0);
    let init_size = u32_at(img, HDR_INIT_SIZE).unwrap_or(0);
    if code32_start < MIB1 as u32 || pref_address >= 1 << 32 || init_size == 0 {
        return Err(LinuxError::NotBzImage("load addresses out of range"));
    }
    Ok(BzImage {
        version,
        code32_start,
        kernel: start..img.len(),
        header: HDR_START..header_end,
        initrd_addr_max: u32_at(img, HDR_INITRD_ADDR_MAX).unwrap_or(0),
        cmdline_size: u32_at(img, HDR_CMDLINE_SIZE).unwrap_or(255),
        pref_address,
        init_size,
        kernel_alignment: u32_at(img, HDR_KERNEL_ALIGNMENT).unwrap_or(0),
    })
}

/// One e820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820 {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The memory map of a sandbox whose RAM is `ram` (guest-physical (start, len), the first at 0)
/// and whose channel windows are `windows`: conventional memory to [`LOW_RAM_END`], reserved up
/// to 1 MiB (the ACPI tables live there), the rest of its RAM, and each window reserved (so
/// `/dev/mem` may map it: Linux refuses System RAM there).
pub fn e820(ram: &[(u64, u64)], windows: &[(u64, u64)]) -> Vec<E820> {
    let mut v = Vec::new();
    for &(base, len) in ram {
        if base == 0 {
            v.push(E820 { addr: 0, size: len.min(LOW_RAM_END), kind: E820_RAM });
            if len > MIB1 {
                v.push(E820 { addr: LOW_RAM_END, size: MIB1 - LOW_RAM_END, kind: E820_RESERVED });
                v.push(E820 { addr: MIB1, size: len - MIB1, kind: E820_RAM });
            }
        } else {
            v.push(E820 { addr: base, size: len, kind: E820_RAM });
        }
    }
    for &(base, len) in windows {
        v.push(E820 { addr: base, size: len, kind: E820_RESERVED });
    }
    v.sort_by_key(|e| e.addr);
    v
}

/// The sandbox's devices as its ACPI describes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    /// APIC ids of its cores, the boot processor first.
    pub apic_ids: Vec<u32>,
    /// Its console UART's I/O base (8 ports), if any.
    pub uart: Option<u16>,
    /// Its PCI functions, if it owns any: a PCI root bridge in the DSDT and the virtual
    /// IOAPIC in the MADT.
    pub pci: Option<PciRoot>,
}

/// What the DSDT's PCI root bridge says about a sandbox's PCI functions.
///
/// Why a `_PRT`: with HW_REDUCED_ACPI, Linux has no legacy IRQs (`nr_legacy_irqs()` is 0 with
/// the null legacy PIC), so its fallback for a function missing from `_PRT`, the Interrupt
/// Line taken as an ISA IRQ (`acpi_isa_register_gsi()` → `acpi_isa_irq_to_gsi()`), finds no
/// GSI; and `pci=noacpi`, which would scan bus 0 without ACPI, also stops Linux from reading
/// the MADT's IOAPIC (`acpi_noirq`). A `_PRT` entry with a GSI needs neither.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PciRoot {
    /// (device, interrupt pin 1..=4 = INTA..INTD, GSI = the Interrupt Line's ISA IRQ) of each
    /// function that has an INTx line.
    pub intx: Vec<(u8, u8, u8)>,
    /// Its memory BARs (start, end exclusive): the root bridge's memory windows, so Linux
    /// claims them where the firmware put them instead of moving them.
    pub mem: Vec<(u64, u64)>,
}

const OEM_ID: [u8; 6] = *b"QUESTV";
const OEM_TABLE: [u8; 8] = *b"QUESTVLX";

fn align16(x: usize) -> usize {
    x.div_ceil(16) * 16
}

/// FADT IA-PC boot architecture flags: no VGA (bit 2), no MSI (bit 3), no PCIe ASPM
/// control (bit 4), no CMOS RTC (bit 5); bit 1 (an 8042) clear.
pub const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5);

/// The I/O port of the reset register and the sleep control register: the monitor's
/// power-off port (`policy::DEBUG_EXIT_PORT`), so `reboot` and `poweroff` in Linux stop the
/// sandbox cleanly. Linux writes [`RESET_VALUE`] to reboot and [`S5_VALUE`] to power off.
pub const POWER_PORT: u16 = crate::policy::DEBUG_EXIT_PORT;
/// The sleep status register (never owned by a sandbox: reads give all ones, writes are
/// dropped).
pub const SLEEP_STATUS_PORT: u16 = POWER_PORT + 1;
/// What Linux writes to the reset register.
pub const RESET_VALUE: u8 = 0x10;
/// What Linux writes to the sleep control register to enter S5 (SLP_TYP 0 from `\_S5`, SLP_EN).
pub const S5_VALUE: u8 = 0x20;

/// Where a PC's BIOS keeps its warm-boot flag (the BIOS data area word at 0x472). Linux writes
/// its reboot mode there just before it resets the machine: `0x1234` for a warm reboot, 0 for
/// a cold one. The monitor's command line ([`cmdline`]) asks for cold reboots and warm resets
/// after a panic (`reboot=acpi,cold,panic_warm`), so the word tells the monitor which it was.
pub const WARM_BOOT_FLAG: u64 = 0x472;
/// The warm-boot flag's value for a warm reset.
pub const WARM_BOOT: u16 = 0x1234;

/// Why a Linux sandbox wrote its ACPI reset or sleep register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerEvent {
    /// `reboot`: the reset register with a cold reboot mode.
    Reboot,
    /// A kernel panic (`panic=-1` makes Linux reset at once, in its panic reboot mode: warm).
    Panic,
    /// `poweroff`: the sleep control register with SLP_EN and the `\_S5` sleep type.
    PowerOff,
    /// Any other value on the power-off port.
    Other(u8),
}

impl PowerEvent {
    /// Classifies a write of `value` to [`POWER_PORT`], with the sandbox's warm-boot flag
    /// (`None` if the monitor could not read it). What the kernel says is taken as it says it:
    /// a hostile kernel can only mislabel its own end.
    pub fn of(value: u8, warm_flag: Option<u16>) -> PowerEvent {
        match value {
            RESET_VALUE if warm_flag == Some(WARM_BOOT) => PowerEvent::Panic,
            RESET_VALUE => PowerEvent::Reboot,
            S5_VALUE => PowerEvent::PowerOff,
            v => PowerEvent::Other(v),
        }
    }
}

impl fmt::Display for PowerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerEvent::Reboot => f.write_str("rebooted by its kernel (ACPI reset; restarting a sandbox is not supported yet)"),
            PowerEvent::Panic => f.write_str("kernel panic (its kernel reset after the panic: ACPI reset, warm)"),
            PowerEvent::PowerOff => f.write_str("powered off (ACPI S5)"),
            PowerEvent::Other(v) => write!(f, "powered off (code {v:#x})"),
        }
    }
}

/// The DSDT's AML: `\_S5` (soft-off, sleep type 0) and `\_SB.COM0` (PNP0501) with the
/// UART's 8 I/O ports and no interrupt.
fn dsdt_aml(p: &Platform) -> Vec<u8> {
    let mut out = Vec::new();
    aml::Name::new("_S5_".into(), &aml::Package::new(vec![&0u8, &0u8])).to_aml_bytes(&mut out);
    if let Some(port) = p.uart {
        let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501"));
        let uid = aml::Name::new("_UID".into(), &0u8);
        let io = aml::IO::new(port, port, 1, 8);
        let crs = aml::Name::new("_CRS".into(), &aml::ResourceTemplate::new(vec![&io]));
        let dev = aml::Device::new("COM0".into(), vec![&hid, &uid, &crs]);
        aml::Scope::new("\\_SB_".into(), vec![&dev]).to_aml_bytes(&mut out);
    }
    if let Some(pci) = &p.pci {
        pci_root_aml(pci, &mut out);
    }
    out
}

/// `\_SB.PCI0`: the PCI root bridge (bus 0, configuration mechanism 1), its I/O and memory
/// windows and its `_PRT`.
fn pci_root_aml(pci: &PciRoot, out: &mut Vec<u8>) {
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A03"));
    let uid = aml::Name::new("_UID".into(), &0u8);
    let bus = aml::AddressSpace::new_bus_number(0u16, 0xffu16);
    let io_lo = aml::AddressSpace::new_io(0u16, 0xcf7u16, None);
    let cf8 = aml::IO::new(0xcf8, 0xcf8, 1, 8);
    let io_hi = aml::AddressSpace::new_io(0xd00u16, 0xffffu16, None);
    let mems: Vec<aml::AddressSpace<u64>> =
        pci.mem.iter().map(|&(a, b)| aml::AddressSpace::new_memory(aml::AddressSpaceCacheable::NotCacheable, true, a, b - 1, None)).collect();
    let mut res: Vec<&dyn Aml> = vec![&bus, &io_lo, &cf8, &io_hi];
    res.extend(mems.iter().map(|m| m as &dyn Aml));
    let crs = aml::Name::new("_CRS".into(), &aml::ResourceTemplate::new(res));
    // _PRT entries: { address (device << 16 | 0xffff), pin (0 = INTA), source 0, GSI }.
    let rows: Vec<(u32, u8, u32)> = pci.intx.iter().map(|&(dev, pin, gsi)| ((u32::from(dev) << 16) | 0xffff, pin.saturating_sub(1), u32::from(gsi))).collect();
    let zero = 0u8;
    let pkgs: Vec<aml::Package> = rows.iter().map(|(a, p, g)| aml::Package::new(vec![a, p, &zero, g])).collect();
    let prt_pkg = aml::Package::new(pkgs.iter().map(|p| p as &dyn Aml).collect());
    let prt = aml::Name::new("_PRT".into(), &prt_pkg);
    let dev = aml::Device::new("PCI0".into(), vec![&hid, &uid, &crs, &prt]);
    aml::Scope::new("\\_SB_".into(), vec![&dev]).to_aml_bytes(out);
}

/// Builds the ACPI tables to live at guest-physical `base`: RSDP first (its address is `base`),
/// then XSDT, FADT, MADT and DSDT, each 16-byte aligned. At most [`ACPI_LEN`] bytes.
pub fn acpi(base: u64, p: &Platform) -> Vec<u8> {
    let rsdp_len = Rsdp::len();
    let xsdt_at = align16(rsdp_len);
    let xsdt_len = 36 + 2 * 8;
    let fadt_at = align16(xsdt_at + xsdt_len);
    let madt_at = align16(fadt_at + acpi_tables::fadt::FADT::len());
    let madt_len = 44 + 8 * p.apic_ids.len() + if p.pci.is_some() { 12 } else { 0 };
    let dsdt_at = align16(madt_at + madt_len);
    let addr = |off: usize| base + off as u64;

    let mut out = Vec::new();
    Rsdp::new(OEM_ID, addr(xsdt_at)).to_aml_bytes(&mut out);
    out.resize(xsdt_at, 0);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE, 1);
    xsdt.add_entry(addr(fadt_at));
    xsdt.add_entry(addr(madt_at));
    xsdt.to_aml_bytes(&mut out);
    out.resize(fadt_at, 0);
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE, 1)
        .dsdt_64(addr(dsdt_at))
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup)
        // The monitor delivers IPIs by physical APIC id (it accepts logical ones too, at the
        // cost of resolving them): Linux then picks its physical x2APIC driver.
        .flag(Flags::ForceApicPhysicalDestinationMode);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    let port = |p: u16| GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, u64::from(p));
    fadt.reset_reg = port(POWER_PORT);
    fadt.reset_value = RESET_VALUE;
    fadt.sleep_control_reg = port(POWER_PORT);
    fadt.sleep_status_reg = port(SLEEP_STATUS_PORT);
    fadt.finalize().to_aml_bytes(&mut out);
    out.resize(madt_at, 0);
    let mut madt = MADT::new(OEM_ID, OEM_TABLE, 1, LocalInterruptController::Address(LAPIC_ADDR));
    for (uid, &id) in p.apic_ids.iter().enumerate() {
        madt.add_structure(ProcessorLocalApic::new(uid as u8, id as u8, EnabledStatus::Enabled));
    }
    if p.pci.is_some() {
        madt.add_structure(IoApic::new(crate::vioapic::ID, crate::vioapic::BASE as u32, 0));
    }
    madt.to_aml_bytes(&mut out);
    out.resize(dsdt_at, 0);
    let body = dsdt_aml(p);
    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE, 1);
    dsdt.append_slice(&body);
    out.extend_from_slice(dsdt.as_slice());
    out
}

/// What the monitor puts on every Linux sandbox's command line about its end:
///
/// * `reboot=acpi`: reboot through the FADT reset register. Without it, Linux on a
///   hardware-reduced ACPI platform prefers an EFI reset (`efi_reboot_required()`), finds no
///   EFI and falls back to the real-mode BIOS reset vector, which in a sandbox is zeroed RAM:
///   the core would spin there without an exit and the monitor could not tell;
/// * `cold,panic_warm`: the reboot mode Linux writes to [`WARM_BOOT_FLAG`] before it resets, so
///   the monitor can tell a reboot from a panic;
/// * `panic=-1`: reset at once on a panic (the default, 0, halts the core forever with
///   interrupts off: no exit, no report). A configuration's own `panic=` comes later and wins.
pub const END_OPTIONS: &str = "reboot=acpi,cold,panic_warm panic=-1";

/// What the monitor puts on every Linux sandbox's command line about its interrupt
/// controllers: `noapic`. A sandbox has no IO-APIC (the MADT lists none; the IOAPIC is the
/// monitor's), and with IO-APIC set-up skipped Linux also skips its interrupt-remapping step,
/// which is where a kernel with no IOMMU and no hypervisor it knows turns x2APIC off
/// (`enable_IR_x2apic()` → `try_to_enable_x2apic()` → `x2apic_disable()`): the APIC then
/// stays in the x2APIC mode the monitor entered it in, every IPI is an ICR write the monitor
/// checks, and the xAPIC page need not be mapped.
///
/// A sandbox that owns PCI functions needs an IO-APIC for their INTx lines, so it gets the
/// virtual one instead and no `noapic`; x2APIC then survives `try_to_enable_x2apic()` because
/// the monitor shows the kernel KVM's CPUID signature with no feature bits
/// (`policy::SandboxView::kvm_signature`: `x86_init.hyper.x2apic_available()` is true). It
/// gets [`KVM_OPTIONS`] instead.
pub const APIC_OPTIONS: &str = "noapic";

/// What a sandbox shown KVM's signature gets on its command line: `nopvspin`. Without the
/// PV_UNHALT feature, 6.1's `kvm_spinlock_init()` would otherwise leave `virt_spin_lock_key`
/// on for a multi-core kernel ("PV spinlocks disabled, no host support"), turning every
/// spinlock into a test-and-set lock, a hedge against preempted vCPUs that a sandbox, which
/// owns its cores, does not need; `nopvspin` keeps the native queued spinlocks (checked in
/// Debian's 6.1.0-57: REALTIME hint, single CPU, `nopvspin`, then the feature bit).
pub const KVM_OPTIONS: &str = "nopvspin";

/// The command line the kernel gets: what the monitor must say, then the configuration's.
/// `pci`: the sandbox owns PCI functions (no `noapic`, see [`APIC_OPTIONS`]).
pub fn cmdline(tsc_khz: u32, console: Option<u8>, pci: bool, extra: &str) -> String {
    let mut s = String::new();
    s.push_str(END_OPTIONS);
    s.push(' ');
    s.push_str(if pci { KVM_OPTIONS } else { APIC_OPTIONS });
    s.push(' ');
    if tsc_khz != 0 {
        s.push_str(&format!("tsc_early_khz={tsc_khz} tsc=reliable "));
    }
    if let Some(com) = console {
        s.push_str(&format!("console=ttyS{} ", com.saturating_sub(1)));
    }
    s.push_str(extra);
    s.trim_end().into()
}

/// Everything to write into the sandbox's RAM, and where to enter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxBoot {
    /// The protected-mode kernel: `image[kernel.clone()]` goes to `kernel_at`.
    pub kernel_at: u64,
    pub kernel: Range<usize>,
    /// The initramfs goes here (page aligned), if there is one.
    pub initrd_at: u64,
    pub zero_page: Vec<u8>,
    pub cmdline: Vec<u8>,
    pub acpi: Vec<u8>,
    /// The 32-bit entry (= `kernel_at`).
    pub entry: u32,
    /// Lowest guest-physical address the decompressed kernel may use and highest, for the
    /// report.
    pub kernel_end: u64,
}

/// Plans a Linux boot: the bzImage `img`, an initramfs of `initrd_len` bytes (0: none), the
/// full command line, the sandbox's RAM and channel windows (guest-physical (start, len)).
pub fn plan(img: &[u8], initrd_len: u64, cmdline: &str, ram: &[(u64, u64)], windows: &[(u64, u64)], platform: &Platform) -> Result<LinuxBoot, LinuxError> {
    let bz = parse_bzimage(img)?;
    if cmdline.len() > bz.cmdline_size as usize {
        return Err(LinuxError::CmdlineTooLong { len: cmdline.len(), max: bz.cmdline_size as usize });
    }
    let low_end = ram.iter().find(|r| r.0 == 0).map_or(0, |r| r.1).min(1 << 32);
    let kernel_at = u64::from(bz.code32_start);
    let kernel_len = bz.kernel.len() as u64;
    // The kernel decompresses itself at (at least) pref_address and needs init_size from there.
    let kernel_end = (kernel_at + kernel_len).max(bz.pref_address + u64::from(bz.init_size));
    let initrd_at = if initrd_len > 0 {
        let top = low_end.min(u64::from(bz.initrd_addr_max) + 1);
        let at = top.saturating_sub(initrd_len) & !0xfff;
        if at < kernel_end || top < initrd_len {
            return Err(LinuxError::TooBig { need: kernel_end + initrd_len.next_multiple_of(4096), have: low_end });
        }
        at
    } else {
        0
    };
    if kernel_end > low_end {
        return Err(LinuxError::TooBig { need: kernel_end, have: low_end });
    }
    let map = e820(ram, windows);
    if map.len() > E820_MAX {
        return Err(LinuxError::TooManyRegions(map.len()));
    }

    let mut zp = vec![0u8; 4096];
    zp[bz.header.clone()].copy_from_slice(&img[bz.header.clone()]);
    let put32 = |zp: &mut [u8], o: usize, v: u32| zp[o..o + 4].copy_from_slice(&v.to_le_bytes());
    zp[HDR_TYPE_OF_LOADER] = 0xff; // "undefined" boot loader
    zp[HDR_LOADFLAGS] = (zp[HDR_LOADFLAGS] | LOADED_HIGH) & !(1 << 5); // not QUIET
    put32(&mut zp, HDR_CODE32_START, kernel_at as u32);
    put32(&mut zp, HDR_CMD_LINE_PTR, CMDLINE as u32);
    put32(&mut zp, BP_EXT_CMD_LINE_PTR, 0);
    put32(&mut zp, HDR_RAMDISK_IMAGE, initrd_at as u32);
    put32(&mut zp, HDR_RAMDISK_SIZE, initrd_len as u32);
    put32(&mut zp, BP_EXT_RAMDISK_IMAGE, (initrd_at >> 32) as u32);
    put32(&mut zp, BP_EXT_RAMDISK_SIZE, (initrd_len >> 32) as u32);
    zp[BP_ACPI_RSDP_ADDR..BP_ACPI_RSDP_ADDR + 8].copy_from_slice(&ACPI_BASE.to_le_bytes());
    zp[BP_E820_ENTRIES] = map.len() as u8;
    for (i, e) in map.iter().enumerate() {
        let o = BP_E820_TABLE + i * 20;
        zp[o..o + 8].copy_from_slice(&e.addr.to_le_bytes());
        zp[o + 8..o + 16].copy_from_slice(&e.size.to_le_bytes());
        zp[o + 16..o + 20].copy_from_slice(&e.kind.to_le_bytes());
    }
    let mut cl: Vec<u8> = cmdline.bytes().filter(|&b| b != 0).collect();
    cl.push(0);
    let acpi = acpi(ACPI_BASE, platform);
    if acpi.len() as u64 > ACPI_LEN {
        return Err(LinuxError::AcpiTooBig(acpi.len()));
    }
    Ok(LinuxBoot { kernel_at, kernel: bz.kernel, initrd_at, zero_page: zp, cmdline: cl, acpi, entry: kernel_at as u32, kernel_end })
}

/// A table found by [`find_tables`]: signature and bytes.
pub type Table<'a> = ([u8; 4], &'a [u8]);

/// Reads back ACPI tables built at `base` as an OS would: the RSDP (both checksums), the XSDT
/// and every table it lists plus the FADT's DSDT, each with its length and checksum verified.
/// For the tests and for the monitor's own check before it writes them.
pub fn find_tables(blob: &[u8], base: u64) -> Result<Vec<Table<'_>>, &'static str> {
    let sum = |b: &[u8]| b.iter().fold(0u8, |a, &x| a.wrapping_add(x));
    let at = |addr: u64| -> Result<&[u8], &'static str> {
        let off = addr.checked_sub(base).ok_or("table below the blob")? as usize;
        let len = u32_at(blob, off + 4).ok_or("table beyond the blob")? as usize;
        let t = blob.get(off..off + len).ok_or("table beyond the blob")?;
        if len < 36 || sum(t) != 0 {
            return Err("bad table checksum or length");
        }
        Ok(t)
    };
    let rsdp = blob.get(..36).ok_or("no RSDP")?;
    if &rsdp[..8] != b"RSD PTR " || sum(&rsdp[..20]) != 0 || sum(rsdp) != 0 || rsdp[15] < 2 {
        return Err("bad RSDP");
    }
    let xsdt = at(u64_at(rsdp, 24).unwrap())?;
    if &xsdt[..4] != b"XSDT" {
        return Err("no XSDT");
    }
    let mut out = vec![(*b"XSDT", xsdt)];
    for i in 0..(xsdt.len() - 36) / 8 {
        let t = at(u64_at(xsdt, 36 + i * 8).unwrap())?;
        out.push((t[..4].try_into().unwrap(), t));
        if &t[..4] == b"FACP" {
            let dsdt = at(u64_at(t, 140).ok_or("short FADT")?)?;
            out.push((dsdt[..4].try_into().unwrap(), dsdt));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// A minimal bzImage: setup header of protocol `version`, 2 setup sectors, `pm` bytes of
    /// protected-mode kernel.
    fn bzimage(version: u16, pm: usize) -> Vec<u8> {
        let mut b = vec![0u8; 3 * 512 + pm];
        b[HDR_SETUP_SECTS] = 2;
        b[HDR_BOOT_FLAG..HDR_BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        b[HDR_JUMP] = 0xeb;
        b[HDR_JUMP + 1] = 0x6a;
        b[HDR_MAGIC..HDR_MAGIC + 4].copy_from_slice(b"HdrS");
        b[HDR_VERSION..HDR_VERSION + 2].copy_from_slice(&version.to_le_bytes());
        b[HDR_LOADFLAGS] = 1;
        b[HDR_CODE32_START..HDR_CODE32_START + 4].copy_from_slice(&0x10_0000u32.to_le_bytes());
        b[HDR_INITRD_ADDR_MAX..HDR_INITRD_ADDR_MAX + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        b[HDR_KERNEL_ALIGNMENT..HDR_KERNEL_ALIGNMENT + 4].copy_from_slice(&0x20_0000u32.to_le_bytes());
        b[HDR_CMDLINE_SIZE..HDR_CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        b[HDR_PREF_ADDRESS..HDR_PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
        b[HDR_INIT_SIZE..HDR_INIT_SIZE + 4].copy_from_slice(&0x400_0000u32.to_le_bytes());
        b
    }

    fn platform() -> Platform {
        Platform { apic_ids: vec![1, 2], uart: Some(0x2f8), pci: None }
    }

    #[test]
    fn parses_the_setup_header() {
        let img = bzimage(0x020f, 0x1000);
        let bz = parse_bzimage(&img).unwrap();
        assert_eq!(bz.version, 0x020f);
        assert_eq!(bz.kernel, 3 * 512..3 * 512 + 0x1000);
        assert_eq!(bz.header, 0x1f1..0x26c);
        assert_eq!((bz.code32_start, bz.pref_address, bz.init_size), (0x10_0000, 0x100_0000, 0x400_0000));
    }

    #[test]
    fn rejects_what_is_not_a_usable_bzimage() {
        assert!(matches!(parse_bzimage(b"\x7fELF"), Err(LinuxError::NotBzImage(_))));
        let mut img = bzimage(0x020f, 0x100);
        img[HDR_MAGIC] = b'X';
        assert!(matches!(parse_bzimage(&img), Err(LinuxError::NotBzImage(_))));
        assert_eq!(parse_bzimage(&bzimage(0x020a, 0x100)), Err(LinuxError::OldProtocol(0x020a)));
        assert!(LinuxError::OldProtocol(0x020a).to_string().contains("2.10 is too old"));
        let mut zimage = bzimage(0x020f, 0x100);
        zimage[HDR_LOADFLAGS] = 0;
        assert!(matches!(parse_bzimage(&zimage), Err(LinuxError::NotBzImage(_))));
        let setup_only = bzimage(0x020f, 0);
        assert!(matches!(parse_bzimage(&setup_only), Err(LinuxError::NotBzImage(_))));
        // Truncations and corruptions never panic.
        let img = bzimage(0x020f, 0x100);
        for n in 0..img.len() {
            let _ = parse_bzimage(&img[..n]);
        }
        for i in 0x1f0..0x270 {
            let mut c = img.clone();
            c[i] ^= 0xff;
            let _ = plan(&c, 100, "x", &[(0, 256 << 20)], &[], &platform());
        }
    }

    #[test]
    fn e820_is_own_ram_with_windows_reserved() {
        let m = e820(&[(0, 256 << 20)], &[(0x1000_0000, 0x2000)]);
        assert_eq!(
            m,
            vec![
                E820 { addr: 0, size: 0x9_f000, kind: E820_RAM },
                E820 { addr: 0x9_f000, size: 0x6_1000, kind: E820_RESERVED },
                E820 { addr: 0x10_0000, size: (256 << 20) - 0x10_0000, kind: E820_RAM },
                E820 { addr: 0x1000_0000, size: 0x2000, kind: E820_RESERVED },
            ]
        );
        let hi = e820(&[(0, 0xc000_0000), (0x1_0000_0000, 1 << 30)], &[]);
        assert_eq!(hi.last(), Some(&E820 { addr: 0x1_0000_0000, size: 1 << 30, kind: E820_RAM }));
    }

    #[test]
    fn acpi_tables_checksum_and_describe_the_sandbox() {
        let blob = acpi(ACPI_BASE, &platform());
        assert!(blob.len() as u64 <= ACPI_LEN);
        let tables = find_tables(&blob, ACPI_BASE).unwrap();
        let sigs: Vec<&[u8]> = tables.iter().map(|t| &t.0[..]).collect();
        assert_eq!(sigs, [&b"XSDT"[..], b"FACP", b"DSDT", b"APIC"]);
        let fadt = tables[1].1;
        assert!(fadt[8] >= 5, "FADT revision {}", fadt[8]);
        let flags = u32_at(fadt, 112).unwrap();
        assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_eq!(u16_at(fadt, 109).unwrap(), IAPC_BOOT_ARCH);
        assert_eq!(u32_at(fadt, 76).unwrap(), 0, "no PM timer");
        // Reset register (offset 116) and sleep control/status (244, 256): I/O ports.
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        assert_eq!((fadt[116], fadt[117], u64_at(fadt, 120).unwrap(), fadt[128]), (1, 8, 0xf4, RESET_VALUE));
        assert_eq!((fadt[244], u64_at(fadt, 248).unwrap()), (1, 0xf4));
        assert_eq!((fadt[256], u64_at(fadt, 260).unwrap()), (1, 0xf5));
        let madt = tables[3].1;
        assert_eq!(u32_at(madt, 36).unwrap(), LAPIC_ADDR);
        assert_eq!(u32_at(madt, 40).unwrap() & 1, 0, "no dual 8259 (PCAT_COMPAT)");
        // Two processor-local APIC entries with the sandbox's APIC ids, enabled; no IOAPIC.
        assert_eq!(madt.len(), 44 + 16);
        assert_eq!(&madt[44..52], &[0, 8, 0, 1, 1, 0, 0, 0]);
        assert_eq!(&madt[52..60], &[0, 8, 1, 2, 1, 0, 0, 0]);
        // The DSDT names a PNP0501 (EISA id 0x0105d041) with I/O ports 0x2f8..0x2ff and no IRQ.
        let dsdt = tables[2].1;
        let find = |pat: &[u8]| dsdt.windows(pat.len()).any(|w| w == pat);
        assert!(find(b"_HID\x0c\x41\xd0\x05\x01"), "{dsdt:x?}");
        assert!(find(b"\x08_S5_\x12\x04\x02\x00\x00"), "{dsdt:x?}");
        assert!(find(&[0x47, 0x01, 0xf8, 0x02, 0xf8, 0x02, 0x01, 0x08]), "{dsdt:x?}");
        assert!(!find(&[0x22]) && !find(&[0x89]), "an IRQ descriptor in {dsdt:x?}");
        // A corrupted byte anywhere in a table is caught.
        let mut bad = blob.clone();
        let fadt_off = blob.windows(4).position(|w| w == b"FACP").unwrap();
        bad[fadt_off + 50] ^= 1;
        assert!(find_tables(&bad, ACPI_BASE).is_err());
        let mut bad = blob.clone();
        bad[3] ^= 1;
        assert_eq!(find_tables(&bad, ACPI_BASE), Err("bad RSDP"));
    }

    #[test]
    fn power_port_writes_name_their_cause() {
        assert_eq!(PowerEvent::of(RESET_VALUE, Some(0)), PowerEvent::Reboot);
        assert_eq!(PowerEvent::of(RESET_VALUE, None), PowerEvent::Reboot);
        assert_eq!(PowerEvent::of(RESET_VALUE, Some(WARM_BOOT)), PowerEvent::Panic);
        assert_eq!(PowerEvent::of(S5_VALUE, Some(WARM_BOOT)), PowerEvent::PowerOff);
        assert_eq!(PowerEvent::of(0x11, None), PowerEvent::Other(0x11));
        assert!(PowerEvent::Panic.to_string().starts_with("kernel panic"));
        assert!(PowerEvent::Reboot.to_string().starts_with("rebooted"));
        assert_eq!(PowerEvent::PowerOff.to_string(), "powered off (ACPI S5)");
        // The sleep control value is SLP_EN with the \_S5 sleep type the DSDT gives (0).
        assert_eq!(S5_VALUE, 1 << 5);
        // The end options come first, so a configuration's own `panic=` overrides.
        let cl = cmdline(0, None, false, "panic=0");
        assert!(cl.starts_with(END_OPTIONS) && cl.ends_with("panic=0"), "{cl}");
    }

    #[test]
    fn pci_functions_get_a_root_bridge_with_prt_and_an_ioapic() {
        let mut p = platform();
        // No PCI: no IOAPIC, no root bridge.
        let blob = acpi(ACPI_BASE, &p);
        let t = find_tables(&blob, ACPI_BASE).unwrap();
        assert!(!t[2].1.windows(4).any(|w| w == b"PCI0"));
        p.pci = Some(PciRoot { intx: vec![(4, 1, 10), (5, 2, 11)], mem: vec![(0xfea0_0000, 0xfea0_1000)] });
        let blob = acpi(ACPI_BASE, &p);
        assert!(blob.len() as u64 <= ACPI_LEN);
        let t = find_tables(&blob, ACPI_BASE).unwrap();
        let madt = t[3].1;
        assert_eq!(madt.len(), 44 + 16 + 12);
        // IOAPIC entry: type 1, length 12, id 0, address 0xfec00000, GSI base 0.
        assert_eq!(&madt[60..72], &[1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]);
        let dsdt = t[2].1;
        let find = |pat: &[u8]| dsdt.windows(pat.len()).any(|w| w == pat);
        assert!(find(b"PCI0") && find(b"_PRT") && find(b"_CRS"), "{dsdt:x?}");
        assert!(find(b"_HID\x0c\x41\xd0\x0a\x03"), "PNP0A03: {dsdt:x?}");
        // { 0x0004ffff, 0 (INTA), 0, 10 } and { 0x0005ffff, 1 (INTB), 0, 11 }.
        assert!(find(&[0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x04, 0x00, 0x00, 0x00, 0x0a, 0x0a]), "{dsdt:x?}");
        assert!(find(&[0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x05, 0x00, 0x01, 0x00, 0x0a, 0x0b]), "{dsdt:x?}");
        // The memory window: a QWord memory descriptor from 0xfea00000 to 0xfea00fff.
        assert!(find(&0xfea0_0000u64.to_le_bytes()) && find(&0xfea0_0fffu64.to_le_bytes()), "{dsdt:x?}");
    }

    #[test]
    fn no_uart_no_device() {
        let blob = acpi(ACPI_BASE, &Platform { apic_ids: vec![0], uart: None, pci: None });
        let tables = find_tables(&blob, ACPI_BASE).unwrap();
        let dsdt = tables[2].1;
        assert!(!dsdt.windows(4).any(|w| w == b"COM0"), "{dsdt:x?}");
    }

    #[test]
    fn plans_zero_page_cmdline_and_initrd() {
        let img = bzimage(0x020f, 0x1000);
        let cl = cmdline(2_000_000, Some(2), false, "quiet rdinit=/init");
        assert_eq!(cl, "reboot=acpi,cold,panic_warm panic=-1 noapic tsc_early_khz=2000000 tsc=reliable console=ttyS1 quiet rdinit=/init");
        let cl = cmdline(2_000_000, Some(2), true, "");
        assert_eq!(cl, "reboot=acpi,cold,panic_warm panic=-1 nopvspin tsc_early_khz=2000000 tsc=reliable console=ttyS1", "no noapic with PCI");
        let ram = [(0u64, 256u64 << 20)];
        let b = plan(&img, 10_000, &cl, &ram, &[(0x1000_0000, 0x1000)], &platform()).unwrap();
        assert_eq!((b.kernel_at, b.entry), (0x10_0000, 0x10_0000));
        assert_eq!(b.initrd_at, ((256 << 20) - 10_000) & !0xfff);
        assert_eq!(b.kernel_end, 0x500_0000);
        let zp = &b.zero_page;
        assert_eq!(&zp[HDR_MAGIC..HDR_MAGIC + 4], b"HdrS");
        assert_eq!(zp[HDR_TYPE_OF_LOADER], 0xff);
        assert_eq!(u32_at(zp, HDR_CMD_LINE_PTR).unwrap() as u64, CMDLINE);
        assert_eq!(u32_at(zp, HDR_RAMDISK_IMAGE).unwrap() as u64, b.initrd_at);
        assert_eq!(u32_at(zp, HDR_RAMDISK_SIZE).unwrap(), 10_000);
        assert_eq!(u64_at(zp, BP_ACPI_RSDP_ADDR).unwrap(), ACPI_BASE);
        assert_eq!(zp[BP_E820_ENTRIES], 4);
        assert_eq!(u64_at(zp, BP_E820_TABLE + 3 * 20).unwrap(), 0x1000_0000);
        assert_eq!(u32_at(zp, BP_E820_TABLE + 3 * 20 + 16).unwrap(), E820_RESERVED);
        assert_eq!(zp[0x1ef], 0, "sentinel clear");
        assert_eq!(b.cmdline.last(), Some(&0));
        assert_eq!(b.cmdline.len(), cl.len() + 1);
        // The tables live where the zero page says.
        assert!(find_tables(&b.acpi, ACPI_BASE).is_ok());
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let img = bzimage(0x020f, 0x1000);
        // 64 MiB: the decompression buffer (16 MiB + 64 MiB) does not fit.
        assert_eq!(plan(&img, 0, "", &[(0, 64 << 20)], &[], &platform()), Err(LinuxError::TooBig { need: 0x500_0000, have: 64 << 20 }));
        // 96 MiB: the kernel fits, a 32 MiB initramfs does not.
        assert!(matches!(plan(&img, 32 << 20, "", &[(0, 96 << 20)], &[], &platform()), Err(LinuxError::TooBig { .. })));
        assert!(plan(&img, 8 << 20, "", &[(0, 96 << 20)], &[], &platform()).is_ok());
        let long = "x".repeat(2048);
        assert_eq!(plan(&img, 0, &long, &[(0, 256 << 20)], &[], &platform()), Err(LinuxError::CmdlineTooLong { len: 2048, max: 2047 }));
        let windows: Vec<(u64, u64)> = (0..130).map(|i| (0x2000_0000 + i * 0x1000, 0x1000)).collect();
        assert_eq!(plan(&img, 0, "", &[(0, 256 << 20)], &windows, &platform()), Err(LinuxError::TooManyRegions(133)));
    }
}
