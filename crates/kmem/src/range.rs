//! Half-open physical address ranges.

use crate::PAGE_SIZE;

/// A half-open range of physical addresses `[start, end)`.
///
/// The fields are public so a range can be written as a literal; a value with
/// `end <= start` is simply an empty range, and every method treats it that way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhysRange {
    /// First address in the range.
    pub start: u64,
    /// One past the last address in the range.
    pub end: u64,
}

impl PhysRange {
    /// The range `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        PhysRange { start, end }
    }

    /// The range `[base, base + len)`, clamped at the top of the address space
    /// (so the end never wraps around).
    pub const fn from_base_len(base: u64, len: u64) -> Self {
        PhysRange {
            start: base,
            end: base.saturating_add(len),
        }
    }

    /// Number of bytes in the range (0 if empty).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True if the range contains no address (`end <= start`).
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True if `addr` lies in the range.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// True if every address of `other` lies in `self`. An empty `other` is contained in
    /// any range.
    pub const fn contains_range(&self, other: &PhysRange) -> bool {
        other.is_empty() || (self.start <= other.start && other.end <= self.end)
    }

    /// True if the two ranges share at least one address. Empty ranges overlap nothing, and
    /// ranges that merely touch (`a.end == b.start`) do not overlap.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.start < other.end && other.start < self.end
    }

    /// The addresses in both ranges, or `None` if they do not overlap.
    pub const fn intersection(&self, other: &PhysRange) -> Option<PhysRange> {
        if !self.overlaps(other) {
            return None;
        }
        let start = if self.start > other.start {
            self.start
        } else {
            other.start
        };
        let end = if self.end < other.end {
            self.end
        } else {
            other.end
        };
        Some(PhysRange { start, end })
    }

    /// The largest page-aligned range inside `self`: the start is rounded up and the end
    /// rounded down to a multiple of [`PAGE_SIZE`]. Use this on memory you may *use*: a
    /// partial page at either end is dropped. The result is empty (`[s, s)`) if no whole page
    /// fits.
    pub const fn page_align_inward(&self) -> PhysRange {
        if self.is_empty() {
            return PhysRange {
                start: self.start,
                end: self.start,
            };
        }
        let start = match align_up(self.start, PAGE_SIZE) {
            Some(s) => s,
            None => {
                return PhysRange {
                    start: self.start,
                    end: self.start,
                };
            }
        };
        let end = align_down(self.end, PAGE_SIZE);
        if end <= start {
            PhysRange { start, end: start }
        } else {
            PhysRange { start, end }
        }
    }

    /// The smallest page-aligned range covering `self`: the start is rounded down and the end
    /// rounded up to a multiple of [`PAGE_SIZE`] (clamped to the last page boundary that fits
    /// in a `u64`). Use this on memory you must *avoid*: every page it touches is covered.
    /// An empty range stays empty.
    pub const fn page_align_outward(&self) -> PhysRange {
        if self.is_empty() {
            return PhysRange {
                start: self.start,
                end: self.start,
            };
        }
        let start = align_down(self.start, PAGE_SIZE);
        let end = match align_up(self.end, PAGE_SIZE) {
            Some(e) => e,
            None => align_down(u64::MAX, PAGE_SIZE),
        };
        PhysRange { start, end }
    }

    /// True if both ends are multiples of [`PAGE_SIZE`].
    pub const fn is_page_aligned(&self) -> bool {
        self.start.is_multiple_of(PAGE_SIZE) && self.end.is_multiple_of(PAGE_SIZE)
    }
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub(crate) const fn align_up(x: u64, align: u64) -> Option<u64> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// `x` rounded down to a multiple of `align` (a power of two).
pub(crate) const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn len_and_empty() {
        assert_eq!(PhysRange::new(10, 30).len(), 20);
        assert!(PhysRange::new(10, 10).is_empty());
        assert!(PhysRange::new(30, 10).is_empty());
        assert_eq!(PhysRange::new(30, 10).len(), 0);
        assert_eq!(PhysRange::from_base_len(u64::MAX - 1, 10).end, u64::MAX);
    }

    #[test]
    fn contains_and_overlaps() {
        let r = PhysRange::new(0x1000, 0x3000);
        assert!(r.contains(0x1000));
        assert!(r.contains(0x2fff));
        assert!(!r.contains(0x3000));
        assert!(!r.contains(0xfff));
        assert!(r.overlaps(&PhysRange::new(0x2fff, 0x5000)));
        assert!(!r.overlaps(&PhysRange::new(0x3000, 0x5000)));
        assert!(!r.overlaps(&PhysRange::new(0x2000, 0x2000)));
        assert!(r.contains_range(&PhysRange::new(0x1000, 0x3000)));
        assert!(!r.contains_range(&PhysRange::new(0x1000, 0x3001)));
        assert!(r.contains_range(&PhysRange::new(0x9000, 0x9000)));
        assert_eq!(
            r.intersection(&PhysRange::new(0x2000, 0x9000)),
            Some(PhysRange::new(0x2000, 0x3000))
        );
        assert_eq!(r.intersection(&PhysRange::new(0x3000, 0x9000)), None);
    }

    #[test]
    fn alignment() {
        assert_eq!(
            PhysRange::new(0x1001, 0x4fff).page_align_inward(),
            PhysRange::new(0x2000, 0x4000)
        );
        assert!(
            PhysRange::new(0x1001, 0x1fff)
                .page_align_inward()
                .is_empty()
        );
        assert!(
            PhysRange::new(0x1001, 0x2fff)
                .page_align_inward()
                .is_empty()
        );
        assert_eq!(
            PhysRange::new(0x1000, 0x2000).page_align_inward(),
            PhysRange::new(0x1000, 0x2000)
        );
        assert!(
            PhysRange::new(u64::MAX - 5, u64::MAX)
                .page_align_inward()
                .is_empty()
        );
        assert_eq!(
            PhysRange::new(0x1001, 0x4001).page_align_outward(),
            PhysRange::new(0x1000, 0x5000)
        );
        assert_eq!(
            PhysRange::new(u64::MAX - 5, u64::MAX).page_align_outward(),
            PhysRange::new(!0xfff, !0xfff)
        );
        assert!(PhysRange::new(0x1000, 0x3000).is_page_aligned());
        assert!(!PhysRange::new(0x1000, 0x3001).is_page_aligned());
    }
}
