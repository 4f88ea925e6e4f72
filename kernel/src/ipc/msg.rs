//! System V message queues: msgget, msgsnd, msgrcv, msgctl. Messages are kept in arrival
//! order; `ipc::msg::select` says which one `msgrcv` takes. A full queue makes senders wait, an
//! empty one receivers (or EAGAIN / ENOMSG under IPC_NOWAIT); every change wakes all waiters
//! of the queue, who try again; IPC_RMID wakes them with EIDRM. MSG_COPY is not supported
//! (EINVAL).
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use hal::sync::IrqLock;
use ipc::ids::{Got, Table};
use ipc::msg::{MSGMAX, MSGMNB};
use linux_raw_sys::errno::*;

use super::{IPC_RMID, IPC_SET, IPC_STAT, Perm, get_error, now_secs};
use crate::sched::{self, Tid};
use crate::syscall::{Cx, SysResult, UserPtr, UserSlice, UserSliceMut};

const IPC_NOWAIT: u64 = 0o4000;
const MSG_NOERROR: u64 = 0o10000;
const MSG_EXCEPT: u64 = 0o20000;
const MSG_COPY: u64 = 0o40000;
const MSG_STAT: u32 = 11;

struct Queue {
    msgs: VecDeque<(i64, Vec<u8>)>,
    bytes: usize,
    qbytes: usize,
    perm: Perm,
    stime: i64,
    rtime: i64,
    ctime: i64,
    lspid: u32,
    lrpid: u32,
    waiters: Vec<Tid>,
}

static QUEUES: IrqLock<Table<Queue>> = IrqLock::new(Table::new(4096));

fn wake(ws: Vec<Tid>) {
    for t in ws {
        let _ = sched::wake(t);
    }
}

pub fn msgget(_cx: &Cx, key: u64, flags: u64) -> SysResult {
    let key = key as i32;
    let mut t = QUEUES.lock();
    let got = t
        .get(key, flags as u32, || Queue {
            msgs: VecDeque::new(),
            bytes: 0,
            qbytes: MSGMNB,
            perm: Perm::new(key, flags as u32, 0),
            stime: 0,
            rtime: 0,
            ctime: now_secs(),
            lspid: 0,
            lrpid: 0,
            waiters: Vec::new(),
        })
        .map_err(get_error)?;
    let id = match got {
        Got::Created(id) => {
            if let Some(q) = t.lookup_mut(id) {
                q.perm = Perm::new(key, flags as u32, id);
            }
            id
        }
        Got::Existing(id) => id,
    };
    Ok(id as u64)
}

/// Waits for a change of queue `id`: Err(EIDRM) if it went, EINTR for a signal.
fn wait(cx: &Cx, id: i32, mut t: hal::sync::IrqLockGuard<'_, Table<Queue>>) -> Result<(), u32> {
    if let Some(q) = t.lookup_mut(id) {
        q.waiters.push(cx.tid);
    }
    drop(t);
    let why = sched::block_current();
    let mut t = QUEUES.lock();
    let Some(q) = t.lookup_mut(id) else { return Err(EIDRM) };
    q.waiters.retain(|&w| w != cx.tid);
    // Never restarted (signal(7): System V IPC calls end with EINTR).
    if why == sched::Wake::Interrupted { Err(EINTR) } else { Ok(()) }
}

pub fn msgsnd(cx: &Cx, id: u64, msgp: u64, size: u64, flags: u64) -> SysResult {
    let id = id as i32;
    if size as usize > MSGMAX {
        return Err(EINVAL);
    }
    let mtype = UserPtr::<i64>::new(msgp).read(cx.p())?;
    if mtype < 1 {
        return Err(EINVAL);
    }
    let data = UserSlice::new(msgp.checked_add(8).ok_or(EFAULT)?, size).read_to_vec(cx.p())?;
    loop {
        let mut t = QUEUES.lock();
        let q = t.lookup_mut(id).ok_or(EINVAL)?;
        if q.bytes + data.len() <= q.qbytes {
            q.bytes += data.len();
            q.msgs.push_back((mtype, data));
            q.lspid = cx.p().pid;
            q.stime = now_secs();
            let ws = core::mem::take(&mut q.waiters);
            drop(t);
            wake(ws);
            return Ok(0);
        }
        if flags & IPC_NOWAIT != 0 {
            return Err(EAGAIN);
        }
        wait(cx, id, t)?;
    }
}

