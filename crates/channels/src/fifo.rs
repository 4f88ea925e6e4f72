//! A synchronous bounded FIFO: Lamport's single-producer single-consumer ring.
//!
//! `N` fixed-size slots; each message is 0..=`slot_size` bytes (the slot's tag word holds its
//! length). A full ring refuses a push ([`Error::Full`]) and an empty one refuses a pop
//! ([`Error::Empty`]): nothing is ever overwritten or dropped silently. Both operations are
//! wait-free; blocking is the caller's business (the kernel blocks on
//! [`FifoConsumer::is_empty`] / [`FifoProducer::is_full`] and wakes the other side).
//!
//! # The algorithm and its orderings
//!
//! `tail` (written only by the producer) and `head` (written only by the consumer) are
//! free-running `u64` message counters; slot `i % N` holds message `i`, and
//! `0 <= tail - head <= N` always holds between honest peers.
//!
//! ```text
//! push(m):                                 pop():
//!   if tail - head_cache == N:               if head == tail_cache:
//!     head_cache = head        (Acquire)       tail_cache = tail   (Acquire)
//!     if tail - head_cache == N: Full          if head == tail_cache: Empty
//!   slot[tail % N] = m         (Relaxed)     m = slot[head % N]    (Relaxed)
//!   tail = tail + 1            (Release)     head = head + 1       (Release)
//! ```
//!
//! * The producer's Release store of `tail` publishes the slot contents; the consumer's
//!   Acquire load of `tail` makes them visible before it copies them.
//! * The consumer's Release store of `head` orders its copy-out before the producer's Acquire
//!   load of `head`, so the producer reuses a slot only after the consumer is done with it
//!   (without this a Relaxed data load could read the *next* message: load buffering).
//! * No store-buffering pattern arises (each side only ever waits for the other's counter to
//!   move forward, and a stale counter only makes the ring look fuller/emptier than it is),
//!   so Acquire/Release is enough; `tests/loom.rs` checks it.
//! * Each side caches the other's counter and re-reads it only when the cached value says
//!   full/empty, so in steady state a side does not touch the other's cache line.
//!
//! # Invariants
//!
//! Each side's private state obeys these whatever the peer writes (checked with
//! `debug_assert!` and by the property tests, which scribble on the region between
//! operations):
//! 1. Producer: `tail - head_cache <= N` (wrapping arithmetic).
//! 2. Consumer: `tail_cache - head <= N`.
//! 3. Between honest peers, `0 <= tail - head <= N` in shared memory, messages are popped
//!    in push order, each exactly once, with the bytes pushed.
//!
//! # Hostile peers
//!
//! Geometry is a private copy validated at attach; slot numbers are computed `% N` from that
//! copy; the message length read from a slot is clamped to `slot_size`; a peer counter that
//! claims more than `N` messages in flight (impossible between honest peers) yields
//! [`Error::Corrupt`] and nothing is touched.

use crate::layout::{self, Geom};
use crate::sync::{AtomicU64, Ordering, fence};
use crate::{Error, Kind, SideState, Stats};

/// Namespace for sizing and formatting FIFO regions.
#[derive(Debug, Clone, Copy)]
pub struct Fifo;

impl Fifo {
    /// Number of 64-bit words a FIFO with `slots` slots of `slot_size` bytes needs
    /// (`24 + slots * (1 + ceil(slot_size / 8))`). Errors with [`Error::BadGeometry`] unless
    /// `1 <= slot_size <= MAX_SLOT_SIZE` and `1 <= slots <= MAX_FIFO_SLOTS`.
    pub const fn region_words(slot_size: usize, slots: usize) -> Result<usize, Error> {
        match Geom::new(Kind::Fifo, slot_size, slots) {
            Ok(g) => Ok(g.total),
            Err(e) => Err(e),
        }
    }

    /// [`region_words`](Self::region_words) in bytes.
    pub const fn region_bytes(slot_size: usize, slots: usize) -> Result<usize, Error> {
        match Self::region_words(slot_size, slots) {
            Ok(w) => Ok(w * 8),
            Err(e) => Err(e),
        }
    }

    /// Initialises `region` as an empty FIFO (the creator does this once, before either side
    /// attaches). `region` may be longer than needed; the rest is left alone.
    pub fn format(region: &[AtomicU64], slot_size: usize, slots: usize) -> Result<(), Error> {
        layout::format(region, Geom::new(Kind::Fifo, slot_size, slots)?)
    }
}

