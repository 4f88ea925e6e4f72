//! The boot blob: its exact byte layout and every decode error.

use partition::{
    BLOB_HEADER_LEN, BlobError, ChannelKind, ChannelMap, Console, Image, MAX_BLOB_LEN, PciAddr,
    PhysRange, Plan, PlannedChannel, PlannedSandbox, PortRange, crc32,
};

/// Fixes the length and checksum fields after an edit, so decoding gets past the header.
fn reseal(b: &mut [u8]) {
    let len = b.len() as u32;
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b[12..16].fill(0);
    let crc = crc32(b);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
}

fn tiny() -> Plan {
    Plan {
        monitor: Some(PhysRange::new(0x20_0000, 0x40_0000)),
        sandboxes: vec![
            PlannedSandbox {
                id: 0,
                name: "q".into(),
                cpus: vec![0],
                ram: PhysRange::new(0x40_0000, 0x80_0000),
                image: Image::Quest,
                console: Console::Com(1),
                io_ports: vec![PortRange {
                    first: 0x60,
                    last: 0x64,
                }],
                pci: vec![PciAddr {
                    bus: 0,
                    dev: 0x1f,
                    func: 0,
                }],
            },
            PlannedSandbox {
                id: 1,
                name: "l".into(),
                cpus: vec![1, 2],
                ram: PhysRange::new(0x80_0000, 0xc0_0000),
                image: Image::Linux {
                    kernel: "k".into(),
                    initrd: Some("i".into()),
                    cmdline: "c".into(),
                },
                console: Console::None,
                io_ports: vec![],
                pci: vec![],
            },
        ],
        channels: vec![PlannedChannel {
            key: 153,
            kind: Some(ChannelKind::Async),
            phys: PhysRange::new(0xc0_0000, 0xc0_1000),
            maps: vec![
                ChannelMap {
                    sandbox: 0,
                    guest: 0x40_0000,
                },
                ChannelMap {
                    sandbox: 1,
                    guest: 0x40_0000,
                },
            ],
        }],
    }
}

#[test]
fn crc32_is_the_ieee_one() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn the_byte_layout_is_as_documented() {
    let mut expected: Vec<u8> = Vec::new();
    let u16 = |v: u16| v.to_le_bytes().to_vec();
    let u32 = |v: u32| v.to_le_bytes().to_vec();
    let u64 = |v: u64| v.to_le_bytes().to_vec();
    // Header: magic, version, flags, length and checksum (patched below).
    expected.extend(b"QVPB");
    expected.extend(u16(1));
    expected.extend(u16(0));
    expected.extend([0; 8]);
    // Monitor present, its range; 2 sandboxes; 1 channel.
    expected.push(1);
    expected.extend(u64(0x20_0000));
    expected.extend(u64(0x40_0000));
    expected.push(2);
    expected.extend(u16(1));
    // Sandbox 0: id, name, RAM, console, CPUs, ports, PCI, image.
    expected.extend([0, 1, b'q']);
    expected.extend(u64(0x40_0000));
    expected.extend(u64(0x80_0000));
    expected.push(1);
    expected.extend(u16(1));
    expected.extend(u32(0));
    expected.extend(u16(1));
    expected.extend(u16(0x60));
    expected.extend(u16(0x64));
    expected.extend(u16(1));
    expected.extend([0x00, 0x1f, 0x00]);
    expected.push(0);
    // Sandbox 1: Linux with kernel, initrd and command line.
    expected.extend([1, 1, b'l']);
    expected.extend(u64(0x80_0000));
    expected.extend(u64(0xc0_0000));
    expected.push(0);
    expected.extend(u16(2));
    expected.extend(u32(1));
    expected.extend(u32(2));
    expected.extend(u16(0));
    expected.extend(u16(0));
    expected.push(1);
    expected.extend(u16(1));
    expected.push(b'k');
    expected.push(1);
    expected.extend(u16(1));
    expected.push(b'i');
    expected.extend(u16(1));
    expected.push(b'c');
    // Channel: key, kind, range, maps.
    expected.extend(u32(153));
    expected.push(1);
    expected.extend(u64(0xc0_0000));
    expected.extend(u64(0xc0_1000));
    expected.push(2);
    expected.push(0);
    expected.extend(u64(0x40_0000));
    expected.push(1);
    expected.extend(u64(0x40_0000));
    reseal(&mut expected);

    let blob = tiny().encode();
    assert_eq!(blob, expected);
    assert_eq!(blob.len(), 159);
    assert_eq!(Plan::decode(&blob).unwrap(), tiny());
}

