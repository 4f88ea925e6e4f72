//! A bitmap allocator for 4 KiB physical frames. Its invariants are stated on
//! [`FrameAllocator`] and checked by [`FrameAllocator::check_invariants`].

use crate::{Error, PAGE_SHIFT, PAGE_SIZE, PhysRange, RegionSet};

/// Which invariant of [`FrameAllocator`] [`FrameAllocator::check_invariants`] found broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvariantViolation {
    /// A frame that is not usable is not marked used (invariant 1).
    UnusableFrameFree {
        /// Frame number.
        frame: usize,
    },
    /// `free_count` differs from the number of free usable frames (invariant 2).
    FreeCountMismatch {
        /// The stored counter.
        stored: usize,
        /// The number of clear used bits.
        counted: usize,
    },
    /// `total_count` differs from the number of usable frames (invariant 2).
    TotalCountMismatch {
        /// The stored counter.
        stored: usize,
        /// The number of set usable bits.
        counted: usize,
    },
    /// A used-bitmap word below the hint has a clear bit (invariant 4).
    HintTooHigh {
        /// The hint.
        hint: usize,
        /// The first word below the hint with a free frame.
        word: usize,
    },
}

/// A bitmap allocator for 4 KiB frames of physical memory `[0, max_phys)`.
///
/// The allocator manages the frames of `[0, max_phys)` with two bitmaps that live in one
/// caller-provided `&mut [u64]` (no heap): a *used* bitmap (bit set = not available) and a
/// *usable* bitmap (bit set = the frame lay fully inside a usable range at construction).
/// Frame `f` (address `f * PAGE_SIZE`) is bit `f % 64` of word `f / 64` of each bitmap.
///
/// Invariants (checked by [`FrameAllocator::check_invariants`], by the property tests against
/// a simple model, and cheaply by `debug_assert!`s):
/// 1. A frame that is not usable is always marked used, so a clear used bit always means
///    "usable and free". In particular the allocator never hands out a frame outside a usable
///    range, nor a partial frame, nor anything at or above `max_phys`.
/// 2. `free_count()` equals the number of clear used bits, i.e. the number of free usable
///    frames; `free_count() <= total_count()`, and `total_count()` (the number of usable
///    frames) never changes.
/// 3. Allocation sets a clear bit and freeing clears a set bit, so a frame is never handed out
///    twice without a `free` in between, and freeing a free frame is reported as
///    [`Error::DoubleFree`] instead of corrupting the count.
/// 4. Every word of the used bitmap below `hint` is full (`u64::MAX`), so `alloc()` may start
///    its scan at `hint` and still return the lowest free frame.
///
/// All addresses it takes and returns are physical byte addresses, multiples of
/// [`PAGE_SIZE`].
#[derive(Debug)]
pub struct FrameAllocator<'a> {
    /// Bit set = frame not available (allocated, reserved or never usable).
    used: &'a mut [u64],
    /// Bit set = frame was usable at construction.
    usable: &'a [u64],
    /// Number of frames covered: `max_phys / PAGE_SIZE`.
    frames: usize,
    /// Number of clear bits in `used`.
    free: usize,
    /// Number of set bits in `usable`.
    total: usize,
    /// Every word of `used` below `hint` is full.
    hint: usize,
}

impl<'a> FrameAllocator<'a> {
    /// Number of `u64` words of bitmap storage [`FrameAllocator::new`] needs to manage
    /// `[0, max_phys)` (two bits per frame, rounded up to whole words). A partial frame at the
    /// top of `max_phys` is not managed.
    pub const fn bitmap_words_for(max_phys: u64) -> usize {
        Self::words_per_bitmap(Self::frames_below(max_phys)).saturating_mul(2)
    }

    const fn frames_below(max_phys: u64) -> usize {
        // Physical address spaces are at most 52 bits, so the frame count fits in a usize on
        // every target this runs on; saturate rather than truncate if it ever does not.
        let f = max_phys >> PAGE_SHIFT;
        if f > usize::MAX as u64 {
            usize::MAX
        } else {
            f as usize
        }
    }

    const fn words_per_bitmap(frames: usize) -> usize {
        frames.div_ceil(64)
    }

