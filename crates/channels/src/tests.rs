//! Unit tests: layout, validation, and the single-threaded behaviour of both channels.

extern crate std;

use super::*;
use crate::layout::*;
use crate::sync::Ordering;
use std::vec::Vec;

fn region(words: usize) -> Vec<AtomicU64> {
    (0..words).map(|_| AtomicU64::new(0)).collect()
}

fn four_slot(slot_size: usize) -> Vec<AtomicU64> {
    let r = region(FourSlot::region_words(slot_size).unwrap());
    FourSlot::format(&r, slot_size).unwrap();
    r
}

fn fifo(slot_size: usize, slots: usize) -> Vec<AtomicU64> {
    let r = region(Fifo::region_words(slot_size, slots).unwrap());
    Fifo::format(&r, slot_size, slots).unwrap();
    r
}

fn bytes_of(r: &[AtomicU64]) -> Vec<u8> {
    r.iter()
        .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
        .collect()
}

#[test]
fn region_sizes() {
    assert_eq!(FourSlot::region_words(1), Ok(24 + 4 * 2));
    assert_eq!(FourSlot::region_words(8), Ok(24 + 4 * 2));
    assert_eq!(FourSlot::region_words(9), Ok(24 + 4 * 3));
    assert_eq!(FourSlot::region_bytes(4096), Ok((24 + 4 * 513) * 8));
    assert_eq!(Fifo::region_words(64, 16), Ok(24 + 16 * 9));
    assert_eq!(Fifo::region_bytes(1, 1), Ok(26 * 8));
    assert_eq!(FourSlot::region_words(0), Err(Error::BadGeometry));
    assert_eq!(
        FourSlot::region_words(MAX_SLOT_SIZE + 1),
        Err(Error::BadGeometry)
    );
    assert_eq!(Fifo::region_words(8, 0), Err(Error::BadGeometry));
    assert_eq!(
        Fifo::region_words(8, MAX_FIFO_SLOTS + 1),
        Err(Error::BadGeometry)
    );
    assert!(Fifo::region_words(MAX_SLOT_SIZE, MAX_FIFO_SLOTS).is_ok());
    assert_eq!(
        Fifo::region_words(usize::MAX, usize::MAX),
        Err(Error::BadGeometry)
    );
}

#[test]
fn region_size_is_usable_in_const_context() {
    const WORDS: usize = match FourSlot::region_words(4) {
        Ok(w) => w,
        Err(_) => 0,
    };
    let r = region(WORDS);
    assert_eq!(FourSlot::format(&r, 4), Ok(()));
}

#[test]
fn header_bytes_match_repr_c_struct() {
    let r = fifo(20, 3);
    let b = bytes_of(&r);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(&b[0..8], b"QUESTCHN");
    assert_eq!(u64_at(core::mem::offset_of!(Header, magic)), MAGIC);
    assert_eq!(u32_at(core::mem::offset_of!(Header, version)), VERSION);
    assert_eq!(
        u32_at(core::mem::offset_of!(Header, kind)),
        Kind::Fifo as u32
    );
    assert_eq!(u32_at(core::mem::offset_of!(Header, slot_size)), 20);
    assert_eq!(u32_at(core::mem::offset_of!(Header, slot_count)), 3);
    let check = header_check(u64_at(0), u64_at(8), u64_at(16));
    assert_eq!(u64_at(core::mem::offset_of!(Header, check)), check);
    // Everything else is zero after format.
    assert!(b[32..].iter().all(|&x| x == 0));
    assert_eq!(b.len(), HEADER_BYTES + 3 * 8 * (1 + 3));
}

#[test]
fn fifo_slot_bytes_are_tag_then_little_endian_payload() {
    let r = fifo(10, 2);
    let mut tx = FifoProducer::attach(&r).unwrap();
    tx.try_push(b"0123456789").unwrap();
    tx.try_push(b"ab").unwrap();
    let b = bytes_of(&r);
    let stride = 8 * 3;
    let s0 = HEADER_BYTES;
    assert_eq!(u64::from_le_bytes(b[s0..s0 + 8].try_into().unwrap()), 10);
    assert_eq!(&b[s0 + 8..s0 + 18], b"0123456789");
    assert_eq!(&b[s0 + 18..s0 + 24], &[0; 6]);
    let s1 = s0 + stride;
    assert_eq!(u64::from_le_bytes(b[s1..s1 + 8].try_into().unwrap()), 2);
    assert_eq!(&b[s1 + 8..s1 + 10], b"ab");
    assert_eq!(u64::from_le_bytes(b[72..80].try_into().unwrap()), 2, "tail");
    assert_eq!(
        u64::from_le_bytes(b[136..144].try_into().unwrap()),
        0,
        "head"
    );
}

