//! The archive writer (feature `alloc`).

use alloc::vec::Vec;

use crate::{
    Format, HEADER_LEN, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, TRAILER, checksum, normalize_path,
};

/// Why [`Writer`] refused an entry. The archive is unchanged when an `add_*` call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The name is empty, or nothing is left after removing leading `./` and `/`.
    EmptyName,
    /// The name contains a NUL byte.
    NameContainsNul,
    /// The name is `TRAILER!!!`, which would end the archive.
    ReservedName,
    /// The name (plus its NUL) is longer than the 32-bit `namesize` field allows.
    NameTooLong,
    /// The data is longer than the 32-bit `filesize` field allows (4 GiB - 1).
    DataTooLarge,
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            WriteError::EmptyName => "cpio: empty entry name",
            WriteError::NameContainsNul => "cpio: entry name contains a NUL byte",
            WriteError::ReservedName => "cpio: entry name TRAILER!!! is reserved",
            WriteError::NameTooLong => "cpio: entry name too long",
            WriteError::DataTooLarge => "cpio: file data larger than 4 GiB - 1",
        })
    }
}

impl core::error::Error for WriteError {}

/// Builds a newc archive in memory.
///
/// Entries are written in the order they are added, with inode numbers 1, 2, 3...,
/// uid/gid 0 and the modification time set by [`set_mtime`](Writer::set_mtime) (0 unless
/// set), so the same calls always give the same bytes. Names are stored as given: use
/// relative paths such as `"bin/init"` and add a directory before its contents.
/// [`finish`](Writer::finish) appends the trailer and returns the bytes.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
    format: Format,
    next_ino: u32,
    mtime: u32,
}

impl Writer {
    /// An empty archive in the plain [`Format::Newc`] format (magic `070701`).
    pub fn new() -> Self {
        Self::with_format(Format::Newc)
    }

    /// An empty archive in the given format; [`Format::Crc`] stores a checksum of each
    /// entry's data.
    pub fn with_format(format: Format) -> Self {
        Writer {
            buf: Vec::new(),
            format,
            next_ino: 1,
            mtime: 0,
        }
    }

    /// Sets the modification time (seconds since the Unix epoch) of entries added from now on.
    pub fn set_mtime(&mut self, mtime: u32) {
        self.mtime = mtime;
    }

    /// Number of bytes written so far (without the trailer).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if no entry has been added.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Adds a regular file with permission bits `mode & 0o7777`.
    ///
    /// # Errors
    /// See [`WriteError`].
    pub fn add_file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<(), WriteError> {
        self.add_entry(name, S_IFREG | (mode & 0o7777), 1, data)
    }

    /// Adds a directory with permission bits `mode & 0o7777`.
    ///
    /// # Errors
    /// See [`WriteError`].
    pub fn add_dir(&mut self, name: &str, mode: u32) -> Result<(), WriteError> {
        self.add_entry(name, S_IFDIR | (mode & 0o7777), 2, &[])
    }

    /// Adds a symbolic link (mode `0o777`) pointing at `target`.
    ///
    /// # Errors
    /// See [`WriteError`].
    pub fn add_symlink(&mut self, name: &str, target: &str) -> Result<(), WriteError> {
        self.add_entry(name, S_IFLNK | 0o777, 1, target.as_bytes())
    }

    /// Adds a character device node (`S_IFCHR`) with permission bits `mode & 0o7777` and
    /// device number `major:minor` (e.g. `dev/console`, 5:1, which the Linux kernel opens for
    /// init before any file system is mounted).
    ///
    /// # Errors
    /// See [`WriteError`].
    pub fn add_char_device(&mut self, name: &str, mode: u32, major: u32, minor: u32) -> Result<(), WriteError> {
        self.add_entry(name, S_IFCHR | (mode & 0o7777), 1, &[])?;
        // The entry just written: set its rdevmajor/rdevminor fields (the 10th and 11th).
        let start = self.buf.len() - (HEADER_LEN + name.len() + 1).next_multiple_of(4);
        let field = |i: usize| start + 6 + 8 * i;
        let (a, b) = (field(9), field(10));
        let mut hex = Vec::new();
        push_hex8(&mut hex, major);
        push_hex8(&mut hex, minor);
        self.buf[a..a + 8].copy_from_slice(&hex[..8]);
        self.buf[b..b + 8].copy_from_slice(&hex[8..]);
        Ok(())
    }

    /// Adds an entry with a complete `st_mode` (type and permission bits) and link count.
    ///
    /// # Errors
    /// See [`WriteError`].
    pub fn add_entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        data: &[u8],
    ) -> Result<(), WriteError> {
        if name.as_bytes().contains(&0) {
            return Err(WriteError::NameContainsNul);
        }
        if normalize_path(name).is_empty() {
            return Err(WriteError::EmptyName);
        }
        if name == TRAILER {
            return Err(WriteError::ReservedName);
        }
        let size = u32::try_from(data.len()).map_err(|_| WriteError::DataTooLarge)?;
        let namesize = name
            .len()
            .checked_add(1)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(WriteError::NameTooLong)?;
        let ino = self.next_ino;
        let fields = [
            ino, mode, 0, 0, nlink, self.mtime, size, 0, 0, 0, 0, namesize,
        ];
        self.push_entry(fields, name, data);
        self.next_ino = self.next_ino.wrapping_add(1);
        Ok(())
    }

    /// Appends the trailer and returns the archive bytes.
    pub fn finish(mut self) -> Vec<u8> {
        const NAMESIZE: u32 = TRAILER.len() as u32 + 1;
        self.push_entry([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, NAMESIZE], TRAILER, &[]);
        self.buf
    }

    /// Appends one entry. `fields` are the first twelve header fields, `ino` to `namesize`,
    /// already validated against `name` and `data`; the `check` field is computed here.
    fn push_entry(&mut self, fields: [u32; 12], name: &str, data: &[u8]) {
        let mode = fields[1];
        // Like GNU cpio and the Linux initramfs loader, only regular files carry a checksum.
        let check = match self.format {
            Format::Crc if mode & S_IFMT == S_IFREG => checksum(data),
            _ => 0,
        };
        debug_assert_eq!(self.buf.len() % 4, 0);
        self.buf.reserve(HEADER_LEN + name.len() + data.len() + 8);
        self.buf.extend_from_slice(self.format.magic());
        for v in fields.into_iter().chain([check]) {
            push_hex8(&mut self.buf, v);
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        pad4(&mut self.buf);
        self.buf.extend_from_slice(data);
        pad4(&mut self.buf);
    }
}

/// Appends `v` as 8 upper-case hexadecimal digits.
fn push_hex8(buf: &mut Vec<u8>, v: u32) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for shift in (0..8).rev() {
        buf.push(DIGITS[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

/// Appends NULs until the length is a multiple of 4.
fn pad4(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}