pub fn msgrcv(cx: &Cx, id: u64, msgp: u64, size: u64, msgtyp: u64, flags: u64) -> SysResult {
    let id = id as i32;
    let size = size as i64;
    if size < 0 || flags & MSG_COPY != 0 {
        return Err(EINVAL);
    }
    let msgtyp = msgtyp as i64;
    loop {
        let mut t = QUEUES.lock();
        let q = t.lookup_mut(id).ok_or(EINVAL)?;
        if let Some(i) = ipc::msg::select(q.msgs.iter().map(|(ty, _)| *ty), msgtyp, flags & MSG_EXCEPT != 0) {
            if q.msgs[i].1.len() > size as usize && flags & MSG_NOERROR == 0 {
                return Err(E2BIG);
            }
            let (ty, mut data) = q.msgs.remove(i).unwrap_or_default();
            q.bytes -= data.len();
            q.lrpid = cx.p().pid;
            q.rtime = now_secs();
            let ws = core::mem::take(&mut q.waiters);
            drop(t);
            wake(ws);
            data.truncate(size as usize);
            // The message is gone from the queue even if the copy faults (as on Linux).
            UserPtr::<i64>::new(msgp).write(cx.p(), &ty)?;
            UserSliceMut::new(msgp.checked_add(8).ok_or(EFAULT)?, data.len() as u64).write(cx.p(), &data)?;
            return Ok(data.len() as u64);
        }
        if flags & IPC_NOWAIT != 0 {
            return Err(ENOMSG);
        }
        wait(cx, id, t)?;
    }
}

pub fn msgctl(cx: &Cx, id: u64, cmd: u64, buf: u64) -> SysResult {
    let cmd = cmd as u32 & !0x100; // IPC_64
    let id = id as i32;
    let mut t = QUEUES.lock();
    match cmd {
        IPC_STAT | MSG_STAT => {
            let q = t.lookup(id).ok_or(EINVAL)?;
            let mut b = [0u8; 120];
            b[..48].copy_from_slice(&q.perm.bytes());
            b[48..56].copy_from_slice(&q.stime.to_le_bytes());
            b[56..64].copy_from_slice(&q.rtime.to_le_bytes());
            b[64..72].copy_from_slice(&q.ctime.to_le_bytes());
            b[72..80].copy_from_slice(&(q.bytes as u64).to_le_bytes());
            b[80..88].copy_from_slice(&(q.msgs.len() as u64).to_le_bytes());
            b[88..96].copy_from_slice(&(q.qbytes as u64).to_le_bytes());
            b[96..100].copy_from_slice(&q.lspid.to_le_bytes());
            b[100..104].copy_from_slice(&q.lrpid.to_le_bytes());
            drop(t);
            UserSliceMut::new(buf, 120).write(cx.p(), &b)?;
            Ok(if cmd == MSG_STAT { id as u64 } else { 0 })
        }
        IPC_SET => {
            drop(t);
            let mut b = [0u8; 96];
            UserSlice::new(buf, 96).read_into(cx.p(), &mut b)?;
            let qbytes = u64::from_le_bytes(b[88..96].try_into().unwrap_or([0; 8]));
            let mut t = QUEUES.lock();
            let q = t.lookup_mut(id).ok_or(EINVAL)?;
            q.perm.set_from(&b[..48]);
            if qbytes > 0 {
                q.qbytes = usize::try_from(qbytes).unwrap_or(usize::MAX).min(1 << 24);
            }
            q.ctime = now_secs();
            let ws = core::mem::take(&mut q.waiters);
            drop(t);
            wake(ws);
            Ok(0)
        }
        IPC_RMID => {
            let q = t.remove(id).ok_or(EINVAL)?;
            drop(t);
            wake(q.waiters);
            Ok(0)
        }
        _ => Err(EINVAL),
    }
}
