//! Exhaustive interleaving checks with loom (small configurations).
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p channels --test loom --release
//! ```
//!
//! (A separate target directory keeps the loom build from invalidating the normal one.)
//! Loom explores every interleaving of the threads' atomic operations, and the weak-memory
//! outcomes it models (stale loads allowed by Acquire/Release/Relaxed; SeqCst fences are
//! modelled exactly). Each slot payload is at least two words so that a torn copy is
//! observable as a mix of two writes.
#![cfg(loom)]

use channels::sync::AtomicU64;
use channels::{
    Error, Fifo, FifoConsumer, FifoProducer, FourSlot, FourSlotReader, FourSlotWriter, ReadStatus,
};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

fn region(words: usize) -> Arc<Vec<AtomicU64>> {
    Arc::new((0..words).map(|_| AtomicU64::new(0)).collect())
}

/// Checks a four-slot value is exactly `[k; SIZE]` for one `k`, matching the sequence number
/// the reader reported (the writer writes `[k; SIZE]` as its `k`-th write), and returns `k`.
fn untorn(buf: &[u8], seq: u64) -> u64 {
    let k = buf[0];
    assert!(buf.iter().all(|&b| b == k), "torn read: {buf:?}");
    assert_eq!(
        u64::from(k),
        seq,
        "payload does not belong to its sequence number"
    );
    u64::from(k)
}

const SIZE: usize = 16; // two payload words

/// Writer: `writes` values, publishing in `done` how many have completed. Reader: `reads`
/// reads concurrently, then one after joining the writer. Checks: no torn value; freshness
/// (a read returns at least the last write completed before it began: a write whose `done`
/// store the reader saw, or every write after the join); values never go backwards; the
/// status agrees with the values.
fn four_slot_model(writes: u8, reads: usize) {
    let r = region(FourSlot::region_words(SIZE).unwrap());
    FourSlot::format(&r, SIZE).unwrap();
    let done = Arc::new(AtomicUsize::new(0));

    let (r2, done2) = (r.clone(), done.clone());
    let writer = thread::spawn(move || {
        let mut tx = FourSlotWriter::attach(&r2).unwrap();
        for k in 1..=writes {
            tx.write(&[k; SIZE]).unwrap();
            done2.store(usize::from(k), Ordering::Release);
        }
    });

    let mut rx = FourSlotReader::attach(&r).unwrap();
    let mut last = 0u64;
    let mut check = |rx: &mut FourSlotReader<'_>, completed: u64| {
        let mut buf = [0u8; SIZE];
        let status = rx.read(&mut buf).unwrap();
        let got = match status {
            ReadStatus::Empty => 0,
            _ => untorn(&buf, rx.last_seq()),
        };
        assert!(
            got >= completed,
            "stale: read {got} after write {completed} completed"
        );
        assert!(got >= last, "went backwards: {last} then {got}");
        match status {
            ReadStatus::Empty => assert_eq!(got, 0),
            ReadStatus::Stale => assert!(got == last && got != 0),
            ReadStatus::Fresh => assert!(got > last),
        }
        last = got;
    };
    for _ in 0..reads {
        let completed = done.load(Ordering::Acquire) as u64;
        check(&mut rx, completed);
    }
    writer.join().unwrap();
    check(&mut rx, u64::from(writes));
}

#[test]
fn four_slot_two_writes_two_reads() {
    loom::model(|| four_slot_model(2, 2));
}

/// Three writes against one read: long enough for the writer to come back to the pair the
/// reader is in (the store-buffering scenario the SeqCst fences exclude).
#[test]
fn four_slot_three_writes_one_read() {
    loom::model(|| four_slot_model(3, 1));
}

/// More writes than slots in a pair, and a read on each side of the writer's turn-around.
#[test]
fn four_slot_three_writes_two_reads() {
    loom::model(|| four_slot_model(3, 2));
}

/// The writer laps the reader twice during a single read.
#[test]
fn four_slot_four_writes_one_read() {
    loom::model(|| four_slot_model(4, 1));
}

/// Message `k` of the FIFO models: `k` bytes of value `k`, so the length word and the
/// payload word must both belong to the same push.
const FIFO_SIZE: usize = 8;

/// Producer pushes messages `1..=n` into a ring of `slots` slots, retrying while full, then
/// closes; the consumer pops until `Closed`. Checks FIFO order, exactly-once delivery, no
/// torn message, and that closing never hides a message.
fn fifo_model(slots: usize, n: u8) {
    let r = region(Fifo::region_words(FIFO_SIZE, slots).unwrap());
    Fifo::format(&r, FIFO_SIZE, slots).unwrap();

    let r2 = r.clone();
    let producer = thread::spawn(move || {
        let mut tx = FifoProducer::attach(&r2).unwrap();
        for k in 1..=n {
            let msg = [k; FIFO_SIZE];
            loop {
                match tx.try_push(&msg[..usize::from(k)]) {
                    Ok(()) => break,
                    Err(Error::Full) => thread::yield_now(),
                    Err(e) => panic!("push: {e:?}"),
                }
            }
        }
        tx.close();
    });

    let mut rx = FifoConsumer::attach(&r).unwrap();
    let mut next = 1u8;
    let mut buf = [0u8; FIFO_SIZE];
    loop {
        match rx.try_pop(&mut buf) {
            Ok(len) => {
                assert_eq!(len, usize::from(next), "out of order or torn (length)");
                assert!(buf[..len].iter().all(|&b| b == next), "torn: {buf:?}");
                next += 1;
            }
            Err(Error::Empty) => thread::yield_now(),
            Err(Error::Closed) => break,
            Err(e) => panic!("pop: {e:?}"),
        }
    }
    assert_eq!(next, n + 1, "lost messages");
    producer.join().unwrap();
}

