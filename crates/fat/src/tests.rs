//! Images built here byte by byte (FAT12, FAT16, FAT32; short and long names; a subdirectory;
//! a fragmented file), read back, then mutated: every mutation gives data or an error.
use super::*;
use alloc::format;
use alloc::string::ToString;
use proptest::prelude::*;

/// A RAM block device; `fail_from` makes reads at or past that block fail, `lie` makes it
/// claim more blocks than it has (reads past the end fail).
struct Ram {
    b: Vec<u8>,
    bs: usize,
    fail_from: u64,
    extra: u64,
}

impl BlockDevice for Ram {
    fn block_size(&self) -> usize {
        self.bs
    }
    fn blocks(&self) -> u64 {
        (self.b.len() / self.bs) as u64 + self.extra
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        let at = lba as usize * self.bs;
        if lba >= self.fail_from || at + buf.len() > self.b.len() {
            return Err(format!("block {lba}: medium error"));
        }
        buf.copy_from_slice(&self.b[at..at + buf.len()]);
        Ok(())
    }
}

fn ram(b: Vec<u8>) -> Ram {
    Ram { b, bs: 512, fail_from: u64::MAX, extra: 0 }
}

struct Img {
    b: Vec<u8>,
    ty: FatType,
    fats: usize,
    fat_start: usize,
    fat_sectors: usize,
    root_start: usize,
    data_start: usize,
    next: u32,
}

impl Img {
    fn new(ty: FatType) -> Img {
        // (total sectors, reserved, FAT sectors, root entries)
        let (total, reserved, fat_sectors, root_entries) = match ty {
            FatType::Fat12 => (2048usize, 1usize, 6usize, 64usize),
            FatType::Fat16 => (8192, 1, 32, 64),
            FatType::Fat32 => (70000, 32, 550, 0),
        };
        let mut b = vec![0u8; total * 512];
        b[0] = 0xeb;
        b[1] = 0x3c;
        b[2] = 0x90;
        b[3..11].copy_from_slice(b"mkfs.fat");
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 1;
        b[14..16].copy_from_slice(&(reserved as u16).to_le_bytes());
        b[16] = 2;
        b[17..19].copy_from_slice(&(root_entries as u16).to_le_bytes());
        if total < 65536 {
            b[19..21].copy_from_slice(&(total as u16).to_le_bytes());
        } else {
            b[32..36].copy_from_slice(&(total as u32).to_le_bytes());
        }
        b[21] = 0xf8;
        if ty == FatType::Fat32 {
            b[36..40].copy_from_slice(&(fat_sectors as u32).to_le_bytes());
            b[44..48].copy_from_slice(&2u32.to_le_bytes());
            b[66] = 0x29;
            b[71..82].copy_from_slice(b"QUEST32    ");
        } else {
            b[22..24].copy_from_slice(&(fat_sectors as u16).to_le_bytes());
            b[38] = 0x29;
            b[43..54].copy_from_slice(b"QUESTSTICK ");
        }
        b[510] = 0x55;
        b[511] = 0xaa;
        let root_start = reserved + 2 * fat_sectors;
        let data_start = root_start + (root_entries * 32).div_ceil(512);
        let mut img = Img { b, ty, fats: 2, fat_start: reserved, fat_sectors, root_start, data_start, next: 2 };
        img.set_fat(0, 0x0fff_fff8);
        img.set_fat(1, 0x0fff_ffff);
        if ty == FatType::Fat32 {
            let root = img.alloc(1, false);
            assert_eq!(root, 2);
        }
        img
    }

