//! Nested page tables: 4-level tables in the x86-64 long-mode format (what AMD's nested
//! paging walks; Intel's EPT differs only in the entry bits, see [`Format`]).
//!
//! Tables are built in a plain `Vec` ([`Builder`]), each table's children referenced by index;
//! [`Builder::finish`] lays them out contiguously at a chosen physical base and returns the
//! bytes to copy there. Large pages (2 MiB) are used wherever the mapping allows.

use alloc::vec;
use alloc::vec::Vec;

/// Entry bits (AMD NPT = long-mode page-table format).
const P: u64 = 1;
const RW: u64 = 1 << 1;
/// Nested walks are user-mode accesses on AMD: every entry must allow user access.
const US: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

const SIZE_4K: u64 = 1 << 12;
const SIZE_2M: u64 = 1 << 21;

/// The entry format (only AMD's NPT is implemented; VT-x's EPT joins with its backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// AMD nested paging.
    AmdNpt,
}

/// How a guest-physical range is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    /// Guest may write.
    pub write: bool,
    /// Guest may execute.
    pub exec: bool,
    /// Uncached (device memory).
    pub uncached: bool,
}

impl Rights {
    /// Ordinary RAM: read, write, execute, cached.
    pub const RAM: Rights = Rights { write: true, exec: true, uncached: false };
    /// Shared data (channels): read, write, no execute, cached.
    pub const DATA: Rights = Rights { write: true, exec: false, uncached: false };
    /// Device registers: read, write, no execute, uncached.
    pub const MMIO: Rights = Rights { write: true, exec: false, uncached: true };

    fn bits(self) -> u64 {
        let mut b = P | US;
        if self.write {
            b |= RW;
        }
        if !self.exec {
            b |= NX;
        }
        if self.uncached {
            b |= PCD | PWT;
        }
        b
    }
}

/// Why a mapping was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NptError {
    /// Addresses or length not 4 KiB aligned, or zero length.
    Misaligned,
    /// The range overflows or leaves the 48-bit guest-physical space.
    OutOfRange,
    /// Part of the range is mapped already.
    Overlap(u64),
}

/// A table under construction: entries, with child pointers as table indices.
#[derive(Clone)]
struct Table {
    entries: [u64; 512],
    /// For each entry: the child table's index (non-leaf entries only).
    child: [Option<u32>; 512],
}

impl Table {
    fn new() -> Table {
        Table { entries: [0; 512], child: [None; 512] }
    }
}

/// Builds one guest's nested page tables.
#[derive(Clone)]
pub struct Builder {
    tables: Vec<Table>,
    format: Format,
}

fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * level)) & 0x1ff) as usize
}

impl Builder {
    /// An empty address space (every access faults).
    pub fn new(format: Format) -> Builder {
        Builder { tables: vec![Table::new()], format }
    }

    /// Number of tables so far (each 4 KiB once finished).
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    /// Maps guest-physical `[gpa, gpa + len)` to host-physical `[hpa, hpa + len)`.
    pub fn map(&mut self, gpa: u64, hpa: u64, len: u64, rights: Rights) -> Result<(), NptError> {
        if len == 0 || gpa % SIZE_4K != 0 || hpa % SIZE_4K != 0 || len % SIZE_4K != 0 {
            return Err(NptError::Misaligned);
        }
        let end = gpa.checked_add(len).ok_or(NptError::OutOfRange)?;
        if end > 1 << 48 || hpa.checked_add(len).is_none_or(|e| e > 1 << 52) {
            return Err(NptError::OutOfRange);
        }
        // Check first, so a failed call changes nothing.
        let mut g = gpa;
        while g < end {
            if self.translate(g).is_some() {
                return Err(NptError::Overlap(g));
            }
            g += SIZE_4K;
        }
        let bits = rights.bits();
        let mut off = 0;
        while off < len {
            let (g, h) = (gpa + off, hpa + off);
            if g % SIZE_2M == 0 && h % SIZE_2M == 0 && len - off >= SIZE_2M && self.pd_slot_free(g) {
                let t = self.walk_create(g, 1);
                self.tables[t].entries[index(g, 1)] = h | bits | PS;
                off += SIZE_2M;
            } else {
                let t = self.walk_create(g, 0);
                self.tables[t].entries[index(g, 0)] = h | bits;
                off += SIZE_4K;
            }
        }
        Ok(())
    }

