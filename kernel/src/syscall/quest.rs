//! Quest's own calls (numbers from `crates/quest-abi`): shmcomm channels, tuned pipes, VCPUs,
//! `ps` records, task kill and the Quest-V exit counters.
use alloc::sync::Arc;
use alloc::vec::Vec;

use linux_raw_sys::errno::*;
use quest_abi::{SchedParam, TaskInfo, VcpuInfo};

use super::{Args, Cx, Errno, SysResult, UserPtr, UserSliceMut};
use crate::fs::File;
use crate::process::{self, Process};
use crate::sched;

pub fn call(cx: &Cx, nr: u32, a: Args) -> SysResult {
    use quest_abi::nr as q;
    let p = cx.p();
    match nr {
        q::SHMCOMM_OPEN_SEND | q::SHMCOMM_OPEN_RECEIVE => {
            let side = crate::shmcomm::open(a.n(0) as u32, a.n(1) as u32, a.n(2), a.n(3) as i64, nr == q::SHMCOMM_OPEN_SEND)?;
            p.files.lock().insert(File::Shm(side), 0)
        }
        q::SHMCOMM_WRITE => crate::shmcomm::write(p, &*shm_side(p, a.n(0))?, a.slice(1, 2)),
        q::SHMCOMM_READ => crate::shmcomm::read(p, &*shm_side(p, a.n(0))?, a.slice_mut(1, 2)),
        q::SHMCOMM_CLOSE => {
            shm_side(p, a.n(0))?;
            p.files.lock().close(a.n(0)).map(|_| 0)
        }
        q::SHMCOMM_GET_KEY => shm_side(p, a.n(0)).map(|s| u64::from(s.key())),
        q::SHMCOMM_MAP => {
            let (addr, len) = crate::shmcomm::map(p, &*shm_side(p, a.n(0))?)?;
            if let Err(e) = a.ptr::<u64>(1).write(p, &len) {
                let _ = crate::memory::munmap(p, addr, len);
                return Err(e);
            }
            Ok(addr)
        }
        q::SHMCOMM_WAIT => crate::shmcomm::wait(&*shm_side(p, a.n(0))?, a.n(1)),
        q::SHMCOMM_WAKE => crate::shmcomm::wake(&*shm_side(p, a.n(0))?),
        q::TPIPE_OPEN => crate::tpipe::open(p, a.ptr(0), a.ptr(1), a.ptr(2)),
        q::TPIPE_WRITE => {
            crate::tpipe::check_end(p, a.n(0), true)?;
            super::files::write(cx, a.n(0), a.slice(1, 2))
        }
        q::TPIPE_READ => {
            crate::tpipe::check_end(p, a.n(0), false)?;
            super::files::read(cx, a.n(0), a.slice_mut(1, 2))
        }
        q::TPIPE_CLOSE => {
            crate::tpipe::is_end(p, a.n(0))?;
            p.files.lock().close(a.n(0)).map(|_| 0)
        }
        q::BOOMERANG_STAGE => crate::tpipe::boomerang_stage(p, a.ptr(0), a.ptr(1)),
        q::VCPU_CREATE => crate::vcpu::create(&a.ptr::<SchedParam>(0).read(p)?).map(u64::from),
        q::VCPU_DESTROY => crate::vcpu::destroy(a.n(0) as u32, a.n(1) != 0).map(|_| 0),
        q::VCPU_BIND_TASK => crate::vcpu::bind_current(a.n(0) as u32).map(|_| 0),
        q::PS_TASKS => ps_tasks(cx, a.ptr(0), a.n(1) as i64),
        q::PS_VCPUS => ps_vcpus(cx, a.ptr(0), a.n(1) as i64),
        q::TASK_KILL => {
            let q = process::of_thread(a.n(0) as u32).ok_or(ESRCH)?;
            process::mark_terminal(&q, process::killed_by(9));
            Ok(0)
        }
        q::QUESTV_EXITS => questv_exits(cx, a.slice_mut(0, 1)),
        q::VCPU_GETPARAMS => {
            let sp = crate::vcpu::current_params();
            a.ptr::<SchedParam>(0).write(p, &sp).map(|_| 0)
        }
        _ => Err(ENOSYS),
    }
}

/// The shmcomm side behind descriptor `fd` (EBADF if it is something else).
fn shm_side(p: &Process, fd: u64) -> Result<Arc<crate::shmcomm::Side>, Errno> {
    match p.files.lock().get(fd)? {
        File::Shm(s) => Ok(s.clone()),
        _ => Err(EBADF),
    }
}

fn questv_exits(cx: &Cx, buf: UserSliceMut) -> SysResult {
    hal::questv::sandbox().ok_or(ENODEV)?;
    let mut words = alloc::vec![0u64; quest_abi::questv::ExitStatsHeader::buffer_len(hal::percpu::MAX_CPUS.max(16)) / 8];
    let n = hal::questv::exit_stats(&mut words).map_err(|_| EIO)?;
    if (buf.len() as usize) < n {
        return Err(EINVAL);
    }
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).take(n).collect();
    buf.write(cx.p(), &bytes)?;
    Ok(n as u64)
}

fn ps_tasks(cx: &Cx, buf: UserPtr<TaskInfo>, max: i64) -> SysResult {
    if max < 0 {
        return Err(EINVAL);
    }
    let threads = sched::threads();
    let mut recs = Vec::new();
    for t in &threads {
        let Some(q) = process::of_thread(t.id) else { continue };
        let list = q.threads.lock().clone();
        let mut r = TaskInfo {
            id: t.id,
            process: q.pid,
            parent: if t.id == q.pid { q.parent } else { q.pid },
            vcpu: t.vcpu.and_then(|v| crate::vcpu::global_id(t.cpu, v)).unwrap_or(0),
            pcpu: t.cpu as u32,
            ..TaskInfo::default()
        };
        let state = match t.state {
            sched::State::Running => quest_abi::TaskState::Running,
            sched::State::Ready => quest_abi::TaskState::Ready,
            sched::State::Sleeping(_) => quest_abi::TaskState::Sleeping,
            sched::State::Blocked => quest_abi::TaskState::Waiting,
            sched::State::Dead => quest_abi::TaskState::Zombie,
        };
        r.status = TaskInfo::make_status(state, q.terminal.load(core::sync::atomic::Ordering::Relaxed));
        r.nthreads = list.len() as u32;
        r.thread = list.iter().position(|&x| x == t.id).unwrap_or(0) as u32;
        match q.comm.lock().get(&t.id) {
            Some(n) => r.set_name(n.as_bytes()),
            None => r.set_name(q.name.lock().as_bytes()),
        }
        recs.push(r);
    }
    recs.sort_by_key(|r| r.id);
    for (i, r) in recs.iter().take(max as usize).enumerate() {
        buf.at(i as u64)?.write(cx.p(), r)?;
    }
    Ok(recs.len() as u64)
}

fn ps_vcpus(cx: &Cx, buf: UserPtr<VcpuInfo>, max: i64) -> SysResult {
    if max < 0 {
        return Err(EINVAL);
    }
    let all = crate::vcpu::all();
    for (i, (id, cpu, v)) in all.iter().take(max as usize).enumerate() {
        let r = VcpuInfo {
            id: *id,
            pcpu: *cpu as u32,
            kind: if v.params.kind == vcpu_sched::VcpuKind::Main { 0 } else { 1 },
            c: v.params.c_us,
            t: v.params.t_us,
            io_class: 0,
            num_tasks: v.tasks as u32,
        };
        buf.at(i as u64)?.write(cx.p(), &r)?;
    }
    Ok(all.len() as u64)
}
