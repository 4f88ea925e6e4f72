//! What the boot loader told the kernel, copied out of the multiboot2 information block into a
//! fixed-size [`BootInfo`] (no heap exists when it is filled): firmware, memory map, modules,
//! command line, loader name, ACPI root. `hal::boot` turns the address GRUB passes into a byte
//! slice (the one `unsafe` step); [`parse`] reads everything from the bytes, checking every
//! size and offset, so it can be fuzzed on the host (`fuzz/`, target `multiboot2`).
//!
//! It walks the tags itself rather than through the `multiboot2` crate, whose memory-map
//! accessors assert on malformed tags (a descriptor version other than 1, a descriptor size
//! that is not a multiple of 8, a map length that is not a multiple of the entry size): a
//! panic at boot on a broken or hostile boot loader's block (found by the fuzz target).
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

const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_LOADER_NAME: u32 = 2;
const TAG_MODULE: u32 = 3;
const TAG_MEMORY_MAP: u32 = 6;
const TAG_EFI64_SYSTEM_TABLE: u32 = 12;
const TAG_RSDP_V1: u32 = 14;
const TAG_RSDP_V2: u32 = 15;
const TAG_EFI_MEMORY_MAP: u32 = 17;

/// Largest information block accepted (GRUB's are a few KiB; an EFI memory map adds some).
pub const MAX_TOTAL_SIZE: usize = 1 << 20;

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
}

/// The NUL-terminated UTF-8 string at the start of `b` ("" if it is not UTF-8).
fn c_str(b: &[u8]) -> &str {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..end]).unwrap_or("")
}

/// The tags of a well-formed block: (type, payload), in order, up to the end tag.
#[derive(Clone)]
struct Tags<'a> {
    block: &'a [u8],
    off: usize,
}

