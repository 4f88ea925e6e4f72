//! A sandbox's boot image: the Quest kernel ELF loaded by physical address into the sandbox's
//! RAM, its boot modules after it, and the multiboot2 information block the kernel expects
//! from GRUB, all at guest-physical addresses. [`plan`] decides where everything goes and
//! returns the bytes to write; the monitor copies them.
//!
//! The guest then starts exactly as GRUB would start it: 32-bit protected mode, paging off,
//! `eax` = multiboot2 magic, `ebx` = the information block's address.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// The value a multiboot2 loader leaves in `eax`.
pub const MULTIBOOT2_BOOT_MAGIC: u32 = 0x36d7_6289;
/// The multiboot2 header magic in the kernel image.
pub const MULTIBOOT2_HEADER_MAGIC: u32 = 0xe852_50d6;
/// Kernels load at or above 1 MiB (below is real-mode and firmware territory on a PC).
pub const LOAD_MIN: u64 = 0x10_0000;
/// The top of conventional memory the map reports (below it: the EBDA and the BIOS area).
pub const CONVENTIONAL_END: u64 = 0x9_f000;

/// Why an image cannot boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Not an ELF64 little-endian x86-64 executable.
    NotElf(&'static str),
    /// No valid multiboot2 header in the first 32 KiB.
    NotMultiboot2,
    /// A program header is inconsistent (the message says how).
    BadSegment(String),
    /// The entry point is not in a loaded, 32-bit addressable segment.
    BadEntry(u64),
    /// The kernel, its modules and the boot information do not fit in the sandbox's low RAM.
    TooBig { need: u64, have: u64 },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::NotElf(why) => write!(f, "not an x86-64 ELF executable ({why})"),
            ImageError::NotMultiboot2 => write!(f, "no multiboot2 header in the first 32 KiB"),
            ImageError::BadSegment(m) => write!(f, "bad program header: {m}"),
            ImageError::BadEntry(e) => write!(f, "entry point {e:#x} is not in a loaded segment below 4 GiB"),
            ImageError::TooBig { need, have } => {
                write!(f, "kernel, modules and boot information need RAM up to {need:#x}; the sandbox's low RAM ends at {have:#x}")
            }
        }
    }
}

/// A loadable segment: file bytes `file` go to guest-physical `paddr`; the rest up to
/// `memsz` is zeroed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub file: Range<usize>,
    pub memsz: u64,
}

/// A parsed kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub entry: u32,
    pub segments: Vec<Segment>,
}

