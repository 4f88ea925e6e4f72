//! SVR4 "newc" cpio archives, the format of Quest's read-only `/boot` initrd.
//!
//! * The **reader** ([`Archive`], [`Entries`], [`Entry`]) needs no allocator: entries borrow
//!   their name and data from the archive bytes. The kernel uses it on the boot module.
//! * The **writer** (`Writer`, behind the `alloc` feature) builds an archive in a
//!   `Vec<u8>`; the build tool (`xtask`) uses it to make `/boot`.
//!
//! # Format
//!
//! An archive is a sequence of entries, each a 110-byte ASCII header, the NUL-terminated path
//! name, and the file data; the name and the data are each padded with NULs so that what
//! follows starts at a multiple of 4 bytes from the start of the archive. The header is the
//! magic `070701` (or `070702`: the same with a checksum) and thirteen 8-digit hexadecimal
//! fields: `ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor
//! namesize check`. `namesize` counts the terminating NUL. `check` is 0 for `070701`; for
//! `070702` it is, for regular files, the sum of all data bytes modulo 2³² (other entry types
//! carry 0, as GNU cpio writes them, and it is not checked). The entry named `TRAILER!!!` ends the
//! archive; anything after it (tools usually pad to 512 bytes) is ignored.
//!
//! # Robustness
//!
//! The reader parses untrusted input. Every malformed archive yields an [`Error`] naming what
//! is wrong and where; the reader never panics, never indexes out of bounds (the crate
//! forbids `unsafe`, and all slicing is checked) and always terminates (every entry advances
//! by at least 112 bytes, and iteration stops at the first error). Property tests feed it
//! random bytes and mutated, truncated archives.
//!
//! ```
//! # #[cfg(feature = "alloc")] {
//! use cpio::{Archive, Writer};
//!
//! let mut w = Writer::new();
//! w.add_dir("etc", 0o755).unwrap();
//! w.add_file("etc/motd", 0o644, b"welcome to Quest\n").unwrap();
//! let bytes = w.finish();
//!
//! let archive = Archive::new(&bytes);
//! let motd = archive.find("/etc/motd").unwrap();
//! assert!(motd.is_file());
//! assert_eq!(motd.data, b"welcome to Quest\n");
//! for entry in archive.entries() {
//!     let entry = entry.unwrap();
//!     println!("{:o} {}", entry.mode, entry.name);
//! }
//! # }
//! ```

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;

mod reader;
#[cfg(any(feature = "alloc", test))]
mod writer;

#[cfg(test)]
mod tests;

pub use reader::{Archive, Entries, Entry, normalize_path};
#[cfg(any(feature = "alloc", test))]
pub use writer::{WriteError, Writer};

/// Magic of the plain newc format.
pub const MAGIC_NEWC: &[u8; 6] = b"070701";
/// Magic of the newc format with a data checksum.
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// Length of an entry header in bytes.
pub const HEADER_LEN: usize = 110;
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// Mask of the file-type bits of [`Entry::mode`].
pub const S_IFMT: u32 = 0o170_000;
/// File type: directory.
pub const S_IFDIR: u32 = 0o040_000;
/// File type: character device.
pub const S_IFCHR: u32 = 0o020_000;
/// File type: regular file.
pub const S_IFREG: u32 = 0o100_000;
/// File type: symbolic link (the data is the target path).
pub const S_IFLNK: u32 = 0o120_000;

/// Which of the two newc variants an entry uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// Magic `070701`, no checksum.
    #[default]
    Newc,
    /// Magic `070702`: the `check` field of a regular file is the sum of its data bytes, and
    /// the reader verifies it.
    Crc,
}

impl Format {
    /// The six magic bytes of this format.
    pub const fn magic(self) -> &'static [u8; 6] {
        match self {
            Format::Newc => MAGIC_NEWC,
            Format::Crc => MAGIC_CRC,
        }
    }
}