impl<'a> Iterator for Tags<'a> {
    type Item = (u32, &'a [u8]);
    fn next(&mut self) -> Option<(u32, &'a [u8])> {
        let typ = u32_at(self.block, self.off)?;
        let size = u32_at(self.block, self.off + 4)? as usize;
        if typ == TAG_END || size < 8 {
            return None;
        }
        let payload = self.block.get(self.off + 8..self.off.checked_add(size)?)?;
        self.off = (self.off + size).next_multiple_of(8);
        Some((typ, payload))
    }
}

/// Checks the block's framing (total size within `bytes`, every tag inside it, an end tag) and
/// returns its tags.
fn tags(bytes: &[u8]) -> Result<Tags<'_>, &'static str> {
    let total = u32_at(bytes, 0).ok_or("multiboot2 information block is truncated")? as usize;
    if total < 16 || total > bytes.len() || total > MAX_TOTAL_SIZE {
        return Err("multiboot2 information block has an impossible total size");
    }
    let block = &bytes[..total];
    let mut off = 8;
    loop {
        let (Some(typ), Some(size)) = (u32_at(block, off), u32_at(block, off + 4)) else {
            return Err("multiboot2 information block has no end tag");
        };
        let size = size as usize;
        if size < 8 || off.checked_add(size).is_none_or(|e| e > total) {
            return Err("multiboot2 information block has a tag beyond its end");
        }
        if typ == TAG_END {
            if size != 8 {
                return Err("multiboot2 information block has a malformed end tag");
            }
            break;
        }
        off = (off + size).next_multiple_of(8);
    }
    Ok(Tags { block, off: 8 })
}

/// Copies what the kernel needs out of the multiboot2 information block `bytes` (at physical
/// address `mbi_phys`). Fails when the block is malformed or has no usable memory map;
/// everything else is optional, and sizes, counts and strings are clamped to the fixed
/// capacity.
pub fn parse(bytes: &[u8], mbi_phys: u64) -> Result<BootInfo, &'static str> {
    let tags = tags(bytes)?;
    let total = u32_at(bytes, 0).unwrap_or(0);
    let find = |t: u32| tags.clone().find(|&(typ, _)| typ == t).map(|(_, p)| p);
    let empty_region = MemoryRegion { range: PhysRange { start: 0, end: 0 }, kind: MemoryKind::Reserved };
    let empty_module = Module { range: PhysRange { start: 0, end: 0 }, name: [0; NAME_LEN], name_len: 0 };
    let mut info = BootInfo {
        firmware: if find(TAG_EFI64_SYSTEM_TABLE).is_some() || find(TAG_EFI_MEMORY_MAP).is_some() {
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
        info_range: PhysRange { start: mbi_phys, end: mbi_phys.saturating_add(u64::from(total)) },
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
            MemoryRegion { range: PhysRange { start, end: start.saturating_add(len) }, kind };
        info.region_count += 1;
    };
    // Multiboot2 memory map: entry size, entry version, then entries of at least 24 bytes
    // (base u64, length u64, type u32).
    let mm = find(TAG_MEMORY_MAP).and_then(|p| {
        let esize = u32_at(p, 0)? as usize;
        (esize >= 24).then_some((esize, p.get(8..)?))
    });
    // EFI memory map: descriptor size, version, then descriptors of at least 40 bytes (type u32,
    // pad, physical start u64, virtual start u64, page count u64, attributes u64).
    let efi = find(TAG_EFI_MEMORY_MAP).and_then(|p| {
        let dsize = u32_at(p, 0)? as usize;
        (dsize >= 40).then_some((dsize, p.get(8..)?))
    });
    if let Some((esize, entries)) = mm {
        for e in entries.chunks_exact(esize) {
            let (Some(base), Some(len), Some(typ)) = (u64_at(e, 0), u64_at(e, 8), u32_at(e, 16)) else { break };
            let kind = match typ {
                1 => MemoryKind::Available,
                3 => MemoryKind::AcpiReclaimable,
                4 => MemoryKind::AcpiNvs,
                5 => MemoryKind::Defective,
                _ => MemoryKind::Reserved,
            };
            push(&mut info, base, len, kind);
        }
    } else if let Some((dsize, descs)) = efi {
        for d in descs.chunks_exact(dsize) {
            let (Some(typ), Some(start), Some(pages)) = (u32_at(d, 0), u64_at(d, 8), u64_at(d, 24)) else { break };
            let kind = match typ {
                // conventional, boot services code/data, loader code/data
                7 | 3 | 4 | 1 | 2 => MemoryKind::Available,
                9 => MemoryKind::AcpiReclaimable,
                10 => MemoryKind::AcpiNvs,
                8 => MemoryKind::Defective,
                _ => MemoryKind::Reserved,
            };
            // Saturating: an absurd page count overflowed the multiplication (a panic at boot
            // with overflow checks on; found by the multiboot2 fuzz target).
            push(&mut info, start, pages.saturating_mul(4096), kind);
        }
    } else {
        return Err("the boot loader gave no memory map");
    }

    for (_, p) in tags.clone().filter(|&(t, _)| t == TAG_MODULE) {
        if info.module_count == MAX_MODULES {
            break;
        }
        let (Some(start), Some(end)) = (u32_at(p, 0), u32_at(p, 4)) else { continue };
        let mut name = [0u8; NAME_LEN];
        let name_len = copy_str(&mut name, c_str(p.get(8..).unwrap_or(&[])));
        info.modules[info.module_count] = Module {
            // A module that ends before it starts (a broken or hostile loader) is empty, not
            // an inverted range (found by the multiboot2 fuzz target).
            range: PhysRange { start: u64::from(start), end: u64::from(end.max(start)) },
            name,
            name_len,
        };
        info.module_count += 1;
    }
    if let Some(p) = find(TAG_CMDLINE) {
        info.cmdline_len = copy_str(&mut info.cmdline, c_str(p));
    }
    if let Some(p) = find(TAG_LOADER_NAME) {
        info.loader_len = copy_str(&mut info.loader, c_str(p));
    }
    // The loader's copy of the ACPI RSDP: revision at 15, RSDT address at 16, XSDT at 24.
    if let Some(p) = find(TAG_RSDP_V2) {
        if let (Some(&rev), Some(xsdt)) = (p.get(15), u64_at(p, 24)) {
            info.acpi_root = Some((rev, xsdt));
        }
    } else if let Some(rsdt) = find(TAG_RSDP_V1).and_then(|p| u32_at(p, 16)) {
        info.acpi_root = Some((0, u64::from(rsdt)));
    }
    Ok(info)
}