impl Kernel {
    /// One past the highest byte any segment occupies.
    pub fn end(&self) -> u64 {
        self.segments.iter().map(|s| s.paddr + s.memsz).max().unwrap_or(LOAD_MIN)
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

/// Whether `elf` carries a valid multiboot2 header (8-byte aligned, in the first 32 KiB,
/// checksum right).
pub fn has_multiboot2_header(elf: &[u8]) -> bool {
    let limit = elf.len().min(32 * 1024);
    (0..limit).step_by(8).any(|o| {
        let (Some(m), Some(a), Some(l), Some(c)) = (u32_at(elf, o), u32_at(elf, o + 4), u32_at(elf, o + 8), u32_at(elf, o + 12))
        else {
            return false;
        };
        m == MULTIBOOT2_HEADER_MAGIC && a == 0 && l >= 16 && m.wrapping_add(a).wrapping_add(l).wrapping_add(c) == 0
    })
}

/// Parses a multiboot2 ELF64 kernel whose segments must lie in guest-physical
/// `[LOAD_MIN, ram_end)`.
pub fn parse_kernel(elf: &[u8], ram_end: u64) -> Result<Kernel, ImageError> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err(ImageError::NotElf("no ELF magic"));
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err(ImageError::NotElf("not 64-bit little-endian"));
    }
    if u16_at(elf, 18) != Some(0x3e) {
        return Err(ImageError::NotElf("not x86-64"));
    }
    if !has_multiboot2_header(elf) {
        return Err(ImageError::NotMultiboot2);
    }
    let entry = u64_at(elf, 24).ok_or(ImageError::NotElf("truncated header"))?;
    let phoff = u64_at(elf, 32).ok_or(ImageError::NotElf("truncated header"))?;
    let phentsize = u16_at(elf, 54).ok_or(ImageError::NotElf("truncated header"))?;
    let phnum = u16_at(elf, 56).ok_or(ImageError::NotElf("truncated header"))?;
    if phentsize != 56 {
        return Err(ImageError::NotElf("program header size is not 56"));
    }
    let mut segments: Vec<Segment> = Vec::new();
    for i in 0..usize::from(phnum) {
        let bad = |m: &str| ImageError::BadSegment(alloc::format!("#{i}: {m}"));
        let o = usize::try_from(phoff).ok().and_then(|p| p.checked_add(i * 56)).ok_or_else(|| bad("offset overflows"))?;
        let ph = elf.get(o..o + 56).ok_or_else(|| bad("beyond the file"))?;
        if u32_at(ph, 0) != Some(1) {
            continue; // not PT_LOAD
        }
        let (off, paddr, filesz, memsz) = (u64_at(ph, 8).unwrap(), u64_at(ph, 24).unwrap(), u64_at(ph, 32).unwrap(), u64_at(ph, 40).unwrap());
        if memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(bad("file size exceeds memory size"));
        }
        let file_end = off.checked_add(filesz).filter(|&e| e <= elf.len() as u64).ok_or_else(|| bad("file bytes beyond the file"))?;
        let end = paddr.checked_add(memsz).ok_or_else(|| bad("address overflows"))?;
        if paddr < LOAD_MIN || end > ram_end {
            return Err(bad(&alloc::format!("physical range {paddr:#x}..{end:#x} outside the sandbox's RAM {LOAD_MIN:#x}..{ram_end:#x}")));
        }
        if let Some(s) = segments.iter().find(|s| paddr < s.paddr + s.memsz && s.paddr < end) {
            return Err(bad(&alloc::format!("overlaps the segment at {:#x}", s.paddr)));
        }
        segments.push(Segment { paddr, file: off as usize..file_end as usize, memsz });
    }
    if segments.is_empty() {
        return Err(ImageError::BadSegment("no loadable segment".into()));
    }
    if entry >= 1 << 32 || !segments.iter().any(|s| (s.paddr..s.paddr + s.memsz).contains(&entry)) {
        return Err(ImageError::BadEntry(entry));
    }
    Ok(Kernel { entry: entry as u32, segments })
}

/// A module to hand the guest kernel.
#[derive(Clone, Copy, Debug)]
pub struct ModuleSpec<'a> {
    /// Its multiboot2 string (the kernel finds modules by it: "initrd", "kernel.sym").
    pub name: &'a str,
    pub len: u64,
}

/// Where everything goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootPlan {
    pub kernel: Kernel,
    /// Guest-physical start of each module (page aligned), in the order given.
    pub modules: Vec<u64>,
    /// Guest-physical address of the multiboot2 information (8 aligned).
    pub mbi_addr: u64,
    /// Its bytes.
    pub mbi: Vec<u8>,
}