#[test]
fn four_slot_first_write_goes_to_pair_1_slot_1() {
    let r = four_slot(8);
    let mut tx = FourSlotWriter::attach(&r).unwrap();
    tx.write(b"ABCDEFGH").unwrap();
    let b = bytes_of(&r);
    // slot n = pair * 2 + index = 3, stride 2 words.
    let s = HEADER_BYTES + 3 * 16;
    assert_eq!(
        u64::from_le_bytes(b[s..s + 8].try_into().unwrap()),
        1,
        "seq"
    );
    assert_eq!(&b[s + 8..s + 16], b"ABCDEFGH");
    assert_eq!(r[W_WRITER_POS].load(Ordering::Relaxed), 1, "latest");
    assert_eq!(r[W_SLOT0 + 1].load(Ordering::Relaxed), 1, "slot[1]");
    assert_eq!(r[W_WRITES].load(Ordering::Relaxed), 1, "writes");
}

#[test]
fn attach_validates_header() {
    let r = four_slot(16);
    assert!(FourSlotWriter::attach(&r).is_ok());
    assert_eq!(FifoProducer::attach(&r).err(), Some(Error::WrongKind));
    assert_eq!(FifoConsumer::attach(&r).err(), Some(Error::WrongKind));
    let f = fifo(16, 4);
    assert_eq!(FourSlotReader::attach(&f).err(), Some(Error::WrongKind));

    // Too short for the header, or for the slots the header describes.
    assert!(matches!(
        FourSlotReader::attach(&r[..10]),
        Err(Error::RegionTooSmall { .. })
    ));
    assert_eq!(
        FourSlotReader::attach(&r[..r.len() - 1]).err(),
        Some(Error::RegionTooSmall {
            needed: r.len(),
            got: r.len() - 1
        })
    );
    assert!(matches!(
        FourSlotReader::attach(&[]),
        Err(Error::RegionTooSmall { .. })
    ));

    // Unformatted.
    let z = region(100);
    assert_eq!(FourSlotReader::attach(&z).err(), Some(Error::BadMagic));
    assert_eq!(probe(&z), Err(Error::BadMagic));
}

#[test]
fn attach_rejects_each_corrupted_header_word() {
    for w in [W_MAGIC, W_VERSION_KIND, W_GEOMETRY, W_CHECK] {
        for bit in [0, 1, 31, 32, 33, 63] {
            let r = fifo(8, 4);
            let old = r[w].load(Ordering::Relaxed);
            r[w].store(old ^ (1 << bit), Ordering::Relaxed);
            assert!(FifoProducer::attach(&r).is_err(), "word {w} bit {bit}");
            assert!(FifoConsumer::attach(&r).is_err(), "word {w} bit {bit}");
            assert!(probe(&r).is_err());
        }
    }
}

#[test]
fn attach_rejects_consistent_but_invalid_headers() {
    // A header whose check word is right but whose fields are not (a peer that knows the
    // format and lies): version, kind and limits are checked on their own.
    let forge = |version: u32, kind: u32, size: u32, count: u32| {
        let r = region(200);
        let vk = u64::from(version) | (u64::from(kind) << 32);
        let g = u64::from(size) | (u64::from(count) << 32);
        r[W_MAGIC].store(MAGIC, Ordering::Relaxed);
        r[W_VERSION_KIND].store(vk, Ordering::Relaxed);
        r[W_GEOMETRY].store(g, Ordering::Relaxed);
        r[W_CHECK].store(header_check(MAGIC, vk, g), Ordering::Relaxed);
        probe(&r)
    };
    assert!(forge(1, 2, 8, 4).is_ok());
    assert_eq!(forge(2, 2, 8, 4), Err(Error::BadVersion(2)));
    assert_eq!(forge(1, 3, 8, 4), Err(Error::WrongKind));
    assert_eq!(forge(1, 0, 8, 4), Err(Error::WrongKind));
    assert_eq!(forge(1, 2, 0, 4), Err(Error::BadGeometry));
    assert_eq!(forge(1, 2, 8, 0), Err(Error::BadGeometry));
    assert_eq!(
        forge(1, 1, 8, 5),
        Err(Error::BadGeometry),
        "four-slot has 4 slots"
    );
    assert_eq!(forge(1, 2, u32::MAX, u32::MAX), Err(Error::BadGeometry));
    assert!(matches!(
        forge(1, 2, 8, 1000),
        Err(Error::RegionTooSmall { .. })
    ));
}

