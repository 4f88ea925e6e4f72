//! Quest-RS APIs for Rust user programs: safe wrappers over Quest's own system calls.
//!
//! Quest-RS runs Rust `std` programs built for `x86_64-unknown-linux-musl`: `std` covers
//! files, threads, time and the rest through the Linux syscalls the kernel implements. This
//! crate adds what Linux does not have — Quest's VCPU API, `ps` and `kill` — with the numbers
//! and records of [`quest_abi`] (re-exported as [`abi`]), so the kernel, this crate and the C
//! headers share one definition.
//!
//! ```no_run
//! use libquest::{SchedParam, vcpu_bind_task, vcpu_create, vcpu_getparams};
//!
//! // The seed's vcpu_test: a Main VCPU with a budget of 20 us every 100 us.
//! let vcpu = vcpu_create(&SchedParam::main(20, 100, 0))?;
//! vcpu_bind_task(vcpu)?;
//! let p = vcpu_getparams()?;
//! assert_eq!((p.c, p.t), (20, 100));
//! # Ok::<(), libquest::Errno>(())
//! ```
//!
//! On plain Linux every call returns `Err(Errno::ENOSYS)` (the Quest numbers are outside
//! Linux's range; see [`quest_abi`]), which is what this crate's host tests check.
//!
//! `no_std` (so `no_std` programs can use it too); the `alloc` feature adds the `*_vec`
//! helpers. The `unsafe` here is the `syscall` instruction itself, in [`raw`]: user space, not
//! the kernel, so it is allowed outside `hal` (see docs/ARCHITECTURE.md), and each use states
//! why it is sound.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod raw;
pub mod shmcomm;

pub use quest_abi as abi;
pub use quest_abi::{
    AFFINITY_ANY, Errno, IO_VCPU, MAIN_VCPU, SchedParam, TaskInfo, TaskState, TpipeGuarantee,
    TpipeQos, VcpuInfo, VcpuType,
};

use quest_abi::nr;

/// A VCPU id, as `vcpu_create` returns it (0 is the default best-effort VCPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VcpuId(pub u32);

/// A task id (Linux: a thread id; a process's main task has the process id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u32);

/// Converts a non-negative syscall result that must fit an `i32`-sized id.
fn to_u32(v: usize) -> Result<u32, Errno> {
    u32::try_from(v).map_err(|_| Errno::ERANGE)
}

/// Clamps a buffer length to the `int max` the calls take.
fn max_of(len: usize) -> usize {
    len.min(i32::MAX as usize)
}

/// Creates a VCPU with `param`'s type, budget, period, IO class and affinity; returns its id.
///
/// Errors: `EINVAL` (bad parameters: see [`SchedParam::validate`]), `EBUSY` (admission control:
/// the PCPU's VCPUs would no longer be schedulable), `ENOSPC` (VCPU table full), `ENOMEM`.
pub fn vcpu_create(param: &SchedParam) -> Result<VcpuId, Errno> {
    // SAFETY: the kernel only reads `size_of::<SchedParam>()` bytes from the pointer, which
    // comes from a live reference to a `#[repr(C)]` SchedParam.
    let r = unsafe { raw::syscall1(nr::VCPU_CREATE, param as *const SchedParam as usize) };
    Errno::from_ret(r).and_then(to_u32).map(VcpuId)
}

/// Binds the calling task to VCPU `vcpu`.
///
/// Errors: `ESRCH` (no such VCPU), `EINVAL` (an IO VCPU).
pub fn vcpu_bind_task(vcpu: VcpuId) -> Result<(), Errno> {
    // SAFETY: no pointer arguments; the call changes only the calling task's scheduling.
    let r = unsafe { raw::syscall1(nr::VCPU_BIND_TASK, vcpu.0 as usize) };
    Errno::from_ret(r).map(drop)
}

/// The parameters of the calling task's VCPU.
pub fn vcpu_getparams() -> Result<SchedParam, Errno> {
    let mut p = SchedParam::default();
    // SAFETY: the kernel writes at most `size_of::<SchedParam>()` bytes through the pointer,
    // which comes from a live exclusive borrow of a `#[repr(C)]` SchedParam made only of
    // integers (every bit pattern is valid).
    let r = unsafe { raw::syscall1(nr::VCPU_GETPARAMS, &mut p as *mut SchedParam as usize) };
    Errno::from_ret(r).map(|_| p)
}

/// Destroys VCPU `vcpu`. With tasks bound to it, fails with `EBUSY` unless `force`, which moves
/// them to VCPU 0 first.
///
/// Errors: `ESRCH` (no such VCPU), `EBUSY`, `EPERM` (VCPU 0).
pub fn vcpu_destroy(vcpu: VcpuId, force: bool) -> Result<(), Errno> {
    // SAFETY: no pointer arguments.
    let r = unsafe { raw::syscall2(nr::VCPU_DESTROY, vcpu.0 as usize, force as usize) };
    Errno::from_ret(r).map(drop)
}

