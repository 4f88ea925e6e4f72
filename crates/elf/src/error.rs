//! Why an image cannot be loaded, or an initial stack cannot be built.

use core::fmt;

/// `ENOEXEC`: the file is not an executable this loader can run.
const ENOEXEC: i32 = 8;
/// `E2BIG`: the argument and environment strings are too large.
const E2BIG: i32 = 7;
/// `EINVAL`: the caller's request (not the file) is impossible.
const EINVAL: i32 = 22;

/// Everything that can go wrong. `index` fields are program-header indices (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The file is empty.
    Empty,
    /// The file is shorter than the 64-byte ELF64 header.
    TruncatedHeader {
        /// The file's length.
        len: usize,
    },
    /// The file does not start with `\x7fELF`.
    BadMagic,
    /// `EI_CLASS` is not `ELFCLASS64`.
    WrongClass(u8),
    /// `EI_DATA` is not `ELFDATA2LSB` (little-endian).
    WrongEndian(u8),
    /// `EI_VERSION` or `e_version` is not `EV_CURRENT` (1).
    WrongVersion(u32),
    /// `EI_OSABI` is neither System V (0) nor GNU/Linux (3).
    WrongOsAbi(u8),
    /// `e_type` is neither `ET_EXEC` nor `ET_DYN` (e.g. a relocatable object or a core file).
    WrongType(u16),
    /// `e_machine` is not `EM_X86_64`.
    WrongMachine(u16),
    /// `e_phentsize` is not 56 (the size of an ELF64 program header).
    BadPhentsize(u16),
    /// `e_phnum` is 0: there is nothing to load.
    NoProgramHeaders,
    /// `e_phnum` is above [`MAX_PHNUM`](crate::MAX_PHNUM).
    TooManyProgramHeaders(u16),
    /// The program header table (`e_phoff`, `e_phnum * e_phentsize`) lies outside the file.
    ProgramHeadersOutOfFile,
    /// The program has a `PT_INTERP`: it is dynamically linked, which is not supported.
    DynamicallyLinked,
    /// A segment's `p_filesz` is larger than its `p_memsz`.
    FileszExceedsMemsz {
        /// Program header index.
        index: usize,
    },
    /// A segment's file bytes (`p_offset + p_filesz`) lie outside the file.
    SegmentOutOfFile {
        /// Program header index.
        index: usize,
    },
    /// A segment's `p_align` is not 0, 1 or a power of two.
    BadAlignment {
        /// Program header index.
        index: usize,
        /// The offending `p_align`.
        align: u64,
    },
    /// A segment's `p_vaddr` and `p_offset` are not congruent modulo `p_align`.
    Misaligned {
        /// Program header index.
        index: usize,
    },
    /// An address computation wrapped around (`p_vaddr + p_memsz`, bias + address, ...).
    AddressOverflow {
        /// Program header index.
        index: usize,
    },
    /// A segment starts below the minimum user address (the null-page guard).
    NullPage {
        /// Program header index.
        index: usize,
        /// The (relocated) start address.
        vaddr: u64,
    },
    /// A segment ends above the user address limit (it reaches into kernel space).
    KernelAddress {
        /// Program header index.
        index: usize,
        /// The (relocated) end address.
        end: u64,
    },
    /// Two loadable segments overlap in memory.
    OverlappingSegments {
        /// Program header index of the lower segment.
        first: usize,
        /// Program header index of the segment overlapping it.
        second: usize,
    },
    /// The segments need more memory than the caller allows.
    TooLarge {
        /// Bytes needed (sum of page-rounded segment sizes, or the TLS size).
        needed: u64,
        /// The caller's limit.
        limit: u64,
    },
    /// There is no non-empty `PT_LOAD` segment.
    NoLoadSegments,
    /// The entry point is not inside an executable segment.
    EntryNotExecutable {
        /// The (relocated) entry point.
        entry: u64,
    },
    /// More than one `PT_TLS`.
    MultipleTls,
    /// The `PT_TLS` is malformed: `filesz > memsz`, bad alignment, file bytes outside the file,
    /// or its initialisation image is not inside a loaded segment.
    BadTls,
    /// More than one `PT_PHDR`, or one that is not inside a loaded segment.
    BadPhdrSegment,
    /// The program headers are not in memory after loading (no `PT_PHDR` and no `PT_LOAD`
    /// covers them), but the caller asked for them (`LoadOptions::require_phdr`).
    PhdrNotLoaded,
    /// Initial stack: an argument, environment string, platform or execfn contains a NUL byte.
    NulInString,
    /// Initial stack: argument and environment strings plus their pointers exceed the limit.
    ArgumentsTooLarge {
        /// Bytes needed.
        needed: usize,
        /// The limit ([`ARG_MAX`](crate::ARG_MAX)).
        limit: usize,
    },
    /// Initial stack: more auxiliary vector entries than [`MAX_AUXV`](crate::MAX_AUXV).
    TooManyAuxEntries(usize),
    /// Initial stack: `stack_top` is too low to hold the initial stack.
    StackTopTooLow,
}

