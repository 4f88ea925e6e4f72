//! A process's map of user memory areas: which address ranges are reserved (by `mmap`, the
//! stack), with which rights, and whether their pages are made on first touch (`lazy`:
//! anonymous memory is zero-filled on demand by the page-fault handler, never eagerly).
//!
//! Areas never overlap; `remove` splits the areas it cuts (munmap of the middle of a mapping),
//! `protect` splits and re-marks (mprotect), `find_gap` finds free room top-down (mmap without
//! an address), so an unmapped range is given back and reused. Hand-written because the
//! kernel needs exactly this interval map with splitting and a top-down gap search; a
//! `BTreeMap` keyed by start address does the work.
#![no_std]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

pub const PAGE: u64 = 4096;
pub const READ: u8 = 1;
pub const WRITE: u8 = 2;
pub const EXEC: u8 = 4;

/// One area: `[start, end)` (the start is its key in the map).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Area {
    pub end: u64,
    /// READ | WRITE | EXEC bits (0: PROT_NONE).
    pub prot: u8,
    /// Pages are zero-filled on first touch.
    pub lazy: bool,
    /// Shared memory behind the area (MAP_SHARED, System V shared memory): its pages are the
    /// object's, from `off` bytes into it at the area's start.
    pub backing: Option<Backing>,
}

/// A shared memory object behind an area: its id (the kernel's) and the offset of the area's
/// first byte in it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Backing {
    pub id: u64,
    pub off: u64,
}

impl Area {
    /// This area, once it starts at `new_start` instead of `start` (a split): the backing
    /// offset moves with the start.
    pub fn from(self, start: u64, new_start: u64) -> Area {
        Area { backing: self.backing.map(|b| Backing { id: b.id, off: b.off + (new_start - start) }), ..self }
    }
}

#[derive(Clone, Default, Debug)]
pub struct VmMap {
    areas: BTreeMap<u64, Area>,
}

impl VmMap {
    pub fn new() -> VmMap {
        VmMap { areas: BTreeMap::new() }
    }

    /// The area holding `addr`: (start, area).
    pub fn find(&self, addr: u64) -> Option<(u64, Area)> {
        let (&s, a) = self.areas.range(..=addr).next_back()?;
        (addr < a.end).then_some((s, *a))
    }