/// The checksum of a `070702` entry: the sum of its data bytes modulo 2³².
pub fn checksum(data: &[u8]) -> u32 {
    data.iter()
        .fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

/// Why an archive could not be read. Every variant carries `offset`, the byte offset (from
/// the start of the archive) of the header of the entry at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer than 110 bytes remain where a header should start.
    TruncatedHeader {
        /// Offset of the header.
        offset: usize,
    },
    /// The header does not start with `070701` or `070702`.
    BadMagic {
        /// Offset of the header.
        offset: usize,
    },
    /// A header field is not 8 hexadecimal digits.
    InvalidHex {
        /// Offset of the header.
        offset: usize,
        /// Name of the field, as in the format description (`"filesize"`, `"namesize"`...).
        field: &'static str,
    },
    /// The name (of length `namesize`) runs past the end of the input.
    NameTruncated {
        /// Offset of the header.
        offset: usize,
    },
    /// The last byte of the name is not NUL (or `namesize` is 0).
    NameNotTerminated {
        /// Offset of the header.
        offset: usize,
    },
    /// The name has a NUL before its terminating NUL.
    NameContainsNul {
        /// Offset of the header.
        offset: usize,
    },
    /// The name is empty (`namesize` is 1).
    EmptyName {
        /// Offset of the header.
        offset: usize,
    },
    /// The name is not valid UTF-8.
    NameNotUtf8 {
        /// Offset of the header.
        offset: usize,
    },
    /// The data (of length `filesize`, after the name's padding) runs past the end of the
    /// input.
    DataTruncated {
        /// Offset of the header.
        offset: usize,
    },
    /// The data of a regular file in a `070702` entry does not sum to its `check` field.
    ChecksumMismatch {
        /// Offset of the header.
        offset: usize,
        /// The `check` field.
        expected: u32,
        /// The sum of the data bytes.
        actual: u32,
    },
    /// The input ended (or only NUL padding is left) before the `TRAILER!!!` entry.
    MissingTrailer {
        /// Offset where the next header should have started.
        offset: usize,
    },
}

impl Error {
    /// Byte offset of the header of the entry at fault.
    pub const fn offset(&self) -> usize {
        match *self {
            Error::TruncatedHeader { offset }
            | Error::BadMagic { offset }
            | Error::InvalidHex { offset, .. }
            | Error::NameTruncated { offset }
            | Error::NameNotTerminated { offset }
            | Error::NameContainsNul { offset }
            | Error::EmptyName { offset }
            | Error::NameNotUtf8 { offset }
            | Error::DataTruncated { offset }
            | Error::ChecksumMismatch { offset, .. }
            | Error::MissingTrailer { offset } => offset,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let o = self.offset();
        match *self {
            Error::TruncatedHeader { .. } => write!(f, "cpio: truncated header at offset {o}"),
            Error::BadMagic { .. } => write!(f, "cpio: bad magic at offset {o} (not newc)"),
            Error::InvalidHex { field, .. } => {
                write!(
                    f,
                    "cpio: header field `{field}` at offset {o} is not hexadecimal"
                )
            }
            Error::NameTruncated { .. } => {
                write!(f, "cpio: name of entry at offset {o} runs past the end")
            }
            Error::NameNotTerminated { .. } => {
                write!(f, "cpio: name of entry at offset {o} is not NUL-terminated")
            }
            Error::NameContainsNul { .. } => {
                write!(f, "cpio: name of entry at offset {o} contains a NUL")
            }
            Error::EmptyName { .. } => write!(f, "cpio: entry at offset {o} has an empty name"),
            Error::NameNotUtf8 { .. } => {
                write!(f, "cpio: name of entry at offset {o} is not UTF-8")
            }
            Error::DataTruncated { .. } => {
                write!(f, "cpio: data of entry at offset {o} runs past the end")
            }
            Error::ChecksumMismatch {
                expected, actual, ..
            } => write!(
                f,
                "cpio: checksum of entry at offset {o} is {actual:#x}, header says {expected:#x}"
            ),
            Error::MissingTrailer { .. } => {
                write!(
                    f,
                    "cpio: archive ends at offset {o} without a TRAILER!!! entry"
                )
            }
        }
    }
}

impl core::error::Error for Error {}

/// `x` rounded up to a multiple of 4, or `None` on overflow.
pub(crate) const fn align4(x: usize) -> Option<usize> {
    match x.checked_add(3) {
        Some(v) => Some(v & !3),
        None => None,
    }
}