/// Slot `i % N` of a validated region: the tag word and the payload words.
fn slot_words<'a>(data: &'a [AtomicU64], geom: &Geom, counter: u64) -> &'a [AtomicU64] {
    // `slot_count >= 1` (validated), so `%` cannot panic, and the result is `< slot_count`,
    // so the range is inside `data` (`data.len() == slot_count * stride`); `get` keeps this
    // panic-free even if that reasoning were wrong.
    let n = (counter % geom.slot_count as u64) as usize;
    data.get(n * geom.stride..(n + 1) * geom.stride)
        .unwrap_or(&[])
}

/// The waiter word's value while a side sleeps waiting for the peer's counter to leave
/// `expected`: `expected + 1`, never 0 (which means "not sleeping").
fn sleep_token(expected: u64) -> u64 {
    expected.wrapping_add(1).max(1)
}

/// Whether the peer's sleep `token` needs a wake from a side whose counter is now `pos`
/// (it moved past the token's value, and this side has not woken that token yet); records it.
fn wake_due(token: u64, pos: u64, woken: &mut u64) -> bool {
    if token == 0 || token == *woken || token == sleep_token(pos) {
        return false;
    }
    *woken = token;
    true
}

/// The producing side of a FIFO. Exactly one may exist per channel.
#[derive(Debug)]
pub struct FifoProducer<'a> {
    geom: Geom,
    data: &'a [AtomicU64],
    tail_w: &'a AtomicU64,
    head_w: &'a AtomicU64,
    state: &'a AtomicU64,
    peer_state: &'a AtomicU64,
    rejected_w: &'a AtomicU64,
    /// This side's waiter word (`writer_wait`) and the consumer's (`reader_wait`).
    wait_w: &'a AtomicU64,
    peer_wait_w: &'a AtomicU64,
    /// The consumer's last sleep token this side woke (see [`FifoProducer::peer_sleeping`]).
    woken: u64,
    /// Private copy of `tail` (only this side writes it).
    tail: u64,
    /// Last `head` seen.
    head_cache: u64,
    rejected: u64,
}

impl<'a> FifoProducer<'a> {
    /// Validates the header and attaches as the (single) producer, marking the producer side
    /// attached. Re-attaching resumes at the `tail` recorded in the region.
    pub fn attach(region: &'a [AtomicU64]) -> Result<Self, Error> {
        let geom = layout::validate_kind(region, Kind::Fifo)?;
        let tail = region[layout::W_WRITER_POS].load(Ordering::Acquire);
        let me = FifoProducer {
            geom,
            data: &region[layout::HEADER_WORDS..geom.total],
            tail_w: &region[layout::W_WRITER_POS],
            head_w: &region[layout::W_READER_POS],
            state: &region[layout::W_WRITER_STATE],
            peer_state: &region[layout::W_READER_STATE],
            rejected_w: &region[layout::W_REJECTED],
            wait_w: &region[layout::W_WRITER_WAIT],
            peer_wait_w: &region[layout::W_READER_WAIT],
            woken: 0,
            tail,
            // Looks full, so the first push reads the real `head`.
            head_cache: tail.wrapping_sub(geom.slot_count as u64),
            rejected: region[layout::W_REJECTED].load(Ordering::Relaxed),
        };
        me.state.store(layout::STATE_ATTACHED, Ordering::Release);
        Ok(me)
    }

    /// Maximum message size in bytes.
    pub fn slot_size(&self) -> usize {
        self.geom.slot_size
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.geom.slot_count
    }

    /// Re-reads `head`; returns the number of messages in flight, or `Corrupt`.
    fn refresh(&mut self) -> Result<u64, Error> {
        let n = self.geom.slot_count as u64;
        let head = self.head_w.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > n {
            // Keep the invariant `tail - head_cache <= N` the fast path relies on: forget
            // the impossible value (the cache says "full", so the next push re-reads).
            self.head_cache = self.tail.wrapping_sub(n);
            return Err(Error::Corrupt);
        }
        self.head_cache = head;
        Ok(used)
    }

