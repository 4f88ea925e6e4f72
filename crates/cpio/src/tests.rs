//! Tests of the reader and writer. They live inside the crate (rather than in `tests/`) so
//! the writer is available without enabling the `alloc` feature.

use std::collections::BTreeMap;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use proptest::prelude::*;

use crate::*;

const GNU_NEWC: &[u8] = include_bytes!("../testdata/gnu-newc.cpio");
const GNU_CRC: &[u8] = include_bytes!("../testdata/gnu-crc.cpio");

/// Name, mode, data of every entry of the fixtures (see `testdata/README.md`).
const GNU_CONTENTS: &[(&str, u32, &[u8])] = &[
    (".", S_IFDIR | 0o755, b""),
    ("empty", S_IFREG | 0o644, b""),
    ("etc", S_IFDIR | 0o755, b""),
    ("etc/motd", S_IFREG | 0o644, b"hello quest\n"),
    ("hello", S_IFREG | 0o644, b"hi!\n"),
    ("link", S_IFLNK | 0o777, b"hello"),
    ("sub", S_IFDIR | 0o755, b""),
    ("sub/bin.dat", S_IFREG | 0o600, b"\x00\x01\x02\xff\xfe"),
    ("sub/deep", S_IFDIR | 0o755, b""),
    ("sub/deep/file", S_IFREG | 0o644, b"abc"),
];

fn entries(bytes: &[u8]) -> Result<Vec<Entry<'_>>, Error> {
    Archive::new(bytes).entries().collect()
}

fn check_gnu_fixture(bytes: &[u8], format: Format, uid: u32) {
    let list = entries(bytes).unwrap();
    assert_eq!(list.len(), GNU_CONTENTS.len());
    for (e, &(name, mode, data)) in list.iter().zip(GNU_CONTENTS) {
        assert_eq!(e.name, name);
        assert_eq!(e.mode, mode, "{name}");
        assert_eq!(e.data, data, "{name}");
        assert_eq!(e.size as usize, data.len());
        assert_eq!(e.mtime, 1_700_000_000);
        assert_eq!((e.uid, e.gid), (uid, uid));
        assert_eq!(e.format, format);
        assert_eq!(e.offset % 4, 0);
        if format == Format::Crc && e.is_file() {
            assert_eq!(e.check, checksum(data));
        }
    }
    let a = Archive::new(bytes);
    assert_eq!(a.validate(), Ok(GNU_CONTENTS.len()));
    let motd = a.find("/etc/motd").unwrap();
    assert!(motd.is_file() && !motd.is_dir() && !motd.is_symlink());
    assert_eq!(motd.permissions(), 0o644);
    assert_eq!(motd.data, b"hello quest\n");
    assert!(a.find("./sub/deep/").unwrap().is_dir());
    assert_eq!(a.find("sub/deep").unwrap().nlink, 2);
    assert_eq!(a.find("link").unwrap().symlink_target(), Some("hello"));
    assert_eq!(a.find("hello").unwrap().symlink_target(), None);
    assert!(a.find("nope").is_none());
    assert_eq!(a.try_find("nope"), Ok(None));
    assert!(a.find(TRAILER).is_none());
    // The trailer ends the archive; GNU cpio pads to a 512-byte block after it.
    let mut it = a.entries();
    for _ in it.by_ref() {}
    assert!(it.offset() < bytes.len() && bytes[it.offset()..].iter().all(|&b| b == 0));
    assert_eq!(it.next(), None);
}

#[test]
fn reads_gnu_cpio_newc() {
    check_gnu_fixture(GNU_NEWC, Format::Newc, 0);
}

#[test]
fn reads_gnu_cpio_crc() {
    check_gnu_fixture(GNU_CRC, Format::Crc, 1000);
    // Corrupt one data byte of etc/motd: the checksum catches it.
    let motd = Archive::new(GNU_CRC).find("etc/motd").unwrap();
    let pos = motd.data.as_ptr() as usize - GNU_CRC.as_ptr() as usize;
    let mut bad = GNU_CRC.to_vec();
    bad[pos] ^= 1;
    assert_eq!(
        Archive::new(&bad).validate(),
        Err(Error::ChecksumMismatch {
            offset: motd.offset,
            expected: 0x470,
            actual: 0x471
        })
    );
}

