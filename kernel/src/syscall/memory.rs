//! Memory: brk, anonymous mmap, munmap and mprotect (the work is in `process`).
use hal::mm::{UserAccess, UserMemError};
use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;

use super::{Cx, SysResult};
use crate::process;

/// The access rights of a `PROT_*` mask.
pub fn prot(prot: u64) -> UserAccess {
    let (w, x) = (prot & u64::from(PROT_WRITE) != 0, prot & u64::from(PROT_EXEC) != 0);
    // PROT_NONE: mapped, but no access at all (guard pages); any other right implies read on x86.
    UserAccess { read: prot & u64::from(PROT_READ) != 0 || w || x, write: w, exec: x }
}

pub fn mmap(cx: &Cx, addr: u64, len: u64, pr: u64, flags: u64, fd: u64) -> SysResult {
    let flags = flags as u32;
    if flags & MAP_ANONYMOUS == 0 || fd as i64 != -1 && fd as i32 != -1 {
        return Err(ENODEV); // no files to map yet
    }
    let fixed = (flags & MAP_FIXED != 0).then_some(addr);
    process::mmap_anon(cx.p(), fixed, len, prot(pr)).map_err(|e| match e {
        UserMemError::Fault => EINVAL,
        UserMemError::NoMemory => ENOMEM,
    })
}
