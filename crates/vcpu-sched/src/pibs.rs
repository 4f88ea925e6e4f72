//! PIBS (priority-inheritance bandwidth-preserving server) accounting for one IO VCPU.
//!
//! Invariants (checked by [`IoServer::check`] in debug builds and by the property tests):
//! 1. An activation starts no earlier than the eligibility time left by the previous one.
//! 2. IO VCPU consumption never exceeds U over any eligibility period: an activation that
//!    started at `t` and consumed `used` sets the next eligibility time to
//!    `t_e = t + ceil(used * T_io / C_io)`, so `used <= U * (t_e - t)` exactly (integers).
//! 3. Within one activation `used <= T_main * U` (the budget for the inherited period), up to
//!    the overrun of a late timer, which invariant 2 then pays back.
//!
//! # Rules
//!
//! * The utilization is `U = C_io / T_io`, kept as the integer pair (no floating point).
//! * The VCPU runs at the priority of the Main VCPU it serves: its *period* is the smallest `T`
//!   among pending requesters (or its own `T_io` when nobody is waiting on it).
//! * An activation starts when the VCPU first runs after becoming eligible; its budget is
//!   `T_main * U` (rounded down). It ends when the VCPU runs out of budget, goes idle (all its
//!   tasks blocked) or inherits a *higher* priority while it has used something (so the bound
//!   that admission relies on holds across priority changes). Preemption does not end it.
//! * When an activation that started at `t` ends after consuming `used`, the VCPU becomes
//!   eligible again at `t_e = t + used / U`.
//! * A waking IO VCPU that has been idle becomes eligible at `max(now, t_e)`: now, if it has
//!   been idle past its eligibility time.

use crate::Nanos;

/// PIBS state of one IO VCPU.
#[derive(Clone, Debug)]
pub struct IoServer {
    c: Nanos,
    t: Nanos,
    period: Nanos,
    eligible_at: Nanos,
    act: Option<Nanos>,
    used: Nanos,
    running: bool,
}

/// What ending an activation produced (for traces and checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activation {
    /// When the activation started.
    pub start: Nanos,
    /// Budget it consumed.
    pub used: Nanos,
    /// The next eligibility time it set.
    pub eligible_at: Nanos,
}

impl IoServer {
    /// An IO VCPU with utilization `c / t`, eligible from `now`.
    pub fn new(c: Nanos, t: Nanos, now: Nanos) -> Self {
        assert!(c > 0 && c <= t, "need 0 < C <= T");
        Self {
            c,
            t,
            period: t,
            eligible_at: now,
            act: None,
            used: 0,
            running: false,
        }
    }

    /// `(C_io, T_io)`: the utilization as a ratio.
    pub fn utilization(&self) -> (Nanos, Nanos) {
        (self.c, self.t)
    }

    /// Own period `T_io` (used when there are no pending requesters).
    pub fn own_period(&self) -> Nanos {
        self.t
    }

    /// The current (inherited) period: this VCPU's priority key.
    pub fn period(&self) -> Nanos {
        self.period
    }

    /// Eligibility time.
    pub fn eligible_at(&self) -> Nanos {
        self.eligible_at
    }

    /// Budget per eligibility period at the current priority: `T_main * U`, at least 1 ns.
    pub fn budget(&self) -> Nanos {
        ((self.period as u128 * self.c as u128 / self.t as u128) as Nanos).max(1)
    }

    /// Budget left in the current activation.
    pub fn remaining(&self) -> Nanos {
        self.budget().saturating_sub(self.used)
    }

    /// Budget used in the current activation.
    pub fn used(&self) -> Nanos {
        self.used
    }

    /// Start of the current activation, if one is in progress.
    pub fn activation_start(&self) -> Option<Nanos> {
        self.act
    }

    /// Whether the VCPU may run in the foreground at `now`.
    pub fn eligible(&self, now: Nanos) -> bool {
        self.eligible_at <= now && self.remaining() > 0
    }

    /// When the VCPU next becomes eligible (if not eligible now, this is in the future).
    pub fn next_release(&self) -> Nanos {
        self.eligible_at
    }

    /// The VCPU starts (or resumes) running at `now`.
    pub fn activate(&mut self, now: Nanos) {
        debug_assert!(self.eligible(now), "IO VCPU activated while not eligible");
        debug_assert!(!self.running);
        if self.act.is_none() {
            self.act = Some(now);
        }
        self.running = true;
    }

