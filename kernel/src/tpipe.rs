//! Tuned pipes: `tpipe_open` derives the writer's and reader's Main VCPUs from the QoS request
//! (`channels::tpipe::rate_match`, documented in docs/channels.md), creates both on the
//! caller's PCPU — which runs admission control — and returns a pipe (kernel/src/pipe.rs, with
//! a buffer of B bytes) whose first writer and first reader are bound to them.
use linux_raw_sys::errno::*;
use quest_abi::{SchedParam, TpipeGuarantee};

use crate::fs::File;
use crate::process::Process;

fn read_u32s<const N: usize>(p: &Process, addr: u64) -> Result<[u32; N], u32> {
    let mut b = [0u8; 64];
    let b = &mut b[..N * 4];
    p.mem.lock().space.copy_from_user(addr, b).map_err(|_| EFAULT)?;
    let mut out = [0u32; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
    }
    Ok(out)
}

/// tpipe_open(qos, fds, guarantee).
pub fn open(p: &Process, qos: u64, fds: u64, g: u64) -> Result<u64, u32> {
    let [c, lambda, b] = read_u32s::<3>(p, qos)?;
    let plan = channels::tpipe::rate_match(channels::tpipe::Qos { c_us: c, lambda, b }).map_err(|_| EINVAL)?;
    // Check the output pointers before creating anything.
    {
        let m = p.mem.lock();
        m.space.copy_to_user(fds, &[0u8; 8]).map_err(|_| EFAULT)?;
        m.space.copy_to_user(g, &[0u8; core::mem::size_of::<TpipeGuarantee>()]).map_err(|_| EFAULT)?;
    }
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
    let (rfd, wfd) = p.files.lock().insert_pair(File::Pipe(r), File::Pipe(w))?;
    let out = TpipeGuarantee {
        throughput: plan.throughput,
        delay_us: plan.delay_us,
        c: plan.c_us,
        t: plan.t_us,
        writer_vcpu: wv,
        reader_vcpu: rv,
        b: plan.chunk * 2,
    };
    let words = [out.throughput, out.delay_us, out.c, out.t, out.writer_vcpu, out.reader_vcpu, out.b];
    let mut gb = [0u8; 28];
    for (i, w) in words.iter().enumerate() {
        gb[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    let mut fb = [0u8; 8];
    fb[..4].copy_from_slice(&(rfd as i32).to_le_bytes());
    fb[4..].copy_from_slice(&(wfd as i32).to_le_bytes());
    let m = p.mem.lock();
    if m.space.copy_to_user(fds, &fb).is_err() || m.space.copy_to_user(g, &gb).is_err() {
        drop(m);
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
