//! Property tests: both channels against simple models, header validation, and a hostile peer
//! simulated by scribbling on the shared region between operations.
#![cfg(not(loom))]

use channels::layout::{HEADER_WORDS, header_check};
use channels::sync::{AtomicU64, Ordering};
use channels::{
    Error, Fifo, FifoConsumer, FifoProducer, FourSlot, FourSlotReader, FourSlotWriter, Kind,
    ReadStatus, probe,
};
use proptest::prelude::*;
use std::collections::VecDeque;

fn region(words: usize) -> Vec<AtomicU64> {
    (0..words).map(|_| AtomicU64::new(0)).collect()
}

fn msg(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add(i as u8).wrapping_mul(31))
        .collect()
}

#[derive(Debug, Clone)]
enum FifoOp {
    Push { len: usize, seed: u8 },
    Pop { short_buf: bool },
    ReattachProducer,
    ReattachConsumer,
    /// The producer (`true`) or consumer prepares to sleep, then ends the sleep (the user-level
    /// data path's waiter words).
    Sleep { producer: bool },
}

fn fifo_op() -> impl Strategy<Value = FifoOp> {
    prop_oneof![
        5 => (0usize..40, any::<u8>()).prop_map(|(len, seed)| FifoOp::Push { len, seed }),
        5 => prop::bool::weighted(0.1).prop_map(|short_buf| FifoOp::Pop { short_buf }),
        1 => Just(FifoOp::ReattachProducer),
        1 => Just(FifoOp::ReattachConsumer),
        2 => any::<bool>().prop_map(|producer| FifoOp::Sleep { producer }),
    ]
}

#[derive(Debug, Clone)]
enum FourOp {
    Write { value: u8, bad_len: bool },
    Read,
    ReattachWriter,
    ReattachReader,
}

fn four_op() -> impl Strategy<Value = FourOp> {
    prop_oneof![
        4 => (any::<u8>(), prop::bool::weighted(0.1))
            .prop_map(|(value, bad_len)| FourOp::Write { value, bad_len }),
        4 => Just(FourOp::Read),
        1 => Just(FourOp::ReattachWriter),
        1 => Just(FourOp::ReattachReader),
    ]
}

/// A write of `value` anywhere in the region (biased towards the header and control words,
/// where the interesting damage is), as a hostile peer could do at any moment.
fn scribble() -> impl Strategy<Value = (usize, u64)> {
    let idx = prop_oneof![3 => 0usize..HEADER_WORDS, 1 => 0usize..400];
    let val = prop_oneof![
        2 => 0u64..8,
        1 => any::<u64>(),
        1 => (0u64..8).prop_map(|d| u64::MAX - d),
        1 => (0u64..64).prop_map(|d| 1u64 << d),
    ];
    (idx, val)
}

fn apply(r: &[AtomicU64], (idx, val): (usize, u64)) {
    if let Some(w) = r.get(idx) {
        w.store(val, Ordering::Relaxed);
    }
}