    /// Appends `msg` (0..=`slot_size()` bytes). Wait-free.
    ///
    /// Errors: [`Error::TooLong`] if `msg` does not fit a slot; [`Error::Full`] if all slots
    /// hold unread messages; [`Error::Closed`] instead of `Full` once the consumer has closed
    /// (nobody will make room); [`Error::Corrupt`] if the consumer's `head` is impossible.
    /// Nothing is written on error.
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), Error> {
        if msg.len() > self.geom.slot_size {
            return Err(Error::TooLong {
                max: self.geom.slot_size,
                got: msg.len(),
            });
        }
        let n = self.geom.slot_count as u64;
        debug_assert!(self.tail.wrapping_sub(self.head_cache) <= n, "invariant 1");
        if self.tail.wrapping_sub(self.head_cache) >= n && self.refresh()? == n {
            self.rejected = self.rejected.wrapping_add(1);
            self.rejected_w.store(self.rejected, Ordering::Relaxed);
            return Err(if self.peer_state() == SideState::Closed {
                Error::Closed
            } else {
                Error::Full
            });
        }
        let words = slot_words(self.data, &self.geom, self.tail);
        if let Some((tag, payload)) = words.split_first() {
            tag.store(msg.len() as u64, Ordering::Relaxed);
            layout::store_bytes(payload, msg);
        }
        self.tail = self.tail.wrapping_add(1);
        self.tail_w.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Whether a push would fail with `Full` right now (re-reads the consumer's `head`; a
    /// corrupt `head` counts as full). The kernel blocks the producer on this.
    pub fn is_full(&mut self) -> bool {
        let n = self.geom.slot_count as u64;
        !matches!(self.refresh(), Ok(used) if used < n)
    }

    /// Messages in flight (re-reads `head`; clamped to `capacity()` if the consumer lies).
    pub fn len(&mut self) -> usize {
        let used = self.refresh().unwrap_or(self.geom.slot_count as u64);
        used as usize
    }

    /// Whether no message is in flight (re-reads `head`).
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// The consumer's attach state (it may be garbage if the consumer is hostile).
    pub fn peer_state(&self) -> SideState {
        layout::side_state(self.peer_state.load(Ordering::Acquire))
    }

    /// The channel's counters: `writes` = messages pushed, `reads` = messages popped,
    /// `rejected` = pushes refused because the ring was full.
    pub fn stats(&self) -> Stats {
        Stats {
            writes: self.tail,
            reads: self.head_w.load(Ordering::Relaxed),
            overruns: 0,
            rejected: self.rejected,
        }
    }

    /// Before sleeping on a full ring (a data path in user space; see [`layout`]): sets this
    /// side's waiter word (`writer_wait`), then, after a `SeqCst` fence that pairs with the
    /// consumer's in [`FifoConsumer::peer_sleeping`], reads `head` once more. Returns the
    /// `head` value to sleep on — the kernel's wait compares the `reader_pos` word
    /// ([`layout::W_READER_POS`]) with it and sleeps only while they are equal, so a pop that
    /// happens in between is never missed — or `None` when there is room now, the consumer
    /// closed, or its counter is impossible: the waiter word is cleared again and the caller
    /// retries the push (which reports `Closed`/`Corrupt`). After the sleep, call
    /// [`end_sleep`](Self::end_sleep).
    ///
    /// Why no wake-up is lost: the consumer stores `head` then fences then reads
    /// `writer_wait`; this side stores `writer_wait` then fences then reads `head`. With both
    /// fences `SeqCst`, at least one side sees the other's store: either this side sees the
    /// new `head` (and does not sleep) or the consumer sees the waiter word (and wakes it).
    pub fn prepare_sleep(&mut self) -> Option<u64> {
        let n = self.geom.slot_count as u64;
        // Full means `head == tail - n`: the value this sleep waits to see change.
        self.wait_w.store(sleep_token(self.tail.wrapping_sub(n)), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let head = self.head_w.load(Ordering::Acquire);
        if self.tail.wrapping_sub(head) == n && self.peer_state() != SideState::Closed {
            return Some(head);
        }
        self.wait_w.store(0, Ordering::Relaxed);
        None
    }

    /// After a sleep that [`prepare_sleep`](Self::prepare_sleep) began: clears the waiter word.
    pub fn end_sleep(&self) {
        self.wait_w.store(0, Ordering::Relaxed);
    }

    /// After a push: whether the consumer said it sleeps for data (its waiter word) and this
    /// side has not woken that sleep yet, so the caller must wake it. The `SeqCst` fence pairs
    /// with [`FifoConsumer::prepare_sleep`]'s.
    ///
    /// The waiter word holds a *sleep token*: the counter value the sleeper waits to see
    /// change, plus one (a consumer sleeping at `head = h` waits for `tail != h`: token
    /// `h + 1`). A token is woken only once this side's counter has moved past it (a token
    /// equal to our own counter plus one is a sleep that our *next* push will end, and waking
    /// it now would be spurious), and then only once: after that move, the kernel's wait for
    /// that value returns at once, and the wake issued now reaches every sleeper already
    /// queued. So a burst of pushes into a ring whose consumer has not run yet costs one wake
    /// system call, not one per push. A peer that writes garbage there only costs itself
    /// missed or spurious wake-ups.
    pub fn peer_sleeping(&mut self) -> bool {
        fence(Ordering::SeqCst);
        wake_due(self.peer_wait_w.load(Ordering::Relaxed), self.tail, &mut self.woken)
    }

    /// This side's counter (`tail`, messages pushed): what a sleeping consumer's
    /// [`FifoConsumer::prepare_sleep`] compared.
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// Marks the producer side closed. Messages already pushed stay poppable; once they are
    /// drained the consumer gets [`Error::Closed`] instead of `Empty`.
    pub fn close(self) {
        self.state.store(layout::STATE_CLOSED, Ordering::Release);
    }
}

/// The consuming side of a FIFO. Exactly one may exist per channel.
#[derive(Debug)]
pub struct FifoConsumer<'a> {
    geom: Geom,
    data: &'a [AtomicU64],
    tail_w: &'a AtomicU64,
    head_w: &'a AtomicU64,
    state: &'a AtomicU64,
    peer_state: &'a AtomicU64,
    rejected_w: &'a AtomicU64,
    /// This side's waiter word (`reader_wait`) and the producer's (`writer_wait`).
    wait_w: &'a AtomicU64,
    peer_wait_w: &'a AtomicU64,
    /// The producer's last sleep token this side woke.
    woken: u64,
    /// Private copy of `head` (only this side writes it).
    head: u64,
    /// Last `tail` seen.
    tail_cache: u64,
}

impl<'a> FifoConsumer<'a> {
    /// Validates the header and attaches as the (single) consumer, marking the consumer side
    /// attached. Re-attaching resumes at the `head` recorded in the region.
    pub fn attach(region: &'a [AtomicU64]) -> Result<Self, Error> {
        let geom = layout::validate_kind(region, Kind::Fifo)?;
        let head = region[layout::W_READER_POS].load(Ordering::Acquire);
        let me = FifoConsumer {
            geom,
            data: &region[layout::HEADER_WORDS..geom.total],
            tail_w: &region[layout::W_WRITER_POS],
            head_w: &region[layout::W_READER_POS],
            state: &region[layout::W_READER_STATE],
            peer_state: &region[layout::W_WRITER_STATE],
            rejected_w: &region[layout::W_REJECTED],
            wait_w: &region[layout::W_READER_WAIT],
            peer_wait_w: &region[layout::W_WRITER_WAIT],
            woken: 0,
            head,
            // Looks empty, so the first pop reads the real `tail`.
            tail_cache: head,
        };
        me.state.store(layout::STATE_ATTACHED, Ordering::Release);
        Ok(me)
    }

    /// Maximum message size in bytes; `try_pop` needs a buffer at least this long.
    pub fn slot_size(&self) -> usize {
        self.geom.slot_size
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.geom.slot_count
    }

    /// Re-reads `tail`; returns the number of messages available, or `Corrupt`.
    fn refresh(&mut self) -> Result<u64, Error> {
        let tail = self.tail_w.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.head);
        if avail > self.geom.slot_count as u64 {
            // Keep the invariant `tail_cache - head <= N` the fast path relies on: forget
            // the impossible value (the cache says "empty", so the next pop re-reads).
            self.tail_cache = self.head;
            return Err(Error::Corrupt);
        }
        self.tail_cache = tail;
        Ok(avail)
    }

    /// Removes the oldest message, copies it to the front of `buf` and returns its length.
    /// Wait-free.
    ///
    /// Errors: [`Error::BufferTooSmall`] unless `buf.len() >= slot_size()` (checked first, so
    /// the outcome never depends on the peer); [`Error::Empty`] if there is no message;
    /// [`Error::Closed`] instead of `Empty` once the producer has closed (no message will
    /// ever come); [`Error::Corrupt`] if the producer's `tail` is impossible. Nothing is
    /// consumed on error.
    pub fn try_pop(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.len() < self.geom.slot_size {
            return Err(Error::BufferTooSmall {
                needed: self.geom.slot_size,
                got: buf.len(),
            });
        }
        debug_assert!(
            self.tail_cache.wrapping_sub(self.head) <= self.geom.slot_count as u64,
            "invariant 2"
        );
        if self.head == self.tail_cache && self.refresh()? == 0 {
            if self.peer_state() != SideState::Closed {
                return Err(Error::Empty);
            }
            // The producer closed after its last push (Release/Acquire on the state word):
            // one more look at `tail` sees every message it pushed.
            if self.refresh()? == 0 {
                return Err(Error::Closed);
            }
        }
        let words = slot_words(self.data, &self.geom, self.head);
        let mut len = 0;
        if let Some((tag, payload)) = words.split_first() {
            // The tag comes from the peer: clamp it, so the copy stays inside slot and buffer.
            len = tag.load(Ordering::Relaxed).min(self.geom.slot_size as u64) as usize;
            layout::load_bytes(payload, &mut buf[..len]);
        }
        self.head = self.head.wrapping_add(1);
        self.head_w.store(self.head, Ordering::Release);
        Ok(len)
    }

    /// Whether a pop would fail right now (re-reads the producer's `tail`; a corrupt `tail`
    /// counts as empty). The kernel blocks the consumer on this.
    pub fn is_empty(&mut self) -> bool {
        !matches!(self.refresh(), Ok(avail) if avail > 0)
    }

    /// Messages available (re-reads `tail`; 0 if the producer's `tail` is impossible).
    pub fn len(&mut self) -> usize {
        self.refresh().unwrap_or(0) as usize
    }

    /// Whether the ring holds `capacity()` messages (re-reads `tail`).
    pub fn is_full(&mut self) -> bool {
        self.len() == self.geom.slot_count
    }

    /// The producer's attach state (it may be garbage if the producer is hostile).
    pub fn peer_state(&self) -> SideState {
        layout::side_state(self.peer_state.load(Ordering::Acquire))
    }

    /// The channel's counters: `writes` = messages pushed, `reads` = messages popped,
    /// `rejected` = pushes refused because the ring was full.
    pub fn stats(&self) -> Stats {
        Stats {
            writes: self.tail_w.load(Ordering::Relaxed),
            reads: self.head,
            overruns: 0,
            rejected: self.rejected_w.load(Ordering::Relaxed),
        }
    }

    /// Before sleeping on an empty ring: sets this side's waiter word (`reader_wait`), then,
    /// after a `SeqCst` fence that pairs with the producer's in
    /// [`FifoProducer::peer_sleeping`], reads `tail` once more. Returns the `tail` value to
    /// sleep on (the kernel's wait compares the `writer_pos` word, [`layout::W_WRITER_POS`],
    /// with it and sleeps only while equal), or `None` when a message is there, the producer
    /// closed, or its counter is impossible: the waiter word is cleared again and the caller
    /// retries the pop. See [`FifoProducer::prepare_sleep`] for why no wake-up is lost.
    pub fn prepare_sleep(&mut self) -> Option<u64> {
        self.wait_w.store(sleep_token(self.head), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let tail = self.tail_w.load(Ordering::Acquire);
        if tail == self.head && self.peer_state() != SideState::Closed {
            return Some(tail);
        }
        self.wait_w.store(0, Ordering::Relaxed);
        None
    }

    /// After a sleep that [`prepare_sleep`](Self::prepare_sleep) began: clears the waiter word.
    pub fn end_sleep(&self) {
        self.wait_w.store(0, Ordering::Relaxed);
    }

    /// After a pop: whether the producer said it sleeps for room and this side has not woken
    /// that sleep yet (see [`FifoProducer::peer_sleeping`]; the producer's token is the `head`
    /// it waits to see change, plus one). The `SeqCst` fence pairs with
    /// [`FifoProducer::prepare_sleep`]'s.
    pub fn peer_sleeping(&mut self) -> bool {
        fence(Ordering::SeqCst);
        wake_due(self.peer_wait_w.load(Ordering::Relaxed), self.head, &mut self.woken)
    }

    /// This side's counter (`head`, messages popped).
    pub fn position(&self) -> u64 {
        self.head
    }

    /// Marks the consumer side closed. Further pushes that find the ring full get
    /// [`Error::Closed`].
    pub fn close(self) {
        self.state.store(layout::STATE_CLOSED, Ordering::Release);
    }
}
