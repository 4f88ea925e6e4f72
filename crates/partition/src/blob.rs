//! The boot blob: a compact, versioned, checksummed binary form of a [`Plan`].
//!
//! xtask encodes the plan at build time; the monitor decodes it at boot and validates it again
//! ([`Plan::validate_with_reserved`]). All integers are little-endian and fields are packed
//! without padding. `docs/partition.md` has the byte layout; in short:
//!
//! ```text
//! header (16 bytes)  magic "QVPB" | version u16 = 1 | flags u16 = 0 | total length u32 |
//!                    CRC-32 u32 (IEEE, of the whole blob with this field zero)
//! body               monitor present u8 [start u64, end u64]
//!                    sandbox count u8 | channel count u16
//!                    sandboxes... | channels...
//! ```
//!
//! Decoding never panics, whatever the input, and allocates at most a small multiple of the
//! input's length: every count is checked against the bytes that remain before anything is
//! allocated for it, and the blob is at most [`MAX_BLOB_LEN`] bytes.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::model::{ChannelKind, Console, Image, PciAddr, PhysRange, PortRange};
use crate::plan::{ChannelMap, Plan, PlannedChannel, PlannedSandbox};

/// The first four bytes of a blob.
pub const BLOB_MAGIC: [u8; 4] = *b"QVPB";
/// The format version this crate writes and reads.
pub const BLOB_VERSION: u16 = 1;
/// Size of the header.
pub const BLOB_HEADER_LEN: usize = 16;
/// The largest blob accepted (and written).
pub const MAX_BLOB_LEN: usize = 1 << 20;

// Smallest encodings of the repeated records, to bound counts by the bytes that remain.
const MIN_SANDBOX: usize = 1 + 1 + 16 + 1 + 2 + 2 + 2 + 1;
const MIN_CHANNEL: usize = 4 + 1 + 16 + 1;

/// Why a blob could not be decoded (or a plan encoded).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlobError {
    /// Shorter than the header.
    TooShort {
        /// The input's length.
        len: usize,
    },
    /// The first four bytes are not [`BLOB_MAGIC`].
    BadMagic,
    /// A version this crate does not read.
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// Flags this version does not define.
    BadFlags {
        /// The flags found.
        flags: u16,
    },
    /// The header's length differs from the input's.
    LengthMismatch {
        /// Length in the header.
        declared: u32,
        /// Length of the input.
        actual: usize,
    },
    /// Larger than [`MAX_BLOB_LEN`].
    TooLarge {
        /// The length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The checksum does not match: the blob was damaged.
    ChecksumMismatch {
        /// CRC-32 in the header.
        stored: u32,
        /// CRC-32 computed over the blob.
        computed: u32,
    },
    /// The body ends in the middle of a field.
    Truncated {
        /// Offset of the field.
        offset: usize,
        /// The field.
        what: &'static str,
    },
    /// A count larger than the rest of the blob could hold.
    BadCount {
        /// Offset of the count.
        offset: usize,
        /// What is counted.
        what: &'static str,
        /// The count.
        count: usize,
    },
    /// A field with a value the format does not define.
    BadValue {
        /// Offset of the field.
        offset: usize,
        /// The field.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A string that is not UTF-8.
    BadUtf8 {
        /// Offset of the string.
        offset: usize,
        /// The field.
        what: &'static str,
    },
    /// Bytes after the last channel.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// (Encoding) a list or string longer than its field can say, or a blob over
    /// [`MAX_BLOB_LEN`]. Plans that pass validation always encode.
    Unencodable {
        /// What is too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The format's limit.
        max: usize,
    },
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BlobError::*;
        match self {
            TooShort { len } => write!(f, "partition blob is {len} bytes, shorter than its header"),
            BadMagic => f.write_str("not a partition blob (bad magic)"),
            UnsupportedVersion { version } => write!(
                f,
                "partition blob version {version} is not supported (this build reads {BLOB_VERSION})"
            ),
            BadFlags { flags } => write!(f, "partition blob has unknown flags {flags:#x}"),
            LengthMismatch { declared, actual } => write!(
                f,
                "partition blob header says {declared} bytes but {actual} were given"
            ),
            TooLarge { len, max } => write!(f, "partition blob is {len} bytes (at most {max})"),
            ChecksumMismatch { stored, computed } => write!(
                f,
                "partition blob checksum mismatch: header {stored:#010x}, computed {computed:#010x}"
            ),
            Truncated { offset, what } => {
                write!(f, "partition blob ends inside {what} at offset {offset}")
            }
            BadCount {
                offset,
                what,
                count,
            } => write!(
                f,
                "partition blob {what} count {count} at offset {offset} exceeds the rest of the blob"
            ),
            BadValue {
                offset,
                what,
                value,
            } => {
                write!(
                    f,
                    "partition blob has invalid {what} {value} at offset {offset}"
                )
            }
            BadUtf8 { offset, what } => {
                write!(f, "partition blob {what} at offset {offset} is not UTF-8")
            }
            TrailingBytes { count } => {
                write!(f, "partition blob has {count} bytes after its last channel")
            }
            Unencodable { what, len, max } => {
                write!(f, "cannot encode {what} of length {len} (at most {max})")
            }
        }
    }
}

