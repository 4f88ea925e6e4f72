//! The no-alloc archive reader.

use core::iter::FusedIterator;

use crate::{
    Error, Format, HEADER_LEN, MAGIC_CRC, MAGIC_NEWC, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, TRAILER,
    align4, checksum,
};

/// Names of the thirteen header fields, in order.
const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

/// A newc cpio archive held in memory. Creating one does not look at the bytes; errors are
/// reported entry by entry while iterating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Archive<'a> {
    bytes: &'a [u8],
}

/// One archive member. Name and data borrow from the archive bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Path name relative to the archive root: the stored name with any leading `./` and `/`
    /// removed (see [`normalize_path`]) and without the terminating NUL. The root directory
    /// itself is usually stored as `.`.
    pub name: &'a str,
    /// Inode number (used by tools to recognise hard links).
    pub ino: u32,
    /// File type and permission bits (`st_mode`): see [`S_IFMT`](crate::S_IFMT) and friends.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Number of links.
    pub nlink: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: u32,
    /// Size of the data in bytes (`data.len() == size as usize`).
    pub size: u32,
    /// Major number of the device holding the file.
    pub dev_major: u32,
    /// Minor number of the device holding the file.
    pub dev_minor: u32,
    /// Major number of a device special file.
    pub rdev_major: u32,
    /// Minor number of a device special file.
    pub rdev_minor: u32,
    /// The `check` field: for a regular file in the [`Format::Crc`] format, the data checksum
    /// (already verified); otherwise usually 0 and ignored.
    pub check: u32,
    /// Which magic the entry's header carries.
    pub format: Format,
    /// The file data (for a symbolic link, the target path).
    pub data: &'a [u8],
    /// Byte offset of the entry's header from the start of the archive.
    pub offset: usize,
}

impl Entry<'_> {
    /// The file-type bits of `mode` (`mode & S_IFMT`).
    pub const fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// The permission bits of `mode` (`mode & 0o7777`).
    pub const fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// True for a directory.
    pub const fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }

    /// True for a regular file.
    pub const fn is_file(&self) -> bool {
        self.file_type() == S_IFREG
    }

    /// True for a symbolic link.
    pub const fn is_symlink(&self) -> bool {
        self.file_type() == S_IFLNK
    }

    /// The target of a symbolic link, or `None` if this is not a symbolic link or the target
    /// is not UTF-8.
    pub fn symlink_target(&self) -> Option<&str> {
        if self.is_symlink() {
            core::str::from_utf8(self.data).ok()
        } else {
            None
        }
    }
}

/// `path` with every leading `./` and `/` removed, so `"/boot/x"`, `"./boot/x"` and
/// `"boot/x"` all become `"boot/x"`. Entry names are normalized this way, and
/// [`Archive::find`] normalizes its argument the same way (also dropping trailing `/`).
pub fn normalize_path(mut path: &str) -> &str {
    loop {
        if let Some(rest) = path.strip_prefix("./") {
            path = rest;
        } else if let Some(rest) = path.strip_prefix('/') {
            path = rest;
        } else {
            return path;
        }
    }
}

impl<'a> Archive<'a> {
    /// Wraps archive bytes. The archive is assumed to start at offset 0 of `bytes` (padding
    /// is computed relative to it).
    pub const fn new(bytes: &'a [u8]) -> Self {
        Archive { bytes }
    }

    /// The archive bytes.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Iterates over the entries, in archive order, up to (not including) the trailer. The
    /// iterator yields `Err` at most once, then ends.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            bytes: self.bytes,
            offset: 0,
            done: false,
        }
    }

    /// The first entry whose name equals `path` after normalization (leading `./` and `/`
    /// and trailing `/` removed), or `None` if there is none or the archive is malformed
    /// before it is found. Use [`try_find`](Archive::try_find) to tell those apart.
    pub fn find(&self, path: &str) -> Option<Entry<'a>> {
        self.try_find(path).ok().flatten()
    }

    /// Like [`find`](Archive::find), but reports a malformed archive met before the entry.
    ///
    /// # Errors
    /// The first [`Error`] met while searching.
    pub fn try_find(&self, path: &str) -> Result<Option<Entry<'a>>, Error> {
        let want = normalize_path(path).trim_end_matches('/');
        for entry in self.entries() {
            let entry = entry?;
            if entry.name == want {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// Reads the whole archive and returns the number of entries (trailer excluded).
    ///
    /// # Errors
    /// The first [`Error`] in the archive, including [`Error::MissingTrailer`].
    pub fn validate(&self) -> Result<usize, Error> {
        let mut n = 0;
        for entry in self.entries() {
            entry?;
            n += 1;
        }
        Ok(n)
    }
}

impl<'a> IntoIterator for Archive<'a> {
    type Item = Result<Entry<'a>, Error>;
    type IntoIter = Entries<'a>;

    fn into_iter(self) -> Entries<'a> {
        self.entries()
    }
}