#[test]
fn format_checks_its_arguments() {
    let r = region(30);
    assert!(matches!(
        FourSlot::format(&r, 16),
        Err(Error::RegionTooSmall { .. })
    ));
    assert_eq!(FourSlot::format(&r, 0), Err(Error::BadGeometry));
    assert_eq!(Fifo::format(&r, 8, 0), Err(Error::BadGeometry));
    // A larger region is fine; the words past the channel are left alone.
    let big = region(100);
    big[99].store(77, Ordering::Relaxed);
    Fifo::format(&big, 8, 2).unwrap();
    assert_eq!(big[99].load(Ordering::Relaxed), 77);
    assert_eq!(
        probe(&big),
        Ok(Geometry {
            kind: Kind::Fifo,
            slot_size: 8,
            slot_count: 2,
            region_words: 28
        })
    );
}

#[test]
fn four_slot_sequential_semantics() {
    let r = four_slot(12);
    let mut tx = FourSlotWriter::attach(&r).unwrap();
    let mut rx = FourSlotReader::attach(&r).unwrap();
    let mut buf = [0xaa; 12];
    assert_eq!(rx.read(&mut buf), Ok(ReadStatus::Empty));
    assert_eq!(buf, [0xaa; 12], "Empty leaves the buffer alone");
    assert!(!rx.has_new());
    for k in 1..=10u8 {
        tx.write(&[k; 12]).unwrap();
        assert!(rx.has_new());
        assert_eq!(rx.read(&mut buf), Ok(ReadStatus::Fresh));
        assert_eq!(buf, [k; 12]);
        assert_eq!(rx.last_seq(), u64::from(k));
        assert_eq!(rx.read(&mut buf), Ok(ReadStatus::Stale));
        assert_eq!(buf, [k; 12]);
    }
    // Three writes unread: the reader gets the last and counts two overruns.
    for k in 11..=13u8 {
        tx.write(&[k; 12]).unwrap();
    }
    assert_eq!(rx.read(&mut buf), Ok(ReadStatus::Fresh));
    assert_eq!(buf, [13; 12]);
    let s = rx.stats();
    assert_eq!((s.writes, s.reads, s.overruns), (13, 21, 2));
    assert_eq!(tx.stats(), s);
}

#[test]
fn four_slot_overruns_count_from_attach() {
    let r = four_slot(8);
    let mut tx = FourSlotWriter::attach(&r).unwrap();
    for k in 1..=3u8 {
        tx.write(&[k; 8]).unwrap();
    }
    // Writes before the reader attached are history, not overruns...
    let mut rx = FourSlotReader::attach(&r).unwrap();
    let mut buf = [0; 8];
    assert_eq!(rx.read(&mut buf), Ok(ReadStatus::Fresh));
    assert_eq!((buf[0], rx.stats().overruns), (3, 0));
    // ...but writes after it attached and never returned are, even before its first read.
    let mut rx = FourSlotReader::attach(&r).unwrap();
    tx.write(&[4; 8]).unwrap();
    tx.write(&[5; 8]).unwrap();
    assert_eq!(rx.read(&mut buf), Ok(ReadStatus::Fresh));
    assert_eq!((buf[0], rx.stats().overruns), (5, 1));
}

