//! The shared-region layout: header, control words, slots, and their validation.
//!
//! A region is a slice of 64-bit words (`&[AtomicU64]`). Its byte layout is the one of
//! [`Header`] followed by the slots, on a little-endian machine (every Quest target): word
//! `w` covers bytes `8*w .. 8*w + 8`, and the two `u32` fields that share a word are its low
//! (lower address) and high halves.
//!
//! ```text
//! byte    word  field                         owner      four-slot          FIFO
//!    0       0  magic  "QUESTCHN"             creator
//!    8       1  version (u32) | kind (u32)    creator
//!   16       2  slot_size (u32) | slot_count  creator    count = 4          count = N
//!   24       3  check                         creator
//!   32    4..8  reserved (zero)
//!   64       8  writer_state                  writer
//!   72       9  writer_pos                    writer     latest (0/1)       tail
//!   80   10,11  slot[0], slot[1]              writer     slot[pair] (0/1)   zero
//!   96      12  writes                        writer     seq of last write  zero
//!  104      13  rejected                      writer     zero               pushes refused (full)
//!  112      14  writer_wait                   writer     zero               1: producer sleeps (full)
//!  120      15  reserved (zero)
//!  128      16  reader_state                  reader
//!  136      17  reader_pos                    reader     reading (0/1)      head
//!  144      18  reads                         reader     reads performed    zero
//!  152      19  overruns                      reader     writes never seen  zero
//!  160      20  reader_wait                   reader     zero               1: consumer sleeps (empty)
//!  168  21..24  reserved (zero)
//!  192      24  slot 0: tag word, then payload words
//!          ...  slot i at word 24 + i * stride, stride = 1 + ceil(slot_size / 8)
//! ```
//!
//! The tag word of a slot is the write's sequence number (four-slot; 0 = never written) or
//! the message length in bytes (FIFO). Payload byte `j` of a slot is byte `j % 8`
//! (little-endian) of payload word `j / 8`; the unused tail of the last word is zero when the
//! writer is honest.
//!
//! The header words 0..4 are written once by [`format`](crate::FourSlot::format) and never
//! again; each side copies what it needs at attach time and never re-reads them. The writer
//! line (words 8..16) is stored to only by the writer, the reader line (16..24) only by the
//! reader, so the two sides never write the same cache line of control words.
//!
//! The waiter words (`writer_wait`, `reader_wait`) serve a data path run in user space (the
//! Quest user library maps the region): a FIFO side about to sleep sets its own waiter word,
//! and the peer, after moving its counter, enters the kernel to wake it only when that word is
//! set (see [`FifoConsumer::prepare_sleep`](crate::FifoConsumer::prepare_sleep)). They were
//! reserved (zero) words in version 1, so older peers simply never set them. The word
//! indices are public ([`W_WRITER_POS`] …) for the C mirror of this protocol
//! (user/include/shmcomm_internal.h, checked by this crate's tests) and for the kernel's
//! futex-like wait, which compares the peer's counter word.

use crate::sync::{AtomicU64, Ordering};
use crate::{Error, Kind};
use core::mem::{offset_of, size_of};

/// `b"QUESTCHN"` read as a little-endian `u64`: the first word of every formatted region.
pub const MAGIC: u64 = u64::from_le_bytes(*b"QUESTCHN");
/// Layout version written by this crate; attach refuses any other.
pub const VERSION: u32 = 1;
/// Largest slot payload, in bytes (1 MiB).
pub const MAX_SLOT_SIZE: usize = 1 << 20;
/// Largest number of FIFO slots.
pub const MAX_FIFO_SLOTS: usize = 1 << 16;
/// Words of header before the first slot (192 bytes: three 64-byte cache lines).
pub const HEADER_WORDS: usize = size_of::<Header>() / 8;
/// Bytes of header before the first slot.
pub const HEADER_BYTES: usize = size_of::<Header>();

/// Value of a side's state word after [`format`](crate::FourSlot::format).
pub const STATE_NEVER_ATTACHED: u64 = 0;
/// Value of a side's state word while it is attached.
pub const STATE_ATTACHED: u64 = 1;
/// Value of a side's state word after it called `close`.
pub const STATE_CLOSED: u64 = 2;

