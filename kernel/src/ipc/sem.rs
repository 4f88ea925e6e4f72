//! System V semaphores: semget, semop, semtimedop, semctl. `semop`'s all-or-nothing logic is
//! `ipc::sem`; here the waiting: a caller whose operations cannot all be applied waits on the
//! set (counted in `semncnt`/`semzcnt` of the semaphore it waits on) and every change to the
//! set wakes all its waiters, who try again. IPC_RMID wakes them with EIDRM.
//!
//! SEM_UNDO adjustments are kept per (process, set) and applied, clamped, when the process
//! ends; SETVAL and SETALL clear them for the semaphores they set (as Linux does).
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use hal::sync::IrqLock;
use ipc::ids::{Got, Table};
use ipc::sem::{Outcome, SemError, SemOp};
use linux_raw_sys::errno::*;

use super::{IPC_RMID, IPC_SET, IPC_STAT, Perm, get_error, now_secs};
use crate::process::Pid;
use crate::sched::{self, Tid};
use crate::syscall::{Cx, SysResult, UserSlice, UserSliceMut};

const GETPID: u32 = 11;
const GETVAL: u32 = 12;
const GETALL: u32 = 13;
const GETNCNT: u32 = 14;
const GETZCNT: u32 = 15;
const SETVAL: u32 = 16;
const SETALL: u32 = 17;
const SEM_STAT: u32 = 18;

struct Set {
    vals: Vec<u16>,
    pids: Vec<u32>,
    ncnt: Vec<u32>,
    zcnt: Vec<u32>,
    perm: Perm,
    otime: i64,
    ctime: i64,
    waiters: Vec<Tid>,
}

static SETS: IrqLock<Table<Set>> = IrqLock::new(Table::new(4096));
/// SEM_UNDO adjustments by (process, set id).
static UNDO: IrqLock<BTreeMap<(Pid, i32), Vec<i32>>> = IrqLock::new(BTreeMap::new());

fn wake(ws: Vec<Tid>) {
    for t in ws {
        let _ = sched::wake(t);
    }
}

pub fn semget(cx: &Cx, key: u64, nsems: u64, flags: u64) -> SysResult {
    let _ = cx;
    let key = key as i32;
    let nsems = nsems as i32;
    if nsems < 0 || nsems as usize > ipc::sem::SEMMSL {
        return Err(EINVAL);
    }
    let n = nsems as usize;
    let mut t = SETS.lock();
    let got = t
        .get(key, flags as u32, || Set {
            vals: alloc::vec![0; n],
            pids: alloc::vec![0; n],
            ncnt: alloc::vec![0; n],
            zcnt: alloc::vec![0; n],
            perm: Perm::new(key, flags as u32, 0),
            otime: 0,
            ctime: now_secs(),
            waiters: Vec::new(),
        })
        .map_err(get_error)?;
    match got {
        Got::Created(id) => {
            if n == 0 {
                t.remove(id);
                return Err(EINVAL);
            }
            if let Some(s) = t.lookup_mut(id) {
                s.perm = Perm::new(key, flags as u32, id);
            }
            Ok(id as u64)
        }
        Got::Existing(id) => {
            if t.lookup(id).is_some_and(|s| n > s.vals.len()) {
                return Err(EINVAL);
            }
            Ok(id as u64)
        }
    }
}

/// semop / semtimedop (`timeout`: relative, ns).
pub fn semtimedop(cx: &Cx, id: u64, sops: u64, nsops: u64, timeout: Option<u64>) -> SysResult {
    let id = id as i32;
    if nsops == 0 {
        return Err(EINVAL);
    }
    if nsops as usize > ipc::sem::SEMOPM {
        return Err(E2BIG);
    }
    let raw = UserSlice::new(sops, nsops * 6).read_to_vec(cx.p())?;
    let ops: Vec<SemOp> = raw
        .chunks(6)
        .map(|c| SemOp { num: u16::from_le_bytes([c[0], c[1]]), op: i16::from_le_bytes([c[2], c[3]]), flg: i16::from_le_bytes([c[4], c[5]]) })
        .collect();
    let deadline = timeout.map(|t| hal::time::now_ns().saturating_add(t));
    let pid = cx.p().pid;
    let mut waited = false;
    loop {
        let mut t = SETS.lock();
        let Some(s) = t.lookup_mut(id) else { return Err(if waited { EIDRM } else { EINVAL }) };
        match ipc::sem::apply(&mut s.vals, &ops) {
            Ok(Outcome::Done(undo)) => {
                for o in &ops {
                    s.pids[usize::from(o.num)] = pid;
                }
                s.otime = now_secs();
                let ws = core::mem::take(&mut s.waiters);
                drop(t);
                if !undo.is_empty() {
                    let mut u = UNDO.lock();
                    let n = ops.iter().map(|o| usize::from(o.num) + 1).max().unwrap_or(0);
                    let adj = u.entry((pid, id)).or_default();
                    if adj.len() < n {
                        adj.resize(n, 0);
                    }
                    for (num, a) in undo {
                        adj[usize::from(num)] += a;
                    }
                }
                wake(ws);
                return Ok(0);
            }
            Ok(Outcome::Wait { num, zero }) => {
                let n = usize::from(num);
                if zero {
                    s.zcnt[n] += 1;
                } else {
                    s.ncnt[n] += 1;
                }
                s.waiters.push(cx.tid);
                drop(t);
                waited = true;
                let why = sched::block(deadline);
                let mut t = SETS.lock();
                if let Some(s) = t.lookup_mut(id) {
                    if zero {
                        s.zcnt[n] -= 1;
                    } else {
                        s.ncnt[n] -= 1;
                    }
                    s.waiters.retain(|&w| w != cx.tid);
                }
                drop(t);
                match why {
                    // Never restarted (signal(7): System V IPC calls end with EINTR).
                    sched::Wake::Interrupted => return Err(EINTR),
                    sched::Wake::TimedOut => return Err(EAGAIN),
                    sched::Wake::Woken => {}
                }
            }
            Err(SemError::Fbig) => return Err(EFBIG),
            Err(SemError::Again) => return Err(EAGAIN),
            Err(SemError::Range) => return Err(ERANGE),
        }
    }
}

