//! Tuned pipes: `tpipe_open` derives the writer's and reader's Main VCPUs from the QoS request
//! (`channels::tpipe::rate_match`, documented in docs/channels.md), creates both on the
//! caller's PCPU — which runs admission control — and returns a pipe (kernel/src/pipe.rs, with
//! a buffer of B bytes) whose first writer and first reader are bound to them.
//!
//! Boomerang stages: `boomerang_stage` derives one stage's reservation from a pipeline's QoS
//! (`channels::boomerang::plan`), creates that Main VCPU on the caller's PCPU (admission
//! control) and binds the caller to it; the VCPU goes when the thread ends.
use linux_raw_sys::errno::*;
use quest_abi::{BoomerangPlan, BoomerangQos, SchedParam, TpipeGuarantee, TpipeQos};

use crate::fs::File;
use crate::process::Process;
use crate::syscall::UserPtr;

/// tpipe_open(qos, fds, guarantee).
pub fn open(p: &Process, qos: UserPtr<TpipeQos>, fds: UserPtr<[i32; 2]>, g: UserPtr<TpipeGuarantee>) -> Result<u64, u32> {
    let TpipeQos { c, lambda, b } = qos.read(p)?;
    let plan = channels::tpipe::rate_match(channels::tpipe::Qos { c_us: c, lambda, b }).map_err(|_| EINVAL)?;
    // Check the output pointers before creating anything.
    fds.write(p, &[0; 2])?;
    g.write(p, &TpipeGuarantee::default())?;
    let cpu = hal::percpu::cpu_index() as i32;
    let param = SchedParam { kind: quest_abi::MAIN_VCPU, c: plan.c_us as i32, t: plan.t_us as i32, io_class: 0, affinity: cpu };
    let wv = crate::vcpu::create(&param)?;
    let rv = match crate::vcpu::create(&param) {
        Ok(v) => v,
        Err(e) => {
            let _ = crate::vcpu::destroy(wv, true);
            return Err(e);
        }
    };
    // From here the pipe owns the VCPUs: dropping it destroys them.
    let (r, w) = crate::pipe::new_tuned(plan.chunk as usize * 2, wv, rv);
    let (rfd, wfd) = p.files.lock().insert_pair(File::Pipe(r), File::Pipe(w), false)?;
    let out = TpipeGuarantee {
        throughput: plan.throughput,
        delay_us: plan.delay_us,
        c: plan.c_us,
        t: plan.t_us,
        writer_vcpu: wv,
        reader_vcpu: rv,
        b: plan.chunk * 2,
    };
    if fds.write(p, &[rfd as i32, wfd as i32]).is_err() || g.write(p, &out).is_err() {
        let _ = p.files.lock().close(rfd);
        let _ = p.files.lock().close(wfd);
        return Err(EFAULT);
    }
    Ok(0)
}

/// Whether `fd` is a tuned pipe's end (`write`: its write end); EBADF otherwise.
pub fn check_end(p: &Process, fd: u64, write: bool) -> Result<(), u32> {
    match p.files.lock().get(fd)? {
        File::Pipe(e) if e.pipe.tuned.is_some() && e.write == write => Ok(()),
        _ => Err(EBADF),
    }
}

/// Whether `fd` is either end of a tuned pipe.
pub fn is_end(p: &Process, fd: u64) -> Result<(), u32> {
    check_end(p, fd, true).or_else(|_| check_end(p, fd, false))
}

/// boomerang_stage(qos, plan): the calling thread becomes a pipeline stage.
pub fn boomerang_stage(p: &Process, qos: UserPtr<BoomerangQos>, out: UserPtr<BoomerangPlan>) -> Result<u64, u32> {
    let q = qos.read(p)?;
    let plan = channels::boomerang::plan(channels::boomerang::Qos { c_us: q.c, lambda: q.lambda, b: q.b, packet: q.packet, stages: q.stages }).map_err(|_| EINVAL)?;
    out.write(p, &BoomerangPlan::default())?;
    let me = crate::sched::current();
    if p.stage_vcpus.lock().contains_key(&me) {
        return Err(EBUSY); // already a stage: one reservation per thread
    }
    let cpu = hal::percpu::cpu_index() as i32;
    let param = SchedParam { kind: quest_abi::MAIN_VCPU, c: plan.c_us as i32, t: plan.t_us as i32, io_class: 0, affinity: cpu };
    let v = crate::vcpu::create(&param)?;
    if let Err(e) = crate::vcpu::bind_current(v) {
        let _ = crate::vcpu::destroy(v, true);
        return Err(e);
    }
    p.stage_vcpus.lock().insert(me, v);
    let out_plan = BoomerangPlan {
        c: plan.c_us,
        t: plan.t_us,
        chunk: plan.chunk,
        packets: plan.packets,
        slots: plan.slots,
        throughput: plan.throughput,
        hop_delay_us: plan.hop_delay_us,
        delay_us: plan.delay_us,
        vcpu: v as i32,
    };
    out.write(p, &out_plan)?;
    Ok(0)
}
