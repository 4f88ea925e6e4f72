//! Physical-memory bookkeeping for the Quest-RS kernel.
//!
//! This crate is pure logic: it knows nothing about the hardware, never allocates on the heap
//! and contains no `unsafe` code. The kernel uses it at boot like this:
//!
//! 1. Build a [`RegionSet`] of usable memory: [`RegionSet::add`] every "available" entry of the
//!    multiboot2 memory map, then [`RegionSet::remove`] everything that must never be handed
//!    out: the first 1 MiB, the kernel image, the boot modules, the multiboot information block.
//! 2. Size the allocator's bitmap with [`FrameAllocator::bitmap_words_for`], find a home for it
//!    with [`RegionSet::first_fit`], and remove that range from the set too.
//! 3. Build the [`FrameAllocator`] from the set with [`FrameAllocator::new`]. Anything found to
//!    be in use later can still be taken out with [`FrameAllocator::reserve`].
//!
//! # Invariants
//!
//! Each type states its invariants in full in its own documentation; they are checked by
//! `check` methods (cheap ones with `debug_assert!`, so also in the kernel's debug-assertion
//! build) and by property tests against simple models. In short:
//!
//! * [`RegionSet`]: ranges are non-empty, sorted, disjoint and never touch; a failed
//!   operation changes nothing.
//! * [`FrameAllocator`]: `free_count()` equals the number of zero bits of the used bitmap over
//!   usable frames; it never hands out a frame that is not wholly inside a usable range (or
//!   is at or above `max_phys`); it never hands out a frame twice without a `free` in
//!   between; `alloc()` always returns the lowest free frame.
//!
//! ```
//! use kmem::{FrameAllocator, PhysRange, RegionSet, PAGE_SIZE};
//!
//! const MIB: u64 = 1 << 20;
//! let mut usable: RegionSet<16> = RegionSet::new();
//! usable.add(PhysRange::new(0, 640 * 1024)).unwrap();        // low memory
//! usable.add(PhysRange::new(MIB, 64 * MIB)).unwrap();       // "available" above 1 MiB
//! usable.remove(PhysRange::new(0, MIB)).unwrap();           // never use the first MiB
//! usable.remove(PhysRange::new(MIB, 3 * MIB)).unwrap();     // the kernel image
//!
//! let max_phys = usable.max_address().unwrap();
//! let mut bitmap = [0u64; 1024];
//! let words = FrameAllocator::bitmap_words_for(max_phys);
//! let mut frames = FrameAllocator::new(&mut bitmap[..words], max_phys, &usable).unwrap();
//!
//! let a = frames.alloc().unwrap();
//! assert_eq!(a, 3 * MIB);                                    // lowest free frame first
//! let b = frames.alloc_contiguous(16, 16).unwrap();          // 64 KiB, 64 KiB aligned
//! assert_eq!(b % (16 * PAGE_SIZE), 0);
//! frames.free(a).unwrap();
//! assert!(frames.free(a).is_err());                          // double free is an error
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod frame;
mod range;
mod region;

pub use frame::{FrameAllocator, InvariantViolation};
pub use range::PhysRange;
pub use region::RegionSet;

/// Size of a physical frame (and of a small page) in bytes.
pub const PAGE_SIZE: u64 = 4096;

/// `log2(PAGE_SIZE)`.
pub const PAGE_SHIFT: u32 = 12;

/// Errors reported by [`RegionSet`] and [`FrameAllocator`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A [`RegionSet`] would need more ranges than its fixed capacity. The set is unchanged.
    CapacityExceeded,
    /// The bitmap slice given to [`FrameAllocator::new`] is shorter than
    /// [`FrameAllocator::bitmap_words_for`] requires.
    BitmapTooSmall {
        /// Words needed.
        needed: usize,
        /// Words provided.
        provided: usize,
    },
    /// An address is not aligned to [`PAGE_SIZE`].
    Misaligned(u64),
    /// An address lies at or above the `max_phys` the allocator was built for.
    OutOfRange(u64),
    /// A frame was never usable memory (it was not in the usable set at construction).
    NotUsable(u64),
    /// A frame that is already free was freed again.
    DoubleFree(u64),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::CapacityExceeded => write!(f, "region set capacity exceeded"),
            Error::BitmapTooSmall { needed, provided } => write!(
                f,
                "frame bitmap too small: {needed} words needed, {provided} provided"
            ),
            Error::Misaligned(a) => write!(f, "address {a:#x} is not 4 KiB aligned"),
            Error::OutOfRange(a) => write!(f, "address {a:#x} is beyond the managed memory"),
            Error::NotUsable(a) => write!(f, "frame {a:#x} was never usable memory"),
            Error::DoubleFree(a) => write!(f, "frame {a:#x} freed twice"),
        }
    }
}

impl core::error::Error for Error {}