pub fn semctl(cx: &Cx, id: u64, num: u64, cmd: u64, arg: u64) -> SysResult {
    let cmd = cmd as u32 & !0x100; // IPC_64
    let id = id as i32;
    let num = num as u32 as usize;
    let p = cx.p();
    let mut t = SETS.lock();
    let s = t.lookup_mut(id).ok_or(EINVAL)?;
    let n = s.vals.len();
    let one = |num: usize| if num < n { Ok(num) } else { Err(EINVAL) };
    match cmd {
        GETVAL => Ok(u64::from(s.vals[one(num)?])),
        GETPID => Ok(u64::from(s.pids[one(num)?])),
        GETNCNT => Ok(u64::from(s.ncnt[one(num)?])),
        GETZCNT => Ok(u64::from(s.zcnt[one(num)?])),
        GETALL => {
            let b: Vec<u8> = s.vals.iter().flat_map(|v| v.to_le_bytes()).collect();
            drop(t);
            UserSliceMut::new(arg, b.len() as u64).write(p, &b)?;
            Ok(0)
        }
        SETVAL | SETALL => {
            let vals: Vec<u16> = if cmd == SETVAL {
                let v = arg as i32;
                if !(0..=ipc::sem::SEMVMX).contains(&v) {
                    return Err(ERANGE);
                }
                let i = one(num)?;
                let mut all = s.vals.clone();
                all[i] = v as u16;
                all
            } else {
                drop(t);
                let raw = UserSlice::new(arg, n as u64 * 2).read_to_vec(p)?;
                let v: Vec<u16> = raw.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                if v.iter().any(|&x| i32::from(x) > ipc::sem::SEMVMX) {
                    return Err(ERANGE);
                }
                t = SETS.lock();
                v
            };
            let s = t.lookup_mut(id).ok_or(EIDRM)?;
            let changed: Vec<usize> = (0..n).filter(|&i| cmd == SETALL || i == num).collect();
            for &i in &changed {
                s.vals[i] = vals[i];
                s.pids[i] = p.pid;
            }
            s.ctime = now_secs();
            let ws = core::mem::take(&mut s.waiters);
            drop(t);
            for ((_, sid), adj) in UNDO.lock().iter_mut() {
                if *sid == id {
                    for &i in &changed {
                        if let Some(a) = adj.get_mut(i) {
                            *a = 0;
                        }
                    }
                }
            }
            wake(ws);
            Ok(0)
        }
        IPC_STAT | SEM_STAT => {
            let mut b = [0u8; 104];
            b[..48].copy_from_slice(&s.perm.bytes());
            b[48..56].copy_from_slice(&s.otime.to_le_bytes());
            b[64..72].copy_from_slice(&s.ctime.to_le_bytes());
            b[80..88].copy_from_slice(&(n as u64).to_le_bytes());
            drop(t);
            UserSliceMut::new(arg, 104).write(p, &b)?;
            Ok(if cmd == SEM_STAT { id as u64 } else { 0 })
        }
        IPC_SET => {
            drop(t);
            let mut b = [0u8; 48];
            UserSlice::new(arg, 48).read_into(p, &mut b)?;
            let mut t = SETS.lock();
            let s = t.lookup_mut(id).ok_or(EIDRM)?;
            s.perm.set_from(&b);
            s.ctime = now_secs();
            Ok(0)
        }
        IPC_RMID => {
            let s = t.remove(id).ok_or(EINVAL)?;
            drop(t);
            UNDO.lock().retain(|(_, sid), _| *sid != id);
            wake(s.waiters);
            Ok(0)
        }
        _ => Err(EINVAL),
    }
}

/// A process ends: its SEM_UNDO adjustments apply.
pub fn process_exit(pid: Pid) {
    let mine: Vec<(i32, Vec<i32>)> = {
        let mut u = UNDO.lock();
        let keys: Vec<(Pid, i32)> = u.range((pid, i32::MIN)..=(pid, i32::MAX)).map(|(k, _)| *k).collect();
        keys.into_iter().filter_map(|k| u.remove(&k).map(|a| (k.1, a))).collect()
    };
    for (id, adj) in mine {
        let mut t = SETS.lock();
        let Some(s) = t.lookup_mut(id) else { continue };
        ipc::sem::undo(&mut s.vals, &adj);
        for (i, a) in adj.iter().enumerate() {
            if *a != 0 && i < s.pids.len() {
                s.pids[i] = pid;
            }
        }
        let ws = core::mem::take(&mut s.waiters);
        drop(t);
        wake(ws);
    }
}
