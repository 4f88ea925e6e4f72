//! Reading the ELF64 header and program headers from untrusted bytes.
//!
//! Every read goes through `slice::get` and every sum of file-controlled numbers is checked,
//! so no input can make this module panic or read out of bounds.

use crate::Error;

/// `e_type`: an executable at fixed addresses (static, non-PIE).
pub const ET_EXEC: u16 = 2;
/// `e_type`: a position-independent object (here: a static-pie executable).
pub const ET_DYN: u16 = 3;
/// `e_machine`: AMD64.
pub const EM_X86_64: u16 = 62;

/// Program header type: unused entry.
pub const PT_NULL: u32 = 0;
/// Program header type: loadable segment.
pub const PT_LOAD: u32 = 1;
/// Program header type: dynamic linking information (present in static-pie).
pub const PT_DYNAMIC: u32 = 2;
/// Program header type: program interpreter path (dynamically linked: rejected).
pub const PT_INTERP: u32 = 3;
/// Program header type: notes.
pub const PT_NOTE: u32 = 4;
/// Program header type: the program header table itself.
pub const PT_PHDR: u32 = 6;
/// Program header type: thread-local storage template.
pub const PT_TLS: u32 = 7;
/// Program header type: stack executability (GNU extension).
pub const PT_GNU_STACK: u32 = 0x6474_e551;
/// Program header type: read-only after relocation (GNU extension; applied by libc).
pub const PT_GNU_RELRO: u32 = 0x6474_e552;

/// Segment flag: executable.
pub const PF_X: u32 = 1;
/// Segment flag: writable.
pub const PF_W: u32 = 2;
/// Segment flag: readable.
pub const PF_R: u32 = 4;

/// Size of the ELF64 header.
pub(crate) const EHDR_SIZE: usize = 64;
/// Size of one ELF64 program header (`e_phentsize` must equal it).
pub const PHDR_SIZE: usize = 56;

const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u32 = 1;
const ELFOSABI_SYSV: u8 = 0;
const ELFOSABI_GNU: u8 = 3;

/// The fields of the ELF header the loader uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ehdr {
    pub e_type: u16,
    pub entry: u64,
    pub phoff: u64,
    pub phentsize: u16,
    pub phnum: u16,
}

/// One program header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let end = off.checked_add(2)?;
    Some(u16::from_le_bytes(b.get(off..end)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    Some(u32::from_le_bytes(b.get(off..end)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let end = off.checked_add(8)?;
    Some(u64::from_le_bytes(b.get(off..end)?.try_into().ok()?))
}

/// Parses and validates the ELF header: identification, type, machine, version and the shape
/// of the program header table (entry size, count within `max_phnum`, inside the file).
pub(crate) fn parse_ehdr(image: &[u8], max_phnum: usize) -> Result<Ehdr, Error> {
    if image.is_empty() {
        return Err(Error::Empty);
    }
    // A short file that is not even the start of an ELF magic is "not ELF", not "truncated".
    let magic = b"\x7fELF";
    let n = image.len().min(magic.len());
    if image.get(..n) != magic.get(..n) {
        return Err(Error::BadMagic);
    }
    let trunc = Error::TruncatedHeader { len: image.len() };
    let h = image.get(..EHDR_SIZE).ok_or(trunc)?;
    // Infallible from here on: `h` is exactly 64 bytes and all offsets below are < 64.
    let ident = |i: usize| h.get(i).copied().ok_or(trunc);
    let class = ident(4)?;
    if class != ELFCLASS64 {
        return Err(Error::WrongClass(class));
    }
    let data = ident(5)?;
    if data != ELFDATA2LSB {
        return Err(Error::WrongEndian(data));
    }
    let ident_version = ident(6)?;
    if u32::from(ident_version) != EV_CURRENT {
        return Err(Error::WrongVersion(u32::from(ident_version)));
    }
    let osabi = ident(7)?;
    if osabi != ELFOSABI_SYSV && osabi != ELFOSABI_GNU {
        return Err(Error::WrongOsAbi(osabi));
    }
    let e_type = u16_at(h, 16).ok_or(trunc)?;
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(Error::WrongType(e_type));
    }
    let machine = u16_at(h, 18).ok_or(trunc)?;
    if machine != EM_X86_64 {
        return Err(Error::WrongMachine(machine));
    }
    let version = u32_at(h, 20).ok_or(trunc)?;
    if version != EV_CURRENT {
        return Err(Error::WrongVersion(version));
    }
    let entry = u64_at(h, 24).ok_or(trunc)?;
    let phoff = u64_at(h, 32).ok_or(trunc)?;
    let phentsize = u16_at(h, 54).ok_or(trunc)?;
    let phnum = u16_at(h, 56).ok_or(trunc)?;
    if usize::from(phentsize) != PHDR_SIZE {
        return Err(Error::BadPhentsize(phentsize));
    }
    if phnum == 0 {
        return Err(Error::NoProgramHeaders);
    }
    if usize::from(phnum) > max_phnum {
        return Err(Error::TooManyProgramHeaders(phnum));
    }
    let table_len = u64::from(phnum) * PHDR_SIZE as u64; // <= 65535 * 56: no overflow
    let table_end = phoff
        .checked_add(table_len)
        .ok_or(Error::ProgramHeadersOutOfFile)?;
    if table_end > image.len() as u64 {
        return Err(Error::ProgramHeadersOutOfFile);
    }
    Ok(Ehdr {
        e_type,
        entry,
        phoff,
        phentsize,
        phnum,
    })
}

/// Reads program header `index`. The caller has checked (in [`parse_ehdr`]) that the table
/// lies inside the file; a failure here is still reported, never a panic.
pub(crate) fn parse_phdr(image: &[u8], eh: &Ehdr, index: usize) -> Result<Phdr, Error> {
    let oob = Error::ProgramHeadersOutOfFile;
    let start = usize::try_from(eh.phoff)
        .ok()
        .and_then(|o| o.checked_add(index.checked_mul(PHDR_SIZE)?))
        .ok_or(oob)?;
    let end = start.checked_add(PHDR_SIZE).ok_or(oob)?;
    let p = image.get(start..end).ok_or(oob)?;
    Ok(Phdr {
        p_type: u32_at(p, 0).ok_or(oob)?,
        flags: u32_at(p, 4).ok_or(oob)?,
        offset: u64_at(p, 8).ok_or(oob)?,
        vaddr: u64_at(p, 16).ok_or(oob)?,
        filesz: u64_at(p, 32).ok_or(oob)?,
        memsz: u64_at(p, 40).ok_or(oob)?,
        align: u64_at(p, 48).ok_or(oob)?,
    })
}