#[test]
fn four_slot_wrong_lengths() {
    let r = four_slot(8);
    let mut tx = FourSlotWriter::attach(&r).unwrap();
    let mut rx = FourSlotReader::attach(&r).unwrap();
    assert_eq!(
        tx.write(&[1; 7]),
        Err(Error::WrongLength {
            expected: 8,
            got: 7
        })
    );
    assert_eq!(
        tx.write(&[1; 9]),
        Err(Error::WrongLength {
            expected: 8,
            got: 9
        })
    );
    assert_eq!(
        rx.read(&mut [0; 4]),
        Err(Error::WrongLength {
            expected: 8,
            got: 4
        })
    );
    assert_eq!(tx.slot_size(), 8);
    assert_eq!(rx.slot_size(), 8);
    // Nothing was written.
    assert_eq!(rx.read(&mut [0; 8]), Ok(ReadStatus::Empty));
}

#[test]
fn four_slot_close_and_reattach() {
    let r = four_slot(8);
    let mut tx = FourSlotWriter::attach(&r).unwrap();
    assert_eq!(tx.peer_state(), SideState::NeverAttached);
    let mut rx = FourSlotReader::attach(&r).unwrap();
    assert_eq!(tx.peer_state(), SideState::Attached);
    assert_eq!(rx.peer_state(), SideState::Attached);
    tx.write(&[1; 8]).unwrap();
    tx.write(&[2; 8]).unwrap();
    tx.close();
    assert_eq!(rx.peer_state(), SideState::Closed);
    let mut buf = [0; 8];
    assert_eq!(rx.read(&mut buf), Ok(ReadStatus::Fresh));
    assert_eq!(buf, [2; 8], "closing leaves the last value readable");

    // A new writer resumes the sequence numbers and the slot choice.
    let mut tx = FourSlotWriter::attach(&r).unwrap();
    assert_eq!(rx.peer_state(), SideState::Attached);
    tx.write(&[3; 8]).unwrap();
    assert_eq!(rx.read(&mut buf), Ok(ReadStatus::Fresh));
    assert_eq!((buf, rx.last_seq()), ([3; 8], 3));

    // A new reader sees the current value as fresh.
    rx.close();
    assert_eq!(tx.peer_state(), SideState::Closed);
    let mut rx = FourSlotReader::attach(&r).unwrap();
    assert_eq!(rx.read(&mut buf), Ok(ReadStatus::Fresh));
    assert_eq!(buf, [3; 8]);
    assert_eq!(rx.stats().reads, 3);

    r[W_READER_STATE].store(99, Ordering::Relaxed);
    assert_eq!(tx.peer_state(), SideState::Invalid);
}

#[test]
fn four_slot_writer_avoids_the_announced_pair() {
    // Directly exercise the exclusion rule: whatever `reading` says, the writer writes the
    // other pair, and never the slot `slot[pair]` names.
    let r = four_slot(8);
    let mut tx = FourSlotWriter::attach(&r).unwrap();
    for k in 1..=8u64 {
        let reading = k % 2;
        r[W_READER_POS].store(reading, Ordering::Relaxed);
        let before = [
            r[W_SLOT0].load(Ordering::Relaxed),
            r[W_SLOT1].load(Ordering::Relaxed),
        ];
        tx.write(&k.to_le_bytes()).unwrap();
        let pair = r[W_WRITER_POS].load(Ordering::Relaxed);
        assert_eq!(pair, 1 - reading);
        let index = r[W_SLOT0 + pair as usize].load(Ordering::Relaxed);
        assert_ne!(index, before[pair as usize]);
    }
}

#[test]
fn fifo_basic_order_full_empty() {
    let r = fifo(8, 3);
    let mut tx = FifoProducer::attach(&r).unwrap();
    let mut rx = FifoConsumer::attach(&r).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(rx.try_pop(&mut buf), Err(Error::Empty));
    assert!(rx.is_empty() && tx.is_empty() && !tx.is_full());
    assert_eq!(
        (tx.capacity(), rx.capacity(), tx.slot_size(), rx.slot_size()),
        (3, 3, 8, 8)
    );
    for round in 0..5u8 {
        for i in 0..3u8 {
            tx.try_push(&[round, i]).unwrap();
        }
        assert!(tx.is_full() && rx.is_full());
        assert_eq!((tx.len(), rx.len()), (3, 3));
        assert_eq!(tx.try_push(&[9]), Err(Error::Full));
        for i in 0..3u8 {
            assert_eq!(rx.try_pop(&mut buf), Ok(2));
            assert_eq!(&buf[..2], &[round, i]);
        }
        assert_eq!(rx.try_pop(&mut buf), Err(Error::Empty));
    }
    assert_eq!(
        rx.stats(),
        Stats {
            writes: 15,
            reads: 15,
            overruns: 0,
            rejected: 5
        }
    );
    assert_eq!(tx.stats(), rx.stats());
}

