//! Simpson's four-slot fully asynchronous mechanism (H. R. Simpson, 1990).
//!
//! One writer, one reader, neither ever waits for the other: both operations are wait-free
//! (a bounded number of steps: a few control-word accesses and one slot copy). The reader
//! always gets the latest *complete* value, never a torn one; a write is never lost to the
//! writer (it never fails for lack of space), but values the reader is too slow to see are
//! overwritten (counted as overruns).
//!
//! # The algorithm
//!
//! Four slots `data[pair][index]`, `pair, index ∈ {0, 1}`, and four control bits:
//! `latest` (the pair last written) and `slot[pair]` (the index last written in each pair),
//! both written only by the writer, and `reading` (the pair the reader is using), written
//! only by the reader.
//!
//! ```text
//! writer(v):                         reader():
//!   F_W: fence(SeqCst)                 p = latest          (Acquire)
//!   pair  = !reading   (Acquire)       reading = p         (Release)
//!   index = !slot[pair]  (own copy)    F_R: fence(SeqCst)
//!   data[pair][index] = v (Relaxed)    i = slot[p]         (Acquire)
//!   slot[pair] = index (Release)       v = data[p][i]      (Relaxed)
//!   latest = pair      (Release)
//! ```
//!
//! The writer avoids the pair the reader announced, and within a pair it writes the slot that
//! is not the latest one, so it never writes the slot the reader is copying. Each slot's tag
//! word carries the write's sequence number, which tells the reader whether a value is
//! [`Fresh`](ReadStatus::Fresh), [`Stale`](ReadStatus::Stale) or that nothing was ever
//! written ([`Empty`](ReadStatus::Empty)).
//!
//! # Why these orderings are enough (and why Acquire/Release alone is not)
//!
//! * **Publication.** The writer fills the slot, then stores `slot[pair]` with Release and
//!   `latest` with Release. The reader loads `latest` with Acquire, so it also sees the
//!   `slot[pair]` store of that write (or a later one), and loads `slot[p]` with Acquire, so it
//!   sees the whole contents of the slot it picked. This also gives *freshness*: if a write
//!   happens-before the read starts, the reader's `latest` load returns that write's pair or
//!   a later one, and the `slot[p]` load that write's index or a later one.
//! * **Exclusion is a store-buffering pattern.** The reader announces `reading = p` and then
//!   loads `slot[p]`; the writer stores `slot[p]` (write *k*) and then, at the start of write
//!   *k+1*, loads `reading`. If the reader's load misses the writer's store (so it copies the
//!   slot `slot[p]` named *before* write *k*) *and* the writer's load misses the reader's
//!   announcement (so it picks pair `p` again), write *k+1* takes the index that is not
//!   `slot[p]` *now*, which is exactly the slot the reader is copying: a torn read. (Loom's
//!   counterexample: write 1 fills (1,1); the reader announces 1 and reads `slot[1] = 1`;
//!   writes 2 and 3 both miss the announcement and fill (1,0) then (1,1) under the reader.)
//!   This is the classic store-buffering shape (`St x; Ld y` ‖ `St y; Ld x`), which
//!   Acquire/Release does not forbid (and x86's store buffer really produces: Release stores
//!   and Acquire loads are plain `mov`s there). The two SeqCst fences `F_W` and `F_R` forbid
//!   it: all SeqCst fences are totally ordered; if `F_W` comes first, the reader's `slot[p]`
//!   load (after `F_R`) sees the writer's `slot[p]` store (before `F_W`); if `F_R` comes
//!   first, the writer's `reading` load (after `F_W`) sees the reader's announcement (before
//!   `F_R`). Either way the two cannot both miss. (Making the four accesses SeqCst instead
//!   would also be correct in C11, but loom does not model SeqCst *accesses* fully, and
//!   reports this torn read for that version, whereas it models SeqCst fences exactly; on
//!   x86 each SeqCst store is an `xchg`, the fence one `mfence` per operation.)
//! * **Reads finish before the slot is reused.** The reader's `reading` store is Release and
//!   the writer's `reading` load is Acquire, so the reader's slot loads happen-before any later
//!   write that reuses the slot after seeing the reader move on (without this, C11 would allow
//!   a Relaxed data load to read from a *later* store: load buffering).
//! * The data words are Relaxed atomics: they are published and protected by the control
//!   words above; being atomic makes a hostile or buggy peer's concurrent writes garbage but
//!   never a data race.
//!
//! `tests/loom.rs` checks all of this exhaustively for small configurations, and finds the
//! torn read if `F_W`/`F_R` are removed (see `docs/channels.md`).
//!
//! # Hostile peers
//!
//! Every control word read from shared memory is masked to one bit before use, so a slot
//! index is always in `0..4`; the writer keeps its own copy of `slot[]` and its sequence
//! counter, and each side's geometry is a private copy validated at attach. A peer that
//! scribbles can make the values read garbage, never cause a panic, an out-of-bounds access
//! or a loop.