/// A hand-made archive: lower-case hex digits, `./` and `/` prefixes, no padding after the
/// trailer name.
fn hand_made() -> Vec<u8> {
    let mut v = Vec::new();
    let mut entry = |name: &str, mode: u32, data: &[u8]| {
        v.extend_from_slice(b"070701");
        let fields = [
            7,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        for f in fields {
            v.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        v.extend_from_slice(name.as_bytes());
        v.push(0);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(data);
        if name != TRAILER {
            while v.len() % 4 != 0 {
                v.push(0);
            }
        }
    };
    entry("./", S_IFDIR | 0o755, b"");
    entry("./boot", S_IFDIR | 0o755, b"");
    entry("/boot/kernel.elf", S_IFREG | 0o755, b"\x7fELF....");
    entry(".//boot/x", S_IFREG | 0o644, b"x");
    entry(TRAILER, 0, b"");
    v.truncate(v.len() - 3); // drop the trailer's name padding
    v
}

#[test]
fn reads_hand_made_archive() {
    let bytes = hand_made();
    let list = entries(&bytes).unwrap();
    let names: Vec<&str> = list.iter().map(|e| e.name).collect();
    assert_eq!(names, ["", "boot", "boot/kernel.elf", "boot/x"]);
    assert_eq!(list[0].mode, S_IFDIR | 0o755);
    assert_eq!(list[2].data, b"\x7fELF....");
    let a = Archive::new(&bytes);
    assert_eq!(a.find("boot/x").unwrap().data, b"x");
    assert_eq!(a.find("/boot/kernel.elf").unwrap().ino, 7);
    let mut it = a.entries();
    assert_eq!(it.by_ref().count(), 4);
    assert_eq!(it.offset(), bytes.len());
}

#[test]
fn normalizes_paths() {
    assert_eq!(normalize_path("./a/b"), "a/b");
    assert_eq!(normalize_path("/a"), "a");
    assert_eq!(normalize_path(".//./a"), "a");
    assert_eq!(normalize_path("."), ".");
    assert_eq!(normalize_path("./"), "");
    assert_eq!(normalize_path("a/./b"), "a/./b");
    assert_eq!(normalize_path("..a"), "..a");
}

/// A small valid archive and the offset of its second entry.
fn sample() -> (Vec<u8>, usize) {
    let mut w = Writer::new();
    w.add_file("a", 0o644, b"hello").unwrap();
    let second = w.len();
    w.add_file("dir/b", 0o600, b"xyz").unwrap();
    (w.finish(), second)
}

#[test]
fn reports_each_malformation() {
    let (good, second) = sample();
    let check = |bytes: &[u8], want: Error| {
        let got = Archive::new(bytes).validate();
        assert_eq!(got, Err(want), "{}", String::from_utf8_lossy(bytes));
        // Display is implemented for every variant and mentions the offset.
        assert!(want.to_string().contains(&want.offset().to_string()));
    };
    let edit = |at: usize, with: &[u8]| {
        let mut b = good.clone();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };
    let field = |entry: usize, i: usize| entry + 6 + 8 * i;

    check(&good[..0], Error::MissingTrailer { offset: 0 });
    check(&[0; 600], Error::MissingTrailer { offset: 0 });
    check(&good[..second], Error::MissingTrailer { offset: second });
    check(&good[..50], Error::TruncatedHeader { offset: 0 });
    check(
        &good[..second + 109],
        Error::TruncatedHeader { offset: second },
    );
    check(&edit(0, b"070707"), Error::BadMagic { offset: 0 });
    check(&edit(second, b"x"), Error::BadMagic { offset: second });
    check(
        &edit(field(0, 0), b"0000000g"),
        Error::InvalidHex {
            offset: 0,
            field: "ino",
        },
    );
    check(
        &edit(field(0, 6), b" 0000005"),
        Error::InvalidHex {
            offset: 0,
            field: "filesize",
        },
    );
    check(
        &edit(field(0, 11), b"+0000002"),
        Error::InvalidHex {
            offset: 0,
            field: "namesize",
        },
    );
    check(
        &edit(field(0, 12), b"0000000\xff"),
        Error::InvalidHex {
            offset: 0,
            field: "check",
        },
    );
    check(
        &edit(field(0, 11), b"FFFFFFFF"),
        Error::NameTruncated { offset: 0 },
    );
    check(&good[..111], Error::NameTruncated { offset: 0 });
    check(&good[..112], Error::DataTruncated { offset: 0 });
    check(
        &edit(field(0, 11), b"00000000"),
        Error::NameNotTerminated { offset: 0 },
    );
    check(&edit(110, b"a\x01"), Error::NameNotTerminated { offset: 0 });
    let mut empty = edit(field(0, 11), b"00000001");
    empty[110] = 0;
    check(&empty, Error::EmptyName { offset: 0 });
    check(&edit(110, b"\0\0"), Error::NameContainsNul { offset: 0 });
    check(&edit(110, b"\xff"), Error::NameNotUtf8 { offset: 0 });
    check(
        &edit(field(0, 6), b"00001000"),
        Error::DataTruncated { offset: 0 },
    );
    check(
        &edit(field(0, 6), b"FFFFFFFF"),
        Error::DataTruncated { offset: 0 },
    );
    check(&good[..second - 4], Error::DataTruncated { offset: 0 });
    // A wrong data length desynchronizes the stream: the next header is garbage.
    check(
        &edit(field(0, 6), b"00000004"),
        Error::BadMagic { offset: 116 },
    );
    // A checksum only matters in the 070702 format.
    let crc = edit(0, MAGIC_CRC);
    check(
        &crc,
        Error::ChecksumMismatch {
            offset: 0,
            expected: 0,
            actual: checksum(b"hello"),
        },
    );
    assert_eq!(
        Archive::new(&edit(field(0, 12), b"12345678")).validate(),
        Ok(2)
    );

    // The iterator yields entries before the error, then the error once, then stops.
    let bad = edit(second, b"x");
    let mut it = Archive::new(&bad).entries();
    assert_eq!(it.next().unwrap().unwrap().name, "a");
    assert_eq!(it.next(), Some(Err(Error::BadMagic { offset: second })));
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);
    assert_eq!(Archive::new(&bad).find("dir/b"), None);
    assert_eq!(
        Archive::new(&bad).try_find("dir/b"),
        Err(Error::BadMagic { offset: second })
    );
    assert_eq!(Archive::new(&bad).find("a").unwrap().data, b"hello");
}

#[test]
fn writer_layout_and_errors() {
    let mut w = Writer::new();
    assert!(w.is_empty());
    w.set_mtime(0x1234);
    w.add_dir("d", 0o40755).unwrap();
    w.add_file("d/f", 0o100644, b"abcde").unwrap();
    w.add_symlink("l", "d/f").unwrap();
    w.add_entry("dev/null", 0o020666, 1, b"").unwrap();
    assert_eq!(w.add_file("", 0o644, b""), Err(WriteError::EmptyName));
    assert_eq!(w.add_file("./", 0o644, b""), Err(WriteError::EmptyName));
    assert_eq!(
        w.add_file("a\0b", 0o644, b""),
        Err(WriteError::NameContainsNul)
    );
    assert_eq!(w.add_dir(TRAILER, 0o755), Err(WriteError::ReservedName));
    let before = w.len();
    let bytes = w.finish();
    assert_eq!(bytes.len() % 4, 0);
    // Header of the first entry, byte for byte.
    assert_eq!(
        &bytes[..HEADER_LEN + 2],
        b"070701\
          00000001000041ED000000000000000000000002000012340000000000000000\
          00000000000000000000000000000002\
          00000000d\0"
    );
    // The trailer.
    assert_eq!(&bytes[before..before + 6], MAGIC_NEWC);
    assert_eq!(&bytes[before + HEADER_LEN..], b"TRAILER!!!\0\0\0\0");
    let list = entries(&bytes).unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0].mode, S_IFDIR | 0o755);
    assert_eq!((list[0].nlink, list[0].mtime, list[0].ino), (2, 0x1234, 1));
    assert_eq!(list[1].mode, S_IFREG | 0o644);
    assert_eq!(list[2].symlink_target(), Some("d/f"));
    assert_eq!(list[3].mode, 0o020666);
    assert_eq!(list[3].ino, 4);
    assert!(!list[3].is_file() && !list[3].is_dir());
    assert_eq!(Writer::default().finish(), Writer::new().finish());
    assert!(WriteError::DataTooLarge.to_string().contains("4 GiB"));
}

