//! A fixed-capacity set of disjoint physical ranges. Its invariants are stated on
//! [`RegionSet`] and checked by [`RegionSet::check`].

use crate::{Error, PhysRange};

/// A sorted set of disjoint physical ranges with room for at most `N` ranges, stored inline
/// (no heap).
///
/// Adding merges with overlapping or adjacent ranges; removing subtracts and may split a range
/// in two. When an operation would need more than `N` ranges it returns
/// [`Error::CapacityExceeded`] and leaves the set as it was.
///
/// Invariants (checked by [`RegionSet::check`] in debug builds after every change, and by the
/// property tests):
/// 1. Exactly the first `len` slots are in use and `len <= N`.
/// 2. No stored range is empty.
/// 3. Stored ranges are sorted by address and neither overlap nor touch:
///    `ranges[i].end < ranges[i + 1].start` (touching ranges are always merged).
/// 4. A failing operation leaves the set unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSet<const N: usize> {
    ranges: [PhysRange; N],
    len: usize,
}

impl<const N: usize> Default for RegionSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RegionSet<N> {
    /// An empty set.
    pub const fn new() -> Self {
        RegionSet {
            ranges: [PhysRange { start: 0, end: 0 }; N],
            len: 0,
        }
    }

    /// The maximum number of disjoint ranges the set can hold.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The number of disjoint ranges currently stored.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True if the set contains no address.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every range.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The stored ranges, sorted by address, disjoint and non-adjacent.
    pub fn as_slice(&self) -> &[PhysRange] {
        &self.ranges[..self.len]
    }

    /// Iterates over the stored ranges in address order.
    pub fn iter(&self) -> core::iter::Copied<core::slice::Iter<'_, PhysRange>> {
        self.as_slice().iter().copied()
    }

    /// Total number of bytes in the set.
    pub fn total(&self) -> u64 {
        self.iter().map(|r| r.len()).sum()
    }

    /// Total number of whole 4 KiB pages in the set (partial pages at range ends are not
    /// counted).
    pub fn total_pages(&self) -> u64 {
        self.iter()
            .map(|r| r.page_align_inward().len() / crate::PAGE_SIZE)
            .sum()
    }

    /// One past the highest address in the set, or `None` if it is empty.
    pub fn max_address(&self) -> Option<u64> {
        self.as_slice().last().map(|r| r.end)
    }

    /// True if `addr` is in the set.
    pub fn contains(&self, addr: u64) -> bool {
        let i = self.as_slice().partition_point(|r| r.end <= addr);
        i < self.len && self.ranges[i].contains(addr)
    }

    /// True if every address of `range` is in the set (an empty range always is). Because
    /// stored ranges never touch, this means `range` lies inside a single stored range.
    pub fn contains_range(&self, range: PhysRange) -> bool {
        if range.is_empty() {
            return true;
        }
        let i = self.as_slice().partition_point(|r| r.end <= range.start);
        i < self.len && self.ranges[i].contains_range(&range)
    }

    /// Adds `range`, merging it with every stored range it overlaps or touches. Adding an empty
    /// range does nothing.
    ///
    /// # Errors
    /// [`Error::CapacityExceeded`] if the range touches nothing and the set is full; the set is
    /// then unchanged.
    pub fn add(&mut self, range: PhysRange) -> Result<(), Error> {
        if range.is_empty() {
            return Ok(());
        }
        // First stored range that ends at or after `range.start` (could touch or overlap it).
        let lo = self.as_slice().partition_point(|r| r.end < range.start);
        // One past the last stored range that starts at or before `range.end`.
        let hi = self.as_slice().partition_point(|r| r.start <= range.end);
        if lo >= hi {
            // Touches nothing: insert a new range at `lo`.
            if self.len == N {
                return Err(Error::CapacityExceeded);
            }
            self.ranges.copy_within(lo..self.len, lo + 1);
            self.ranges[lo] = range;
            self.len += 1;
        } else {
            // Merge `range` and ranges[lo..hi] into ranges[lo].
            let start = range.start.min(self.ranges[lo].start);
            let end = range.end.max(self.ranges[hi - 1].end);
            self.ranges[lo] = PhysRange { start, end };
            self.ranges.copy_within(hi..self.len, lo + 1);
            self.len -= hi - lo - 1;
        }
        self.debug_check();
        Ok(())
    }

    /// Removes every address of `range` from the set, trimming or splitting stored ranges.
    /// Removing an empty range or addresses not in the set does nothing.
    ///
    /// # Errors
    /// [`Error::CapacityExceeded`] if `range` lies strictly inside one stored range (so that
    /// range must be split in two) and the set is full; the set is then unchanged.
    pub fn remove(&mut self, range: PhysRange) -> Result<(), Error> {
        if range.is_empty() {
            return Ok(());
        }
        // First stored range that overlaps (ends after range.start).
        let lo = self.as_slice().partition_point(|r| r.end <= range.start);
        // One past the last stored range that overlaps (starts before range.end).
        let hi = self.as_slice().partition_point(|r| r.start < range.end);
        if lo >= hi {
            return Ok(());
        }
        let first = self.ranges[lo];
        let last = self.ranges[hi - 1];
        let left = PhysRange {
            start: first.start,
            end: range.start,
        };
        let right = PhysRange {
            start: range.end,
            end: last.end,
        };
        // The pieces that survive replace ranges[lo..hi].
        let keep = usize::from(!left.is_empty()) + usize::from(!right.is_empty());
        let removed = hi - lo;
        if keep > removed && self.len - removed + keep > N {
            return Err(Error::CapacityExceeded);
        }
        let mut at = lo;
        // Move the tail first so writing `left`/`right` cannot clobber it.
        self.ranges.copy_within(hi..self.len, lo + keep);
        if !left.is_empty() {
            self.ranges[at] = left;
            at += 1;
        }
        if !right.is_empty() {
            self.ranges[at] = right;
        }
        self.len = self.len - removed + keep;
        self.debug_check();
        Ok(())
    }

    /// The lowest-addressed `size`-byte block inside the set whose start is a multiple of
    /// `align` (a power of two; 0 is treated as 1). Useful for placing the frame allocator's
    /// bitmap before the allocator exists. The set is not changed: remove the returned range
    /// yourself. Returns `None` if no such block exists or `size` is 0.
    pub fn first_fit(&self, size: u64, align: u64) -> Option<PhysRange> {
        if size == 0 {
            return None;
        }
        let align = align.max(1);
        if !align.is_power_of_two() {
            return None;
        }
        self.iter().find_map(|r| {
            let start = crate::range::align_up(r.start, align)?;
            let end = start.checked_add(size)?;
            (end <= r.end).then_some(PhysRange { start, end })
        })
    }

    /// Checks the invariants listed on [`RegionSet`].
    ///
    /// # Errors
    /// A description of the first broken invariant.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.len > N {
            return Err("len exceeds capacity");
        }
        let s = self.as_slice();
        if s.iter().any(|r| r.is_empty()) {
            return Err("empty range stored");
        }
        if s.windows(2).any(|w| w[0].end >= w[1].start) {
            return Err("ranges unsorted, overlapping or touching");
        }
        Ok(())
    }

    fn debug_check(&self) {
        if cfg!(debug_assertions)
            && let Err(e) = self.check()
        {
            panic!("RegionSet invariant broken: {e}");
        }
    }
}