#[test]
fn fifo_lengths() {
    let r = fifo(8, 2);
    let mut tx = FifoProducer::attach(&r).unwrap();
    let mut rx = FifoConsumer::attach(&r).unwrap();
    assert_eq!(tx.try_push(&[0; 9]), Err(Error::TooLong { max: 8, got: 9 }));
    tx.try_push(&[]).unwrap();
    tx.try_push(&[7; 8]).unwrap();
    assert_eq!(
        rx.try_pop(&mut [0; 7]),
        Err(Error::BufferTooSmall { needed: 8, got: 7 })
    );
    let mut big = [0xee; 20];
    assert_eq!(rx.try_pop(&mut big), Ok(0));
    assert_eq!(big, [0xee; 20]);
    assert_eq!(rx.try_pop(&mut big), Ok(8));
    assert_eq!(&big[..9], &[7, 7, 7, 7, 7, 7, 7, 7, 0xee]);
}

#[test]
fn fifo_close_semantics() {
    let r = fifo(4, 2);
    let mut tx = FifoProducer::attach(&r).unwrap();
    let mut rx = FifoConsumer::attach(&r).unwrap();
    tx.try_push(b"a").unwrap();
    tx.close();
    assert_eq!(rx.peer_state(), SideState::Closed);
    let mut buf = [0; 4];
    assert_eq!(
        rx.try_pop(&mut buf),
        Ok(1),
        "messages pushed before close stay poppable"
    );
    assert_eq!(rx.try_pop(&mut buf), Err(Error::Closed));

    // Consumer closes: pushes succeed while there is room, then Closed instead of Full.
    let mut tx = FifoProducer::attach(&r).unwrap();
    assert_eq!(rx.peer_state(), SideState::Attached);
    rx.close();
    assert_eq!(tx.peer_state(), SideState::Closed);
    tx.try_push(b"b").unwrap();
    tx.try_push(b"c").unwrap();
    assert_eq!(tx.try_push(b"d"), Err(Error::Closed));

    // Re-attached consumer resumes at its head.
    let mut rx = FifoConsumer::attach(&r).unwrap();
    assert_eq!(rx.try_pop(&mut buf), Ok(1));
    assert_eq!(buf[0], b'b');
    assert_eq!(tx.try_push(b"e"), Ok(()));
    assert_eq!(rx.try_pop(&mut buf), Ok(1));
    assert_eq!(buf[0], b'c');
    assert_eq!(rx.try_pop(&mut buf), Ok(1));
    assert_eq!(buf[0], b'e');
}

#[test]
fn fifo_impossible_counters_are_corrupt_not_ub() {
    let r = fifo(8, 4);
    let mut tx = FifoProducer::attach(&r).unwrap();
    let mut rx = FifoConsumer::attach(&r).unwrap();
    let mut buf = [0; 8];
    // Producer claims 1000 messages.
    r[W_WRITER_POS].store(1000, Ordering::Relaxed);
    assert_eq!(rx.try_pop(&mut buf), Err(Error::Corrupt));
    assert_eq!(rx.len(), 0);
    assert!(rx.is_empty());
    r[W_WRITER_POS].store(0, Ordering::Relaxed);
    assert_eq!(rx.try_pop(&mut buf), Err(Error::Empty));
    // Consumer claims to be ahead of the producer.
    for _ in 0..4 {
        tx.try_push(b"x").unwrap();
    }
    r[W_READER_POS].store(u64::MAX, Ordering::Relaxed);
    assert_eq!(tx.try_push(b"y"), Err(Error::Corrupt));
    assert!(tx.is_full());
    assert_eq!(tx.len(), 4);
    // A lying length word is clamped to the slot size.
    r[W_READER_POS].store(0, Ordering::Relaxed);
    r[HEADER_WORDS].store(u64::MAX, Ordering::Relaxed);
    assert_eq!(rx.try_pop(&mut [0; 64]), Ok(8));
}