    fn set_fat(&mut self, c: u32, v: u32) {
        for f in 0..self.fats {
            let base = (self.fat_start + f * self.fat_sectors) * 512;
            let c = c as usize;
            match self.ty {
                FatType::Fat12 => {
                    let at = base + c + c / 2;
                    let v = (v & 0xfff) as u16;
                    let mut w = u16::from_le_bytes([self.b[at], self.b[at + 1]]);
                    w = if c & 1 == 0 { (w & 0xf000) | v } else { (w & 0x000f) | v << 4 };
                    self.b[at..at + 2].copy_from_slice(&w.to_le_bytes());
                }
                FatType::Fat16 => self.b[base + 2 * c..base + 2 * c + 2].copy_from_slice(&(v as u16).to_le_bytes()),
                FatType::Fat32 => self.b[base + 4 * c..base + 4 * c + 4].copy_from_slice(&(v & 0x0fff_ffff).to_le_bytes()),
            }
        }
    }

    /// A chain of `n` clusters (every other cluster if `fragmented`); returns the first.
    fn alloc(&mut self, n: usize, fragmented: bool) -> u32 {
        self.alloc_chain(n, fragmented)[0]
    }

    fn alloc_chain(&mut self, n: usize, fragmented: bool) -> Vec<u32> {
        let step = if fragmented { 2 } else { 1 };
        let cs: Vec<u32> = (0..n as u32).map(|i| self.next + i * step).collect();
        self.next += n as u32 * step;
        for w in cs.windows(2) {
            self.set_fat(w[0], w[1]);
        }
        self.set_fat(*cs.last().unwrap(), 0x0fff_ffff);
        cs
    }

    fn cluster_at(&self, c: u32) -> usize {
        (self.data_start + c as usize - 2) * 512
    }

    /// Writes `data` along `chain`.
    fn write(&mut self, chain: &[u32], data: &[u8]) {
        for (c, chunk) in chain.iter().zip(data.chunks(512)) {
            let at = self.cluster_at(*c);
            self.b[at..at + chunk.len()].copy_from_slice(chunk);
        }
    }

    /// Appends a raw entry to directory `dir` (0: the FAT12/16 root).
    fn entry(&mut self, dir: u32, e: &[u8; 32]) {
        let base = if dir == 0 { self.root_start * 512 } else { self.cluster_at(dir) };
        let slot = (0..16).find(|i| self.b[base + 32 * i] == 0).unwrap();
        self.b[base + 32 * slot..base + 32 * slot + 32].copy_from_slice(e);
    }

    fn short(name: &[u8; 11], attr: u8, case: u8, cluster: u32, size: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        e[12] = case;
        e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
        e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
        e[28..32].copy_from_slice(&size.to_le_bytes());
        e
    }