    /// Whether the PD entry for `gpa` is unused (no page table below it).
    fn pd_slot_free(&self, gpa: u64) -> bool {
        let mut t = 0usize;
        for level in [3u32, 2] {
            match self.tables[t].child[index(gpa, level)] {
                Some(c) => t = c as usize,
                None => return true,
            }
        }
        self.tables[t].entries[index(gpa, 1)] == 0
    }

    /// The table at `level` (0 = page table, 1 = page directory) covering `gpa`, created as
    /// needed.
    fn walk_create(&mut self, gpa: u64, level: u32) -> usize {
        let mut t = 0usize;
        for l in (level + 1..=3).rev() {
            let i = index(gpa, l);
            t = match self.tables[t].child[i] {
                Some(c) => c as usize,
                None => {
                    let c = self.tables.len();
                    self.tables.push(Table::new());
                    self.tables[t].child[i] = Some(c as u32);
                    // Non-leaf entries allow everything; the leaf decides.
                    self.tables[t].entries[i] = P | RW | US;
                    c
                }
            };
        }
        t
    }

    /// Host-physical address and rights that `gpa` maps to, if any.
    pub fn translate(&self, gpa: u64) -> Option<(u64, Rights)> {
        let mut t = 0usize;
        for level in (0..=3u32).rev() {
            let i = index(gpa, level);
            let e = self.tables[t].entries[i];
            if e & P == 0 {
                return None;
            }
            let leaf = level == 0 || (level == 1 && e & PS != 0);
            if leaf {
                let size = if level == 0 { SIZE_4K } else { SIZE_2M };
                let rights = Rights { write: e & RW != 0, exec: e & NX == 0, uncached: e & PCD != 0 };
                return Some(((e & ADDR & !(size - 1)) + (gpa & (size - 1)), rights));
            }
            t = self.tables[t].child[i]? as usize;
        }
        None
    }