proptest! {

    /// Single-threaded FIFO against a VecDeque: every result, length and counter agrees,
    /// including across re-attaching either side.
    #[test]
    fn fifo_matches_vecdeque(
        slot_size in 1usize..33,
        slots in 1usize..9,
        ops in prop::collection::vec(fifo_op(), 0..80),
    ) {
        let r = region(Fifo::region_words(slot_size, slots).unwrap());
        Fifo::format(&r, slot_size, slots).unwrap();
        let mut tx = FifoProducer::attach(&r).unwrap();
        let mut rx = FifoConsumer::attach(&r).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let (mut pushed, mut popped, mut rejected) = (0u64, 0u64, 0u64);
        for op in ops {
            match op {
                FifoOp::Push { len, seed } => {
                    let m = msg(len, seed);
                    let got = tx.try_push(&m);
                    if len > slot_size {
                        prop_assert_eq!(got, Err(Error::TooLong { max: slot_size, got: len }));
                    } else if model.len() == slots {
                        prop_assert_eq!(got, Err(Error::Full));
                        rejected += 1;
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        model.push_back(m);
                        pushed += 1;
                    }
                }
                FifoOp::Pop { short_buf } => {
                    let mut buf = vec![0xa5u8; if short_buf { slot_size - 1 } else { slot_size + 3 }];
                    let got = rx.try_pop(&mut buf);
                    if short_buf {
                        prop_assert_eq!(
                            got,
                            Err(Error::BufferTooSmall { needed: slot_size, got: slot_size - 1 })
                        );
                    } else {
                        match model.pop_front() {
                            None => prop_assert_eq!(got, Err(Error::Empty)),
                            Some(m) => {
                                prop_assert_eq!(got, Ok(m.len()));
                                prop_assert_eq!(&buf[..m.len()], &m[..]);
                                prop_assert!(buf[m.len()..].iter().all(|&b| b == 0xa5));
                                popped += 1;
                            }
                        }
                    }
                }
                FifoOp::ReattachProducer => tx = FifoProducer::attach(&r).unwrap(),
                FifoOp::ReattachConsumer => rx = FifoConsumer::attach(&r).unwrap(),
                FifoOp::Sleep { producer: true } => {
                    // Sleeps exactly when full, on the consumer's counter; the consumer sees
                    // the waiter word until the sleep ends.
                    let v = tx.prepare_sleep();
                    prop_assert_eq!(v, (model.len() == slots).then_some(popped));
                    // The token is the sleeper's counter plus one; the peer wakes it once.
                    let token = r[channels::layout::W_WRITER_WAIT].load(Ordering::Relaxed);
                    prop_assert_eq!(token, if v.is_some() { popped + 1 } else { 0 });
                    // The consumer has not moved since: the sleep is not due for a wake.
                    prop_assert!(!rx.peer_sleeping());
                    prop_assert!(!rx.peer_sleeping(), "a token is woken once");
                    tx.end_sleep();
                    prop_assert!(!rx.peer_sleeping());
                }
                FifoOp::Sleep { producer: false } => {
                    let v = rx.prepare_sleep();
                    prop_assert_eq!(v, model.is_empty().then_some(pushed));
                    let token = r[channels::layout::W_READER_WAIT].load(Ordering::Relaxed);
                    prop_assert_eq!(token, if v.is_some() { pushed + 1 } else { 0 });
                    prop_assert!(!tx.peer_sleeping());
                    prop_assert!(!tx.peer_sleeping(), "a token is woken once");
                    rx.end_sleep();
                    prop_assert!(!tx.peer_sleeping());
                }
            }
            prop_assert_eq!(rx.len(), model.len());
            prop_assert_eq!(tx.len(), model.len());
            prop_assert_eq!(rx.is_empty(), model.is_empty());
            prop_assert_eq!(tx.is_full(), model.len() == slots);
            let s = rx.stats();
            prop_assert_eq!((s.writes, s.reads, s.rejected), (pushed, popped, rejected));
            prop_assert_eq!(tx.stats(), s);
        }
    }

    /// Single-threaded four-slot against its sequential specification: a read returns the
    /// last value written; Fresh iff something was written since this reader last read,
    /// Stale otherwise, Empty if nothing was ever written.
    #[test]
    fn four_slot_sequential_model(
        slot_size in 1usize..40,
        ops in prop::collection::vec(four_op(), 0..80),
    ) {
        let r = region(FourSlot::region_words(slot_size).unwrap());
        FourSlot::format(&r, slot_size).unwrap();
        let mut tx = FourSlotWriter::attach(&r).unwrap();
        let mut rx = FourSlotReader::attach(&r).unwrap();
        let mut last_written: Option<Vec<u8>> = None;
        let mut unread = false; // written since the reader's last read (or attach)
        let (mut writes, mut reads, mut overruns, mut unread_count) = (0u64, 0u64, 0u64, 0u64);
        for op in ops {
            match op {
                FourOp::Write { value, bad_len } => {
                    let len = if bad_len { slot_size + 1 } else { slot_size };
                    let v = msg(len, value);
                    let got = tx.write(&v);
                    if bad_len {
                        prop_assert_eq!(got, Err(Error::WrongLength { expected: slot_size, got: len }));
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        last_written = Some(v);
                        unread = true;
                        writes += 1;
                        unread_count += 1;
                    }
                }
                FourOp::Read => {
                    let mut buf = vec![0x5au8; slot_size];
                    let got = rx.read(&mut buf).unwrap();
                    match &last_written {
                        None => {
                            prop_assert_eq!(got, ReadStatus::Empty);
                            prop_assert!(buf.iter().all(|&b| b == 0x5a));
                        }
                        Some(v) => {
                            prop_assert_eq!(got, if unread { ReadStatus::Fresh } else { ReadStatus::Stale });
                            prop_assert_eq!(&buf, v);
                            if unread_count > 0 {
                                overruns += unread_count - 1;
                            }
                            reads += 1;
                            unread = false;
                            unread_count = 0;
                        }
                    }
                }
                FourOp::ReattachWriter => tx = FourSlotWriter::attach(&r).unwrap(),
                FourOp::ReattachReader => {
                    rx = FourSlotReader::attach(&r).unwrap();
                    unread = last_written.is_some();
                    unread_count = 0;
                }
            }
            prop_assert_eq!(rx.has_new(), unread);
            let s = rx.stats();
            prop_assert_eq!((s.writes, s.reads, s.overruns), (writes, reads, overruns));
            prop_assert_eq!(tx.stats(), s);
        }
    }

    /// Changing any single validated header word to any other value makes every attach fail
    /// (with an error, never a panic).
    #[test]
    fn corrupted_header_word_is_rejected(
        fifo in any::<bool>(),
        word in 0usize..4,
        xor in 1u64..=u64::MAX,
        slot_size in 1usize..100,
    ) {
        let r = if fifo {
            let r = region(Fifo::region_words(slot_size, 3).unwrap());
            Fifo::format(&r, slot_size, 3).unwrap();
            r
        } else {
            let r = region(FourSlot::region_words(slot_size).unwrap());
            FourSlot::format(&r, slot_size).unwrap();
            r
        };
        prop_assert!(probe(&r).is_ok());
        r[word].fetch_xor(xor, Ordering::Relaxed);
        prop_assert!(probe(&r).is_err());
        prop_assert!(FifoProducer::attach(&r).is_err());
        prop_assert!(FifoConsumer::attach(&r).is_err());
        prop_assert!(FourSlotWriter::attach(&r).is_err());
        prop_assert!(FourSlotReader::attach(&r).is_err());
    }

    /// Arbitrary region contents and lengths (optionally with a forged, self-consistent
    /// header): attach either fails or yields handles whose every operation stays in bounds
    /// and returns a sane result.
    #[test]
    fn arbitrary_region_never_panics(
        len in 0usize..300,
        fifo in any::<bool>(),
        slot_size in 1usize..64,
        slots in 1usize..8,
        writes in prop::collection::vec(scribble(), 0..12),
        forge in prop::option::of((any::<u32>(), 0u32..4, 0u32..200, 0u32..10)),
    ) {
        let r = region(len);
        let _ = if fifo { Fifo::format(&r, slot_size, slots) } else { FourSlot::format(&r, slot_size) };
        for w in writes {
            apply(&r, w);
        }
        if let (Some((version, kind, size, count)), true) = (forge, len >= HEADER_WORDS) {
            let vk = u64::from(version % 3) | (u64::from(kind) << 32);
            let g = u64::from(size) | (u64::from(count) << 32);
            r[0].store(channels::layout::MAGIC, Ordering::Relaxed);
            r[1].store(vk, Ordering::Relaxed);
            r[2].store(g, Ordering::Relaxed);
            r[3].store(header_check(channels::layout::MAGIC, vk, g), Ordering::Relaxed);
        }
        exercise_everything(&r)?;
    }

    /// The FIFO with a hostile peer scribbling on the region between operations: never a
    /// panic, and results stay within the private geometry.
    #[test]
    fn fifo_survives_scribbling(
        slot_size in 1usize..24,
        slots in 1usize..6,
        steps in prop::collection::vec((fifo_op(), prop::option::weighted(0.4, scribble())), 0..60),
    ) {
        let r = region(Fifo::region_words(slot_size, slots).unwrap());
        Fifo::format(&r, slot_size, slots).unwrap();
        let mut tx = FifoProducer::attach(&r).unwrap();
        let mut rx = FifoConsumer::attach(&r).unwrap();
        for (op, hit) in steps {
            if let Some(hit) = hit {
                apply(&r, hit);
            }
            match op {
                FifoOp::Push { len, seed } => {
                    let got = tx.try_push(&msg(len.min(slot_size), seed));
                    prop_assert!(matches!(got, Ok(()) | Err(Error::Full | Error::Closed | Error::Corrupt)), "{:?}", got);
                }
                FifoOp::Pop { .. } => {
                    let mut buf = vec![0u8; slot_size];
                    match rx.try_pop(&mut buf) {
                        Ok(n) => prop_assert!(n <= slot_size),
                        Err(e) => prop_assert!(matches!(e, Error::Empty | Error::Closed | Error::Corrupt), "{:?}", e),
                    }
                }
                // Re-attach may fail now that the header may be damaged; keep the old
                // handles then (they never re-read the header).
                FifoOp::ReattachProducer => if let Ok(t) = FifoProducer::attach(&r) { tx = t },
                FifoOp::ReattachConsumer => if let Ok(c) = FifoConsumer::attach(&r) { rx = c },
                // Whatever the region holds: no panic, and a sleep value is the peer counter.
                FifoOp::Sleep { producer: true } => {
                    let _ = tx.prepare_sleep();
                    tx.end_sleep();
                    let _ = rx.peer_sleeping();
                }
                FifoOp::Sleep { producer: false } => {
                    let _ = rx.prepare_sleep();
                    rx.end_sleep();
                    let _ = tx.peer_sleeping();
                }
            }
            prop_assert!(tx.len() <= slots);
            prop_assert!(rx.len() <= slots);
            let _ = (tx.is_full(), rx.is_empty(), tx.peer_state(), rx.peer_state(), tx.stats(), rx.stats());
        }
    }

    /// The four-slot with a hostile peer scribbling between operations: never a panic; a
    /// read fills the buffer or leaves it alone, and never errors for a correct length.
    #[test]
    fn four_slot_survives_scribbling(
        slot_size in 1usize..40,
        steps in prop::collection::vec((four_op(), prop::option::weighted(0.4, scribble())), 0..60),
    ) {
        let r = region(FourSlot::region_words(slot_size).unwrap());
        FourSlot::format(&r, slot_size).unwrap();
        let mut tx = FourSlotWriter::attach(&r).unwrap();
        let mut rx = FourSlotReader::attach(&r).unwrap();
        for (op, hit) in steps {
            if let Some(hit) = hit {
                apply(&r, hit);
            }
            match op {
                FourOp::Write { value, .. } => prop_assert_eq!(tx.write(&msg(slot_size, value)), Ok(())),
                FourOp::Read => {
                    let mut buf = vec![0u8; slot_size];
                    prop_assert!(rx.read(&mut buf).is_ok());
                }
                FourOp::ReattachWriter => if let Ok(t) = FourSlotWriter::attach(&r) { tx = t },
                FourOp::ReattachReader => if let Ok(t) = FourSlotReader::attach(&r) { rx = t },
            }
            let _ = (rx.has_new(), rx.last_seq(), tx.peer_state(), rx.peer_state(), tx.stats(), rx.stats());
        }
    }

    /// `region_words` is exactly what format and attach need.
    #[test]
    fn region_words_is_exact(slot_size in 1usize..5000, slots in 1usize..70) {
        let words = Fifo::region_words(slot_size, slots).unwrap();
        prop_assert_eq!(Fifo::region_bytes(slot_size, slots).unwrap(), words * 8);
        let r = region(words);
        let short = Fifo::format(&r[..words - 1], slot_size, slots);
        prop_assert_eq!(short, Err(Error::RegionTooSmall { needed: words, got: words - 1 }));
        Fifo::format(&r, slot_size, slots).unwrap();
        let g = probe(&r).unwrap();
        prop_assert_eq!((g.kind, g.slot_size, g.slot_count, g.region_words), (Kind::Fifo, slot_size, slots, words));
        prop_assert_eq!(
            FifoConsumer::attach(&r[..words - 1]).err(),
            Some(Error::RegionTooSmall { needed: words, got: words - 1 })
        );

        let words = FourSlot::region_words(slot_size).unwrap();
        let r = region(words);
        prop_assert!(FourSlot::format(&r[..words - 1], slot_size).is_err());
        FourSlot::format(&r, slot_size).unwrap();
        prop_assert!(FourSlotReader::attach(&r).is_ok());
        prop_assert!(FourSlotReader::attach(&r[..words - 1]).is_err());
    }
}