use crate::layout::{self, Geom};
use crate::sync::{AtomicU64, Ordering, fence};
use crate::{Error, Kind, SideState, Stats};

/// Namespace for sizing and formatting four-slot regions.
#[derive(Debug, Clone, Copy)]
pub struct FourSlot;

impl FourSlot {
    /// Number of 64-bit words a four-slot channel with `slot_size`-byte values needs
    /// (`24 + 4 * (1 + ceil(slot_size / 8))`). Errors with [`Error::BadGeometry`] unless
    /// `1 <= slot_size <= MAX_SLOT_SIZE`.
    pub const fn region_words(slot_size: usize) -> Result<usize, Error> {
        match Geom::new(Kind::FourSlot, slot_size, 4) {
            Ok(g) => Ok(g.total),
            Err(e) => Err(e),
        }
    }

    /// [`region_words`](Self::region_words) in bytes.
    pub const fn region_bytes(slot_size: usize) -> Result<usize, Error> {
        match Self::region_words(slot_size) {
            Ok(w) => Ok(w * 8),
            Err(e) => Err(e),
        }
    }

    /// Initialises `region` as an empty four-slot channel (the creator does this once, before
    /// either side attaches). `region` may be longer than needed; the rest is left alone.
    pub fn format(region: &[AtomicU64], slot_size: usize) -> Result<(), Error> {
        layout::format(region, Geom::new(Kind::FourSlot, slot_size, 4)?)
    }
}

/// What [`FourSlotReader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// A value this reader had not returned before (its sequence number changed).
    Fresh,
    /// The same value as the previous read: nothing was written in between.
    Stale,
    /// Nothing has been written yet; the buffer was left untouched.
    Empty,
}

/// Data slot `n` (0..4) of a validated region: the tag word, then the payload words.
fn slot_words<'a>(data: &'a [AtomicU64], geom: &Geom, n: usize) -> &'a [AtomicU64] {
    // `n < 4` and `data.len() == 4 * stride` by construction; `get` keeps this panic-free
    // even if that reasoning were wrong (an empty slot reads as "never written").
    data.get(n * geom.stride..(n + 1) * geom.stride)
        .unwrap_or(&[])
}

/// The writing side of a four-slot channel. Exactly one may exist per channel.
#[derive(Debug)]
pub struct FourSlotWriter<'a> {
    geom: Geom,
    data: &'a [AtomicU64],
    latest: &'a AtomicU64,
    slot: [&'a AtomicU64; 2],
    writes: &'a AtomicU64,
    state: &'a AtomicU64,
    reading: &'a AtomicU64,
    reader_state: &'a AtomicU64,
    reads: &'a AtomicU64,
    overruns: &'a AtomicU64,
    /// Private copy of `slot[]`: only this side writes it, so it never trusts the shared one
    /// after attach.
    my_slot: [usize; 2],
    /// Sequence number of the last write (0 = none).
    seq: u64,
}