    /// Lays the tables out at `base` (4 KiB aligned; table `i` at `base + i * 4096`, the root
    /// first) and returns their bytes. `base` is what the VMCB's nested CR3 gets.
    pub fn finish(&self, base: u64) -> Vec<u8> {
        let Format::AmdNpt = self.format;
        assert!(base % SIZE_4K == 0);
        let mut out = Vec::with_capacity(self.tables.len() * 4096);
        for t in &self.tables {
            for (i, &e) in t.entries.iter().enumerate() {
                let v = match t.child[i] {
                    Some(c) => (base + u64::from(c) * 4096) | (e & !ADDR),
                    None => e,
                };
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }
}

/// Walks finished tables (as [`Builder::finish`] produced them, at `base`) like the CPU does:
/// for tests and for the monitor's own checks.
pub fn walk_finished(bytes: &[u8], base: u64, gpa: u64) -> Option<u64> {
    let read = |pa: u64, i: usize| -> Option<u64> {
        let off = usize::try_from(pa.checked_sub(base)?).ok()? + i * 8;
        Some(u64::from_le_bytes(bytes.get(off..off + 8)?.try_into().ok()?))
    };
    let mut table = base;
    for level in (0..=3u32).rev() {
        let e = read(table, index(gpa, level))?;
        if e & P == 0 || e & US == 0 {
            return None;
        }
        if level == 0 || (level == 1 && e & PS != 0) {
            let size = if level == 0 { SIZE_4K } else { SIZE_2M };
            return Some((e & ADDR & !(size - 1)) + (gpa & (size - 1)));
        }
        table = e & ADDR;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn large_pages_where_aligned() {
        let mut b = Builder::new(Format::AmdNpt);
        b.map(0, 0x4000_0000, 64 << 20, Rights::RAM).unwrap();
        // 1 PML4 + 1 PDPT + 1 PD: 32 large pages, no page tables.
        assert_eq!(b.table_count(), 3);
        assert_eq!(b.translate(0x123_4567), Some((0x4123_4567, Rights::RAM)));
        assert_eq!(b.translate(64 << 20), None);
    }

    #[test]
    fn small_pages_when_unaligned_and_rights() {
        let mut b = Builder::new(Format::AmdNpt);
        b.map(0x1000, 0x20_3000, 0x3000, Rights::DATA).unwrap();
        assert_eq!(b.translate(0x1fff), Some((0x20_3fff, Rights::DATA)));
        assert_eq!(b.translate(0), None);
        assert_eq!(b.translate(0x4000), None);
        assert_eq!(b.map(0x2000, 0, 0x1000, Rights::RAM), Err(NptError::Overlap(0x2000)));
        assert_eq!(b.map(0x10, 0, 0x1000, Rights::RAM), Err(NptError::Misaligned));
        assert_eq!(b.map(u64::MAX - 0xfff, 0, 0x1000, Rights::RAM), Err(NptError::OutOfRange));
    }

    #[test]
    fn finished_tables_walk_like_the_builder() {
        let mut b = Builder::new(Format::AmdNpt);
        b.map(0, 0x800_0000, 130 << 20, Rights::RAM).unwrap();
        b.map(0x1_0000_0000, 0x7000_0000, 0x5000, Rights::DATA).unwrap();
        let base = 0x30_0000;
        let bytes = b.finish(base);
        assert_eq!(bytes.len(), b.table_count() * 4096);
        for gpa in [0u64, 0x1000, 0x20_0000, (130 << 20) - 1, 0x1_0000_0000, 0x1_0000_4fff] {
            assert_eq!(walk_finished(&bytes, base, gpa), b.translate(gpa).map(|t| t.0), "{gpa:#x}");
        }
        assert_eq!(walk_finished(&bytes, base, 130 << 20), None);
        assert_eq!(walk_finished(&bytes, base, 0xfee0_0000), None);
    }

    proptest! {
        /// Any set of disjoint mappings translates exactly: mapped addresses to their host
        /// address, everything else to nothing; finished tables agree with the builder.
        #[test]
        fn random_mappings(ranges in proptest::collection::vec((0u64..4096, 1u64..1024, 0u64..4096), 1..6), probes in proptest::collection::vec(0u64..(1 << 34), 64)) {
            let mut b = Builder::new(Format::AmdNpt);
            let mut model: Vec<(u64, u64, u64)> = Vec::new();
            for (g, l, h) in ranges {
                let (gpa, len, hpa) = (g << 22, l << 12, h << 21);
                let r = b.map(gpa, hpa, len, Rights::RAM);
                let overlaps = model.iter().any(|&(mg, ml, _)| gpa < mg + ml && mg < gpa + len);
                prop_assert_eq!(r.is_err(), overlaps);
                if r.is_ok() {
                    model.push((gpa, len, hpa));
                }
            }
            let bytes = b.finish(0x1000_0000);
            for &(g, l, h) in &model {
                for p in [g, g + l / 2, g + l - 1] {
                    prop_assert_eq!(b.translate(p).map(|t| t.0), Some(h + (p - g)));
                    prop_assert_eq!(walk_finished(&bytes, 0x1000_0000, p), Some(h + (p - g)));
                }
            }
            for p in probes {
                let want = model.iter().find(|&&(g, l, _)| p >= g && p < g + l).map(|&(g, _, h)| h + (p - g));
                prop_assert_eq!(b.translate(p).map(|t| t.0), want);
                prop_assert_eq!(walk_finished(&bytes, 0x1000_0000, p), want);
            }
        }
    }
}