impl<'a, const N: usize> IntoIterator for &'a RegionSet<N> {
    type Item = PhysRange;
    type IntoIter = core::iter::Copied<core::slice::Iter<'a, PhysRange>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange::new(start, end)
    }

    #[test]
    fn add_merges_overlapping_and_adjacent() {
        let mut s: RegionSet<4> = RegionSet::new();
        s.add(r(10, 20)).unwrap();
        s.add(r(30, 40)).unwrap();
        assert_eq!(s.as_slice(), &[r(10, 20), r(30, 40)]);
        s.add(r(20, 25)).unwrap(); // adjacent on the left range
        assert_eq!(s.as_slice(), &[r(10, 25), r(30, 40)]);
        s.add(r(24, 30)).unwrap(); // bridges both
        assert_eq!(s.as_slice(), &[r(10, 40)]);
        s.add(r(0, 5)).unwrap();
        s.add(r(50, 60)).unwrap();
        s.add(r(45, 46)).unwrap();
        assert_eq!(s.as_slice(), &[r(0, 5), r(10, 40), r(45, 46), r(50, 60)]);
        s.add(r(3, 55)).unwrap();
        assert_eq!(s.as_slice(), &[r(0, 60)]);
        s.add(r(7, 7)).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.total(), 60);
    }

    #[test]
    fn capacity_errors_leave_set_unchanged() {
        let mut s: RegionSet<2> = RegionSet::new();
        s.add(r(0, 10)).unwrap();
        s.add(r(20, 30)).unwrap();
        let before = s.clone();
        assert_eq!(s.add(r(40, 50)), Err(Error::CapacityExceeded));
        assert_eq!(s, before);
        assert_eq!(s.remove(r(2, 3)), Err(Error::CapacityExceeded));
        assert_eq!(s, before);
        // Merging still works when full.
        s.add(r(10, 20)).unwrap();
        assert_eq!(s.as_slice(), &[r(0, 30)]);
        let mut z: RegionSet<0> = RegionSet::new();
        assert_eq!(z.add(r(1, 2)), Err(Error::CapacityExceeded));
        z.remove(r(0, 100)).unwrap();
    }

    #[test]
    fn remove_trims_splits_and_deletes() {
        let mut s: RegionSet<8> = RegionSet::new();
        s.add(r(0, 100)).unwrap();
        s.remove(r(40, 60)).unwrap();
        assert_eq!(s.as_slice(), &[r(0, 40), r(60, 100)]);
        s.remove(r(30, 70)).unwrap();
        assert_eq!(s.as_slice(), &[r(0, 30), r(70, 100)]);
        s.add(r(200, 300)).unwrap();
        s.add(r(400, 500)).unwrap();
        s.remove(r(90, 450)).unwrap();
        assert_eq!(s.as_slice(), &[r(0, 30), r(70, 90), r(450, 500)]);
        s.remove(r(0, 30)).unwrap();
        assert_eq!(s.as_slice(), &[r(70, 90), r(450, 500)]);
        s.remove(r(1000, 2000)).unwrap();
        s.remove(r(0, u64::MAX)).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn queries() {
        let mut s: RegionSet<8> = RegionSet::new();
        s.add(r(0x1000, 0x3000)).unwrap();
        s.add(r(0x5000, 0x5800)).unwrap();
        assert!(s.contains(0x1000));
        assert!(!s.contains(0x3000));
        assert!(s.contains(0x57ff));
        assert!(s.contains_range(r(0x1000, 0x3000)));
        assert!(!s.contains_range(r(0x1000, 0x5001)));
        assert_eq!(s.max_address(), Some(0x5800));
        assert_eq!(s.total_pages(), 2);
        assert_eq!(s.first_fit(0x1000, 0x2000), Some(r(0x2000, 0x3000)));
        assert_eq!(s.first_fit(0x800, 0x1000), Some(r(0x1000, 0x1800)));
        assert_eq!(s.first_fit(0x3000, 1), None);
        assert_eq!(s.first_fit(0, 1), None);
        assert_eq!(s.first_fit(1, 3), None);
        assert_eq!((&s).into_iter().count(), 2);
    }
}