impl core::error::Error for BlobError {}

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

fn crc_update(mut c: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`): `crc32(b"123456789") == 0xcbf4_3926`.
pub fn crc32(bytes: &[u8]) -> u32 {
    !crc_update(!0, bytes)
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn range(&mut self, r: PhysRange) {
        self.u64(r.start);
        self.u64(r.end);
    }
    fn count8(&mut self, what: &'static str, n: usize) -> Result<(), BlobError> {
        let v = u8::try_from(n).map_err(|_| BlobError::Unencodable {
            what,
            len: n,
            max: 0xff,
        })?;
        self.u8(v);
        Ok(())
    }
    fn count16(&mut self, what: &'static str, n: usize) -> Result<(), BlobError> {
        let v = u16::try_from(n).map_err(|_| BlobError::Unencodable {
            what,
            len: n,
            max: 0xffff,
        })?;
        self.u16(v);
        Ok(())
    }
    fn str16(&mut self, what: &'static str, s: &str) -> Result<(), BlobError> {
        self.count16(what, s.len())?;
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], BlobError> {
        let truncated = BlobError::Truncated {
            offset: self.pos,
            what,
        };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let s = self.buf.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], BlobError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, BlobError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, BlobError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, BlobError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, BlobError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn range(&mut self, what: &'static str) -> Result<PhysRange, BlobError> {
        Ok(PhysRange {
            start: self.u64(what)?,
            end: self.u64(what)?,
        })
    }
    /// A count already read at `offset`, checked against the bytes that remain.
    fn bound(
        &self,
        offset: usize,
        what: &'static str,
        count: usize,
        min_item: usize,
    ) -> Result<usize, BlobError> {
        match count.checked_mul(min_item) {
            Some(n) if n <= self.remaining() => Ok(count),
            _ => Err(BlobError::BadCount {
                offset,
                what,
                count,
            }),
        }
    }
    fn count8(&mut self, what: &'static str, min_item: usize) -> Result<usize, BlobError> {
        let offset = self.pos;
        let n = usize::from(self.u8(what)?);
        self.bound(offset, what, n, min_item)
    }
    fn count16(&mut self, what: &'static str, min_item: usize) -> Result<usize, BlobError> {
        let offset = self.pos;
        let n = usize::from(self.u16(what)?);
        self.bound(offset, what, n, min_item)
    }
    fn string(&mut self, len: usize, what: &'static str) -> Result<String, BlobError> {
        let offset = self.pos;
        let bytes = self.take(len, what)?;
        let s = core::str::from_utf8(bytes).map_err(|_| BlobError::BadUtf8 { offset, what })?;
        Ok(String::from(s))
    }
    fn str16(&mut self, what: &'static str) -> Result<String, BlobError> {
        let n = self.count16(what, 1)?;
        self.string(n, what)
    }
    fn bad(&self, offset: usize, what: &'static str, value: u64) -> BlobError {
        BlobError::BadValue {
            offset,
            what,
            value,
        }
    }
}

impl Plan {
    /// The blob for this plan.
    ///
    /// # Panics
    /// If a list or string is longer than the format can say (see [`Plan::try_encode`]); a plan
    /// that passes validation never is.
    pub fn encode(&self) -> Vec<u8> {
        match self.try_encode() {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// The blob for this plan, or which list or string is too long for the format.
    pub fn try_encode(&self) -> Result<Vec<u8>, BlobError> {
        let mut w = Writer(Vec::with_capacity(256));
        w.0.extend_from_slice(&BLOB_MAGIC);
        w.u16(BLOB_VERSION);
        w.u16(0); // flags
        w.u32(0); // total length, patched below
        w.u32(0); // checksum, patched below

        match self.monitor {
            None => w.u8(0),
            Some(r) => {
                w.u8(1);
                w.range(r);
            }
        }
        w.count8("sandbox list", self.sandboxes.len())?;
        w.count16("channel list", self.channels.len())?;
        for sb in &self.sandboxes {
            w.u8(sb.id);
            w.count8("sandbox name", sb.name.len())?;
            w.0.extend_from_slice(sb.name.as_bytes());
            w.range(sb.ram);
            w.u8(match sb.console {
                Console::None => 0,
                Console::Com(0) => {
                    return Err(BlobError::Unencodable {
                        what: "console COM0",
                        len: 0,
                        max: 0,
                    });
                }
                Console::Com(n) => n,
            });
            w.count16("CPU list", sb.cpus.len())?;
            for &c in &sb.cpus {
                w.u32(c);
            }
            w.count16("I/O port list", sb.io_ports.len())?;
            for p in &sb.io_ports {
                w.u16(p.first);
                w.u16(p.last);
            }
            w.count16("PCI list", sb.pci.len())?;
            for p in &sb.pci {
                w.u8(p.bus);
                w.u8(p.dev);
                w.u8(p.func);
            }
            match &sb.image {
                Image::Quest => w.u8(0),
                Image::Linux {
                    kernel,
                    initrd,
                    cmdline,
                } => {
                    w.u8(1);
                    w.str16("kernel path", kernel)?;
                    match initrd {
                        None => w.u8(0),
                        Some(i) => {
                            w.u8(1);
                            w.str16("initrd path", i)?;
                        }
                    }
                    w.str16("kernel command line", cmdline)?;
                }
            }
        }
        for ch in &self.channels {
            w.u32(ch.key);
            w.u8(match ch.kind {
                None => 0,
                Some(ChannelKind::Async) => 1,
                Some(ChannelKind::Sync) => 2,
            });
            w.range(ch.phys);
            w.count8("channel map list", ch.maps.len())?;
            for m in &ch.maps {
                w.u8(m.sandbox);
                w.u64(m.guest);
            }
        }

        let len = w.0.len();
        if len > MAX_BLOB_LEN {
            return Err(BlobError::Unencodable {
                what: "blob",
                len,
                max: MAX_BLOB_LEN,
            });
        }
        w.0[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        let crc = crc32(&w.0);
        w.0[12..16].copy_from_slice(&crc.to_le_bytes());
        Ok(w.0)
    }

    /// Reads a blob. Checks the header, length and checksum, then the structure; the meaning
    /// (overlaps, CPUs, devices...) is checked by [`Plan::validate_with_reserved`], which the
    /// monitor runs next. Never panics; allocates O(`bytes.len()`).
    pub fn decode(bytes: &[u8]) -> Result<Plan, BlobError> {
        if bytes.len() < BLOB_HEADER_LEN {
            return Err(BlobError::TooShort { len: bytes.len() });
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.array::<4>("magic")? != BLOB_MAGIC {
            return Err(BlobError::BadMagic);
        }
        let version = r.u16("version")?;
        if version != BLOB_VERSION {
            return Err(BlobError::UnsupportedVersion { version });
        }
        let flags = r.u16("flags")?;
        if flags != 0 {
            return Err(BlobError::BadFlags { flags });
        }
        let declared = r.u32("length")?;
        if bytes.len() > MAX_BLOB_LEN {
            return Err(BlobError::TooLarge {
                len: bytes.len(),
                max: MAX_BLOB_LEN,
            });
        }
        if usize::try_from(declared).ok() != Some(bytes.len()) {
            return Err(BlobError::LengthMismatch {
                declared,
                actual: bytes.len(),
            });
        }
        let stored = r.u32("checksum")?;
        let mut zeroed = [0u8; BLOB_HEADER_LEN];
        zeroed[..12].copy_from_slice(&bytes[..12]);
        // CRC of the header with a zero checksum field, then the body (not copied).
        let computed = !crc_update(crc_update(!0, &zeroed), &bytes[BLOB_HEADER_LEN..]);
        if stored != computed {
            return Err(BlobError::ChecksumMismatch { stored, computed });
        }

        let at = r.pos;
        let monitor = match r.u8("monitor flag")? {
            0 => None,
            1 => Some(r.range("monitor range")?),
            v => return Err(r.bad(at, "monitor flag", v.into())),
        };
        let n_sandboxes = r.count8("sandbox list", MIN_SANDBOX)?;
        let at = r.pos;
        let n_channels = usize::from(r.u16("channel list")?);
        // Channels come after the sandboxes, so this bound is loose; it still caps allocation.
        let n_channels = r.bound(at, "channel list", n_channels, MIN_CHANNEL)?;

        let mut sandboxes = Vec::with_capacity(n_sandboxes);
        for _ in 0..n_sandboxes {
            let id = r.u8("sandbox id")?;
            let n = r.count8("sandbox name", 1)?;
            let name = r.string(n, "sandbox name")?;
            let ram = r.range("sandbox RAM range")?;
            let console = match r.u8("console")? {
                0 => Console::None,
                n => Console::Com(n),
            };
            let n = r.count16("CPU list", 4)?;
            let mut cpus = Vec::with_capacity(n);
            for _ in 0..n {
                cpus.push(r.u32("CPU index")?);
            }
            let n = r.count16("I/O port list", 4)?;
            let mut io_ports = Vec::with_capacity(n);
            for _ in 0..n {
                io_ports.push(PortRange {
                    first: r.u16("I/O port")?,
                    last: r.u16("I/O port")?,
                });
            }
            let n = r.count16("PCI list", 3)?;
            let mut pci = Vec::with_capacity(n);
            for _ in 0..n {
                let [bus, dev, func] = r.array::<3>("PCI address")?;
                pci.push(PciAddr { bus, dev, func });
            }
            let at = r.pos;
            let image = match r.u8("image kind")? {
                0 => Image::Quest,
                1 => {
                    let kernel = r.str16("kernel path")?;
                    let at = r.pos;
                    let initrd = match r.u8("initrd flag")? {
                        0 => None,
                        1 => Some(r.str16("initrd path")?),
                        v => return Err(r.bad(at, "initrd flag", v.into())),
                    };
                    let cmdline = r.str16("kernel command line")?;
                    Image::Linux {
                        kernel,
                        initrd,
                        cmdline,
                    }
                }
                v => return Err(r.bad(at, "image kind", v.into())),
            };
            sandboxes.push(PlannedSandbox {
                id,
                name,
                cpus,
                ram,
                image,
                console,
                io_ports,
                pci,
            });
        }

        let mut channels = Vec::with_capacity(n_channels);
        for _ in 0..n_channels {
            let key = r.u32("channel key")?;
            let at = r.pos;
            let kind = match r.u8("channel kind")? {
                0 => None,
                1 => Some(ChannelKind::Async),
                2 => Some(ChannelKind::Sync),
                v => return Err(r.bad(at, "channel kind", v.into())),
            };
            let phys = r.range("channel range")?;
            let n = r.count8("channel map list", 9)?;
            let mut maps = Vec::with_capacity(n);
            for _ in 0..n {
                maps.push(ChannelMap {
                    sandbox: r.u8("map sandbox")?,
                    guest: r.u64("map address")?,
                });
            }
            channels.push(PlannedChannel {
                key,
                kind,
                phys,
                maps,
            });
        }

        if r.remaining() != 0 {
            return Err(BlobError::TrailingBytes {
                count: r.remaining(),
            });
        }
        Ok(Plan {
            monitor,
            sandboxes,
            channels,
        })
    }
}

/// Why the monitor refuses a blob at boot: it does not decode, or the plan it holds is invalid
/// for this machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LoadError {
    /// The bytes are not a well-formed blob.
    Blob(BlobError),
    /// The plan breaks these rules (all of them, in validation order).
    Invalid(Vec<crate::Error>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Blob(e) => write!(f, "{e}"),
            LoadError::Invalid(errs) => {
                write!(f, "partition plan is invalid for this machine:")?;
                for e in errs {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl core::error::Error for LoadError {}

impl Plan {
    /// What the monitor does at boot: [`Plan::decode`] then
    /// [`Plan::validate_with_reserved`] against the real machine and the memory the plan must
    /// not touch (the monitor image, boot modules, firmware regions).
    pub fn load(
        bytes: &[u8],
        machine: &crate::Machine,
        reserved: &[PhysRange],
    ) -> Result<Plan, LoadError> {
        let plan = Plan::decode(bytes).map_err(LoadError::Blob)?;
        plan.validate_with_reserved(machine, reserved)
            .map_err(LoadError::Invalid)?;
        Ok(plan)
    }
}