/// The C view of the region header (192 bytes). Documentation and the source of truth for the
/// byte offsets (C headers are generated to match it); this crate never builds one in shared
/// memory, it accesses the same bytes as `AtomicU64` words (see the [module docs](self)).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// [`Kind`] as `u32`.
    pub kind: u32,
    /// Payload bytes per slot, `1..=MAX_SLOT_SIZE`.
    pub slot_size: u32,
    /// Number of slots: 4 for a four-slot, `1..=MAX_FIFO_SLOTS` for a FIFO.
    pub slot_count: u32,
    /// [`header_check`] of the three words above.
    pub check: u64,
    /// Zero.
    pub reserved0: [u64; 4],
    /// [`STATE_NEVER_ATTACHED`], [`STATE_ATTACHED`] or [`STATE_CLOSED`] of the writer/producer.
    pub writer_state: u64,
    /// Four-slot: `latest` (the pair last written, 0 or 1). FIFO: `tail` (messages pushed).
    pub writer_pos: u64,
    /// Four-slot: `slot[pair]` (the slot of each pair last written, 0 or 1). FIFO: zero.
    pub slot: [u64; 2],
    /// Four-slot: sequence number of the last write. FIFO: zero (`tail` counts pushes).
    pub writes: u64,
    /// FIFO: pushes refused because the ring was full. Four-slot: zero.
    pub rejected: u64,
    /// FIFO: 1 while the producer sleeps for room (set by the producer, see the module docs).
    /// Four-slot: zero.
    pub writer_wait: u64,
    /// Zero.
    pub reserved1: u64,
    /// State of the reader/consumer, like `writer_state`.
    pub reader_state: u64,
    /// Four-slot: `reading` (the pair the reader is using, 0 or 1). FIFO: `head` (messages
    /// popped).
    pub reader_pos: u64,
    /// Four-slot: reads performed. FIFO: zero (`head` counts pops).
    pub reads: u64,
    /// Four-slot: writes the reader never saw (overwritten before it read them). FIFO: zero.
    pub overruns: u64,
    /// FIFO: 1 while the consumer sleeps for data (set by the consumer). Four-slot: zero.
    pub reader_wait: u64,
    /// Zero.
    pub reserved2: [u64; 3],
}

/// The C view of the first word of every slot; the payload words follow it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotTag {
    /// Four-slot: sequence number of the write that filled the slot (0 = never written).
    /// FIFO: message length in bytes.
    pub tag: u64,
}

const fn word(offset: usize) -> usize {
    assert!(offset.is_multiple_of(8));
    offset / 8
}

/// Word index of `magic`.
pub const W_MAGIC: usize = word(offset_of!(Header, magic));
/// Word index of `version | kind`.
pub const W_VERSION_KIND: usize = word(offset_of!(Header, version));
/// Word index of `slot_size | slot_count`.
pub const W_GEOMETRY: usize = word(offset_of!(Header, slot_size));
/// Word index of `check`.
pub const W_CHECK: usize = word(offset_of!(Header, check));
/// Word index of `writer_state`.
pub const W_WRITER_STATE: usize = word(offset_of!(Header, writer_state));
/// Word index of `writer_pos` (FIFO: `tail`).
pub const W_WRITER_POS: usize = word(offset_of!(Header, writer_pos));
/// Word index of `slot[0]`.
pub const W_SLOT0: usize = word(offset_of!(Header, slot));
/// Word index of `slot[1]`.
pub const W_SLOT1: usize = W_SLOT0 + 1;
/// Word index of `writes`.
pub const W_WRITES: usize = word(offset_of!(Header, writes));
/// Word index of `rejected`.
pub const W_REJECTED: usize = word(offset_of!(Header, rejected));
/// Word index of `writer_wait`.
pub const W_WRITER_WAIT: usize = word(offset_of!(Header, writer_wait));
/// Word index of `reader_state`.
pub const W_READER_STATE: usize = word(offset_of!(Header, reader_state));
/// Word index of `reader_pos` (FIFO: `head`).
pub const W_READER_POS: usize = word(offset_of!(Header, reader_pos));
/// Word index of `reads`.
pub const W_READS: usize = word(offset_of!(Header, reads));
/// Word index of `overruns`.
pub const W_OVERRUNS: usize = word(offset_of!(Header, overruns));
/// Word index of `reader_wait`.
pub const W_READER_WAIT: usize = word(offset_of!(Header, reader_wait));