impl<'a> FourSlotWriter<'a> {
    /// Validates the header and attaches as the (single) writer, marking the writer side
    /// attached. Re-attaching after a crash or [`close`](Self::close) resumes where the
    /// region says the previous writer stopped.
    ///
    /// `region` must be the whole channel region (any extra words at the end are ignored).
    pub fn attach(region: &'a [AtomicU64]) -> Result<Self, Error> {
        let geom = layout::validate_kind(region, Kind::FourSlot)?;
        let w = |i: usize| &region[i];
        let slot = [w(layout::W_SLOT0), w(layout::W_SLOT1)];
        let me = FourSlotWriter {
            geom,
            data: &region[layout::HEADER_WORDS..geom.total],
            latest: w(layout::W_WRITER_POS),
            slot,
            writes: w(layout::W_WRITES),
            state: w(layout::W_WRITER_STATE),
            reading: w(layout::W_READER_POS),
            reader_state: w(layout::W_READER_STATE),
            reads: w(layout::W_READS),
            overruns: w(layout::W_OVERRUNS),
            my_slot: [
                (slot[0].load(Ordering::Acquire) & 1) as usize,
                (slot[1].load(Ordering::Acquire) & 1) as usize,
            ],
            seq: w(layout::W_WRITES).load(Ordering::Relaxed),
        };
        me.state.store(layout::STATE_ATTACHED, Ordering::Release);
        Ok(me)
    }

    /// Payload size in bytes: every write is exactly this long.
    pub fn slot_size(&self) -> usize {
        self.geom.slot_size
    }

    /// Publishes `value` as the latest value. Wait-free; never fails for lack of space
    /// (an unread previous value is overwritten). Errors with [`Error::WrongLength`] unless
    /// `value.len() == slot_size()`.
    pub fn write(&mut self, value: &[u8]) -> Result<(), Error> {
        if value.len() != self.geom.slot_size {
            return Err(Error::WrongLength {
                expected: self.geom.slot_size,
                got: value.len(),
            });
        }
        // F_W: orders the previous write's `slot[pair]`/`latest` stores before the `reading`
        // load below (the store-buffering pair with the reader's F_R; see the module docs).
        fence(Ordering::SeqCst);
        let pair = (self.reading.load(Ordering::Acquire) & 1) as usize ^ 1;
        let index = self.my_slot[pair] ^ 1;
        // Sequence numbers skip 0, which marks a never-written slot.
        self.seq = self.seq.wrapping_add(1).max(1);
        let words = slot_words(self.data, &self.geom, pair * 2 + index);
        if let Some((tag, payload)) = words.split_first() {
            tag.store(self.seq, Ordering::Relaxed);
            layout::store_bytes(payload, value);
        }
        self.slot[pair].store(index as u64, Ordering::Release);
        self.my_slot[pair] = index;
        self.latest.store(pair as u64, Ordering::Release);
        self.writes.store(self.seq, Ordering::Relaxed);
        Ok(())
    }

    /// The reader's attach state (it may be garbage if the reader is hostile).
    pub fn peer_state(&self) -> SideState {
        layout::side_state(self.reader_state.load(Ordering::Acquire))
    }

    /// The channel's counters, as both sides last published them.
    pub fn stats(&self) -> Stats {
        Stats {
            writes: self.seq,
            reads: self.reads.load(Ordering::Relaxed),
            overruns: self.overruns.load(Ordering::Relaxed),
            rejected: 0,
        }
    }

    /// Marks the writer side closed. The last value stays readable; the reader's view is
    /// unaffected apart from [`FourSlotReader::peer_state`].
    pub fn close(self) {
        self.state.store(layout::STATE_CLOSED, Ordering::Release);
    }
}

/// The reading side of a four-slot channel. Exactly one may exist per channel.
#[derive(Debug)]
pub struct FourSlotReader<'a> {
    geom: Geom,
    data: &'a [AtomicU64],
    latest: &'a AtomicU64,
    slot: [&'a AtomicU64; 2],
    writes: &'a AtomicU64,
    writer_state: &'a AtomicU64,
    state: &'a AtomicU64,
    reading: &'a AtomicU64,
    reads: &'a AtomicU64,
    overruns: &'a AtomicU64,
    /// Sequence number of the value last returned (0 = none since attach).
    last_seq: u64,
    /// The writer's sequence number at attach: writes up to it are history, not overruns.
    baseline: u64,
    n_reads: u64,
    n_overruns: u64,
}

