//! System V semaphore sets: `semop` applies all of its operations or none (semop(2)).
//!
//! An operation on semaphore `num` with value `op`: `op > 0` adds (ERANGE above
//! [`SEMVMX`]); `op < 0` subtracts if the value is at least `-op`, else the caller waits (or
//! fails with EAGAIN under `IPC_NOWAIT`); `op == 0` waits until the value is zero. With
//! `SEM_UNDO` the opposite of the change is recorded, and applied when the process ends.
use alloc::vec::Vec;

/// Largest semaphore value (Linux's).
pub const SEMVMX: i32 = 32767;
/// Most operations in one semop (Linux's SEMOPM).
pub const SEMOPM: usize = 500;
/// Most semaphores in a set (Linux's SEMMSL).
pub const SEMMSL: usize = 32000;
pub const IPC_NOWAIT: i16 = 0o4000;
pub const SEM_UNDO: i16 = 0x1000;

/// One `struct sembuf`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SemOp {
    pub num: u16,
    pub op: i16,
    pub flg: i16,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SemError {
    /// A semaphore number beyond the set (EFBIG).
    Fbig,
    /// Would wait, under IPC_NOWAIT (EAGAIN).
    Again,
    /// A value would exceed SEMVMX (ERANGE).
    Range,
}

/// What `apply` did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Applied: the undo adjustments to record, (semaphore, amount to add at exit).
    Done(Vec<(u16, i32)>),
    /// Nothing applied: the caller waits on semaphore `num`, for it to become zero (`zero`)
    /// or to grow.
    Wait { num: u16, zero: bool },
}

/// Checks numbers first (EFBIG wins over waiting, as on Linux), then tries the operations
/// in order on a copy; commits only if all succeed.
pub fn apply(vals: &mut [u16], ops: &[SemOp]) -> Result<Outcome, SemError> {
    if ops.iter().any(|o| usize::from(o.num) >= vals.len()) {
        return Err(SemError::Fbig);
    }
    let mut next: Vec<i32> = vals.iter().map(|&v| i32::from(v)).collect();
    let mut undo: Vec<(u16, i32)> = Vec::new();
    for o in ops {
        let v = &mut next[usize::from(o.num)];
        let op = i32::from(o.op);
        let blocked = (op == 0 && *v != 0) || (op < 0 && *v + op < 0);
        if blocked {
            if o.flg & IPC_NOWAIT != 0 {
                return Err(SemError::Again);
            }
            return Ok(Outcome::Wait { num: o.num, zero: op == 0 });
        }
        if *v + op > SEMVMX {
            return Err(SemError::Range);
        }
        *v += op;
        if o.flg & SEM_UNDO != 0 && op != 0 {
            undo.push((o.num, -op));
        }
    }
    for (d, n) in vals.iter_mut().zip(next) {
        *d = n as u16;
    }
    Ok(Outcome::Done(undo))
}

/// Applies a process's undo adjustments at its exit: each value moves by its adjustment,
/// clamped to `[0, SEMVMX]` (Linux clamps rather than wait).
pub fn undo(vals: &mut [u16], adj: &[i32]) {
    for (v, a) in vals.iter_mut().zip(adj) {
        *v = (i32::from(*v) + a).clamp(0, SEMVMX) as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(num: u16, op: i16, flg: i16) -> SemOp {
        SemOp { num, op, flg }
    }

    #[test]
    fn all_or_nothing() {
        let mut v = [1u16, 0];
        // The second operation would block: the first is not applied either.
        assert_eq!(apply(&mut v, &[op(0, -1, 0), op(1, -1, 0)]), Ok(Outcome::Wait { num: 1, zero: false }));
        assert_eq!(v, [1, 0]);
        assert_eq!(apply(&mut v, &[op(0, -1, 0), op(1, -1, IPC_NOWAIT)]), Err(SemError::Again));
        assert_eq!(apply(&mut v, &[op(1, 2, 0), op(0, -1, SEM_UNDO), op(1, -1, 0)]), Ok(Outcome::Done(alloc::vec![(0, 1)])));
        assert_eq!(v, [0, 1]);
    }

    #[test]
    fn zero_waits_range_and_fbig() {
        let mut v = [3u16];
        assert_eq!(apply(&mut v, &[op(0, 0, 0)]), Ok(Outcome::Wait { num: 0, zero: true }));
        assert_eq!(apply(&mut v, &[op(0, -3, 0), op(0, 0, 0)]), Ok(Outcome::Done(alloc::vec![])));
        assert_eq!(apply(&mut v, &[op(0, i16::MAX, 0), op(0, 1, 0)]), Err(SemError::Range));
        assert_eq!(v, [0]);
        assert_eq!(apply(&mut v, &[op(0, -1, 0), op(1, 1, 0)]), Err(SemError::Fbig));
    }

    #[test]
    fn undo_clamps() {
        let mut v = [1u16, 5];
        undo(&mut v, &[-3, 2]);
        assert_eq!(v, [0, 7]);
    }
}
