//! Multi-threaded stress tests on real hardware threads: no torn four-slot value, values
//! never go backwards, FIFO order and content intact; and a third, hostile thread scribbling
//! on the region concurrently never makes either side panic.
#![cfg(not(loom))]

use channels::sync::{AtomicU64, Ordering};
use channels::{
    Error, Fifo, FifoConsumer, FifoProducer, FourSlot, FourSlotReader, FourSlotWriter, ReadStatus,
};
use std::sync::atomic::AtomicBool;
use std::thread;

fn region(words: usize) -> Vec<AtomicU64> {
    (0..words).map(|_| AtomicU64::new(0)).collect()
}

const OPS: u64 = 200_000;

/// Backs off politely: the test machine may have fewer cores than threads.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

#[test]
fn four_slot_no_torn_reads_and_monotonic() {
    const SIZE: usize = 64;
    let r = region(FourSlot::region_words(SIZE).unwrap());
    FourSlot::format(&r, SIZE).unwrap();
    let done = AtomicBool::new(false);
    // The reader attaches before the writer thread exists: a writer that got ahead of the
    // attach made those writes history (not overruns), which failed the count below on a
    // loaded machine.
    let mut rx = FourSlotReader::attach(&r).unwrap();
    let (fresh, reads) = thread::scope(|s| {
        s.spawn(|| {
            let mut tx = FourSlotWriter::attach(&r).unwrap();
            let mut v = [0u8; SIZE];
            for k in 1..=OPS {
                for c in v.chunks_mut(8) {
                    c.copy_from_slice(&k.to_le_bytes());
                }
                tx.write(&v).unwrap();
            }
            done.store(true, Ordering::Release);
        });
        let mut buf = [0u8; SIZE];
        let (mut last, mut fresh, mut reads, mut first) = (0u64, 0u64, 0u64, 0u64);
        loop {
            let finished = done.load(Ordering::Acquire);
            let status = rx.read(&mut buf).unwrap();
            reads += 1;
            if status != ReadStatus::Empty {
                let k = u64::from_le_bytes(buf[..8].try_into().unwrap());
                assert!(
                    buf.chunks(8).all(|c| c == k.to_le_bytes()),
                    "torn read at {k}: {buf:?}"
                );
                assert_eq!(k, rx.last_seq());
                assert!(k >= last, "went backwards: {last} then {k}");
                assert_eq!(status == ReadStatus::Stale, k == last);
                fresh += u64::from(status == ReadStatus::Fresh);
                if first == 0 {
                    first = k;
                }
                last = k;
            }
            if finished {
                assert_eq!(
                    last, OPS,
                    "the last read after the writer finished is the last write"
                );
                let s = rx.stats();
                assert_eq!(s.writes, OPS);
                // The reader attached before any write, so every write it did not return
                // counts, except those before its first non-empty read... which it also
                // did not see: all `OPS - fresh` of them.
                assert_eq!(s.overruns, OPS - fresh, "first value seen: {first}");
                break;
            }
            if reads % 64 == 0 {
                thread::yield_now();
            }
        }
        (fresh, reads)
    });
    assert!(fresh >= 1 && reads >= fresh);
}

#[test]
fn fifo_order_and_content_under_contention() {
    const SIZE: usize = 24;
    const SLOTS: usize = 16;
    let r = region(Fifo::region_words(SIZE, SLOTS).unwrap());
    Fifo::format(&r, SIZE, SLOTS).unwrap();
    let message = |k: u64, buf: &mut [u8; SIZE]| -> usize {
        let len = (k % (SIZE as u64 + 1)) as usize;
        for (i, b) in buf[..len].iter_mut().enumerate() {
            *b = (k as u8).wrapping_add(i as u8 * 7);
        }
        len
    };
    thread::scope(|s| {
        s.spawn(|| {
            let mut tx = FifoProducer::attach(&r).unwrap();
            let mut m = [0u8; SIZE];
            for k in 0..OPS {
                let len = message(k, &mut m);
                let mut spins = 0;
                loop {
                    match tx.try_push(&m[..len]) {
                        Ok(()) => break,
                        Err(Error::Full) => backoff(&mut spins),
                        Err(e) => panic!("push {k}: {e}"),
                    }
                }
            }
            tx.close();
        });
        let mut rx = FifoConsumer::attach(&r).unwrap();
        let (mut buf, mut want) = ([0u8; SIZE], [0u8; SIZE]);
        let mut k = 0u64;
        let mut spins = 0;
        loop {
            match rx.try_pop(&mut buf) {
                Ok(len) => {
                    let want_len = message(k, &mut want);
                    assert_eq!(len, want_len, "message {k}: wrong length (order?)");
                    assert_eq!(buf[..len], want[..len], "message {k}: wrong bytes");
                    k += 1;
                    spins = 0;
                }
                Err(Error::Empty) => backoff(&mut spins),
                Err(Error::Closed) => break,
                Err(e) => panic!("pop {k}: {e}"),
            }
        }
        assert_eq!(k, OPS);
        assert_eq!(rx.stats().reads, OPS);
    });
}

/// A xorshift generator, so the hostile thread needs no dependency.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn concurrent_scribbler_cannot_crash_either_side() {
    const N: usize = 20_000;
    let four = region(FourSlot::region_words(40).unwrap());
    FourSlot::format(&four, 40).unwrap();
    let fifo = region(Fifo::region_words(40, 4).unwrap());
    Fifo::format(&fifo, 40, 4).unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        // The hostile peer: random values into random words, mostly control words.
        s.spawn(|| {
            let mut x = 0x1234_5678_9abc_def1u64;
            while !stop.load(Ordering::Relaxed) {
                let r = if xorshift(&mut x) & 1 == 0 {
                    &four
                } else {
                    &fifo
                };
                let idx =
                    (xorshift(&mut x) % if x & 8 == 0 { 24 } else { r.len() as u64 }) as usize;
                let val = match xorshift(&mut x) % 4 {
                    0 => x % 4,
                    1 => u64::MAX - x % 4,
                    _ => xorshift(&mut x),
                };
                r[idx].store(val, Ordering::Relaxed);
                thread::yield_now();
            }
        });
        let mut tx = FourSlotWriter::attach(&four).unwrap();
        let mut rx = FourSlotReader::attach(&four).unwrap();
        let mut p = FifoProducer::attach(&fifo).unwrap();
        let mut c = FifoConsumer::attach(&fifo).unwrap();
        let mut buf = [0u8; 40];
        for k in 0..N {
            tx.write(&[k as u8; 40]).unwrap();
            rx.read(&mut buf).unwrap();
            match p.try_push(&buf[..k % 41]) {
                Ok(()) | Err(Error::Full | Error::Closed | Error::Corrupt) => {}
                Err(e) => panic!("push: {e}"),
            }
            match c.try_pop(&mut buf) {
                Ok(n) => assert!(n <= 40),
                Err(Error::Empty | Error::Closed | Error::Corrupt) => {}
                Err(e) => panic!("pop: {e}"),
            }
            assert!(p.len() <= 4 && c.len() <= 4);
        }
        stop.store(true, Ordering::Relaxed);
    });
}
