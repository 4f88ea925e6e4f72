//! What the scheduler shows: `ps -t`'s thread list and the per-CPU scheduling trace.
use alloc::string::String;
use alloc::vec::Vec;

use vcpu_sched::{TaskId, TraceEvent, VcpuId};

use super::{State, Tid, with_cpu};

/// One line of `ps -t`.
pub struct ThreadInfo {
    pub id: Tid,
    pub name: String,
    pub cpu: usize,
    pub vcpu: Option<VcpuId>,
    pub state: State,
    pub runtime_ns: u64,
}

pub fn threads() -> Vec<ThreadInfo> {
    let mut v = Vec::new();
    for cpu in 0..hal::percpu::online() {
        let _ = with_cpu(cpu, |c| {
            for th in c.threads.values() {
                v.push(ThreadInfo {
                    id: th.id,
                    name: th.name.clone(),
                    cpu,
                    vcpu: c.sched.vcpu_of(TaskId(th.id)),
                    state: th.state,
                    runtime_ns: th.runtime_ns,
                });
            }
        });
    }
    v
}

/// Takes the scheduling trace of `cpu` collected so far (oldest first) and the number of
/// events lost to overflow.
///
/// The scheduler's lock (interrupts off) is held for at most `STEP` events at a time, copied
/// into room reserved beforehand: draining a full ring in one go kept a CPU's interrupts off
/// for about 250 us, which made timers that late (the randomized schedule test saw it).
pub fn drain_trace(cpu: usize) -> (Vec<TraceEvent>, u64) {
    const STEP: usize = 64;
    let mut out = Vec::new();
    loop {
        out.reserve(STEP);
        let step = with_cpu(cpu, |c| {
            let left = c.sched.drain_trace_upto(STEP, |e| out.push(e));
            (left, c.sched.trace_dropped())
        });
        match step {
            Ok((0, dropped)) => return (out, dropped),
            Ok(_) => {}
            Err(_) => return (out, 0),
        }
    }
}