    /// Whether any area overlaps `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return false;
        }
        if self.find(start).is_some() {
            return true;
        }
        self.areas.range(start..end).next().is_some()
    }

    /// Takes `[start, end)` out of every area it cuts (splitting them); returns the removed
    /// pieces as (start, end, area).
    pub fn remove(&mut self, start: u64, end: u64) -> Vec<(u64, u64, Area)> {
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        let hit: Vec<(u64, Area)> = {
            let mut v: Vec<(u64, Area)> = self.areas.range(start..end).map(|(s, a)| (*s, *a)).collect();
            if let Some((s, a)) = self.find(start)
                && s < start
            {
                v.insert(0, (s, a));
            }
            v
        };
        for (s, a) in hit {
            self.areas.remove(&s);
            if s < start {
                self.areas.insert(s, Area { end: start, ..a });
            }
            if a.end > end {
                self.areas.insert(end, a.from(s, end));
            }
            out.push((s.max(start), a.end.min(end), a.from(s, s.max(start))));
        }
        out
    }

    /// Adds an area (the range must be free: call `remove` first).
    pub fn insert(&mut self, start: u64, end: u64, prot: u8, lazy: bool) {
        self.insert_backed(start, end, prot, lazy, None);
    }

    /// Adds an area backed by shared memory (or not: `None`); the range must be free.
    pub fn insert_backed(&mut self, start: u64, end: u64, prot: u8, lazy: bool, backing: Option<Backing>) {
        debug_assert!(start < end && !self.overlaps(start, end));
        self.areas.insert(start, Area { end, prot, lazy, backing });
    }

    /// Whether any area is backed by object `id`.
    pub fn uses(&self, id: u64) -> bool {
        self.areas.values().any(|a| a.backing.is_some_and(|b| b.id == id))
    }

    /// Changes the rights of `[start, end)`; false (nothing changed) unless the whole range is
    /// in areas (mprotect's ENOMEM).
    pub fn protect(&mut self, start: u64, end: u64, prot: u8) -> bool {
        if !self.covered(start, end) {
            return false;
        }
        for (s, e, a) in self.remove(start, end) {
            self.areas.insert(s, Area { end: e, prot, ..a });
        }
        true
    }

    /// Whether `[start, end)` lies entirely in areas.
    pub fn covered(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        while at < end {
            match self.find(at) {
                Some((_, a)) => at = a.end,
                None => return false,
            }
        }
        true
    }

    /// The highest free range of `len` bytes within `[lowest, highest)`: its start.
    pub fn find_gap(&self, len: u64, lowest: u64, highest: u64) -> Option<u64> {
        let mut top = highest;
        for (&s, a) in self.areas.range(..highest).rev() {
            if a.end <= top && top - a.end >= len && top - len >= lowest {
                return Some(top - len);
            }
            top = top.min(s);
            if top < lowest.saturating_add(len) {
                return None;
            }
        }
        (top >= lowest.checked_add(len)?).then(|| top - len)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, Area)> + '_ {
        self.areas.iter().map(|(s, a)| (*s, *a))
    }

    /// Bytes in areas for which `pred` holds.
    pub fn bytes(&self, pred: impl Fn(&Area) -> bool) -> u64 {
        self.areas.iter().filter(|(_, a)| pred(a)).map(|(s, a)| a.end - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn munmap_in_the_middle_splits() {
        let mut m = VmMap::new();
        m.insert(0x1000, 0x5000, READ | WRITE, true);
        let r = m.remove(0x2000, 0x3000);
        assert_eq!(r, alloc::vec![(0x2000, 0x3000, Area { end: 0x5000, prot: READ | WRITE, lazy: true, backing: None })]);
        assert_eq!(m.find(0x1000).unwrap().1.end, 0x2000);
        assert!(m.find(0x2000).is_none());
        assert_eq!(m.find(0x4fff).unwrap().0, 0x3000);
    }

    #[test]
    fn splitting_a_backed_area_moves_the_offsets() {
        let mut m = VmMap::new();
        m.insert_backed(0x10000, 0x15000, READ, true, Some(Backing { id: 7, off: 0x3000 }));
        let r = m.remove(0x11000, 0x12000);
        assert_eq!(r[0].2.backing, Some(Backing { id: 7, off: 0x4000 }));
        assert_eq!(m.find(0x10000).unwrap().1.backing, Some(Backing { id: 7, off: 0x3000 }));
        assert_eq!(m.find(0x12000).unwrap().1.backing, Some(Backing { id: 7, off: 0x5000 }));
        assert!(m.protect(0x13000, 0x14000, READ | WRITE));
        assert_eq!(m.find(0x13000).unwrap(), (0x13000, Area { end: 0x14000, prot: READ | WRITE, lazy: true, backing: Some(Backing { id: 7, off: 0x6000 }) }));
        assert_eq!(m.find(0x14000).unwrap().1.backing, Some(Backing { id: 7, off: 0x7000 }));
        assert!(m.uses(7));
        m.remove(0x10000, 0x15000);
        assert!(!m.uses(7));
    }

    #[test]
    fn protect_needs_the_whole_range() {
        let mut m = VmMap::new();
        m.insert(0x1000, 0x3000, READ, true);
        assert!(!m.protect(0x1000, 0x4000, READ | WRITE));
        assert!(m.protect(0x2000, 0x3000, 0));
        assert_eq!(m.find(0x1000).unwrap().1.prot, READ);
        assert_eq!(m.find(0x2000).unwrap().1.prot, 0);
    }

    #[test]
    fn gaps_are_found_top_down_and_reused() {
        let mut m = VmMap::new();
        let a = m.find_gap(0x2000, 0x10000, 0x20000).unwrap();
        assert_eq!(a, 0x1e000);
        m.insert(a, a + 0x2000, READ, true);
        let b = m.find_gap(0x1000, 0x10000, 0x20000).unwrap();
        assert_eq!(b, 0x1d000);
        m.insert(b, b + 0x1000, READ, true);
        m.remove(a, a + 0x2000);
        assert_eq!(m.find_gap(0x2000, 0x10000, 0x20000), Some(a));
        assert_eq!(m.find_gap(0x20000, 0x10000, 0x20000), None);
        assert_eq!(m.find_gap(0xd000, 0x10000, 0x20000), Some(0x10000));
    }

    proptest! {
        /// Against a page-by-page model: areas never overlap and hold exactly the pages
        /// inserted and not removed.
        #[test]
        fn matches_a_page_model(ops in proptest::collection::vec((0u64..64, 1u64..16, any::<bool>(), 0u8..8), 1..60)) {
            let mut m = VmMap::new();
            let mut model = [None::<u8>; 80];
            for (p, n, ins, prot) in ops {
                let (s, e) = (p * PAGE, (p + n) * PAGE);
                if ins {
                    m.remove(s, e);
                    m.insert(s, e, prot, true);
                    for i in p..p + n { model[i as usize] = Some(prot); }
                } else {
                    m.remove(s, e);
                    for i in p..p + n { model[i as usize] = None; }
                }
                for (i, want) in model.iter().enumerate() {
                    prop_assert_eq!(m.find(i as u64 * PAGE).map(|(_, a)| a.prot), *want);
                }
                let mut last = 0;
                for (s, a) in m.iter() {
                    prop_assert!(s >= last && a.end > s);
                    last = a.end;
                }
                if let Some(g) = m.find_gap(3 * PAGE, 0, 80 * PAGE) {
                    prop_assert!(!m.overlaps(g, g + 3 * PAGE));
                }
            }
        }
    }
}