#[test]
fn crc_writer_sets_checksums() {
    let mut w = Writer::with_format(Format::Crc);
    w.add_file("f", 0o644, &[0xff; 10]).unwrap();
    let bytes = w.finish();
    assert_eq!(&bytes[..6], MAGIC_CRC);
    let e = Archive::new(&bytes).find("f").unwrap();
    assert_eq!((e.check, e.format), (2550, Format::Crc));

    // Directories and symlinks carry no checksum (as GNU cpio writes them), and a reader
    // ignores their `check` field.
    let mut w = Writer::with_format(Format::Crc);
    w.add_dir("d", 0o755).unwrap();
    w.add_symlink("l", "target").unwrap();
    let mut bytes = w.finish();
    let list = entries(&bytes).unwrap();
    assert_eq!((list[0].check, list[1].check), (0, 0));
    let check_field = list[1].offset + 6 + 8 * 12;
    bytes[check_field..check_field + 8].copy_from_slice(b"DEADBEEF");
    assert_eq!(Archive::new(&bytes).find("l").unwrap().check, 0xdead_beef);
}

// ---------------------------------------------------------------------------------------------
// Agreement with the real GNU cpio, when it is installed (the fixtures above cover the reader
// when it is not).

fn have_cpio() -> bool {
    std::process::Command::new("cpio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("quest-cpio-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn agrees_with_gnu_cpio_if_installed() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if !have_cpio() {
        std::eprintln!("cpio not installed: skipping the live comparison (fixtures still ran)");
        return;
    }
    let files: &[(&str, &[u8])] = &[
        ("a", b"alpha"),
        ("dir/b", b""),
        ("dir/sub/c", &[0u8, 1, 2, 3, 4, 5, 6]),
        ("long-name-with-odd-length.txt", b"xyzzy!"),
    ];

    // 1. GNU cpio writes, we read.
    let src = temp_dir("src");
    for (name, data) in files {
        let p = src.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(&src)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let list: String = ["dir", "dir/sub"]
        .iter()
        .chain(files.iter().map(|(n, _)| n))
        .map(|n| format!("{n}\n"))
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let a = Archive::new(&out.stdout);
    assert_eq!(a.validate(), Ok(files.len() + 2));
    assert!(a.find("dir/sub").unwrap().is_dir());
    for (name, data) in files {
        assert_eq!(a.find(name).unwrap().data, *data, "{name}");
    }

    // 2. We write, GNU cpio extracts.
    let mut w = Writer::with_format(Format::Crc);
    w.add_dir("dir", 0o755).unwrap();
    w.add_dir("dir/sub", 0o755).unwrap();
    for (name, data) in files {
        w.add_file(name, 0o644, data).unwrap();
    }
    let bytes = w.finish();
    let dst = temp_dir("dst");
    let mut child = Command::new("cpio")
        .args(["-i", "--quiet", "--no-absolute-filenames"])
        .current_dir(&dst)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, data) in files {
        assert_eq!(std::fs::read(dst.join(name)).unwrap(), *data, "{name}");
    }
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&dst);
}