/// Attaches every kind of handle that will attach and runs every operation once.
fn exercise_everything(r: &[AtomicU64]) -> Result<(), TestCaseError> {
    let geometry = probe(r);
    if let Ok(mut tx) = FifoProducer::attach(r) {
        prop_assert_eq!(geometry.map(|g| g.kind), Ok(Kind::Fifo));
        let m = vec![7u8; tx.slot_size()];
        let got = tx.try_push(&m);
        prop_assert!(matches!(
            got,
            Ok(()) | Err(Error::Full | Error::Closed | Error::Corrupt)
        ));
        prop_assert!(tx.len() <= tx.capacity());
        let _ = (tx.is_full(), tx.is_empty(), tx.stats(), tx.peer_state());
    }
    if let Ok(mut rx) = FifoConsumer::attach(r) {
        let mut buf = vec![0u8; rx.slot_size()];
        for _ in 0..3 {
            match rx.try_pop(&mut buf) {
                Ok(n) => prop_assert!(n <= rx.slot_size()),
                Err(e) => prop_assert!(matches!(e, Error::Empty | Error::Closed | Error::Corrupt)),
            }
        }
        prop_assert!(rx.len() <= rx.capacity());
        let _ = (rx.is_full(), rx.is_empty(), rx.stats(), rx.peer_state());
    }
    if let Ok(mut tx) = FourSlotWriter::attach(r) {
        prop_assert_eq!(geometry.map(|g| g.kind), Ok(Kind::FourSlot));
        let m = vec![7u8; tx.slot_size()];
        prop_assert_eq!(tx.write(&m), Ok(()));
        let _ = (tx.stats(), tx.peer_state());
    }
    if let Ok(mut rx) = FourSlotReader::attach(r) {
        let mut buf = vec![0u8; rx.slot_size()];
        prop_assert!(rx.read(&mut buf).is_ok());
        let _ = (rx.stats(), rx.peer_state(), rx.has_new());
    }
    Ok(())
}