/// A memory-map entry type of multiboot2 (1 available, 2 reserved).
const MMAP_AVAILABLE: u32 = 1;
const MMAP_RESERVED: u32 = 2;

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Builds the boot plan for a sandbox whose RAM is `ram` (guest-physical regions, the first
/// starting at 0): kernel segments, then the modules page aligned, then the information block.
pub fn plan(elf: &[u8], modules: &[ModuleSpec<'_>], cmdline: &str, loader: &str, ram: &[(u64, u64)]) -> Result<BootPlan, ImageError> {
    let low_end = ram.iter().find(|r| r.0 == 0).map(|r| r.1).unwrap_or(0).min(1 << 32);
    let kernel = parse_kernel(elf, low_end)?;
    let mut at = align_up(kernel.end(), 4096);
    let mut mods = Vec::new();
    for m in modules {
        mods.push(at);
        at = align_up(at + m.len, 4096);
    }
    let mbi_addr = at;
    let mbi = build_mbi(modules, &mods, cmdline, loader, ram);
    let need = mbi_addr + mbi.len() as u64;
    if need > low_end {
        return Err(ImageError::TooBig { need, have: low_end });
    }
    Ok(BootPlan { kernel, modules: mods, mbi_addr, mbi })
}

struct Tags(Vec<u8>);

impl Tags {
    fn tag(&mut self, ty: u32, body: &[u8]) {
        let size = 8 + body.len() as u32;
        self.0.extend_from_slice(&ty.to_le_bytes());
        self.0.extend_from_slice(&size.to_le_bytes());
        self.0.extend_from_slice(body);
        while self.0.len() % 8 != 0 {
            self.0.push(0);
        }
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().filter(|&b| b != 0).collect();
    v.push(0);
    v
}

/// The multiboot2 information block: command line, loader name, basic memory info, memory
/// map (conventional memory, the reserved legacy area, the RAM regions), the modules.
fn build_mbi(modules: &[ModuleSpec<'_>], starts: &[u64], cmdline: &str, loader: &str, ram: &[(u64, u64)]) -> Vec<u8> {
    let mut t = Tags(Vec::new());
    t.0.extend_from_slice(&[0; 8]); // total size + reserved, filled in below
    t.tag(1, &cstr(cmdline));
    t.tag(2, &cstr(loader));
    let low_end = ram.iter().find(|r| r.0 == 0).map(|r| r.1).unwrap_or(0);
    let mut basic = Vec::new();
    basic.extend_from_slice(&((CONVENTIONAL_END / 1024) as u32).to_le_bytes());
    basic.extend_from_slice(&((low_end.saturating_sub(LOAD_MIN) / 1024).min(u64::from(u32::MAX)) as u32).to_le_bytes());
    t.tag(4, &basic);
    let mut mmap = Vec::new();
    mmap.extend_from_slice(&24u32.to_le_bytes());
    mmap.extend_from_slice(&0u32.to_le_bytes());
    let mut entry = |base: u64, len: u64, ty: u32| {
        mmap.extend_from_slice(&base.to_le_bytes());
        mmap.extend_from_slice(&len.to_le_bytes());
        mmap.extend_from_slice(&ty.to_le_bytes());
        mmap.extend_from_slice(&0u32.to_le_bytes());
    };
    for &(base, len) in ram {
        if base == 0 {
            entry(0, CONVENTIONAL_END.min(len), MMAP_AVAILABLE);
            if len > LOAD_MIN {
                entry(CONVENTIONAL_END, LOAD_MIN - CONVENTIONAL_END, MMAP_RESERVED);
                entry(LOAD_MIN, len - LOAD_MIN, MMAP_AVAILABLE);
            }
        } else {
            entry(base, len, MMAP_AVAILABLE);
        }
    }
    t.tag(6, &mmap);
    for (m, &start) in modules.iter().zip(starts) {
        let mut b = Vec::new();
        b.extend_from_slice(&(start as u32).to_le_bytes());
        b.extend_from_slice(&((start + m.len) as u32).to_le_bytes());
        b.extend_from_slice(&cstr(m.name));
        t.tag(3, &b);
    }
    t.tag(0, &[]);
    let total = t.0.len() as u32;
    t.0[0..4].copy_from_slice(&total.to_le_bytes());
    t.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A minimal multiboot2 ELF: one PT_LOAD at 1 MiB of `code` (with the header inside).
    fn tiny_elf(paddr: u64, memsz: u64, entry: u64) -> Vec<u8> {
        let mut e = vec![0u8; 0x100];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
        e[24..32].copy_from_slice(&entry.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        e[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        e[ph + 8..ph + 16].copy_from_slice(&0x80u64.to_le_bytes());
        e[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        e[ph + 32..ph + 40].copy_from_slice(&0x80u64.to_le_bytes());
        e[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        let h = 0x80;
        let len = 16u32;
        e[h..h + 4].copy_from_slice(&MULTIBOOT2_HEADER_MAGIC.to_le_bytes());
        e[h + 8..h + 12].copy_from_slice(&len.to_le_bytes());
        let c = 0u32.wrapping_sub(MULTIBOOT2_HEADER_MAGIC.wrapping_add(len));
        e[h + 12..h + 16].copy_from_slice(&c.to_le_bytes());
        e
    }

    #[test]
    fn plans_kernel_modules_and_mbi() {
        let elf = tiny_elf(0x10_0000, 0x5000, 0x10_0010);
        let mods = [ModuleSpec { name: "initrd", len: 10_000 }, ModuleSpec { name: "kernel.sym", len: 5 }];
        let p = plan(&elf, &mods, "console=x", "Quest-V", &[(0, 64 << 20)]).unwrap();
        assert_eq!(p.kernel.entry, 0x10_0010);
        assert_eq!(p.modules, vec![0x10_5000, 0x10_8000]);
        assert_eq!(p.mbi_addr, 0x10_9000);
        assert_eq!(u32_at(&p.mbi, 0).unwrap() as usize, p.mbi.len());
        // Walk the tags: every one 8-aligned, ending with the end tag.
        let mut o = 8;
        let mut types = vec![];
        loop {
            let (ty, size) = (u32_at(&p.mbi, o).unwrap(), u32_at(&p.mbi, o + 4).unwrap());
            types.push(ty);
            if ty == 0 {
                break;
            }
            o = align_up((o + size as usize) as u64, 8) as usize;
        }
        assert_eq!(types, vec![1, 2, 4, 6, 3, 3, 0]);
    }

    #[test]
    fn rejects_bad_images() {
        let ram = [(0u64, 16u64 << 20)];
        assert!(matches!(plan(b"hello", &[], "", "", &ram), Err(ImageError::NotElf(_))));
        let mut no_mb = tiny_elf(0x10_0000, 0x1000, 0x10_0000);
        no_mb[0x80] = 0;
        assert_eq!(plan(&no_mb, &[], "", "", &ram), Err(ImageError::NotMultiboot2));
        let low = tiny_elf(0x1000, 0x1000, 0x1000);
        assert!(matches!(plan(&low, &[], "", "", &ram), Err(ImageError::BadSegment(_))));
        let huge = tiny_elf(0x10_0000, 1 << 30, 0x10_0000);
        assert!(matches!(plan(&huge, &[], "", "", &ram), Err(ImageError::BadSegment(_))));
        let entry = tiny_elf(0x10_0000, 0x1000, 0x20_0000);
        assert_eq!(plan(&entry, &[], "", "", &ram), Err(ImageError::BadEntry(0x20_0000)));
        let ok = tiny_elf(0x10_0000, 0x1000, 0x10_0000);
        let big = [ModuleSpec { name: "initrd", len: 32 << 20 }];
        assert!(matches!(plan(&ok, &big, "", "", &ram), Err(ImageError::TooBig { .. })));
    }

    #[test]
    fn truncations_never_panic() {
        let elf = tiny_elf(0x10_0000, 0x5000, 0x10_0010);
        for n in 0..elf.len() {
            let _ = parse_kernel(&elf[..n], 1 << 30);
        }
        for i in 0..elf.len() {
            for v in [0u8, 0xff, 0x80] {
                let mut e = elf.clone();
                e[i] = v;
                let _ = parse_kernel(&e, 1 << 30);
            }
        }
    }
}