#[test]
fn an_empty_plan_round_trips() {
    let p = Plan::default();
    let blob = p.encode();
    assert_eq!(blob.len(), BLOB_HEADER_LEN + 4);
    assert_eq!(Plan::decode(&blob).unwrap(), p);
}

#[test]
fn header_errors() {
    let good = tiny().encode();
    assert_eq!(
        Plan::decode(&good[..10]),
        Err(BlobError::TooShort { len: 10 })
    );

    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(Plan::decode(&b), Err(BlobError::BadMagic));

    let mut b = good.clone();
    b[4] = 2;
    reseal(&mut b);
    assert_eq!(
        Plan::decode(&b),
        Err(BlobError::UnsupportedVersion { version: 2 })
    );

    let mut b = good.clone();
    b[6] = 1;
    reseal(&mut b);
    assert_eq!(Plan::decode(&b), Err(BlobError::BadFlags { flags: 1 }));

    let mut b = good.clone();
    b.push(0);
    assert_eq!(
        Plan::decode(&b),
        Err(BlobError::LengthMismatch {
            declared: good.len() as u32,
            actual: good.len() + 1
        })
    );

    let big = vec![0u8; MAX_BLOB_LEN + 1];
    let mut b = big;
    b[..16].copy_from_slice(&good[..16]);
    assert_eq!(
        Plan::decode(&b),
        Err(BlobError::TooLarge {
            len: MAX_BLOB_LEN + 1,
            max: MAX_BLOB_LEN
        })
    );
}

#[test]
fn any_flipped_bit_is_caught_by_the_checksum() {
    let good = tiny().encode();
    for byte in BLOB_HEADER_LEN..good.len() {
        for bit in 0..8 {
            let mut b = good.clone();
            b[byte] ^= 1 << bit;
            assert!(
                matches!(Plan::decode(&b), Err(BlobError::ChecksumMismatch { .. })),
                "byte {byte} bit {bit}"
            );
        }
    }
}