    /// Builds an allocator over `[0, max_phys)` in which exactly the frames lying fully inside
    /// a range of `usable` (and below `max_phys`) are free; everything else is marked used for
    /// ever. Usable memory at or above `max_phys` is ignored.
    ///
    /// `bitmap` must hold at least [`FrameAllocator::bitmap_words_for(max_phys)`] words; its
    /// contents are overwritten and any extra words are left alone. Remember to remove the
    /// memory holding the bitmap itself from `usable` first (or [`reserve`] it afterwards).
    ///
    /// # Errors
    /// [`Error::BitmapTooSmall`] if `bitmap` is too short.
    ///
    /// [`FrameAllocator::bitmap_words_for(max_phys)`]: FrameAllocator::bitmap_words_for
    /// [`reserve`]: FrameAllocator::reserve
    pub fn new<const N: usize>(
        bitmap: &'a mut [u64],
        max_phys: u64,
        usable: &RegionSet<N>,
    ) -> Result<Self, Error> {
        let frames = Self::frames_below(max_phys);
        let words = Self::words_per_bitmap(frames);
        let needed = Self::bitmap_words_for(max_phys);
        if bitmap.len() < needed {
            return Err(Error::BitmapTooSmall {
                needed,
                provided: bitmap.len(),
            });
        }
        let (used, rest) = bitmap[..needed].split_at_mut(words);
        used.fill(u64::MAX);
        rest.fill(0);
        let max_frame_end = (frames as u64) << PAGE_SHIFT;
        let mut total = 0usize;
        for r in usable.iter() {
            let r = r.page_align_inward();
            let end = r.end.min(max_frame_end);
            if r.start >= end {
                continue;
            }
            let first = (r.start >> PAGE_SHIFT) as usize;
            let last = (end >> PAGE_SHIFT) as usize;
            set_bits(rest, first, last, true);
            set_bits(used, first, last, false);
            total += last - first;
        }
        let usable: &'a [u64] = rest;
        let mut this = FrameAllocator {
            used,
            usable,
            frames,
            free: total,
            total,
            hint: 0,
        };
        this.advance_hint();
        debug_assert_eq!(this.check_invariants(), Ok(()));
        Ok(this)
    }

    /// Number of frames currently free.
    pub const fn free_count(&self) -> usize {
        self.free
    }

    /// Number of usable frames (free or not). Constant for the allocator's lifetime.
    pub const fn total_count(&self) -> usize {
        self.total
    }

    /// One past the highest address the allocator manages (`max_phys` rounded down to a whole
    /// frame).
    pub const fn max_phys(&self) -> u64 {
        (self.frames as u64) << PAGE_SHIFT
    }

    /// True if the frame at `addr` was usable memory at construction. False for misaligned or
    /// out-of-range addresses.
    pub fn is_usable(&self, addr: u64) -> bool {
        self.frame_of(addr).is_ok_and(|f| get_bit(self.usable, f))
    }

    /// True if the frame at `addr` is usable and currently free. False for misaligned or
    /// out-of-range addresses.
    pub fn is_free(&self, addr: u64) -> bool {
        self.frame_of(addr).is_ok_and(|f| !get_bit(self.used, f))
    }

