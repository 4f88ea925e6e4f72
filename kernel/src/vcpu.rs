//! Quest's VCPU system calls and the global VCPU numbering.
//!
//! Each PCPU's scheduler numbers its own VCPUs; user programs see one global numbering: VCPU
//! `n` for the best-effort VCPU of PCPU `n`, then VCPUs in creation order. A VCPU created with
//! affinity "any" goes where admission accepts it, trying CPUs worst fit (least reserved
//! utilization first: `vcpu_sched::placement::fit_order`); binding a task to a VCPU of another
//! PCPU moves the task there.
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use hal::sync::IrqLock;
use linux_raw_sys::errno::*;
use quest_abi::{AFFINITY_ANY, SchedParam, VcpuType};
use vcpu_sched::placement::CpuMask;
use vcpu_sched::{VcpuId, VcpuKind, VcpuParams};

use crate::sched::{self, SchedError};

static IDS: IrqLock<BTreeMap<u32, (usize, VcpuId)>> = IrqLock::ranked(BTreeMap::new(), crate::locks::VCPU_IDS);
static NEXT: AtomicU32 = AtomicU32::new(quest_abi_first_dynamic());

const fn quest_abi_first_dynamic() -> u32 {
    hal::percpu::MAX_CPUS as u32
}

/// Registers PCPU `cpu`'s best-effort VCPU as global VCPU `cpu`.
pub fn register_best_effort(cpu: usize) {
    if let Ok(v) = sched::best_effort_vcpu(cpu) {
        IDS.lock().insert(cpu as u32, (cpu, v));
    }
}

/// Gives an already created VCPU a global id.
pub fn register(cpu: usize, v: VcpuId) -> u32 {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    IDS.lock().insert(id, (cpu, v));
    id
}

pub fn lookup(id: u32) -> Option<(usize, VcpuId)> {
    IDS.lock().get(&id).copied()
}

/// The global id of (cpu, local id).
pub fn global_id(cpu: usize, v: VcpuId) -> Option<u32> {
    IDS.lock().iter().find(|e| e.1.0 == cpu && e.1.1 == v).map(|e| *e.0)
}

pub fn create(p: &SchedParam) -> Result<u32, u32> {
    let online = hal::percpu::online() as u32;
    let kind = p.validate(online).map_err(|_| EINVAL)?;
    let params = match kind {
        VcpuType::Main => VcpuParams::main(p.c as u32, p.t as u32),
        VcpuType::Io => VcpuParams::io(p.c.max(1) as u32, p.t as u32),
    };
    let mask = if p.affinity == AFFINITY_ANY { sched::smp::all_cpus() } else { CpuMask::only(p.affinity as usize) };
    create_on(&mask, params).map(|(id, _, _)| id)
}

/// Creates a VCPU with `params` on the first CPU of `mask`, worst fit, whose admission accepts
/// it: its global id, CPU and local id. EBUSY if none does.
pub fn create_on(mask: &CpuMask, params: VcpuParams) -> Result<(u32, usize, VcpuId), u32> {
    let order = vcpu_sched::placement::fit_order(&sched::smp::loads(), mask);
    let mut err = EBUSY;
    for cpu in order {
        match sched::create_vcpu(cpu, params) {
            Ok(v) => return Ok((register(cpu, v), cpu, v)),
            Err(SchedError::Vcpu(vcpu_sched::Error::Rejected(_))) => err = EBUSY,
            Err(SchedError::Vcpu(vcpu_sched::Error::InvalidParams)) => return Err(EINVAL),
            Err(_) => return Err(ENOMEM),
        }
    }
    Err(err)
}

pub fn destroy(id: u32, force: bool) -> Result<(), u32> {
    if id < hal::percpu::MAX_CPUS as u32 {
        return Err(EPERM);
    }
    let (cpu, v) = lookup(id).ok_or(ESRCH)?;
    match sched::destroy_vcpu(cpu, v) {
        Ok(()) => {}
        Err(SchedError::Vcpu(vcpu_sched::Error::VcpuBusy)) if force => {
            sched::rebind_all(cpu, v).map_err(|_| EBUSY)?;
            sched::destroy_vcpu(cpu, v).map_err(|_| EBUSY)?;
        }
        Err(SchedError::Vcpu(vcpu_sched::Error::VcpuBusy)) => return Err(EBUSY),
        Err(_) => return Err(ESRCH),
    }
    IDS.lock().remove(&id);
    Ok(())
}

/// Binds the calling thread to VCPU `id`, moving it to that VCPU's CPU first if needed (a
/// thread whose affinity leaves that CPU out gets EINVAL).
pub fn bind_current(id: u32) -> Result<(), u32> {
    let (cpu, v) = lookup(id).ok_or(ESRCH)?;
    if sched::vcpus(cpu).iter().any(|i| i.id == v && i.params.kind == VcpuKind::Io) {
        return Err(EINVAL);
    }
    let me = sched::current();
    if cpu != sched::current_placement().0 && !sched::smp::affinity_of(me).is_some_and(|m| m.has(cpu)) {
        return Err(EINVAL);
    }
    sched::smp::move_current(cpu, Some(v)).map_err(|_| EINVAL)?;
    if sched::current_placement() != (cpu, Some(v)) {
        return Err(EINVAL); // the VCPU went away meanwhile: it runs on a best-effort VCPU
    }
    Ok(())
}

/// Parameters of the calling thread's VCPU.
pub fn current_params() -> SchedParam {
    let (cpu, v) = sched::current_placement();
    let info = v.and_then(|v| sched::vcpus(cpu).into_iter().find(|i| i.id == v));
    match info {
        Some(i) => SchedParam {
            kind: if i.params.kind == VcpuKind::Main { 0 } else { 1 },
            c: i.params.c_us as i32,
            t: i.params.t_us as i32,
            io_class: 0,
            affinity: cpu as i32,
        },
        None => SchedParam::default(),
    }
}

/// Every VCPU with its global id, for ps.
pub fn all() -> Vec<(u32, usize, vcpu_sched::VcpuInfo)> {
    let ids = IDS.lock().clone();
    let mut out = Vec::new();
    for cpu in 0..hal::percpu::online() {
        for info in sched::vcpus(cpu) {
            let g = ids.iter().find(|e| e.1.0 == cpu && e.1.1 == info.id).map(|e| *e.0);
            out.push((g.unwrap_or(u32::MAX), cpu, info));
        }
    }
    out.sort_by_key(|e| e.0);
    out
}
