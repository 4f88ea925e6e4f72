//! What the boot loader told the kernel, copied out of the multiboot2 information block into a
//! fixed-size [`BootInfo`] (no heap exists when it is filled): firmware, memory map, modules,
//! command line, loader name, ACPI root. `hal::boot` loads the block from the address GRUB
//! passes (the one `unsafe` step); everything after that is here, pure, so that it can be
//! fuzzed on the host (`fuzz/`, target `multiboot2`).
#![no_std]
#![forbid(unsafe_code)]

pub use kmem::PhysRange;

/// Which firmware loaded us (told apart by the EFI tags GRUB adds on UEFI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
        }
    }
}

pub const MAX_MEMORY_REGIONS: usize = 128;
pub const MAX_MODULES: usize = 16;
const NAME_LEN: usize = 64;
const CMDLINE_LEN: usize = 256;

/// A memory-map entry as the loader reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub range: PhysRange,
    pub kind: MemoryKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    Available,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Defective,
}

/// A boot module (a file GRUB loaded beside the kernel), named by its command line.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    pub range: PhysRange,
    name: [u8; NAME_LEN],
    name_len: usize,
}

impl Module {
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
}

/// What the boot loader told us, copied out of the multiboot2 information block so that the
/// block's memory can be reused. Fixed capacity: no heap exists when it is filled.
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub firmware: Firmware,
    regions: [MemoryRegion; MAX_MEMORY_REGIONS],
    region_count: usize,
    /// Entries the loader gave beyond [`MAX_MEMORY_REGIONS`] (ignored, reported in the banner).
    pub regions_dropped: usize,
    modules: [Module; MAX_MODULES],
    module_count: usize,
    cmdline: [u8; CMDLINE_LEN],
    cmdline_len: usize,
    loader: [u8; NAME_LEN],
    loader_len: usize,
    /// (revision, RSDT or XSDT physical address) from the loader's copy of the ACPI RSDP.
    pub acpi_root: Option<(u8, u64)>,
    /// Where the information block itself lies (reserved until it has been copied).
    pub info_range: PhysRange,
}

impl BootInfo {
    pub fn memory_regions(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.module_count]
    }
    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules().iter().find(|m| m.name() == name)
    }
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }
    pub fn loader_name(&self) -> &str {
        core::str::from_utf8(&self.loader[..self.loader_len]).unwrap_or("")
    }
    /// Total bytes of available RAM the loader reported.
    pub fn usable_bytes(&self) -> u64 {
        self.memory_regions()
            .iter()
            .filter(|r| r.kind == MemoryKind::Available)
            .map(|r| r.range.len())
            // Saturating: a broken or hostile memory map can list more than 2^64 bytes (the
            // plain sum overflowed: found by the multiboot2 fuzz target).
            .fold(0u64, u64::saturating_add)
    }
}

fn copy_str(dst: &mut [u8], src: &str) -> usize {
    // Truncate on a character boundary so the copy stays valid UTF-8.
    let mut n = src.len().min(dst.len());
    while !src.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&src.as_bytes()[..n]);
    n
}

/// Copies what the kernel needs out of a loaded multiboot2 information block at physical
/// address `mbi_phys`. Fails when there is no memory map; everything else is optional, and
/// sizes, counts and strings are clamped to the fixed capacity.
pub fn from_multiboot2(mbi: &multiboot2::BootInformation<'_>, mbi_phys: u64) -> Result<BootInfo, &'static str> {
    let empty_region = MemoryRegion { range: PhysRange { start: 0, end: 0 }, kind: MemoryKind::Reserved };
    let empty_module = Module { range: PhysRange { start: 0, end: 0 }, name: [0; NAME_LEN], name_len: 0 };
    let mut info = BootInfo {
        firmware: if mbi.efi_sdt64_tag().is_some() || mbi.efi_memory_map_tag().is_some() {
            Firmware::Uefi
        } else {
            Firmware::Bios
        },
        regions: [empty_region; MAX_MEMORY_REGIONS],
        region_count: 0,
        regions_dropped: 0,
        modules: [empty_module; MAX_MODULES],
        module_count: 0,
        cmdline: [0; CMDLINE_LEN],
        cmdline_len: 0,
        loader: [0; NAME_LEN],
        loader_len: 0,
        acpi_root: None,
        info_range: PhysRange { start: mbi_phys, end: mbi_phys.saturating_add(mbi.total_size() as u64) },
    };

    let push = |info: &mut BootInfo, start: u64, len: u64, kind: MemoryKind| {
        if len == 0 {
            return;
        }
        if info.region_count == MAX_MEMORY_REGIONS {
            info.regions_dropped += 1;
            return;
        }
        info.regions[info.region_count] =
            MemoryRegion { range: PhysRange { start: start, end: start.saturating_add(len) }, kind };
        info.region_count += 1;
    };
    if let Some(mm) = mbi.memory_map_tag() {
        use multiboot2::MemoryAreaType as T;
        for a in mm.memory_areas() {
            let kind = match a.typ().into() {
                T::Available => MemoryKind::Available,
                T::AcpiAvailable => MemoryKind::AcpiReclaimable,
                T::ReservedHibernate => MemoryKind::AcpiNvs,
                T::Defective => MemoryKind::Defective,
                _ => MemoryKind::Reserved,
            };
            push(&mut info, a.start_address(), a.size(), kind);
        }
    } else if let Some(efi) = mbi.efi_memory_map_tag() {
        use multiboot2::EFIMemoryAreaType as E;
        for d in efi.memory_areas() {
            let kind = match d.ty {
                E::CONVENTIONAL
                | E::BOOT_SERVICES_CODE
                | E::BOOT_SERVICES_DATA
                | E::LOADER_CODE
                | E::LOADER_DATA => MemoryKind::Available,
                E::ACPI_RECLAIM => MemoryKind::AcpiReclaimable,
                E::ACPI_NON_VOLATILE => MemoryKind::AcpiNvs,
                E::UNUSABLE => MemoryKind::Defective,
                _ => MemoryKind::Reserved,
            };
            // Saturating: an absurd page count overflowed the multiplication (a panic at boot
            // with overflow checks on; found by the multiboot2 fuzz target).
            push(&mut info, d.phys_start, d.page_count.saturating_mul(4096), kind);
        }
    } else {
        return Err("the boot loader gave no memory map");
    }

    for m in mbi.module_tags() {
        if info.module_count == MAX_MODULES {
            break;
        }
        let mut name = [0u8; NAME_LEN];
        let name_len = copy_str(&mut name, m.cmdline().unwrap_or(""));
        info.modules[info.module_count] = Module {
            // A module that ends before it starts (a broken or hostile loader) is empty, not an
            // inverted range (found by the multiboot2 fuzz target).
            range: PhysRange { start: m.start_address() as u64, end: (m.end_address() as u64).max(m.start_address() as u64) },
            name,
            name_len,
        };
        info.module_count += 1;
    }
    if let Some(c) = mbi.command_line_tag() {
        info.cmdline_len = copy_str(&mut info.cmdline, c.cmdline().unwrap_or(""));
    }
    if let Some(l) = mbi.boot_loader_name_tag() {
        info.loader_len = copy_str(&mut info.loader, l.name().unwrap_or(""));
    }
    if let Some(r) = mbi.rsdp_v2_tag() {
        info.acpi_root = Some((r.revision(), r.xsdt_address() as u64));
    } else if let Some(r) = mbi.rsdp_v1_tag() {
        info.acpi_root = Some((0, r.rsdt_address() as u64));
    }
    Ok(info)
}