/// Slot reuse (message 3 goes where message 1 was) and the full path.
#[test]
fn fifo_two_slots_three_messages() {
    loom::model(|| fifo_model(2, 3));
}

/// Capacity one: every push after the first waits for a pop.
#[test]
fn fifo_one_slot_two_messages() {
    loom::model(|| fifo_model(1, 2));
}

/// The kernel's futex-like wait on a channel word, modelled: `wait` gives up at once unless
/// `word` still holds `expected` when checked under the kernel's lock, else it sleeps until a
/// `wake` (which takes the same lock) bumps the generation. A lost wake-up leaves a side
/// spinning forever, which loom reports (its spin-loop and deadlock detection).
struct Kernel {
    generation: loom::sync::Mutex<u64>,
}

impl Kernel {
    fn wait(&self, word: &AtomicU64, expected: u64) {
        let start = {
            let g = self.generation.lock().unwrap();
            if word.load(Ordering::SeqCst) != expected {
                return;
            }
            *g
        };
        while *self.generation.lock().unwrap() == start {
            thread::yield_now();
        }
    }
    fn wake(&self) {
        *self.generation.lock().unwrap() += 1;
    }
}

/// The user-level data path (user/libquest/c/shmcomm_sys.c): each side runs the FIFO in the
/// shared region and enters the "kernel" only to sleep (`prepare_sleep`, then a wait on the
/// peer's counter word) or to wake a peer whose waiter word is set (`peer_sleeping`). Checks:
/// no lost wake-up (loom reports a deadlock if both sides could sleep forever), every
/// message arrives once, in order.
fn fifo_sleep_model(slots: usize, n: u8) {
    let r = region(Fifo::region_words(FIFO_SIZE, slots).unwrap());
    Fifo::format(&r, FIFO_SIZE, slots).unwrap();
    let k = Arc::new(Kernel { generation: loom::sync::Mutex::new(0) });
    let (r2, k2) = (r.clone(), k.clone());
    let producer = thread::spawn(move || {
        let mut tx = FifoProducer::attach(&r2).unwrap();
        for m in 1..=n {
            loop {
                match tx.try_push(&[m; FIFO_SIZE][..usize::from(m)]) {
                    Ok(()) => break,
                    Err(Error::Full) => {
                        if let Some(head) = tx.prepare_sleep() {
                            k2.wait(&r2[channels::layout::W_READER_POS], head);
                            tx.end_sleep();
                        }
                    }
                    Err(e) => panic!("push: {e:?}"),
                }
            }
            if tx.peer_sleeping() {
                k2.wake();
            }
        }
    });
    let mut rx = FifoConsumer::attach(&r).unwrap();
    let mut buf = [0u8; FIFO_SIZE];
    for m in 1..=n {
        loop {
            match rx.try_pop(&mut buf) {
                Ok(len) => {
                    assert_eq!(len, usize::from(m), "out of order or torn (length)");
                    assert!(buf[..len].iter().all(|&b| b == m), "torn: {buf:?}");
                    break;
                }
                Err(Error::Empty) => {
                    if let Some(tail) = rx.prepare_sleep() {
                        k.wait(&r[channels::layout::W_WRITER_POS], tail);
                        rx.end_sleep();
                    }
                }
                Err(e) => panic!("pop: {e:?}"),
            }
        }
        if rx.peer_sleeping() {
            k.wake();
        }
    }
    producer.join().unwrap();
}

/// Loom with a preemption bound: the sleep/wake models are larger than the others (two
/// locks and spin-waits), and every lost-wake-up interleaving needs only a couple of
/// preemptions (between a side's check and its sleep, and between the peer's store and its
/// look at the waiter word).
fn bounded(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.max_branches = 100_000;
    b.check(f);
}

/// Capacity one, two messages: the consumer sleeps for data and the producer for room.
#[test]
fn fifo_sleep_wake_one_slot_two_messages() {
    bounded(|| fifo_sleep_model(1, 2));
}

/// Capacity two, three messages: slot reuse while a side sleeps, and bursts of pushes whose
/// wake-ups the token dedupes.
#[test]
fn fifo_sleep_wake_two_slots_three_messages() {
    bounded(|| fifo_sleep_model(2, 3));
}