/// Fills `buf` with up to `buf.len()` task records (in id order) and returns the **total**
/// number of tasks, which may exceed `buf.len()` (then only the first `buf.len()` are written).
pub fn ps_tasks(buf: &mut [TaskInfo]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `max` records, and `max <= buf.len()`; `buf` is a live
    // exclusive borrow of `#[repr(C)]` records made only of integers and bytes (every bit
    // pattern is valid).
    let r = unsafe { raw::syscall2(nr::PS_TASKS, buf.as_mut_ptr() as usize, max_of(buf.len())) };
    Errno::from_ret(r)
}

/// Fills `buf` with up to `buf.len()` VCPU records (in id order) and returns the **total**
/// number of VCPUs; like [`ps_tasks`].
pub fn ps_vcpus(buf: &mut [VcpuInfo]) -> Result<usize, Errno> {
    // SAFETY: as in `ps_tasks`: at most `max <= buf.len()` plain-integer records are written
    // into a live exclusive borrow.
    let r = unsafe { raw::syscall2(nr::PS_VCPUS, buf.as_mut_ptr() as usize, max_of(buf.len())) };
    Errno::from_ret(r)
}

/// Marks task `task` for termination (the seed's `kill -t`): it dies the next time it would
/// run; killing a process's main task marks its threads too.
///
/// Errors: `ESRCH` (no such task), `EPERM` (a kernel task or init).
pub fn task_kill(task: TaskId) -> Result<(), Errno> {
    // SAFETY: no pointer arguments. (Killing the calling process is allowed and sound: the
    // task dies at a scheduling point, never in the middle of Rust code holding state.)
    let r = unsafe { raw::syscall1(nr::TASK_KILL, task.0 as usize) };
    Errno::from_ret(r).map(drop)
}

/// Reads a whole table: asks for the count, then retries with a big enough buffer until the
/// table did not grow in between.
#[cfg(feature = "alloc")]
fn read_table<T: Clone + Default>(
    call: fn(&mut [T]) -> Result<usize, Errno>,
) -> Result<alloc::vec::Vec<T>, Errno> {
    let mut v = alloc::vec::Vec::new();
    loop {
        let total = call(&mut v)?;
        if total <= v.len() {
            v.truncate(total);
            return Ok(v);
        }
        // Some head-room for tasks created between the two calls.
        v.resize(total + 8, T::default());
    }
}

/// All tasks, in id order.
#[cfg(feature = "alloc")]
pub fn ps_tasks_vec() -> Result<alloc::vec::Vec<TaskInfo>, Errno> {
    read_table(ps_tasks)
}

/// All VCPUs, in id order.
#[cfg(feature = "alloc")]
pub fn ps_vcpus_vec() -> Result<alloc::vec::Vec<VcpuInfo>, Errno> {
    read_table(ps_vcpus)
}

#[cfg(test)]
mod tests {
    //! Run on the host Linux, where every Quest call must fail with ENOSYS.
    use super::*;

    #[test]
    fn quest_calls_fail_with_enosys_on_linux() {
        let p = SchedParam::main(20, 100, 0);
        assert_eq!(vcpu_create(&p), Err(Errno::ENOSYS));
        assert_eq!(vcpu_bind_task(VcpuId(1)), Err(Errno::ENOSYS));
        assert_eq!(vcpu_getparams(), Err(Errno::ENOSYS));
        assert_eq!(vcpu_destroy(VcpuId(1), true), Err(Errno::ENOSYS));
        let mut tasks = [TaskInfo::default(); 4];
        assert_eq!(ps_tasks(&mut tasks), Err(Errno::ENOSYS));
        assert_eq!(ps_tasks(&mut []), Err(Errno::ENOSYS));
        let mut vcpus = [VcpuInfo::default(); 4];
        assert_eq!(ps_vcpus(&mut vcpus), Err(Errno::ENOSYS));
        assert_eq!(task_kill(TaskId(12345)), Err(Errno::ENOSYS));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn vec_helpers_fail_with_enosys_on_linux() {
        assert_eq!(ps_tasks_vec(), Err(Errno::ENOSYS));
        assert_eq!(ps_vcpus_vec(), Err(Errno::ENOSYS));
    }

    #[test]
    fn max_is_clamped() {
        assert_eq!(max_of(3), 3);
        assert_eq!(max_of(usize::MAX), i32::MAX as usize);
        assert_eq!(to_u32(7), Ok(7));
        assert_eq!(to_u32(1 << 40), Err(Errno::ERANGE));
    }
}
