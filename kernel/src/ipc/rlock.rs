//! fcntl record locks: F_GETLK, F_SETLK, F_SETLKW (POSIX: owned by the process, dropped when
//! it closes any descriptor of the file or ends) and F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW
//! (owned by the open file description, dropped when its last descriptor closes).
//!
//! Each inode keeps its locks (`ipc::rlock::Table`) and its waiters. A waiter re-checks after
//! every release of the file (all are woken). Before a POSIX F_SETLKW waits, the wait-for
//! graph is searched (`WAITING`: what each waiting process asked for): if a holder waits,
//! directly or through others, for the asking process, the call fails with EDEADLK.
//!
//! Lock order: `WAITING`, then an inode's `rlocks`; never `WAITING` while holding an inode's.
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use hal::sync::IrqLock;
use ipc::rlock::{Owner, RangeError, Table};
use linux_raw_sys::errno::*;
use linux_raw_sys::general::{O_ACCMODE, O_RDONLY, O_WRONLY};

use crate::fs::OpenFile;
use crate::process::Pid;
use crate::sched::{self, Tid};
use crate::signal::ERESTARTSYS;
use crate::syscall::{Cx, Errno, SysResult, UserPtr};
use crate::vfs::Inode;

/// An inode's record locks and the threads waiting for them.
#[derive(Default)]
pub struct RecLocks {
    table: Table,
    waiters: Vec<Tid>,
}

/// What each waiting POSIX owner asked for: the file and the request.
static WAITING: IrqLock<BTreeMap<Owner, (Weak<Inode>, u64, u64, bool)>> = IrqLock::new(BTreeMap::new());
/// The files each process holds POSIX locks on (released at its end).
static HELD: IrqLock<BTreeMap<Pid, Vec<Weak<Inode>>>> = IrqLock::new(BTreeMap::new());

const F_RDLCK: i16 = 0;
const F_WRLCK: i16 = 1;
const F_UNLCK: i16 = 2;

fn wake_all(node: &Inode) {
    let ws = core::mem::take(&mut node.rlocks.lock().waiters);
    for t in ws {
        let _ = sched::wake(t);
    }
}

/// Drops `owner`'s locks on `node` and wakes its waiters.
fn release(node: &Inode, owner: Owner) {
    if node.rlocks.lock().table.release(owner) {
        wake_all(node);
    }
}

/// A process closed a descriptor of `node`: its POSIX locks on the file go.
pub fn closed(node: &Inode, pid: Pid) {
    release(node, Owner::Process(pid));
}

/// The last descriptor of open file `id` closed: its OFD locks go.
pub fn ofd_closed(node: &Inode, id: u64) {
    release(node, Owner::Ofd(id));
}

pub fn process_exit(pid: Pid) {
    let held = HELD.lock().remove(&pid).unwrap_or_default();
    for n in held.iter().filter_map(Weak::upgrade) {
        release(&n, Owner::Process(pid));
    }
}

/// `struct flock` (32 bytes): l_type, l_whence, l_start, l_len, l_pid.
struct Flock {
    ty: i16,
    whence: i16,
    start: i64,
    len: i64,
    pid: i32,
}

fn read_flock(cx: &Cx, arg: u64) -> Result<Flock, Errno> {
    let b = UserPtr::<[u8; 32]>::new(arg).read(cx.p())?;
    let i64_at = |i: usize| i64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    Ok(Flock {
        ty: i16::from_le_bytes([b[0], b[1]]),
        whence: i16::from_le_bytes([b[2], b[3]]),
        start: i64_at(8),
        len: i64_at(16),
        pid: i32::from_le_bytes([b[24], b[25], b[26], b[27]]),
    })
}

fn write_flock(cx: &Cx, arg: u64, f: &Flock) -> Result<(), Errno> {
    let mut b = UserPtr::<[u8; 32]>::new(arg).read(cx.p())?;
    b[0..2].copy_from_slice(&f.ty.to_le_bytes());
    b[2..4].copy_from_slice(&f.whence.to_le_bytes());
    b[8..16].copy_from_slice(&f.start.to_le_bytes());
    b[16..24].copy_from_slice(&f.len.to_le_bytes());
    b[24..28].copy_from_slice(&f.pid.to_le_bytes());
    UserPtr::<[u8; 32]>::new(arg).write(cx.p(), &b)
}