// ---------------------------------------------------------------------------------------------
// Property tests.

#[derive(Clone, Debug)]
enum Item {
    File(u32, Vec<u8>),
    Dir(u32),
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{1,12}(/[a-zA-Z0-9_. -]{1,12}){0,3}|[α-ω]{1,5}"
        .prop_filter("not reserved", |n| {
            n != TRAILER && normalize_path(n) == n.as_str()
        })
}

fn items() -> impl Strategy<Value = BTreeMap<String, Item>> {
    let item = prop_oneof![
        (any::<u32>(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(m, d)| Item::File(m, d)),
        any::<u32>().prop_map(Item::Dir),
    ];
    prop::collection::btree_map(name(), item, 0..12)
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Newc), Just(Format::Crc)]
}

fn build(items: &BTreeMap<String, Item>, format: Format) -> Vec<u8> {
    let mut w = Writer::with_format(format);
    for (name, item) in items {
        match item {
            Item::File(mode, data) => w.add_file(name, *mode, data).unwrap(),
            Item::Dir(mode) => w.add_dir(name, *mode).unwrap(),
        }
    }
    w.finish()
}

/// Reads everything, touching every field; must never panic.
fn consume(bytes: &[u8]) -> Result<usize, Error> {
    let a = Archive::new(bytes);
    let mut n = 0;
    let mut last_offset = None;
    for e in a.entries() {
        let e = e?;
        assert!(
            last_offset.is_none_or(|o| e.offset >= o + 112),
            "entries must advance"
        );
        last_offset = Some(e.offset);
        assert_eq!(e.data.len(), e.size as usize);
        let _ = (e.is_dir(), e.is_file(), e.symlink_target(), e.name.len());
        n += 1;
    }
    let _ = a.find("a");
    let _ = a.try_find("dir/b");
    assert_eq!(a.validate(), Ok(n));
    Ok(n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(items in items(), format in format(), mtime in any::<u32>()) {
        let mut w = Writer::with_format(format);
        w.set_mtime(mtime);
        for (name, item) in &items {
            match item {
                Item::File(mode, data) => w.add_file(name, *mode, data).unwrap(),
                Item::Dir(mode) => w.add_dir(name, *mode).unwrap(),
            }
        }
        let bytes = w.finish();
        prop_assert_eq!(bytes.len() % 4, 0);
        let a = Archive::new(&bytes);
        let list = entries(&bytes).unwrap();
        prop_assert_eq!(list.len(), items.len());
        for (e, (name, item)) in list.iter().zip(&items) {
            prop_assert_eq!(e.name, name.as_str());
            prop_assert_eq!(e.format, format);
            prop_assert_eq!(e.mtime, mtime);
            match item {
                Item::File(mode, data) => {
                    prop_assert!(e.is_file());
                    prop_assert_eq!(e.permissions(), mode & 0o7777);
                    prop_assert_eq!(e.data, &data[..]);
                }
                Item::Dir(mode) => {
                    prop_assert!(e.is_dir());
                    prop_assert_eq!(e.permissions(), mode & 0o7777);
                    prop_assert!(e.data.is_empty());
                }
            }
            prop_assert_eq!(a.find(name).map(|f| f.offset), Some(e.offset));
        }
        let mut it = a.entries();
        for _ in it.by_ref() {}
        prop_assert_eq!(it.offset(), bytes.len());
    }

    #[test]
    fn every_truncation_before_the_trailer_is_an_error(
        items in items(),
        format in format(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = build(&items, format);
        // The trailer header starts 124 bytes before the end (110 + "TRAILER!!!\0" + pad 1).
        let trailer = bytes.len() - 124;
        let cut = cut.index(bytes.len() + 1);
        let res = Archive::new(&bytes[..cut]).validate();
        if cut > trailer + HEADER_LEN + TRAILER.len() {
            prop_assert_eq!(res, Ok(items.len()));
        } else {
            prop_assert!(res.is_err(), "prefix of {} bytes accepted", cut);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        let _ = consume(&bytes);
    }

    #[test]
    fn random_headers_never_panic(
        fields in prop::collection::vec(any::<u32>(), 13),
        magic in prop_oneof![Just(MAGIC_NEWC), Just(MAGIC_CRC)],
        tail in prop::collection::vec(any::<u8>(), 0..200),
        small in any::<bool>(),
    ) {
        // Well-formed hex with random (optionally small) values, followed by random bytes.
        let mut bytes = magic.to_vec();
        for f in &fields {
            let f = if small { f % 300 } else { *f };
            bytes.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        bytes.extend_from_slice(&tail);
        let _ = consume(&bytes);
    }

    #[test]
    fn mutated_archives_never_panic(
        items in items(),
        format in format(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        hex_edits in prop::collection::vec(
            (any::<prop::sample::Index>(), 0usize..13, any::<u32>(), 0u32..600), 0..3),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
        splice in prop::option::of((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 0..8), 0usize..8)),
    ) {
        let mut bytes = build(&items, format);
        // Rewrite header fields of random entries with plausible hex values.
        let offsets: Vec<usize> = entries(&bytes).unwrap().iter().map(|e| e.offset).collect();
        for (which, field, big, small) in hex_edits {
            if offsets.is_empty() {
                break;
            }
            let at = offsets[which.index(offsets.len())] + 6 + 8 * field;
            let v = if big % 2 == 0 { small } else { big };
            bytes[at..at + 8].copy_from_slice(format!("{v:08x}").as_bytes());
        }
        // Random byte edits.
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        // Insert/delete a few bytes somewhere (shifts everything after).
        if let Some((at, insert, delete)) = splice {
            let i = at.index(bytes.len());
            let end = (i + delete).min(bytes.len());
            bytes.splice(i..end, insert);
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let _ = consume(&bytes);
    }
}

#[test]
fn fixture_truncations_and_flips_never_panic() {
    // Exhaustive over the GNU fixture: every prefix, and every single-byte change to a
    // non-hex character in the first 600 bytes.
    for cut in 0..=GNU_NEWC.len() {
        let _ = consume(&GNU_NEWC[..cut]);
    }
    let mut b = GNU_NEWC.to_vec();
    for i in 0..600 {
        let old = b[i];
        for new in [b'z', 0, 0xff, b'F', b'0'] {
            b[i] = new;
            let _ = consume(&b);
        }
        b[i] = old;
    }
}

#[test]
fn char_device_nodes_carry_their_device_number() {
    let mut w = Writer::new();
    w.add_dir("dev", 0o755).unwrap();
    w.add_char_device("dev/console", 0o600, 5, 1).unwrap();
    w.add_file("init", 0o755, b"#!/bin/sh\n").unwrap();
    let bytes = w.finish();
    let a = Archive::new(&bytes);
    let e = a.find("dev/console").unwrap();
    assert_eq!(e.mode & S_IFMT, S_IFCHR);
    assert_eq!(e.mode & 0o7777, 0o600);
    assert_eq!((e.rdev_major, e.rdev_minor), (5, 1));
    assert!(e.data.is_empty());
    // The entries after it are intact.
    assert_eq!(a.find("init").unwrap().data, b"#!/bin/sh\n");
    assert_eq!(a.validate().unwrap(), 3);
}