    /// Allocates one frame and returns its physical address: always the lowest free frame, so
    /// early allocations come from low memory. `None` when no frame is free.
    ///
    /// Runs in time proportional to the number of full bitmap words skipped since the lowest
    /// free frame was last known, thanks to a "first word that may have a free frame" hint.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        self.advance_hint();
        let w = self.hint;
        let word = *self.used.get(w)?;
        let bit = word.trailing_ones() as usize;
        let frame = w * 64 + bit;
        debug_assert!(frame < self.frames && get_bit(self.usable, frame));
        self.used[w] |= 1 << bit;
        self.free -= 1;
        Some((frame as u64) << PAGE_SHIFT)
    }

    /// Allocates `n_frames` physically contiguous free frames whose first frame number is a
    /// multiple of `align_frames` (so the address is aligned to `align_frames * PAGE_SIZE`;
    /// 0 is treated as 1, and the alignment need not be a power of two). Returns the lowest
    /// such block's address, or `None` if `n_frames` is 0 or no block fits.
    pub fn alloc_contiguous(&mut self, n_frames: usize, align_frames: usize) -> Option<u64> {
        if n_frames == 0 || n_frames > self.free {
            return None;
        }
        let align = align_frames.max(1);
        self.advance_hint();
        let mut start = (self.hint * 64).checked_next_multiple_of(align)?;
        loop {
            let end = start.checked_add(n_frames)?;
            if end > self.frames {
                return None;
            }
            match first_set_bit(self.used, start, end) {
                None => break,
                Some(used) => {
                    // Skip past the used frame, then to the next free one.
                    let next_free = first_clear_bit(self.used, used + 1, self.frames)?;
                    start = next_free.checked_next_multiple_of(align)?;
                }
            }
        }
        let end = start + n_frames;
        set_bits(self.used, start, end, true);
        self.free -= n_frames;
        debug_assert!(self.free <= self.total);
        Some((start as u64) << PAGE_SHIFT)
    }

    /// Returns the frame at `addr` to the allocator.
    ///
    /// # Errors
    /// [`Error::Misaligned`], [`Error::OutOfRange`], [`Error::NotUsable`] (the frame was never
    /// usable memory) or [`Error::DoubleFree`] (the frame is already free); the allocator is
    /// unchanged in every error case.
    pub fn free(&mut self, addr: u64) -> Result<(), Error> {
        let f = self.frame_of(addr)?;
        if !get_bit(self.usable, f) {
            return Err(Error::NotUsable(addr));
        }
        if !get_bit(self.used, f) {
            return Err(Error::DoubleFree(addr));
        }
        self.used[f / 64] &= !(1u64 << (f % 64));
        self.free += 1;
        self.hint = self.hint.min(f / 64);
        debug_assert!(self.free <= self.total);
        Ok(())
    }

    /// Frees `n_frames` contiguous frames starting at `addr` (the inverse of
    /// [`alloc_contiguous`](FrameAllocator::alloc_contiguous)). Every frame is checked before
    /// any is freed.
    ///
    /// # Errors
    /// As [`free`](FrameAllocator::free), reporting the first offending frame; the allocator is
    /// unchanged in every error case.
    pub fn free_contiguous(&mut self, addr: u64, n_frames: usize) -> Result<(), Error> {
        let first = self.frame_of(addr)?;
        let end = first.checked_add(n_frames).ok_or(Error::OutOfRange(addr))?;
        if end > self.frames {
            return Err(Error::OutOfRange(
                ((self.frames as u64) << PAGE_SHIFT).max(addr),
            ));
        }
        if let Some(f) = first_clear_bit(self.usable, first, end) {
            return Err(Error::NotUsable((f as u64) << PAGE_SHIFT));
        }
        if let Some(f) = first_clear_bit(self.used, first, end) {
            return Err(Error::DoubleFree((f as u64) << PAGE_SHIFT));
        }
        set_bits(self.used, first, end, false);
        self.free += n_frames;
        if n_frames > 0 {
            self.hint = self.hint.min(first / 64);
        }
        debug_assert!(self.free <= self.total);
        Ok(())
    }

    /// Marks every free frame that `range` touches as used (the range is aligned outward to
    /// whole frames; the part at or above `max_phys` is ignored) and returns how many frames
    /// changed from free to used. Frames already in use, or never usable, are left alone.
    ///
    /// A reserved frame behaves exactly like an allocated one: it may later be given back with
    /// [`free`](FrameAllocator::free).
    pub fn reserve(&mut self, range: PhysRange) -> usize {
        let r = range.page_align_outward();
        let end = r.end.min(self.max_phys());
        if r.start >= end {
            return 0;
        }
        let first = (r.start >> PAGE_SHIFT) as usize;
        let last = (end >> PAGE_SHIFT) as usize;
        let newly = count_clear_bits(self.used, first, last);
        set_bits(self.used, first, last, true);
        self.free -= newly;
        newly
    }

    /// Checks every invariant listed on [`FrameAllocator`] by scanning both bitmaps
    /// (O(number of frames); meant for tests and in-kernel self-checks, not hot paths).
    ///
    /// # Errors
    /// The first violation found.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let mut free = 0usize;
        let mut total = 0usize;
        for (w, (&used, &usable)) in self.used.iter().zip(self.usable.iter()).enumerate() {
            let bad = !used & !usable;
            if bad != 0 {
                let frame = w * 64 + bad.trailing_zeros() as usize;
                return Err(InvariantViolation::UnusableFrameFree { frame });
            }
            if w < self.hint && used != u64::MAX {
                return Err(InvariantViolation::HintTooHigh {
                    hint: self.hint,
                    word: w,
                });
            }
            free += used.count_zeros() as usize;
            total += usable.count_ones() as usize;
        }
        if free != self.free {
            return Err(InvariantViolation::FreeCountMismatch {
                stored: self.free,
                counted: free,
            });
        }
        if total != self.total {
            return Err(InvariantViolation::TotalCountMismatch {
                stored: self.total,
                counted: total,
            });
        }
        Ok(())
    }

    /// Moves `hint` up past full words. Keeps invariant 4.
    fn advance_hint(&mut self) {
        while self.hint < self.used.len() && self.used[self.hint] == u64::MAX {
            self.hint += 1;
        }
    }

    fn frame_of(&self, addr: u64) -> Result<usize, Error> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Misaligned(addr));
        }
        let f = addr >> PAGE_SHIFT;
        if f >= self.frames as u64 {
            return Err(Error::OutOfRange(addr));
        }
        Ok(f as usize)
    }
}

