//! A read-only FAT12/16/32 file system reader over any block device (the kernel's USB mass
//! storage at `/usb`), without hardware: the whole volume is outside input and every
//! structure read from it is checked — a malformed boot sector, a cluster chain that loops or
//! leaves the volume, a directory entry pointing outside it, a file longer than its chain, a
//! device whose reads fail — gives an [`Error`] naming the problem, never a panic
//! (proptest mutations here, the `fat_volume` fuzz target in `crates/fuzz-targets`).
//!
//! Hand-written rather than taken from a crate: `fatfs` 0.3 (the released version) is no_std
//! only through the `core_io` crate, which builds on particular old nightly compilers only;
//! `embedded-sdmmc` 0.10 refuses FAT12 (what `mkfs.fat`/`mformat` make for small sticks), keeps
//! its state in a `RefCell` behind fixed tables of open handles and reads short (8.3) names
//! only. A read-only reader is small: the boot sector (BPB), the FAT, directory entries with
//! long names (VFAT), cluster chains. Layouts follow Microsoft's "FAT: General Overview of
//! On-Disk Format" 1.03.
//!
//! Supported: FAT12, FAT16, FAT32, a volume at sector 0 ("superfloppy") or in the first FAT
//! partition of an MBR, sectors of 512–4096 bytes (a multiple of the device's block size),
//! long file names (UCS-2 outside ASCII shown as `?`), the 8.3 lower-case flags mtools and
//! Windows set. Not supported yet: writing, exFAT.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Why the volume or a file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The device failed a read (its own message).
    Io(String),
    /// The volume's structures are malformed (what is wrong).
    Corrupt(&'static str),
    /// A valid volume this reader does not handle.
    NotSupported(&'static str),
    NotFound,
    NotADirectory,
    IsADirectory,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "device read failed: {e}"),
            Error::Corrupt(e) => write!(f, "malformed FAT volume: {e}"),
            Error::NotSupported(e) => write!(f, "not supported yet: {e}"),
            Error::NotFound => f.write_str("no such file"),
            Error::NotADirectory => f.write_str("not a directory"),
            Error::IsADirectory => f.write_str("is a directory"),
        }
    }
}

/// What the reader needs from a device: whole blocks.
pub trait BlockDevice {
    /// Block size in bytes (a power of two, 512–4096).
    fn block_size(&self) -> usize;
    /// Number of blocks.
    fn blocks(&self) -> u64;
    /// Reads `buf.len() / block_size()` blocks from block `lba` (`buf.len()` is a multiple of
    /// the block size). A device that reads less must return an error.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String>;
}

/// FAT width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

/// A directory entry (or the root directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u32,
    /// First cluster (0: empty file, or the FAT12/16 root directory).
    pub cluster: u32,
}

/// An opened (mounted) volume: the boot sector's geometry, checked against the device.
#[derive(Clone, Debug)]
pub struct Volume {
    pub fat_type: FatType,
    /// The volume's first block on the device.
    start: u64,
    /// Device blocks per sector.
    bps_blocks: u64,
    pub bytes_per_sector: u32,
    pub sectors_per_cluster: u32,
    fat_start: u64,
    fat_sectors: u64,
    root_start: u64,
    root_sectors: u64,
    data_start: u64,
    /// Data clusters (numbered 2 ..= clusters + 1).
    pub clusters: u32,
    root_cluster: u32,
    pub label: String,
    /// One cached FAT sector (sector number, bytes).
    cache: Option<(u64, Vec<u8>)>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Boot sector jump (EB xx 90 or E9 xx xx) and a plausible bytes-per-sector field.
fn looks_like_bpb(b: &[u8]) -> bool {
    (b[0] == 0xeb && b[2] == 0x90 || b[0] == 0xe9) && matches!(le16(b, 11), 512 | 1024 | 2048 | 4096)
}

impl Volume {
    /// Reads and checks the boot sector (at block 0, or in the MBR's first FAT partition).
    pub fn open(dev: &mut dyn BlockDevice) -> Result<Volume, Error> {
        let bs = dev.block_size();
        if !bs.is_power_of_two() || !(512..=4096).contains(&bs) {
            return Err(Error::NotSupported("a device block size other than 512-4096 bytes"));
        }
        let mut b = vec![0u8; bs];
        dev.read(0, &mut b).map_err(Error::Io)?;
        let mut start = 0u64;
        if !looks_like_bpb(&b) {
            if b[510] != 0x55 || b[511] != 0xaa {
                return Err(Error::Corrupt("no FAT boot sector and no partition table in block 0"));
            }
            let part = (0..4).map(|i| &b[446 + 16 * i..462 + 16 * i]).find(|p| matches!(p[4], 0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e));
            let p = part.ok_or(Error::NotSupported("a partition table without a FAT partition"))?;
            start = u64::from(le32(p, 8));
            if start == 0 || start >= dev.blocks() {
                return Err(Error::Corrupt("the FAT partition starts outside the device"));
            }
            dev.read(start, &mut b).map_err(Error::Io)?;
            if !looks_like_bpb(&b) {
                return Err(Error::Corrupt("the FAT partition has no boot sector"));
            }
        }
        Volume::parse(&b, start, bs, dev.blocks())
    }