impl<'a> IntoIterator for &Archive<'a> {
    type Item = Result<Entry<'a>, Error>;
    type IntoIter = Entries<'a>;

    fn into_iter(self) -> Entries<'a> {
        self.entries()
    }
}

/// Iterator over the entries of an [`Archive`]. Ends after the trailer or after the first
/// error.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    offset: usize,
    done: bool,
}

impl Entries<'_> {
    /// Offset where the next header will be read. Once the trailer has been reached, this is
    /// the (4-aligned) offset just past it: where a concatenated archive would begin.
    pub const fn offset(&self) -> usize {
        self.offset
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match parse(self.bytes, self.offset) {
            Ok(Parsed::Entry(entry, next)) => {
                self.offset = next;
                Some(Ok(entry))
            }
            Ok(Parsed::Trailer(next)) => {
                self.offset = next;
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for Entries<'_> {}

enum Parsed<'a> {
    /// An entry and the offset of the next header.
    Entry(Entry<'a>, usize),
    /// The trailer and the offset just past it.
    Trailer(usize),
}

/// Parses one 8-digit hexadecimal field.
fn hex8(digits: &[u8]) -> Option<u32> {
    if digits.len() != 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

/// A `u32` header field as a `usize` length; `None` only on targets narrower than 32 bits.
fn to_len(v: u32) -> Option<usize> {
    usize::try_from(v).ok()
}

fn parse(bytes: &[u8], offset: usize) -> Result<Parsed<'_>, Error> {
    let rest = bytes.get(offset..).unwrap_or(&[]);
    if rest.iter().all(|&b| b == 0) {
        return Err(Error::MissingTrailer { offset });
    }
    let header = rest
        .get(..HEADER_LEN)
        .ok_or(Error::TruncatedHeader { offset })?;
    let format = match header.get(..6) {
        Some(m) if m == MAGIC_NEWC => Format::Newc,
        Some(m) if m == MAGIC_CRC => Format::Crc,
        _ => return Err(Error::BadMagic { offset }),
    };
    let mut f = [0u32; 13];
    for (i, (slot, name)) in f.iter_mut().zip(FIELDS).enumerate() {
        let digits = header.get(6 + 8 * i..14 + 8 * i).unwrap_or(&[]);
        *slot = hex8(digits).ok_or(Error::InvalidHex {
            offset,
            field: name,
        })?;
    }
    let [
        ino,
        mode,
        uid,
        gid,
        nlink,
        mtime,
        size,
        dev_major,
        dev_minor,
        rdev_major,
        rdev_minor,
        namesize,
        check,
    ] = f;

    // Name: `namesize` bytes right after the header, the last of which is the NUL.
    let namesize = to_len(namesize).ok_or(Error::NameTruncated { offset })?;
    let name_start = offset + HEADER_LEN; // cannot overflow: the header lies inside `bytes`
    let name_end = name_start
        .checked_add(namesize)
        .ok_or(Error::NameTruncated { offset })?;
    let raw = bytes
        .get(name_start..name_end)
        .ok_or(Error::NameTruncated { offset })?;
    let (&last, raw) = raw
        .split_last()
        .ok_or(Error::NameNotTerminated { offset })?;
    if last != 0 {
        return Err(Error::NameNotTerminated { offset });
    }
    if raw.contains(&0) {
        return Err(Error::NameContainsNul { offset });
    }
    if raw.is_empty() {
        return Err(Error::EmptyName { offset });
    }
    let raw = core::str::from_utf8(raw).map_err(|_| Error::NameNotUtf8 { offset })?;
    if raw == TRAILER {
        // Tools do not always pad the end of the archive: clamp to the input.
        let next = align4(name_end).unwrap_or(usize::MAX).min(bytes.len());
        return Ok(Parsed::Trailer(next));
    }

    // Data: `size` bytes starting at the next multiple of 4.
    let truncated = Error::DataTruncated { offset };
    let data_start = align4(name_end).ok_or(truncated)?;
    let data_end = data_start
        .checked_add(to_len(size).ok_or(truncated)?)
        .ok_or(truncated)?;
    let data = bytes.get(data_start..data_end).ok_or(truncated)?;
    if format == Format::Crc && mode & S_IFMT == S_IFREG {
        let actual = checksum(data);
        if actual != check {
            return Err(Error::ChecksumMismatch {
                offset,
                expected: check,
                actual,
            });
        }
    }
    let next = align4(data_end).unwrap_or(usize::MAX);
    let entry = Entry {
        name: normalize_path(raw),
        ino,
        mode,
        uid,
        gid,
        nlink,
        mtime,
        size,
        dev_major,
        dev_minor,
        rdev_major,
        rdev_minor,
        check,
        format,
        data,
        offset,
    };
    Ok(Parsed::Entry(entry, next))
}