    /// Long-name entries for `long` (the 8.3 alias `short`), last part first as on disk.
    fn long(long: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
        let mut units: Vec<u16> = long.encode_utf16().collect();
        units.push(0);
        while !units.len().is_multiple_of(13) {
            units.push(0xffff);
        }
        let parts = units.len() / 13;
        let sum = lfn_checksum(short);
        (1..=parts)
            .rev()
            .map(|seq| {
                let mut e = [0u8; 32];
                e[0] = seq as u8 | if seq == parts { 0x40 } else { 0 };
                e[11] = 0x0f;
                e[13] = sum;
                for (k, &i) in [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30].iter().enumerate() {
                    e[i..i + 2].copy_from_slice(&units[(seq - 1) * 13 + k].to_le_bytes());
                }
                e
            })
            .collect()
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A volume with: hello.txt (lower-case 8.3), "A long file name.bin" (3 clusters,
/// fragmented), a directory SUB holding DATA.BIN (1500 bytes), a label and a deleted entry.
fn sample(ty: FatType) -> Vec<u8> {
    let mut img = Img::new(ty);
    let root = if ty == FatType::Fat32 { 2 } else { 0 };
    img.entry(root, &Img::short(b"QUESTSTICK ", 0x08, 0, 0, 0));
    let hello = img.alloc_chain(1, false);
    img.write(&hello, b"hello from the stick\n");
    img.entry(root, &Img::short(b"HELLO   TXT", 0x20, 0x18, hello[0], 21));
    let mut gone = Img::short(b"GONE    TXT", 0x20, 0, hello[0], 21);
    gone[0] = 0xe5;
    img.entry(root, &gone);
    let data = pattern(1300);
    let long = img.alloc_chain(3, true);
    img.write(&long, &data);
    for e in Img::long("A long file name.bin", b"ALONGF~1BIN") {
        img.entry(root, &e);
    }
    img.entry(root, &Img::short(b"ALONGF~1BIN", 0x20, 0, long[0], 1300));
    let sub = img.alloc(1, false);
    img.entry(root, &Img::short(b"SUB        ", 0x10, 0, sub, 0));
    img.entry(sub, &Img::short(b".          ", 0x10, 0, sub, 0));
    img.entry(sub, &Img::short(b"..         ", 0x10, 0, 0, 0));
    let f = img.alloc_chain(3, false);
    img.write(&f, &pattern(1500));
    img.entry(sub, &Img::short(b"DATA    BIN", 0x20, 0, f[0], 1500));
    img.b
}

fn check_sample(ty: FatType) {
    let mut dev = ram(sample(ty));
    let mut v = Volume::open(&mut dev).unwrap();
    assert_eq!(v.fat_type, ty);
    assert_eq!(v.label, if ty == FatType::Fat32 { "QUEST32" } else { "QUESTSTICK" });
    let root = v.root();
    let names: Vec<String> = v.list(&mut dev, &root).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["hello.txt", "A long file name.bin", "SUB"]);
    let h = v.lookup(&mut dev, "/HELLO.TXT").unwrap();
    assert_eq!(v.read(&mut dev, &h, 0, 100).unwrap(), b"hello from the stick\n");
    assert_eq!(v.read(&mut dev, &h, 6, 4).unwrap(), b"from");
    assert_eq!(v.read(&mut dev, &h, 21, 4).unwrap(), b"");
    let l = v.lookup(&mut dev, "a long file name.bin").unwrap();
    assert_eq!(v.read(&mut dev, &l, 0, 10_000).unwrap(), pattern(1300));
    assert_eq!(v.read(&mut dev, &l, 1000, 100).unwrap(), pattern(1300)[1000..1100]);
    let d = v.lookup(&mut dev, "sub/data.bin").unwrap();
    assert_eq!(d.size, 1500);
    assert_eq!(v.read(&mut dev, &d, 0, 1500).unwrap(), pattern(1500));
    assert_eq!(v.lookup(&mut dev, "sub/nothing"), Err(Error::NotFound));
    assert_eq!(v.lookup(&mut dev, "hello.txt/x"), Err(Error::NotADirectory));
    let s = v.lookup(&mut dev, "sub").unwrap();
    assert_eq!(v.read(&mut dev, &s, 0, 1), Err(Error::IsADirectory));
}

#[test]
fn reads_fat12() {
    check_sample(FatType::Fat12);
}

#[test]
fn reads_fat16() {
    check_sample(FatType::Fat16);
}

#[test]
fn reads_fat32() {
    check_sample(FatType::Fat32);
}

#[test]
fn reads_a_volume_in_an_mbr_partition() {
    let vol = sample(FatType::Fat12);
    let mut b = vec![0u8; 63 * 512];
    b[446 + 4] = 0x01;
    b[446 + 8..446 + 12].copy_from_slice(&63u32.to_le_bytes());
    b[510] = 0x55;
    b[511] = 0xaa;
    b.extend_from_slice(&vol);
    let mut dev = ram(b);
    let mut v = Volume::open(&mut dev).unwrap();
    let h = v.lookup(&mut dev, "hello.txt").unwrap();
    assert_eq!(v.read(&mut dev, &h, 0, 5).unwrap(), b"hello");
}

#[test]
fn refuses_what_is_not_fat() {
    assert_eq!(Volume::open(&mut ram(vec![0u8; 1 << 20])).unwrap_err(), Error::Corrupt("no FAT boot sector and no partition table in block 0"));
    let mut b = sample(FatType::Fat16);
    b[13] = 3;
    assert_eq!(Volume::open(&mut ram(b)).unwrap_err(), Error::Corrupt("sectors per cluster"));
}

#[test]
fn a_device_smaller_than_its_volume_is_refused() {
    let mut b = sample(FatType::Fat16);
    b.truncate(4096 * 512);
    assert_eq!(Volume::open(&mut ram(b)).unwrap_err(), Error::Corrupt("the volume is larger than the device"));
}

#[test]
fn a_lying_or_failing_device_gives_errors() {
    // Claims twice its blocks: the volume fits, reads past the real end fail.
    let mut b = sample(FatType::Fat12);
    b.truncate(20 * 512);
    let mut dev = Ram { extra: 2048, ..ram(b) };
    let mut v = Volume::open(&mut dev).unwrap();
    let l = v.lookup(&mut dev, "a long file name.bin").unwrap();
    assert!(matches!(v.read(&mut dev, &l, 0, 2000), Err(Error::Io(_))));
    let mut dev = Ram { fail_from: 1, ..ram(sample(FatType::Fat12)) };
    let mut v = Volume::open(&mut dev).unwrap();
    let e = v.list(&mut dev, &v.root()).unwrap_err();
    assert_eq!(e.to_string(), "device read failed: block 13: medium error");
}

#[test]
fn loops_and_short_chains_are_errors() {
    let mut img = Img::new(FatType::Fat16);
    let c = img.alloc(2, false);
    img.set_fat(c + 1, c); // a loop
    img.entry(0, &Img::short(b"LOOP       ", 0x10, 0, c, 0));
    let f = img.alloc(1, false);
    img.entry(0, &Img::short(b"SHORT      ", 0x20, 0, f, 5000));
    let mut dev = ram(img.b);
    let mut v = Volume::open(&mut dev).unwrap();
    let d = v.lookup(&mut dev, "loop").unwrap();
    assert!(matches!(v.list(&mut dev, &d), Err(Error::Corrupt(_))));
    let s = v.lookup(&mut dev, "short").unwrap();
    assert_eq!(v.read(&mut dev, &s, 0, 5000), Err(Error::Corrupt("a file's cluster chain is shorter than its size")));
    assert_eq!(v.read(&mut dev, &s, 4000, 10), Err(Error::Corrupt("a file's cluster chain is shorter than its size")));
}

#[test]
fn a_fat12_entry_straddling_sectors() {
    // Cluster 341's FAT12 entry occupies bytes 511 and 512 of the FAT.
    let mut img = Img::new(FatType::Fat12);
    img.next = 340;
    let f = img.alloc_chain(3, false);
    img.write(&f, &pattern(1536));
    img.entry(0, &Img::short(b"EDGE       ", 0x20, 0, f[0], 1536));
    let mut dev = ram(img.b);
    let mut v = Volume::open(&mut dev).unwrap();
    let e = v.lookup(&mut dev, "edge").unwrap();
    assert_eq!(v.read(&mut dev, &e, 0, 2000).unwrap(), pattern(1536));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Any bytes changed anywhere in the metadata: every operation returns, no panic.
    #[test]
    fn mutated_volumes_never_panic(ty in 0..3u8, edits in proptest::collection::vec((0usize..40 * 512, any::<u8>()), 1..40)) {
        let ty = [FatType::Fat12, FatType::Fat16, FatType::Fat32][ty as usize];
        let mut b = sample(ty);
        let meta = if ty == FatType::Fat32 { 1200 * 512 } else { 40 * 512 };
        for (at, v) in edits {
            let at = at * meta / (40 * 512);
            b[at] = v;
        }
        let mut dev = ram(b);
        if let Ok(mut v) = Volume::open(&mut dev) {
            let root = v.root();
            if let Ok(es) = v.list(&mut dev, &root) {
                for e in es {
                    let _ = v.read(&mut dev, &e, 0, 1 << 16);
                    let _ = v.list(&mut dev, &e);
                }
            }
            let _ = v.lookup(&mut dev, "sub/data.bin");
        }
    }
}