/// The byte range of `f` on open file `of`.
fn range_of(of: &OpenFile, f: &Flock) -> Result<(u64, u64), Errno> {
    let base = match f.whence {
        0 => 0,
        1 => of.pos.peek() as i64,
        2 => of.node.size() as i64,
        _ => return Err(EINVAL),
    };
    ipc::rlock::range(base, f.start, f.len).map_err(|e| match e {
        RangeError::Invalid => EINVAL,
        RangeError::Overflow => EOVERFLOW,
    })
}

/// F_GETLK / F_SETLK / F_SETLKW and their OFD forms on open file `of`.
pub fn fcntl(cx: &Cx, of: &Arc<OpenFile>, cmd: u32, arg: u64) -> SysResult {
    use linux_raw_sys::general::{F_GETLK, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW, F_SETLKW};
    let ofd = matches!(cmd, F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW);
    let mut f = read_flock(cx, arg)?;
    if ofd && f.pid != 0 {
        return Err(EINVAL);
    }
    let (start, end) = range_of(of, &f)?;
    let owner = if ofd { Owner::Ofd(of.id()) } else { Owner::Process(cx.p().pid) };
    let node = &of.node;
    if matches!(cmd, F_GETLK | F_OFD_GETLK) {
        let write = match f.ty {
            F_RDLCK => false,
            F_WRLCK => true,
            _ => return Err(EINVAL),
        };
        match node.rlocks.lock().table.conflict(owner, start, end, write) {
            Some(l) => {
                f.ty = if l.write { F_WRLCK } else { F_RDLCK };
                f.whence = 0;
                f.start = l.start as i64;
                f.len = if l.end == u64::MAX { 0 } else { (l.end - l.start) as i64 };
                f.pid = l.pid;
            }
            None => f.ty = F_UNLCK,
        }
        write_flock(cx, arg, &f)?;
        return Ok(0);
    }
    let acc = of.flags.load(Ordering::Relaxed) & O_ACCMODE;
    let kind = match f.ty {
        F_RDLCK if acc == O_WRONLY => return Err(EBADF),
        F_WRLCK if acc == O_RDONLY => return Err(EBADF),
        F_RDLCK => Some(false),
        F_WRLCK => Some(true),
        F_UNLCK => None,
        _ => return Err(EINVAL),
    };
    let pid = if ofd { -1 } else { cx.p().pid as i32 };
    let Some(write) = kind else {
        node.rlocks.lock().table.set(owner, pid, start, end, None);
        wake_all(node);
        return Ok(0);
    };
    let wait = matches!(cmd, F_SETLKW | F_OFD_SETLKW);
    loop {
        let blockers = {
            let mut l = node.rlocks.lock();
            if l.table.conflict(owner, start, end, write).is_none() {
                let had = l.table.locks().iter().any(|x| x.owner == owner);
                l.table.set(owner, pid, start, end, Some(write));
                drop(l);
                if let (Owner::Process(p), false) = (owner, had) {
                    let mut h = HELD.lock();
                    let v = h.entry(p).or_default();
                    v.retain(|w| w.strong_count() > 0);
                    if !v.iter().any(|w| core::ptr::eq(w.as_ptr(), Arc::as_ptr(node))) {
                        v.push(Arc::downgrade(node));
                    }
                }
                // A lock may have shrunk (a write lock made a read lock): waiters re-check.
                wake_all(node);
                return Ok(0);
            }
            if !wait {
                return Err(EAGAIN);
            }
            let b = l.table.blockers(owner, start, end, write);
            if !l.waiters.contains(&cx.tid) {
                l.waiters.push(cx.tid);
            }
            b
        };
        {
            let mut w = WAITING.lock();
            let waits_for = |o: Owner| -> Vec<Owner> {
                let Some((n, s, e, wr)) = w.get(&o) else { return Vec::new() };
                n.upgrade().map_or(Vec::new(), |n| n.rlocks.lock().table.blockers(o, *s, *e, *wr))
            };
            if matches!(owner, Owner::Process(_)) && ipc::rlock::would_deadlock(owner, &blockers, waits_for, 1024) {
                drop(w);
                node.rlocks.lock().waiters.retain(|&t| t != cx.tid);
                return Err(EDEADLK);
            }
            w.insert(owner, (Arc::downgrade(node), start, end, write));
        }
        let why = sched::block_current();
        WAITING.lock().remove(&owner);
        if why == sched::Wake::Interrupted {
            node.rlocks.lock().waiters.retain(|&t| t != cx.tid);
            return Err(ERESTARTSYS);
        }
    }
}