// The layout is a contract with C code and with other kernels: pin it.
const _: () = {
    assert!(HEADER_BYTES == 192);
    assert!(offset_of!(Header, kind) == offset_of!(Header, version) + 4);
    assert!(offset_of!(Header, slot_count) == offset_of!(Header, slot_size) + 4);
    assert!(W_MAGIC == 0 && W_VERSION_KIND == 1 && W_GEOMETRY == 2 && W_CHECK == 3);
    assert!(W_WRITER_STATE == 8 && W_WRITER_POS == 9 && W_SLOT0 == 10 && W_SLOT1 == 11);
    assert!(W_WRITES == 12 && W_REJECTED == 13 && W_WRITER_WAIT == 14);
    assert!(W_READER_WAIT == 20);
    assert!(W_READER_STATE == 16 && W_READER_POS == 17 && W_READS == 18 && W_OVERRUNS == 19);
    assert!(size_of::<SlotTag>() == 8);
    // Geometry limits keep every size computation far from overflow on 64-bit targets.
    assert!(MAX_SLOT_SIZE <= u32::MAX as usize);
    assert!(MAX_FIFO_SLOTS <= u32::MAX as usize);
};

/// The integrity word stored in `check`: a function of words 0..3 that changes whenever any
/// single one of them changes (each word goes through a bijection and they are XORed), so a
/// stray write to one header word is caught at attach even if it leaves the fields plausible.
pub const fn header_check(magic: u64, version_kind: u64, geometry: u64) -> u64 {
    const SALT: u64 = 0x9e37_79b9_7f4a_7c15;
    magic ^ version_kind.rotate_left(21) ^ geometry.rotate_left(42) ^ SALT
}

/// A validated geometry, computed from trusted numbers only. Each side keeps its own copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    pub kind: Kind,
    pub slot_size: usize,
    pub slot_count: usize,
    /// Words per slot: the tag word and the payload words.
    pub stride: usize,
    /// Words the whole region needs.
    pub total: usize,
}

impl Geom {
    /// Checks the limits and computes the sizes, with overflow checks (so also on 32-bit).
    pub const fn new(kind: Kind, slot_size: usize, slot_count: usize) -> Result<Geom, Error> {
        if slot_size == 0 || slot_size > MAX_SLOT_SIZE {
            return Err(Error::BadGeometry);
        }
        let count_ok = match kind {
            Kind::FourSlot => slot_count == 4,
            Kind::Fifo => slot_count >= 1 && slot_count <= MAX_FIFO_SLOTS,
        };
        if !count_ok {
            return Err(Error::BadGeometry);
        }
        let stride = 1 + slot_size.div_ceil(8);
        let Some(slots) = stride.checked_mul(slot_count) else {
            return Err(Error::BadGeometry);
        };
        let Some(total) = slots.checked_add(HEADER_WORDS) else {
            return Err(Error::BadGeometry);
        };
        // Byte size must be representable too (region_bytes).
        if total.checked_mul(8).is_none() {
            return Err(Error::BadGeometry);
        }
        Ok(Geom {
            kind,
            slot_size,
            slot_count,
            stride,
            total,
        })
    }

    fn version_kind(&self) -> u64 {
        u64::from(VERSION) | (u64::from(self.kind as u32) << 32)
    }

    fn geometry_word(&self) -> u64 {
        // Both fit in u32 (checked by Geom::new and the const assertions).
        (self.slot_size as u64) | ((self.slot_count as u64) << 32)
    }
}

