//! Memory: brk, mmap, munmap, mprotect, mremap and msync (the work is in `crate::memory`).
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