fn get_bit(map: &[u64], bit: usize) -> bool {
    map[bit / 64] & (1 << (bit % 64)) != 0
}

/// Mask of bits `[lo, hi)` within one word, `0 <= lo < hi <= 64`.
fn mask(lo: usize, hi: usize) -> u64 {
    let upper = if hi == 64 { u64::MAX } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

/// Calls `f(word_index, mask)` for each word touched by bits `[start, end)`.
fn for_each_word(start: usize, end: usize, mut f: impl FnMut(usize, u64) -> bool) {
    let mut b = start;
    while b < end {
        let w = b / 64;
        let hi = end.min((w + 1) * 64);
        if !f(w, mask(b % 64, hi - w * 64)) {
            return;
        }
        b = hi;
    }
}

fn set_bits(map: &mut [u64], start: usize, end: usize, value: bool) {
    for_each_word(start, end, |w, m| {
        if value {
            map[w] |= m;
        } else {
            map[w] &= !m;
        }
        true
    });
}

fn count_clear_bits(map: &[u64], start: usize, end: usize) -> usize {
    let mut n = 0;
    for_each_word(start, end, |w, m| {
        n += (!map[w] & m).count_ones() as usize;
        true
    });
    n
}

fn first_set_bit(map: &[u64], start: usize, end: usize) -> Option<usize> {
    let mut found = None;
    for_each_word(start, end, |w, m| {
        let hits = map[w] & m;
        if hits != 0 {
            found = Some(w * 64 + hits.trailing_zeros() as usize);
        }
        found.is_none()
    });
    found
}

fn first_clear_bit(map: &[u64], start: usize, end: usize) -> Option<usize> {
    let mut found = None;
    for_each_word(start, end, |w, m| {
        let hits = !map[w] & m;
        if hits != 0 {
            found = Some(w * 64 + hits.trailing_zeros() as usize);
        }
        found.is_none()
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn set(ranges: &[(u64, u64)]) -> RegionSet<16> {
        let mut s = RegionSet::new();
        for &(a, b) in ranges {
            s.add(PhysRange::new(a, b)).unwrap();
        }
        s
    }

    #[test]
    fn bitmap_sizing() {
        assert_eq!(FrameAllocator::bitmap_words_for(0), 0);
        assert_eq!(FrameAllocator::bitmap_words_for(4095), 0);
        assert_eq!(FrameAllocator::bitmap_words_for(4096), 2);
        assert_eq!(FrameAllocator::bitmap_words_for(64 * 4096), 2);
        assert_eq!(FrameAllocator::bitmap_words_for(65 * 4096), 4);
        // 4 GiB: 1 Mi frames, 16 Ki words per bitmap.
        assert_eq!(FrameAllocator::bitmap_words_for(4 << 30), 2 * 16384);
        let mut small = [0u64; 1];
        let s = set(&[(0, MIB)]);
        assert_eq!(
            FrameAllocator::new(&mut small, MIB, &s).unwrap_err(),
            Error::BitmapTooSmall {
                needed: 8,
                provided: 1
            }
        );
    }

    #[test]
    fn only_whole_usable_frames_are_free() {
        let s = set(&[(0x1800, 0x4800), (0x10000, 0x12000)]);
        let mut bm = [0u64; 8];
        let fa = FrameAllocator::new(&mut bm, 0x11000, &s).unwrap();
        // 0x2000, 0x3000 from the first range; 0x10000 from the second (cut at max_phys).
        assert_eq!(fa.total_count(), 3);
        assert_eq!(fa.free_count(), 3);
        assert!(fa.is_free(0x2000) && fa.is_free(0x3000) && fa.is_free(0x10000));
        assert!(!fa.is_usable(0x1000) && !fa.is_usable(0x4000) && !fa.is_usable(0x11000));
        assert_eq!(fa.max_phys(), 0x11000);
    }

    #[test]
    fn alloc_lowest_first_and_free_errors() {
        let s = set(&[(MIB, 2 * MIB)]);
        let mut bm = [0u64; 64];
        let mut fa = FrameAllocator::new(&mut bm, 2 * MIB, &s).unwrap();
        assert_eq!(fa.total_count(), 256);
        let a = fa.alloc().unwrap();
        let b = fa.alloc().unwrap();
        assert_eq!((a, b), (MIB, MIB + PAGE_SIZE));
        fa.free(a).unwrap();
        assert_eq!(fa.alloc(), Some(a));
        assert_eq!(fa.free(a + 1), Err(Error::Misaligned(a + 1)));
        assert_eq!(fa.free(2 * MIB), Err(Error::OutOfRange(2 * MIB)));
        assert_eq!(fa.free(0), Err(Error::NotUsable(0)));
        fa.free(b).unwrap();
        assert_eq!(fa.free(b), Err(Error::DoubleFree(b)));
        fa.check_invariants().unwrap();
        let mut n = 1;
        while fa.alloc().is_some() {
            n += 1;
        }
        assert_eq!(n, 256);
        assert_eq!(fa.free_count(), 0);
        fa.check_invariants().unwrap();
    }

    #[test]
    fn contiguous_and_reserve() {
        let s = set(&[(0x1000, 0x5000), (0x8000, 0x40000)]);
        let mut bm = [0u64; 8];
        let mut fa = FrameAllocator::new(&mut bm, 0x40000, &s).unwrap();
        assert_eq!(fa.alloc_contiguous(0, 1), None);
        assert_eq!(fa.alloc_contiguous(4, 1), Some(0x1000));
        assert_eq!(fa.alloc_contiguous(4, 4), Some(0x8000));
        assert_eq!(fa.alloc_contiguous(3, 0), Some(0xc000));
        assert_eq!(fa.alloc_contiguous(2, 16), Some(0x10000));
        assert_eq!(fa.alloc(), Some(0xf000));
        assert_eq!(fa.alloc_contiguous(1000, 1), None);
        fa.check_invariants().unwrap();
        // Reserve touches partial frames outward.
        assert_eq!(fa.reserve(PhysRange::new(0x12001, 0x13001)), 2);
        assert_eq!(fa.reserve(PhysRange::new(0x12000, 0x14000)), 0);
        assert_eq!(fa.reserve(PhysRange::new(0x0, 0x1000)), 0);
        assert_eq!(fa.reserve(PhysRange::new(0x3f000, u64::MAX)), 1);
        assert_eq!(fa.alloc(), Some(0x14000));
        fa.free(0x12000).unwrap();
        assert_eq!(fa.alloc(), Some(0x12000));
        fa.check_invariants().unwrap();
        fa.free_contiguous(0x8000, 4).unwrap();
        assert_eq!(
            fa.free_contiguous(0x8000, 4),
            Err(Error::DoubleFree(0x8000))
        );
        assert_eq!(fa.free_contiguous(0x4000, 2), Err(Error::NotUsable(0x5000)));
        assert_eq!(
            fa.free_contiguous(0x3f000, 2),
            Err(Error::OutOfRange(0x40000))
        );
        assert!(fa.is_usable(0x4000) && !fa.is_free(0x4000));
        fa.free_contiguous(0x4000, 0).unwrap();
        fa.check_invariants().unwrap();
    }

    #[test]
    fn empty_allocator() {
        let s: RegionSet<1> = RegionSet::new();
        let mut bm: [u64; 0] = [];
        let mut fa = FrameAllocator::new(&mut bm, 0, &s).unwrap();
        assert_eq!(fa.alloc(), None);
        assert_eq!(fa.alloc_contiguous(1, 1), None);
        assert_eq!(fa.free(0), Err(Error::OutOfRange(0)));
        assert_eq!(fa.reserve(PhysRange::new(0, 100)), 0);
        fa.check_invariants().unwrap();
    }

    #[test]
    fn bit_helpers() {
        assert_eq!(mask(0, 64), u64::MAX);
        assert_eq!(mask(3, 5), 0b11000);
        let mut m = [0u64; 3];
        set_bits(&mut m, 60, 130, true);
        assert_eq!(count_clear_bits(&m, 0, 192), 192 - 70);
        assert_eq!(first_set_bit(&m, 0, 192), Some(60));
        assert_eq!(first_clear_bit(&m, 60, 192), Some(130));
        assert_eq!(first_clear_bit(&m, 60, 130), None);
        assert_eq!(first_set_bit(&m, 130, 192), None);
    }
}
