//! Memory: brk, mmap, munmap, mprotect, mremap, msync and the mlock family (the work is in
//! `crate::memory`).
use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;

use super::{Cx, SysResult};
use crate::fs::File;
use crate::memory::Source;

pub fn mmap(cx: &Cx, addr: u64, len: u64, prot: u64, flags: u64, fd: u64, off: u64) -> SysResult {
    let flags = flags as u32;
    if flags & MAP_ANONYMOUS != 0 {
        return crate::memory::mmap(cx.p(), addr, len, prot, flags, Source::Anonymous);
    }
    if !off.is_multiple_of(4096) {
        return Err(EINVAL);
    }
    let of = match cx.p().files.lock().get(fd)? {
        File::Node(of) => of.clone(),
        _ => return Err(ENODEV),
    };
    if of.node.is_dir() {
        return Err(ENODEV);
    }
    let shared = matches!(flags & 3, MAP_SHARED | MAP_SHARED_VALIDATE);
    let acc = of.flags.load(core::sync::atomic::Ordering::Relaxed) & O_ACCMODE;
    if acc == O_WRONLY || (shared && prot & u64::from(PROT_WRITE) != 0 && acc != O_RDWR) {
        return Err(EACCES);
    }
    if shared && let crate::vfs::Kind::File(obj) = &of.node.kind {
        return crate::memory::mmap(cx.p(), addr, len, prot, flags, Source::Shared(obj.clone(), off));
    }
    if shared && prot & u64::from(PROT_WRITE) != 0 {
        return Err(ENODEV); // writable shared mappings of /boot, /proc, devices: not supported
    }
    let data = crate::vfs::read_at(&of.node, off, usize::try_from(len).map_err(|_| ENOMEM)?.min(256 << 20))?;
    crate::memory::mmap(cx.p(), addr, len, prot, flags, Source::Copy(&data))
}

/// mlock and mlock2 (flags: `MLOCK_ONFAULT` only): the range's pages are made present now
/// (`crate::memory::populate`; nothing is ever paged out on Quest-RS, so a present page stays
/// present); munlock and munlockall succeed with nothing to undo.
pub fn mlock(cx: &Cx, addr: u64, len: u64, flags: u64) -> SysResult {
    const MLOCK_ONFAULT: u64 = 1;
    if flags & !MLOCK_ONFAULT != 0 {
        return Err(EINVAL);
    }
    if flags & MLOCK_ONFAULT != 0 {
        return Ok(0); // locked as they are touched: what every page here is
    }
    crate::memory::populate(cx.p(), addr, len).map(|_| 0)
}

/// munlock: checks the range as Linux does (ENOMEM where nothing is mapped).
pub fn munlock(cx: &Cx, addr: u64, len: u64) -> SysResult {
    let start = addr & !4095;
    let end = addr.checked_add(len).and_then(|e| e.checked_next_multiple_of(4096)).ok_or(ENOMEM)?;
    if start != end && !cx.p().mem.lock().vm.covered(start, end) {
        return Err(ENOMEM);
    }
    Ok(0)
}

/// mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT): MCL_CURRENT populates what is mapped
/// now; MCL_FUTURE is accepted (future pages are made on first touch and then never paged
/// out); MCL_ONFAULT alone, or unknown bits, are EINVAL as on Linux.
pub fn mlockall(cx: &Cx, flags: u64) -> SysResult {
    let f = u32::try_from(flags).map_err(|_| EINVAL)?;
    if f == 0 || f & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0 || f == MCL_ONFAULT {
        return Err(EINVAL);
    }
    if f & MCL_CURRENT != 0 && f & MCL_ONFAULT == 0 {
        crate::memory::populate_all(cx.p())?;
    }
    Ok(0)
}
