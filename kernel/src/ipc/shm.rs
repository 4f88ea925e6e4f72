//! System V shared memory: shmget, shmat, shmdt, shmctl. A segment is a shared memory object
//! (`crate::shm`), attached like a `MAP_SHARED` mapping of it; it is inherited by `fork` like
//! any shared mapping. IPC_RMID takes the segment's key and id away at once; its memory lives
//! until the last process detaches (or ends).
//!
//! `shm_nattch` counts the processes that have the segment mapped (Linux counts attachments:
//! a process that attached twice counts once here).
use alloc::sync::Arc;

use hal::sync::IrqLock;
use ipc::ids::{Got, Table};
use linux_raw_sys::errno::*;

use super::{IPC_RMID, IPC_SET, IPC_STAT, Perm, get_error, now_secs};
use crate::memory::Source;
use crate::shm::ShmObject;
use crate::syscall::{Cx, SysResult, UserSlice, UserSliceMut};

/// Largest segment (Linux's default SHMMAX is larger; the machine's memory is the real bound).
const SHMMAX: u64 = 1 << 30;
const SHM_RDONLY: u64 = 0o10000;
const SHM_RND: u64 = 0o20000;
const SHM_REMAP: u64 = 0o40000;
const SHM_EXEC: u64 = 0o100000;
const SHM_LOCK: u32 = 11;
const SHM_UNLOCK: u32 = 12;
const SHM_STAT: u32 = 13;

struct Seg {
    obj: Arc<ShmObject>,
    size: u64,
    perm: Perm,
    cpid: u32,
    lpid: u32,
    atime: i64,
    dtime: i64,
    ctime: i64,
}

static SEGS: IrqLock<Table<Seg>> = IrqLock::new(Table::new(4096));

pub fn shmget(cx: &Cx, key: u64, size: u64, flags: u64) -> SysResult {
    let key = key as i32;
    let mut t = SEGS.lock();
    let mut bad_size = false;
    let got = t
        .get(key, flags as u32, || {
            bad_size = size == 0 || size > SHMMAX;
            Seg {
                obj: ShmObject::new(false, size),
                size,
                perm: Perm::new(key, flags as u32, 0),
                cpid: cx.p().pid,
                lpid: 0,
                atime: 0,
                dtime: 0,
                ctime: now_secs(),
            }
        })
        .map_err(get_error)?;
    match got {
        Got::Created(id) => {
            if bad_size {
                t.remove(id);
                return Err(EINVAL);
            }
            if let Some(s) = t.lookup_mut(id) {
                s.perm = Perm::new(key, flags as u32, id);
            }
            Ok(id as u64)
        }
        Got::Existing(id) => {
            if t.lookup(id).is_some_and(|s| size > s.size) {
                return Err(EINVAL);
            }
            Ok(id as u64)
        }
    }
}

pub fn shmat(cx: &Cx, id: u64, addr: u64, flags: u64) -> SysResult {
    use linux_raw_sys::general::{MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE};
    let (obj, size) = {
        let t = SEGS.lock();
        let s = t.lookup(id as i32).ok_or(EINVAL)?;
        (s.obj.clone(), s.size)
    };
    let mut addr = addr;
    if addr != 0 && !addr.is_multiple_of(4096) {
        if flags & SHM_RND == 0 {
            return Err(EINVAL);
        }
        addr &= !4095;
    }
    let mut prot = u64::from(PROT_READ);
    if flags & SHM_RDONLY == 0 {
        prot |= u64::from(PROT_WRITE);
    }
    if flags & SHM_EXEC != 0 {
        prot |= u64::from(PROT_EXEC);
    }
    let mut mflags = MAP_SHARED;
    if addr != 0 {
        mflags |= if flags & SHM_REMAP != 0 { MAP_FIXED } else { MAP_FIXED_NOREPLACE };
    }
    let at = crate::memory::mmap(cx.p(), addr, size, prot, mflags, Source::Shared(obj, 0)).map_err(|e| if e == EEXIST { EINVAL } else { e })?;
    if let Some(s) = SEGS.lock().lookup_mut(id as i32) {
        s.lpid = cx.p().pid;
        s.atime = now_secs();
    }
    Ok(at)
}

pub fn shmdt(cx: &Cx, addr: u64) -> SysResult {
    let obj = crate::memory::unmap_object_at(cx.p(), addr).ok_or(EINVAL)?;
    let mut t = SEGS.lock();
    if let Some((_, s)) = t.iter_mut().find(|(_, s)| s.obj.id == obj.id) {
        s.lpid = cx.p().pid;
        s.dtime = now_secs();
    }
    Ok(0)
}

pub fn shmctl(cx: &Cx, id: u64, cmd: u64, buf: u64) -> SysResult {
    let cmd = cmd as u32 & !0x100; // IPC_64
    let id = id as i32;
    let mut t = SEGS.lock();
    match cmd {
        IPC_STAT | SHM_STAT => {
            let s = t.lookup(id).ok_or(EINVAL)?;
            let mut b = [0u8; 112];
            b[..48].copy_from_slice(&s.perm.bytes());
            b[48..56].copy_from_slice(&s.size.to_le_bytes());
            b[56..64].copy_from_slice(&s.atime.to_le_bytes());
            b[64..72].copy_from_slice(&s.dtime.to_le_bytes());
            b[72..80].copy_from_slice(&s.ctime.to_le_bytes());
            b[80..84].copy_from_slice(&s.cpid.to_le_bytes());
            b[84..88].copy_from_slice(&s.lpid.to_le_bytes());
            // Processes mapping it: every reference but the table's own.
            let nattch = (Arc::strong_count(&s.obj) - 1) as u64;
            b[88..96].copy_from_slice(&nattch.to_le_bytes());
            drop(t);
            UserSliceMut::new(buf, 112).write(cx.p(), &b)?;
            Ok(if cmd == SHM_STAT { id as u64 } else { 0 })
        }
        IPC_SET => {
            let mut b = [0u8; 48];
            UserSlice::new(buf, 48).read_into(cx.p(), &mut b)?;
            let s = t.lookup_mut(id).ok_or(EINVAL)?;
            s.perm.set_from(&b);
            s.ctime = now_secs();
            Ok(0)
        }
        IPC_RMID => t.remove(id).map(|_| 0).ok_or(EINVAL),
        SHM_LOCK | SHM_UNLOCK => t.lookup(id).map(|_| 0).ok_or(EINVAL),
        _ => Err(EINVAL),
    }
}
