//! Inter-process and inter-sandbox channels for Quest-RS: Simpson's four-slot (asynchronous)
//! and a bounded FIFO (synchronous), laid out in a caller-provided shared-memory region.
//!
//! This is the data-structure layer under Quest's `shmcomm` and tuned pipes. It is pure logic:
//! no heap, no `unsafe`, no blocking. The kernel maps a region, hands it to this crate as a
//! slice of atomic words, and blocks/wakes tasks on top of the wait-free `try_*` operations.
//!
//! # Regions
//!
//! A region is `&[AtomicU64]` (8-byte aligned by construction; 64-byte or page alignment is
//! recommended so the control words get cache lines of their own). Size it with
//! [`FourSlot::region_words`] / [`Fifo::region_words`], initialise it once with
//! [`FourSlot::format`] / [`Fifo::format`], and attach one writer and one reader:
//! [`FourSlotWriter::attach`], [`FourSlotReader::attach`], [`FifoProducer::attach`],
//! [`FifoConsumer::attach`]. A side that only knows the key (like `shmcomm`'s
//! `SHMCOMM_CONNECT_CH`) learns the kind and geometry with [`probe`].
//!
//! The layout (a 192-byte header, then the slots) is documented in [`layout`] and pinned by
//! the `#[repr(C)]` [`layout::Header`]; it contains no pointers, only counters and indices.
//!
//! # Threat model
//!
//! The region may be shared between two kernels or processes that do not trust each other;
//! the other side may write anything to any word at any moment. Therefore:
//!
//! * Every access to the region is an atomic load or store (data is copied word by word with
//!   Relaxed atomics), so concurrent scribbling is never a data race.
//! * The header is validated at attach (magic, version, kind, limits, a check word, region
//!   length); each side then keeps a private copy of the geometry and never re-reads it.
//! * Every index read from the region is masked (four-slot: one bit) or reduced modulo the
//!   private slot count (FIFO), every length is clamped to the private slot size, and counters
//!   that claim an impossible fill level yield [`Error::Corrupt`].
//! * All operations are wait-free: no loop depends on a value read from the region.
//!
//! A hostile peer can therefore make the data received garbage (it owns half the channel) but
//! can never cause undefined behaviour, an out-of-bounds access, a panic or a hang.
//!
//! ```
//! use channels::{FourSlot, FourSlotReader, FourSlotWriter, ReadStatus, sync::AtomicU64};
//!
//! let words = FourSlot::region_words(4).unwrap();
//! let region: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
//! FourSlot::format(&region, 4).unwrap();
//!
//! let mut tx = FourSlotWriter::attach(&region).unwrap();
//! let mut rx = FourSlotReader::attach(&region).unwrap();
//! let mut x = [0u8; 4];
//! assert_eq!(rx.read(&mut x), Ok(ReadStatus::Empty));
//! tx.write(&10i32.to_le_bytes()).unwrap();
//! assert_eq!(rx.read(&mut x), Ok(ReadStatus::Fresh));
//! assert_eq!(i32::from_le_bytes(x), 10);
//! assert_eq!(rx.read(&mut x), Ok(ReadStatus::Stale));
//! ```
//!
//! ```
//! use channels::{Error, Fifo, FifoConsumer, FifoProducer, sync::AtomicU64};
//!
//! let words = Fifo::region_words(16, 2).unwrap();
//! let region: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
//! Fifo::format(&region, 16, 2).unwrap();
//!
//! let mut tx = FifoProducer::attach(&region).unwrap();
//! let mut rx = FifoConsumer::attach(&region).unwrap();
//! tx.try_push(b"hello").unwrap();
//! tx.try_push(b"world!").unwrap();
//! assert_eq!(tx.try_push(b"no room"), Err(Error::Full));
//! let mut buf = [0u8; 16];
//! assert_eq!(rx.try_pop(&mut buf), Ok(5));
//! assert_eq!(&buf[..5], b"hello");
//! tx.close();
//! assert_eq!(rx.try_pop(&mut buf), Ok(6));
//! assert_eq!(rx.try_pop(&mut buf), Err(Error::Closed));
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod fifo;
mod four_slot;
pub mod layout;
pub mod open;
pub mod sync;
pub mod boomerang;
pub mod tpipe;

pub use fifo::{Fifo, FifoConsumer, FifoProducer};
pub use four_slot::{FourSlot, FourSlotReader, FourSlotWriter, ReadStatus};
pub use layout::{MAX_FIFO_SLOTS, MAX_SLOT_SIZE};

use core::fmt;
use sync::AtomicU64;