/// Initialises a region: zeroes every word the layout uses, writes the header, and writes the
/// magic word last (Release), so a side that sees the magic (Acquire) sees a complete header.
///
/// Must not run while another side is attached: it resets both sides' state.
pub(crate) fn format(region: &[AtomicU64], geom: Geom) -> Result<(), Error> {
    if region.len() < geom.total {
        return Err(Error::RegionTooSmall {
            needed: geom.total,
            got: region.len(),
        });
    }
    let used = &region[..geom.total];
    used[W_MAGIC].store(0, Ordering::Relaxed);
    for w in &used[1..] {
        w.store(0, Ordering::Relaxed);
    }
    let vk = geom.version_kind();
    let g = geom.geometry_word();
    used[W_VERSION_KIND].store(vk, Ordering::Relaxed);
    used[W_GEOMETRY].store(g, Ordering::Relaxed);
    used[W_CHECK].store(header_check(MAGIC, vk, g), Ordering::Relaxed);
    used[W_MAGIC].store(MAGIC, Ordering::Release);
    Ok(())
}

/// Reads and validates the header of `region` (any kind). Reads each header word once; never
/// indexes past `region.len()`; never panics.
pub(crate) fn validate(region: &[AtomicU64]) -> Result<Geom, Error> {
    if region.len() < HEADER_WORDS {
        return Err(Error::RegionTooSmall {
            needed: HEADER_WORDS,
            got: region.len(),
        });
    }
    let magic = region[W_MAGIC].load(Ordering::Acquire);
    if magic != MAGIC {
        return Err(Error::BadMagic);
    }
    let vk = region[W_VERSION_KIND].load(Ordering::Relaxed);
    let g = region[W_GEOMETRY].load(Ordering::Relaxed);
    let check = region[W_CHECK].load(Ordering::Relaxed);
    if check != header_check(magic, vk, g) {
        return Err(Error::BadChecksum);
    }
    let version = vk as u32;
    if version != VERSION {
        return Err(Error::BadVersion(version));
    }
    let kind = match (vk >> 32) as u32 {
        1 => Kind::FourSlot,
        2 => Kind::Fifo,
        _ => return Err(Error::WrongKind),
    };
    let slot_size = (g & 0xffff_ffff) as usize;
    let slot_count = (g >> 32) as usize;
    let geom = Geom::new(kind, slot_size, slot_count)?;
    if region.len() < geom.total {
        return Err(Error::RegionTooSmall {
            needed: geom.total,
            got: region.len(),
        });
    }
    Ok(geom)
}

/// Validates `region` and checks it holds a channel of `kind`.
pub(crate) fn validate_kind(region: &[AtomicU64], kind: Kind) -> Result<Geom, Error> {
    let geom = validate(region)?;
    if geom.kind != kind {
        return Err(Error::WrongKind);
    }
    Ok(geom)
}

/// Copies `src` into `words` (little-endian, last word zero-padded).
/// `words.len()` must be `src.len().div_ceil(8)`; extra words on either side are ignored.
#[inline]
pub(crate) fn store_bytes(words: &[AtomicU64], src: &[u8]) {
    let (chunks, rest) = src.as_chunks::<8>();
    for (w, c) in words.iter().zip(chunks) {
        w.store(u64::from_le_bytes(*c), Ordering::Relaxed);
    }
    if !rest.is_empty()
        && let Some(w) = words.get(chunks.len())
    {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        w.store(u64::from_le_bytes(last), Ordering::Relaxed);
    }
}

/// Copies `words` out into `dst` (little-endian); the inverse of [`store_bytes`].
#[inline]
pub(crate) fn load_bytes(words: &[AtomicU64], dst: &mut [u8]) {
    let (chunks, rest) = dst.as_chunks_mut::<8>();
    let full = chunks.len();
    for (c, w) in chunks.iter_mut().zip(words) {
        *c = w.load(Ordering::Relaxed).to_le_bytes();
    }
    if !rest.is_empty()
        && let Some(w) = words.get(full)
    {
        let last = w.load(Ordering::Relaxed).to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// Maps a side-state word (which the peer may have scribbled on) to a [`SideState`].
pub(crate) fn side_state(word: u64) -> crate::SideState {
    match word {
        STATE_NEVER_ATTACHED => crate::SideState::NeverAttached,
        STATE_ATTACHED => crate::SideState::Attached,
        STATE_CLOSED => crate::SideState::Closed,
        _ => crate::SideState::Invalid,
    }
}