#[test]
fn error_display() {
    extern crate alloc;
    use alloc::string::ToString;
    assert_eq!(Error::Full.to_string(), "channel full");
    assert_eq!(
        Error::RegionTooSmall { needed: 3, got: 2 }.to_string(),
        "region too small: 2 words, need 3"
    );
}

#[test]
fn side_states_are_read_without_attaching() {
    let words = Fifo::region_words(8, 2).unwrap();
    let region: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
    assert_eq!(side_states(&region), Err(Error::BadMagic));
    Fifo::format(&region, 8, 2).unwrap();
    assert_eq!(side_states(&region), Ok((SideState::NeverAttached, SideState::NeverAttached)));
    let tx = FifoProducer::attach(&region).unwrap();
    assert_eq!(side_states(&region), Ok((SideState::Attached, SideState::NeverAttached)));
    tx.close();
    assert_eq!(side_states(&region), Ok((SideState::Closed, SideState::NeverAttached)));
}

/// user/include/shmcomm_internal.h mirrors the layout for the C user-level data path
/// (user/libquest/c/shmcomm_sys.c): every `#define SHMCOMM_*` it gives for the layout has the
/// value this crate uses.
#[test]
fn c_layout_mirror_agrees() {
    use crate::layout::*;
    let h = include_str!("../../../user/include/shmcomm_internal.h");
    let want: &[(&str, u64)] = &[
        ("SHMCOMM_MAGIC", MAGIC),
        ("SHMCOMM_VERSION", u64::from(VERSION)),
        ("SHMCOMM_CHECK_SALT", header_check(0, 0, 0)),
        ("SHMCOMM_KIND_FOUR_SLOT", crate::Kind::FourSlot as u64),
        ("SHMCOMM_KIND_FIFO", crate::Kind::Fifo as u64),
        ("SHMCOMM_MAX_SLOT_SIZE", MAX_SLOT_SIZE as u64),
        ("SHMCOMM_MAX_FIFO_SLOTS", MAX_FIFO_SLOTS as u64),
        ("SHMCOMM_STATE_CLOSED", STATE_CLOSED),
        ("SHMCOMM_HEADER_WORDS", HEADER_WORDS as u64),
        ("SHMCOMM_W_MAGIC", W_MAGIC as u64),
        ("SHMCOMM_W_VERSION_KIND", W_VERSION_KIND as u64),
        ("SHMCOMM_W_GEOMETRY", W_GEOMETRY as u64),
        ("SHMCOMM_W_CHECK", W_CHECK as u64),
        ("SHMCOMM_W_WRITER_STATE", W_WRITER_STATE as u64),
        ("SHMCOMM_W_WRITER_POS", W_WRITER_POS as u64),
        ("SHMCOMM_W_SLOT0", W_SLOT0 as u64),
        ("SHMCOMM_W_SLOT1", W_SLOT1 as u64),
        ("SHMCOMM_W_WRITES", W_WRITES as u64),
        ("SHMCOMM_W_REJECTED", W_REJECTED as u64),
        ("SHMCOMM_W_WRITER_WAIT", W_WRITER_WAIT as u64),
        ("SHMCOMM_W_READER_STATE", W_READER_STATE as u64),
        ("SHMCOMM_W_READER_POS", W_READER_POS as u64),
        ("SHMCOMM_W_READS", W_READS as u64),
        ("SHMCOMM_W_OVERRUNS", W_OVERRUNS as u64),
        ("SHMCOMM_W_READER_WAIT", W_READER_WAIT as u64),
    ];
    for &(name, value) in want {
        let line = h
            .lines()
            .find(|l| l.split_whitespace().take(2).eq(["#define", name]))
            .unwrap_or_else(|| panic!("{name} missing from shmcomm_internal.h"));
        let text = line.split_whitespace().nth(2).unwrap();
        let got = if let Some(shift) = text.strip_prefix("(1u<<") {
            1u64 << shift.trim_end_matches(')').parse::<u32>().unwrap()
        } else if let Some(hex) = text.strip_prefix("0x") {
            u64::from_str_radix(hex.trim_end_matches("ull"), 16).unwrap()
        } else {
            text.parse().unwrap()
        };
        assert_eq!(got, value, "{name}: header says {text}");
    }
}