impl<'a> FourSlotReader<'a> {
    /// Validates the header and attaches as the (single) reader, marking the reader side
    /// attached. The first read after attach reports any value present as `Fresh`.
    pub fn attach(region: &'a [AtomicU64]) -> Result<Self, Error> {
        let geom = layout::validate_kind(region, Kind::FourSlot)?;
        let w = |i: usize| &region[i];
        let me = FourSlotReader {
            geom,
            data: &region[layout::HEADER_WORDS..geom.total],
            latest: w(layout::W_WRITER_POS),
            slot: [w(layout::W_SLOT0), w(layout::W_SLOT1)],
            writes: w(layout::W_WRITES),
            writer_state: w(layout::W_WRITER_STATE),
            state: w(layout::W_READER_STATE),
            reading: w(layout::W_READER_POS),
            reads: w(layout::W_READS),
            overruns: w(layout::W_OVERRUNS),
            last_seq: 0,
            baseline: w(layout::W_WRITES).load(Ordering::Acquire),
            n_reads: w(layout::W_READS).load(Ordering::Relaxed),
            n_overruns: w(layout::W_OVERRUNS).load(Ordering::Relaxed),
        };
        me.state.store(layout::STATE_ATTACHED, Ordering::Release);
        Ok(me)
    }

    /// Payload size in bytes: `read` needs a buffer exactly this long.
    pub fn slot_size(&self) -> usize {
        self.geom.slot_size
    }

    /// Copies the latest complete value into `buf`. Wait-free. Errors with
    /// [`Error::WrongLength`] unless `buf.len() == slot_size()`; on
    /// [`ReadStatus::Empty`] `buf` is left untouched.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<ReadStatus, Error> {
        if buf.len() != self.geom.slot_size {
            return Err(Error::WrongLength {
                expected: self.geom.slot_size,
                got: buf.len(),
            });
        }
        let pair = (self.latest.load(Ordering::Acquire) & 1) as usize;
        self.reading.store(pair as u64, Ordering::Release);
        // F_R: orders the `reading` store before the `slot[pair]` load (the store-buffering
        // pair with the writer's F_W; see the module docs).
        fence(Ordering::SeqCst);
        let index = (self.slot[pair].load(Ordering::Acquire) & 1) as usize;
        let words = slot_words(self.data, &self.geom, pair * 2 + index);
        let Some((tag, payload)) = words.split_first() else {
            return Ok(ReadStatus::Empty);
        };
        let seq = tag.load(Ordering::Relaxed);
        if seq == 0 {
            return Ok(ReadStatus::Empty);
        }
        layout::load_bytes(payload, buf);
        let status = if seq == self.last_seq {
            ReadStatus::Stale
        } else {
            // Writes between the previous value returned (or attach) and this one were
            // overwritten unseen.
            let prev = if self.last_seq != 0 {
                self.last_seq
            } else {
                self.baseline
            };
            if seq > prev {
                self.n_overruns = self.n_overruns.wrapping_add(seq - prev - 1);
                self.overruns.store(self.n_overruns, Ordering::Relaxed);
            }
            ReadStatus::Fresh
        };
        self.last_seq = seq;
        self.n_reads = self.n_reads.wrapping_add(1);
        self.reads.store(self.n_reads, Ordering::Relaxed);
        Ok(status)
    }

    /// Sequence number of the value the last `read` returned (1 for the first write, counting
    /// up; 0 if no value has been returned since attach). Comes from shared memory: trust it
    /// only as far as you trust the writer.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Whether a write newer than the last value returned has been published (a hint: the
    /// writer may publish right after this returns `false`).
    pub fn has_new(&self) -> bool {
        let w = self.writes.load(Ordering::Acquire);
        w != 0 && w != self.last_seq
    }

    /// The writer's attach state (it may be garbage if the writer is hostile).
    pub fn peer_state(&self) -> SideState {
        layout::side_state(self.writer_state.load(Ordering::Acquire))
    }

    /// The channel's counters, as both sides last published them.
    pub fn stats(&self) -> Stats {
        Stats {
            writes: self.writes.load(Ordering::Relaxed),
            reads: self.n_reads,
            overruns: self.n_overruns,
            rejected: 0,
        }
    }

    /// Marks the reader side closed. The writer keeps writing undisturbed.
    pub fn close(self) {
        self.state.store(layout::STATE_CLOSED, Ordering::Release);
    }
}