#[test]
fn body_errors() {
    let good = tiny().encode();

    let mut b = good.clone();
    b.push(0xaa);
    reseal(&mut b);
    assert_eq!(Plan::decode(&b), Err(BlobError::TrailingBytes { count: 1 }));

    // Cut inside the channel's range (the channel record starts at 119).
    let mut b = good[..128].to_vec();
    reseal(&mut b);
    assert_eq!(
        Plan::decode(&b),
        Err(BlobError::Truncated {
            offset: 124,
            what: "channel range"
        })
    );

    // Cut inside the map list: its count is checked against what remains.
    let mut b = good[..good.len() - 3].to_vec();
    reseal(&mut b);
    assert_eq!(
        Plan::decode(&b),
        Err(BlobError::BadCount {
            offset: 140,
            what: "channel map list",
            count: 2
        })
    );

    // Sandbox count 200: more than the rest of the blob could hold.
    let mut b = good.clone();
    b[33] = 200;
    reseal(&mut b);
    assert_eq!(
        Plan::decode(&b),
        Err(BlobError::BadCount {
            offset: 33,
            what: "sandbox list",
            count: 200
        })
    );

    // Channel count 0xffff.
    let mut b = good.clone();
    b[34..36].copy_from_slice(&[0xff, 0xff]);
    reseal(&mut b);
    assert_eq!(
        Plan::decode(&b),
        Err(BlobError::BadCount {
            offset: 34,
            what: "channel list",
            count: 0xffff
        })
    );

    // Image kind 7 (sandbox 0's image byte).
    let mut b = good.clone();
    let image_at = 36 + 1 + 2 + 16 + 1 + 2 + 4 + 2 + 4 + 2 + 3;
    assert_eq!(b[image_at], 0);
    b[image_at] = 7;
    reseal(&mut b);
    assert_eq!(
        Plan::decode(&b),
        Err(BlobError::BadValue {
            offset: image_at,
            what: "image kind",
            value: 7
        })
    );

    // A name that is not UTF-8.
    let mut b = good.clone();
    b[38] = 0xff;
    reseal(&mut b);
    assert_eq!(
        Plan::decode(&b),
        Err(BlobError::BadUtf8 {
            offset: 38,
            what: "sandbox name"
        })
    );

    // Monitor flag 2.
    let mut b = good.clone();
    b[16] = 2;
    reseal(&mut b);
    assert_eq!(
        Plan::decode(&b),
        Err(BlobError::BadValue {
            offset: 16,
            what: "monitor flag",
            value: 2
        })
    );

    // Every error has a message.
    assert_eq!(
        BlobError::ChecksumMismatch {
            stored: 1,
            computed: 2
        }
        .to_string(),
        "partition blob checksum mismatch: header 0x00000001, computed 0x00000002"
    );
}

#[test]
fn unencodable_plans_are_refused() {
    let mut p = tiny();
    p.sandboxes[0].name = "x".repeat(300);
    assert_eq!(
        p.try_encode(),
        Err(BlobError::Unencodable {
            what: "sandbox name",
            len: 300,
            max: 255
        })
    );
    let mut p = tiny();
    p.sandboxes[0].console = Console::Com(0);
    assert!(p.try_encode().is_err());
}

#[test]
fn load_decodes_and_validates() {
    use partition::{LoadError, MIB, Machine};
    let machine = Machine {
        cpus: 4,
        memory_bytes: 64 * MIB,
    };
    // A valid blob whose Linux sandbox lists a CPU this machine does not have: refused.
    let mut beyond = tiny();
    beyond.sandboxes[1].cpus = vec![1, 7];
    let err = Plan::load(&beyond.encode(), &machine, &[]).unwrap_err();
    assert!(err.to_string().contains("cpu 7 is beyond the machine"), "{err}");
    let one = tiny();
    let blob = one.encode();
    assert_eq!(Plan::load(&blob, &machine, &[]), Ok(one));
    assert!(matches!(
        Plan::load(&blob[..20], &machine, &[]),
        Err(LoadError::Blob(BlobError::LengthMismatch { .. }))
    ));
    // The monitor image where sandbox 'q' lives: refused, with a message naming both.
    let err = Plan::load(&blob, &machine, &[PhysRange::new(0x40_0000, 0x50_0000)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "partition plan is invalid for this machine:\n  sandbox 'q' memory 0x40_0000..0x80_0000 \
         overlaps a reserved range 0x40_0000..0x50_0000"
    );
}

#[test]
fn huge_decoded_plans_are_refused_quickly() {
    // A blob near the size limit with 25,000 identical channels: validation stops at the
    // limits instead of comparing every pair.
    let mut p = tiny();
    let ch = p.channels[0].clone();
    p.channels = vec![ch; 25_000];
    let blob = p.encode();
    assert!(blob.len() <= MAX_BLOB_LEN);
    let decoded = Plan::decode(&blob).unwrap();
    let start = std::time::Instant::now();
    let errs = decoded
        .validate(&partition::Machine {
            cpus: 4,
            memory_bytes: 1 << 30,
        })
        .unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs[0].to_string(),
        "too many channels: 25000 (at most 256)"
    );
    assert!(start.elapsed().as_secs() < 2);
}