    /// Charge `now - from`. Returns the finished activation when the budget ran out.
    pub fn charge(&mut self, from: Nanos, now: Nanos) -> Option<Activation> {
        debug_assert!(self.running && self.act.is_some());
        self.used += now - from;
        if self.used >= self.budget() {
            self.running = false;
            self.end_activation()
        } else {
            None
        }
    }

    /// The VCPU stops running (preempted): the activation continues.
    pub fn stop(&mut self) {
        self.running = false;
    }

    /// The VCPU went idle (all tasks blocked): end the activation.
    pub fn idle(&mut self) -> Option<Activation> {
        self.running = false;
        self.end_activation()
    }

    /// A VCPU waking from idle at `now` is eligible at `max(now, t_e)`.
    pub fn wake(&mut self, now: Nanos) {
        debug_assert!(self.act.is_none() && !self.running);
        self.eligible_at = self.eligible_at.max(now);
    }

    /// Inherit `period`. Raising the priority ends an activation that has used budget.
    pub fn set_period(&mut self, period: Nanos) -> Option<Activation> {
        let raised = period < self.period;
        self.period = period;
        let exhausted = self.used >= self.budget() && self.act.is_some();
        if (raised && self.used > 0) || exhausted {
            self.running = false;
            self.end_activation()
        } else {
            None
        }
    }

    fn end_activation(&mut self) -> Option<Activation> {
        let start = self.act.take()?;
        let used = core::mem::take(&mut self.used);
        if used == 0 {
            return None;
        }
        // t_e = t + used / U, rounded up so that used <= U * (t_e - t) holds exactly.
        let span = (used as u128 * self.t as u128).div_ceil(self.c as u128) as Nanos;
        let e = start + span;
        debug_assert!(e >= self.eligible_at, "eligibility went backwards");
        self.eligible_at = e;
        let a = Activation {
            start,
            used,
            eligible_at: e,
        };
        debug_assert!(Self::activation_ok(self.c, self.t, &a));
        Some(a)
    }

    /// Invariant 2 for one finished activation.
    pub fn activation_ok(c: Nanos, t: Nanos, a: &Activation) -> bool {
        (a.used as u128) * (t as u128) <= (c as u128) * ((a.eligible_at - a.start) as u128)
    }

    /// Check invariants; `Err` names the first one violated.
    pub fn check(&self) -> Result<(), &'static str> {
        if let Some(a) = self.act
            && a < self.eligible_at
        {
            return Err("IO activation started before its eligibility time");
        }
        if self.act.is_none() && self.used != 0 {
            return Err("IO usage without an activation");
        }
        if self.running && self.act.is_none() {
            return Err("IO VCPU running without an activation");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eligibility_after_partial_use_is_used_over_u() {
        // U = 1/4, inherited period 100 -> budget 25.
        let mut io = IoServer::new(1, 4, 0);
        assert_eq!(io.set_period(100), None);
        assert_eq!(io.budget(), 25);
        io.activate(10);
        assert_eq!(io.charge(10, 20), None);
        let a = io.idle().unwrap();
        assert_eq!(
            a,
            Activation {
                start: 10,
                used: 10,
                eligible_at: 50
            }
        );
        io.wake(30);
        assert!(!io.eligible(49));
        assert!(io.eligible(50));
    }

    #[test]
    fn exhaustion_sets_eligibility_one_inherited_period_later() {
        let mut io = IoServer::new(1, 4, 0);
        io.set_period(100);
        io.activate(0);
        let a = io.charge(0, 25).unwrap();
        assert_eq!(a.eligible_at, 100);
        assert!(!io.eligible(99));
    }

    #[test]
    fn idle_vcpu_is_eligible_now_on_wake() {
        let mut io = IoServer::new(1, 4, 0);
        io.activate(0);
        io.charge(0, 1);
        io.idle();
        io.wake(1000);
        assert!(io.eligible(1000));
    }

    #[test]
    fn raising_priority_ends_a_used_activation() {
        let mut io = IoServer::new(1, 2, 0);
        io.set_period(1000);
        io.activate(0);
        io.charge(0, 10);
        io.stop();
        let a = io.set_period(100).unwrap();
        assert_eq!(a.eligible_at, 20);
        assert_eq!(io.budget(), 50);
    }
}