impl Error {
    /// The Linux errno an `execve` failing this way returns: `E2BIG` for
    /// [`ArgumentsTooLarge`](Self::ArgumentsTooLarge), `EINVAL` for the caller errors
    /// [`NulInString`](Self::NulInString), [`TooManyAuxEntries`](Self::TooManyAuxEntries) and
    /// [`StackTopTooLow`](Self::StackTopTooLow), `ENOEXEC` for everything else (every
    /// problem with the file).
    pub fn errno(&self) -> i32 {
        match self {
            Error::ArgumentsTooLarge { .. } => E2BIG,
            Error::TooManyAuxEntries(_) | Error::StackTopTooLow | Error::NulInString => EINVAL,
            _ => ENOEXEC,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Empty => write!(f, "empty file"),
            Error::TruncatedHeader { len } => {
                write!(f, "truncated ELF header: file is {len} bytes, need 64")
            }
            Error::BadMagic => write!(f, "not an ELF file (bad magic)"),
            Error::WrongClass(c) => write!(f, "not a 64-bit ELF (EI_CLASS {c})"),
            Error::WrongEndian(d) => write!(f, "not little-endian (EI_DATA {d})"),
            Error::WrongVersion(v) => write!(f, "unsupported ELF version {v}"),
            Error::WrongOsAbi(a) => write!(f, "unsupported OS ABI {a}"),
            Error::WrongType(t) => {
                write!(f, "not an executable (e_type {t}; want ET_EXEC or ET_DYN)")
            }
            Error::WrongMachine(m) => write!(f, "not an x86-64 program (e_machine {m})"),
            Error::BadPhentsize(s) => write!(f, "program header size {s}, want 56"),
            Error::NoProgramHeaders => write!(f, "no program headers"),
            Error::TooManyProgramHeaders(n) => {
                write!(f, "{n} program headers (limit {})", crate::MAX_PHNUM)
            }
            Error::ProgramHeadersOutOfFile => write!(f, "program header table outside the file"),
            Error::DynamicallyLinked => {
                write!(
                    f,
                    "dynamically linked (PT_INTERP): only static programs are supported"
                )
            }
            Error::FileszExceedsMemsz { index } => {
                write!(f, "segment {index}: p_filesz > p_memsz")
            }
            Error::SegmentOutOfFile { index } => {
                write!(f, "segment {index}: file bytes outside the file")
            }
            Error::BadAlignment { index, align } => {
                write!(
                    f,
                    "segment {index}: p_align {align:#x} is not a power of two"
                )
            }
            Error::Misaligned { index } => {
                write!(
                    f,
                    "segment {index}: p_vaddr and p_offset differ modulo p_align"
                )
            }
            Error::AddressOverflow { index } => {
                write!(f, "segment {index}: address computation wraps around")
            }
            Error::NullPage { index, vaddr } => {
                write!(
                    f,
                    "segment {index}: starts at {vaddr:#x}, below the minimum user address"
                )
            }
            Error::KernelAddress { index, end } => {
                write!(
                    f,
                    "segment {index}: ends at {end:#x}, beyond the user address limit"
                )
            }
            Error::OverlappingSegments { first, second } => {
                write!(f, "segments {first} and {second} overlap")
            }
            Error::TooLarge { needed, limit } => {
                write!(
                    f,
                    "program needs {needed:#x} bytes of memory, limit {limit:#x}"
                )
            }
            Error::NoLoadSegments => write!(f, "no loadable segment"),
            Error::EntryNotExecutable { entry } => {
                write!(f, "entry point {entry:#x} is not in an executable segment")
            }
            Error::MultipleTls => write!(f, "more than one PT_TLS"),
            Error::BadTls => write!(f, "malformed PT_TLS"),
            Error::BadPhdrSegment => write!(f, "malformed PT_PHDR"),
            Error::PhdrNotLoaded => write!(f, "program headers are not in a loaded segment"),
            Error::NulInString => write!(f, "NUL byte inside an argument or environment string"),
            Error::ArgumentsTooLarge { needed, limit } => {
                write!(
                    f,
                    "arguments and environment need {needed} bytes, limit {limit}"
                )
            }
            Error::TooManyAuxEntries(n) => write!(f, "{n} auxiliary vector entries, too many"),
            Error::StackTopTooLow => write!(f, "stack top too low for the initial stack"),
        }
    }
}

impl core::error::Error for Error {}