/// Everything that can go wrong, at attach time or per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The region has fewer words than the layout needs.
    RegionTooSmall {
        /// Words needed.
        needed: usize,
        /// Words given.
        got: usize,
    },
    /// The first word is not [`layout::MAGIC`]: not a channel, or not formatted yet.
    BadMagic,
    /// The header's check word does not match: the header was corrupted.
    BadChecksum,
    /// A layout version this crate does not speak.
    BadVersion(u32),
    /// The region holds the other kind of channel (or an unknown kind).
    WrongKind,
    /// Slot size or slot count outside the limits.
    BadGeometry,
    /// Four-slot: the buffer is not exactly `slot_size` bytes.
    WrongLength {
        /// The slot size.
        expected: usize,
        /// The buffer length.
        got: usize,
    },
    /// FIFO push: the message is longer than a slot.
    TooLong {
        /// The slot size.
        max: usize,
        /// The message length.
        got: usize,
    },
    /// FIFO pop: the buffer is shorter than a slot.
    BufferTooSmall {
        /// The slot size.
        needed: usize,
        /// The buffer length.
        got: usize,
    },
    /// FIFO push: every slot holds an unread message.
    Full,
    /// FIFO pop: no message.
    Empty,
    /// FIFO: the peer closed its side and the operation can never succeed (pop: drained and
    /// the producer is gone; push: full and the consumer is gone).
    Closed,
    /// The peer's control words are impossible (e.g. more messages in flight than slots):
    /// the peer is buggy or hostile. Nothing was changed.
    Corrupt,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::RegionTooSmall { needed, got } => {
                write!(f, "region too small: {got} words, need {needed}")
            }
            Error::BadMagic => f.write_str("not a channel region (bad magic)"),
            Error::BadChecksum => f.write_str("channel header corrupted (bad check word)"),
            Error::BadVersion(v) => write!(f, "unsupported channel layout version {v}"),
            Error::WrongKind => f.write_str("wrong channel kind"),
            Error::BadGeometry => f.write_str("slot size or slot count out of range"),
            Error::WrongLength { expected, got } => {
                write!(f, "buffer is {got} bytes, slot is {expected}")
            }
            Error::TooLong { max, got } => write!(f, "message is {got} bytes, slot is {max}"),
            Error::BufferTooSmall { needed, got } => {
                write!(f, "buffer is {got} bytes, slot is {needed}")
            }
            Error::Full => f.write_str("channel full"),
            Error::Empty => f.write_str("channel empty"),
            Error::Closed => f.write_str("peer closed the channel"),
            Error::Corrupt => f.write_str("peer's control words are inconsistent"),
        }
    }
}

impl core::error::Error for Error {}

/// The two kinds of channel, as stored in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Kind {
    /// Simpson's four-slot: asynchronous, latest value wins.
    FourSlot = 1,
    /// Bounded SPSC FIFO: synchronous, nothing overwritten.
    Fifo = 2,
}

/// A side's attach state as published in its state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideState {
    /// Formatted, never attached.
    NeverAttached,
    /// Attached (or crashed without closing).
    Attached,
    /// Closed by its owner.
    Closed,
    /// Not a value this crate writes: the owner scribbled on it.
    Invalid,
}

/// QoS counters, each published by the side that owns it (so only as trustworthy as that
/// side). Four-slot: `writes` = sequence number of the last write, `reads` = reads performed,
/// `overruns` = writes the reader never saw. FIFO: `writes`/`reads` = messages pushed/popped,
/// `rejected` = pushes refused as full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Values written / messages pushed.
    pub writes: u64,
    /// Reads performed / messages popped.
    pub reads: u64,
    /// Four-slot: values overwritten before the reader saw them.
    pub overruns: u64,
    /// FIFO: pushes refused because the ring was full.
    pub rejected: u64,
}

/// What [`probe`] found in a region's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Four-slot or FIFO.
    pub kind: Kind,
    /// Payload bytes per slot.
    pub slot_size: usize,
    /// Number of slots (4 for a four-slot).
    pub slot_count: usize,
    /// Words the channel occupies (header and slots).
    pub region_words: usize,
}

/// Validates `region`'s header, whatever the kind, and returns what it describes. Never
/// panics, whatever the region holds.
pub fn probe(region: &[AtomicU64]) -> Result<Geometry, Error> {
    let g = layout::validate(region)?;
    Ok(Geometry {
        kind: g.kind,
        slot_size: g.slot_size,
        slot_count: g.slot_count,
        region_words: g.total,
    })
}

/// The two sides' attach states (writer, reader) as published in `region`, read without
/// attaching (nothing is written). For a supervisor that must tell a side that closed from one
/// whose owner died attached (the Quest-V Linux sandbox's janitor, user/linux/shmcomm).
pub fn side_states(region: &[AtomicU64]) -> Result<(SideState, SideState), Error> {
    layout::validate(region)?;
    let load = |w: usize| layout::side_state(region[w].load(sync::Ordering::Acquire));
    Ok((load(layout::W_WRITER_STATE), load(layout::W_READER_STATE)))
}

#[cfg(all(test, not(loom)))]
mod tests;