    fn parse(b: &[u8], start: u64, block_size: usize, blocks: u64) -> Result<Volume, Error> {
        let bps = u32::from(le16(b, 11));
        if bps < block_size as u32 {
            return Err(Error::NotSupported("sectors smaller than the device's blocks"));
        }
        let spc = u32::from(b[13]);
        if spc == 0 || !spc.is_power_of_two() || bps * spc > 256 * 1024 {
            return Err(Error::Corrupt("sectors per cluster"));
        }
        let reserved = u64::from(le16(b, 14));
        let fats = u64::from(b[16]);
        let root_entries = u64::from(le16(b, 17));
        let total = if le16(b, 19) != 0 { u64::from(le16(b, 19)) } else { u64::from(le32(b, 32)) };
        let fat_sectors = if le16(b, 22) != 0 { u64::from(le16(b, 22)) } else { u64::from(le32(b, 36)) };
        if reserved == 0 || fats == 0 || fat_sectors == 0 || total == 0 {
            return Err(Error::Corrupt("zero reserved sectors, FATs, FAT size or volume size"));
        }
        let root_sectors = (root_entries * 32).div_ceil(u64::from(bps));
        let fat_start = reserved;
        let root_start = fat_start + fats * fat_sectors;
        let data_start = root_start + root_sectors;
        if data_start >= total {
            return Err(Error::Corrupt("no room for data after the FATs and root directory"));
        }
        let bps_blocks = u64::from(bps) / block_size as u64;
        if start + total * bps_blocks > blocks {
            return Err(Error::Corrupt("the volume is larger than the device"));
        }
        let clusters = (total - data_start) / u64::from(spc);
        let fat_type = if clusters < 4085 {
            FatType::Fat12
        } else if clusters < 65525 {
            FatType::Fat16
        } else {
            FatType::Fat32
        };
        let clusters = u32::try_from(clusters).map_err(|_| Error::Corrupt("too many clusters"))?.min(0x0fff_fff5);
        // The FAT must hold an entry for every cluster.
        let fat_bits = match fat_type {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        };
        if (u64::from(clusters) + 2) * fat_bits > fat_sectors * u64::from(bps) * 8 {
            return Err(Error::Corrupt("the FAT is too small for the volume's clusters"));
        }
        let (root_cluster, label_at) = if fat_type == FatType::Fat32 {
            if root_entries != 0 || le16(b, 22) != 0 {
                return Err(Error::Corrupt("FAT32 with a FAT16 root directory or FAT size"));
            }
            (le32(b, 44) & 0x0fff_ffff, 71)
        } else {
            if root_entries == 0 {
                return Err(Error::Corrupt("FAT12/16 without root directory entries"));
            }
            (0, 43)
        };
        if fat_type == FatType::Fat32 && !(2..u64::from(clusters) + 2).contains(&u64::from(root_cluster)) {
            return Err(Error::Corrupt("the root directory's cluster is outside the volume"));
        }
        let sig = if fat_type == FatType::Fat32 { b[66] } else { b[38] };
        let label = if sig == 0x29 { short_text(&b[label_at..label_at + 11]) } else { String::new() };
        Ok(Volume {
            fat_type,
            start,
            bps_blocks,
            bytes_per_sector: bps,
            sectors_per_cluster: spc,
            fat_start,
            fat_sectors,
            root_start,
            root_sectors,
            data_start,
            clusters,
            root_cluster,
            label,
            cache: None,
        })
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> usize {
        (self.bytes_per_sector * self.sectors_per_cluster) as usize
    }

    fn read_sectors(&self, dev: &mut dyn BlockDevice, sector: u64, buf: &mut [u8]) -> Result<(), Error> {
        dev.read(self.start + sector * self.bps_blocks, buf).map_err(Error::Io)
    }

    fn fat_byte(&mut self, dev: &mut dyn BlockDevice, offset: u64) -> Result<u8, Error> {
        let bps = u64::from(self.bytes_per_sector);
        let sector = offset / bps;
        if sector >= self.fat_sectors {
            return Err(Error::Corrupt("a FAT entry beyond the FAT"));
        }
        if self.cache.as_ref().is_none_or(|(s, _)| *s != sector) {
            let mut b = vec![0u8; bps as usize];
            self.read_sectors(dev, self.fat_start + sector, &mut b)?;
            self.cache = Some((sector, b));
        }
        let (_, b) = self.cache.as_ref().ok_or(Error::Corrupt("FAT cache"))?;
        Ok(b[(offset % bps) as usize])
    }

    /// The cluster after `c` in its chain, or None at the chain's end.
    pub fn next_cluster(&mut self, dev: &mut dyn BlockDevice, c: u32) -> Result<Option<u32>, Error> {
        if !(2..self.clusters + 2).contains(&c) {
            return Err(Error::Corrupt("a cluster number outside the volume"));
        }
        let c64 = u64::from(c);
        let (v, end) = match self.fat_type {
            FatType::Fat12 => {
                let off = c64 + c64 / 2;
                let w = u16::from(self.fat_byte(dev, off)?) | u16::from(self.fat_byte(dev, off + 1)?) << 8;
                (u32::from(if c & 1 == 0 { w & 0xfff } else { w >> 4 }), 0xff8)
            }
            FatType::Fat16 => {
                let off = c64 * 2;
                (u32::from(self.fat_byte(dev, off)?) | u32::from(self.fat_byte(dev, off + 1)?) << 8, 0xfff8)
            }
            FatType::Fat32 => {
                let off = c64 * 4;
                let mut v = 0u32;
                for i in 0..4 {
                    v |= u32::from(self.fat_byte(dev, off + i)?) << (8 * i);
                }
                (v & 0x0fff_ffff, 0x0fff_fff8)
            }
        };
        if v >= end {
            return Ok(None);
        }
        if !(2..self.clusters + 2).contains(&v) {
            return Err(Error::Corrupt(if v == 0 { "a cluster chain runs into a free cluster" } else { "a cluster chain leaves the volume or meets a bad cluster" }));
        }
        Ok(Some(v))
    }

    fn read_cluster(&self, dev: &mut dyn BlockDevice, c: u32, buf: &mut [u8]) -> Result<(), Error> {
        let sector = self.data_start + u64::from(c - 2) * u64::from(self.sectors_per_cluster);
        self.read_sectors(dev, sector, buf)
    }

    /// The root directory.
    pub fn root(&self) -> Entry {
        Entry { name: String::from("/"), is_dir: true, size: 0, cluster: self.root_cluster }
    }

    /// The entries of directory `d` (without `.` and `..`, volume labels and deleted entries).
    pub fn list(&mut self, dev: &mut dyn BlockDevice, d: &Entry) -> Result<Vec<Entry>, Error> {
        if !d.is_dir {
            return Err(Error::NotADirectory);
        }
        let mut raw = Vec::new();
        if d.cluster == 0 {
            if self.fat_type == FatType::Fat32 {
                return Err(Error::Corrupt("a directory entry with no cluster"));
            }
            raw = vec![0u8; (self.root_sectors * u64::from(self.bytes_per_sector)) as usize];
            self.read_sectors(dev, self.root_start, &mut raw)?;
        } else {
            // A directory is at most 65536 entries (2 MiB): longer chains are malformed.
            for c in self.chain(dev, d.cluster, 2 << 20)? {
                let at = raw.len();
                raw.resize(at + self.cluster_bytes(), 0);
                self.read_cluster(dev, c, &mut raw[at..])?;
            }
        }
        Ok(parse_dir(&raw, self.clusters))
    }

    /// The clusters of the chain from `first`, at most `max_bytes` worth of them (more is a
    /// loop or a malformed chain).
    fn chain(&mut self, dev: &mut dyn BlockDevice, first: u32, max_bytes: u64) -> Result<Vec<u32>, Error> {
        let limit = max_bytes.div_ceil(self.cluster_bytes() as u64).min(u64::from(self.clusters)) as usize;
        let mut v = vec![first];
        let mut c = first;
        while let Some(n) = self.next_cluster(dev, c)? {
            if v.len() >= limit {
                return Err(Error::Corrupt("a cluster chain longer than its file or directory (a loop?)"));
            }
            v.push(n);
            c = n;
        }
        Ok(v)
    }

    /// Looks `path` (components separated by `/`, case-insensitive as FAT is) up from the root.
    pub fn lookup(&mut self, dev: &mut dyn BlockDevice, path: &str) -> Result<Entry, Error> {
        let mut cur = self.root();
        for name in path.split('/').filter(|c| !c.is_empty()) {
            let entries = self.list(dev, &cur)?;
            cur = entries.into_iter().find(|e| e.name.eq_ignore_ascii_case(name)).ok_or(Error::NotFound)?;
        }
        Ok(cur)
    }

    /// Up to `max` bytes of file `f` from `pos` (fewer at its end).
    pub fn read(&mut self, dev: &mut dyn BlockDevice, f: &Entry, pos: u64, max: usize) -> Result<Vec<u8>, Error> {
        if f.is_dir {
            return Err(Error::IsADirectory);
        }
        let size = u64::from(f.size);
        if pos >= size || max == 0 {
            return Ok(Vec::new());
        }
        if f.cluster == 0 {
            return Err(Error::Corrupt("a non-empty file with no cluster"));
        }
        let end = size.min(pos.saturating_add(max as u64));
        let cb = self.cluster_bytes() as u64;
        // Walk the chain to `pos`'s cluster; the chain must cover the file's size.
        let mut c = f.cluster;
        for _ in 0..pos / cb {
            c = self.next_cluster(dev, c)?.ok_or(Error::Corrupt("a file's cluster chain is shorter than its size"))?;
        }
        let mut out = Vec::with_capacity((end - pos) as usize);
        let mut buf = vec![0u8; cb as usize];
        let mut at = pos;
        loop {
            self.read_cluster(dev, c, &mut buf)?;
            let from = (at % cb) as usize;
            let n = ((cb - at % cb).min(end - at)) as usize;
            out.extend_from_slice(&buf[from..from + n]);
            at += n as u64;
            if at >= end {
                return Ok(out);
            }
            c = self.next_cluster(dev, c)?.ok_or(Error::Corrupt("a file's cluster chain is shorter than its size"))?;
        }
    }
}

/// An 8.3 field as text (trailing spaces dropped, bytes outside ASCII as `?`).
fn short_text(b: &[u8]) -> String {
    let s: String = b.iter().map(|&c| if (0x20..0x7f).contains(&c) { c as char } else { '?' }).collect();
    String::from(s.trim_end())
}

/// The checksum of an 8.3 name that its long-name entries carry.
fn lfn_checksum(name: &[u8]) -> u8 {
    name.iter().fold(0u8, |s, &c| s.rotate_right(1).wrapping_add(c))
}

/// Directory entries from a directory's raw bytes; entries pointing outside the volume's
/// `clusters` are left out (a malformed entry is not listed rather than failing the listing).
fn parse_dir(raw: &[u8], clusters: u32) -> Vec<Entry> {
    let mut out = Vec::new();
    // Long-name parts collected so far: (checksum, expected next sequence number, UCS-2 units).
    let mut lfn: Option<(u8, u8, Vec<u16>)> = None;
    for e in raw.chunks_exact(32) {
        match e[0] {
            0 => break,
            0xe5 => {
                lfn = None;
                continue;
            }
            _ => {}
        }
        let attr = e[11];
        if attr & 0x3f == 0x0f {
            let seq = e[0] & 0x1f;
            let units: Vec<u16> = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30].iter().map(|&i| le16(e, i)).collect();
            if e[0] & 0x40 != 0 && (1..=20).contains(&seq) {
                let mut v = vec![0u16; 13 * usize::from(seq)];
                v[13 * usize::from(seq - 1)..].copy_from_slice(&units);
                lfn = Some((e[13], seq - 1, v));
            } else if let Some((sum, next, v)) = lfn.as_mut() {
                if seq == *next && seq >= 1 && e[13] == *sum {
                    v[13 * usize::from(seq - 1)..13 * usize::from(seq)].copy_from_slice(&units);
                    *next -= 1;
                } else {
                    lfn = None;
                }
            }
            continue;
        }
        let long = lfn.take();
        if attr & 0x08 != 0 {
            continue; // volume label
        }
        let short = &e[0..11];
        if short == b".          " || short == b"..         " {
            continue;
        }
        let name = match long {
            Some((sum, 0, v)) if sum == lfn_checksum(short) => {
                let s: String = v.iter().take_while(|&&u| u != 0 && u != 0xffff).map(|&u| if u < 0x80 { u as u8 as char } else { '?' }).collect();
                s
            }
            _ => {
                let mut base = short_text(&e[0..8]);
                let mut ext = short_text(&e[8..11]);
                if e[0] == 0x05 {
                    base.replace_range(0..1, "?");
                }
                if e[12] & 0x08 != 0 {
                    base.make_ascii_lowercase();
                }
                if e[12] & 0x10 != 0 {
                    ext.make_ascii_lowercase();
                }
                if ext.is_empty() { base } else { alloc::format!("{base}.{ext}") }
            }
        };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            continue;
        }
        let cluster = (u32::from(le16(e, 20)) << 16 | u32::from(le16(e, 26))) & 0x0fff_ffff;
        if cluster != 0 && !(2..clusters + 2).contains(&cluster) {
            continue;
        }
        let is_dir = attr & 0x10 != 0;
        out.push(Entry { name, is_dir, size: if is_dir { 0 } else { le32(e, 28) }, cluster });
    }
    out
}

#[cfg(test)]
mod tests;
