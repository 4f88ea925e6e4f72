//! Sporadic-server accounting for one Main VCPU.
//!
//! Invariants (checked by [`SporadicServer::check`] in debug builds after every operation and
//! by the property tests):
//! 1. `usage + sum(queue.amount) == budget` at every instant.
//! 2. Replenishment times are strictly increasing and every amount is non-zero.
//! 3. The queue never holds more than `max_repl` entries.
//! 4. `usage > 0` only against the head chunk (`act == head.time`); in
//!    [`ReplenishMode::SlidingWindow`], `usage == 0` whenever the server is not running.
//! 5. [`ReplenishMode::SlidingWindow`]: in any window of length `period` the VCPU runs (in the
//!    foreground) for at most `budget` (checked on simulated traces by `check::sliding_window`).
//!    [`ReplenishMode::Posix`]: a backlogged server is replenished exactly one period after
//!    each release, so it receives `budget` per `period` when its set is admitted.
//!
//! # Model
//!
//! The queue holds the *unconsumed* budget as chunks `(time, amount)`: a chunk may be consumed
//! from `time` on. The head is consumed first. `usage` is what the current run has consumed
//! from the head chunk since it was activated at `act`; it is turned into a replenishment of
//! `usage` at `act + period` when the chunk is exhausted or the run stops.
//!
//! The rules are those of Stanovich, Baker, Wang and Gonzalez Harbour, "Defects of the POSIX
//! sporadic server and how to correct them" (RTAS 2010) ([`ReplenishMode::Posix`], default),
//! optionally with one strengthening ([`ReplenishMode::SlidingWindow`]):
//!
//! * **Budget check** (every [`charge`](SporadicServer::charge)): consumption is taken from the
//!   head; an exhausted head is replenished at `act + period`, and the run continues into the
//!   next chunk if that one is already due (it is activated at the instant of exhaustion).
//!   Consumption past the last eligible chunk (an *overrun*, when a timer fired late) is taken
//!   from the next chunks anyway; it is replenished one period after the charge, and the head
//!   is delayed by the overrun.
//! * **Split check** ([`block`](SporadicServer::block); also every
//!   [`stop`](SporadicServer::stop) in sliding-window mode): the consumed part of the head is
//!   replenished at `act + period`; the remnant stays eligible.
//! * **Unblock check** ([`unblock`](SporadicServer::unblock), on wake; also every
//!   [`activate`](SporadicServer::activate) in sliding-window mode): the head's time is moved
//!   to `now`, and later chunks that fall due before the head can be consumed
//!   (`next.time <= now + head.amount`) are merged into it.
//! * **Bounded queue**: when a new replenishment would exceed `max_repl` entries, it is merged
//!   with its later neighbour, or, when it is the latest, the previous entry is delayed to it.
//!   Merging only ever delays budget, so it cannot break the sliding window.
//!
//! The paper splits only on block and moves the head only on wake, which bounds a server's
//! interference like a periodic task's and keeps a backlogged server's releases exactly one
//! period apart, but lets a run that higher-priority VCPUs delayed be followed at once by the
//! next period's budget, so one window of length `period` can hold up to `2 * budget`.
//! Splitting on preemption and activating on resumption makes every chunk a contiguous run
//! that starts at its own replenishment time, which gives the strict sliding window
//! unconditionally; the price is that a delayed run delays the next release, so a
//! lower-priority server's phase drifts and it can receive less than `budget` per `period`.
//!
//! No rule can have both: for `V1 = (2, 5)`, `V2 = (3, 7)` (response-time feasible, `R2 = 5`)
//! with both continuously backlogged from 0, any schedule in which `V2` never runs more than 3
//! units in a window of 7 runs `V2` at 2, 3, 4, then 9, 12, 13 (the only units left free by
//! `V1` and the window), then no earlier than 16, 19, 20, and the third of those can only run
//! at 22 — past the end of `V2`'s third period at 21. (`tests/seed.rs` runs this set in both
//! modes.)

use alloc::collections::VecDeque;

use crate::Nanos;

/// One replenishment: `amount` nanoseconds of budget usable from `time` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repl {
    /// When the budget becomes usable (absolute, ns).
    pub time: Nanos,
    /// How much budget (ns). Never zero inside a queue.
    pub amount: Nanos,
}

/// Something the server did that a trace may want to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SsNote {
    /// `amount` of budget was (re)scheduled to become usable at `at`.
    Repl {
        /// Release time.
        at: Nanos,
        /// Amount (ns).
        amount: Nanos,
    },
    /// Budget already scheduled at `from` was delayed to `to` (queue merge or overrun).
    Moved {
        /// Old release time.
        from: Nanos,
        /// New release time.
        to: Nanos,
        /// Amount moved (ns).
        amount: Nanos,
    },
}

/// Sporadic-server state of one Main VCPU (see the module docs for the rules).
#[derive(Clone, Debug)]
pub struct SporadicServer {
    budget: Nanos,
    period: Nanos,
    max_repl: usize,
    queue: VecDeque<Repl>,
    usage: Nanos,
    act: Nanos,
    running: bool,
    strict: bool,
}

/// Which replenishment rules a [`SporadicServer`] follows (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplenishMode {
    /// The corrected POSIX rules of the paper (default): split on block, unblock check on
    /// wake. A continuously backlogged server is replenished one period after each budget
    /// release, so it gets exactly `C` per `T` (invariant 2), but a run delayed by
    /// higher-priority VCPUs may be followed at once by the next period's budget, so a window
    /// of length `T` can hold up to `2C` (for admitted sets).
    #[default]
    Posix,
    /// Every run is its own chunk: split on every stop, unblock check on every dispatch. Gives
    /// the strict sliding window (invariant 1) unconditionally, but a lower-priority backlogged
    /// server's release phase drifts later and it can get less than `C` per `T`.
    SlidingWindow,
}

impl SporadicServer {
    /// A server with its full `budget` usable from `now`. `max_repl` is clamped to at least 2.
    pub fn new(budget: Nanos, period: Nanos, max_repl: usize, now: Nanos) -> Self {
        Self::with_mode(budget, period, max_repl, now, ReplenishMode::Posix)
    }

    /// Like [`new`](Self::new) with an explicit [`ReplenishMode`].
    pub fn with_mode(
        budget: Nanos,
        period: Nanos,
        max_repl: usize,
        now: Nanos,
        mode: ReplenishMode,
    ) -> Self {
        assert!(budget > 0 && budget <= period, "need 0 < C <= T");
        let mut queue = VecDeque::with_capacity(max_repl.max(2) + 1);
        queue.push_back(Repl {
            time: now,
            amount: budget,
        });
        Self {
            budget,
            period,
            max_repl: max_repl.max(2),
            queue,
            usage: 0,
            act: now,
            running: false,
            strict: mode == ReplenishMode::SlidingWindow,
        }
    }

    /// The replenishment rules in force.
    pub fn mode(&self) -> ReplenishMode {
        if self.strict {
            ReplenishMode::SlidingWindow
        } else {
            ReplenishMode::Posix
        }
    }

    /// Budget capacity C (ns).
    pub fn budget(&self) -> Nanos {
        self.budget
    }

    /// Replenishment period T (ns).
    pub fn period(&self) -> Nanos {
        self.period
    }

    /// Whether a run is in progress (between `activate` and `stop`/exhaustion).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Budget consumed by the current run and not yet turned into a replenishment.
    pub fn usage(&self) -> Nanos {
        self.usage
    }

    /// The replenishment queue (unconsumed budget), head first.
    pub fn queue(&self) -> impl Iterator<Item = Repl> + '_ {
        self.queue.iter().copied()
    }

    /// True when the head chunk is usable at `now` (the server has budget).
    pub fn eligible(&self, now: Nanos) -> bool {
        self.queue.front().is_some_and(|h| h.time <= now)
    }

    /// When budget next becomes usable (the head's time), if any is queued.
    pub fn next_release(&self) -> Option<Nanos> {
        self.queue.front().map(|h| h.time)
    }

    /// Budget left in the current run's chunk (only meaningful while running).
    pub fn remaining(&self) -> Nanos {
        self.queue.front().map_or(0, |h| h.amount)
    }

    /// Dispatch: the server starts (or resumes) running at `now`. Requires
    /// [`eligible`](Self::eligible)`(now)`. In [`ReplenishMode::SlidingWindow`] this is also an
    /// unblock check (the head moves to `now`); under the POSIX rules the head keeps its time.
    pub fn activate(&mut self, now: Nanos) {
        debug_assert!(!self.running, "activate while running");
        debug_assert!(self.eligible(now), "activate without budget");
        if self.strict {
            debug_assert_eq!(self.usage, 0);
            // Sliding-window dispatch: not reported (the trace checkers of that mode look at
            // execution windows, not at release times).
            self.activate_at(now, &mut |_| {});
        } else if self.usage == 0 {
            self.act = self.queue.front().expect("eligible").time;
        }
        self.running = true;
        self.debug_check();
    }

    /// Unblock check, on wake from idle: if budget is available, the head moves to `now` and
    /// chunks due before it can be consumed are merged into it.
    ///
    /// Every chunk whose time changes is reported as [`SsNote::Moved`] (the head from its old
    /// time, merged chunks from theirs), so a trace shows the budget a blocked server did not
    /// use being released again at the wake.
    pub fn unblock(&mut self, now: Nanos, note: &mut impl FnMut(SsNote)) {
        debug_assert!(!self.running && self.usage == 0);
        if self.eligible(now) {
            self.activate_at(now, note);
        }
        self.debug_check();
    }

    /// Move the head to `t`, merge chunks that fall due before it can be consumed.
    fn activate_at(&mut self, t: Nanos, note: &mut impl FnMut(SsNote)) {
        let head = self
            .queue
            .front_mut()
            .expect("activate with an empty queue");
        debug_assert!(head.time <= t);
        if head.time != t {
            note(SsNote::Moved { from: head.time, to: t, amount: head.amount });
        }
        head.time = t;
        while self.queue.len() >= 2 && self.queue[1].time <= t + self.queue[0].amount {
            let next = self.queue.remove(1).expect("len checked");
            if next.time != t {
                note(SsNote::Moved { from: next.time, to: t, amount: next.amount });
            }
            self.queue[0].amount += next.amount;
        }
        self.act = t;
    }

    /// Budget check: charge the consumption between `from` and `now` (the server ran the whole
    /// time). Returns `true` when the server has no usable budget left at `now` (the run is then
    /// over; the caller must not run it in the foreground until [`eligible`](Self::eligible)).
    pub fn charge(&mut self, from: Nanos, now: Nanos, note: &mut impl FnMut(SsNote)) -> bool {
        debug_assert!(self.running, "charge while not running");
        debug_assert!(from <= now);
        let mut t = from;
        let mut left = now - from;
        while left > 0 {
            let Some(head) = self.queue.front_mut() else {
                // Everything is already consumed and scheduled: the rest of the overrun cannot
                // be charged to anything. Forgiven (only possible with a very late timer).
                break;
            };
            if head.time > t && !self.strict {
                // Overrun under the POSIX rules: charge it to the next chunk and delay that
                // chunk by the overrun (it is replenished, whole, one period after its new
                // time). A chunk consumed entirely early is replenished a period after its
                // release.
                let take = left.min(head.amount);
                if take == head.amount {
                    let h = self.queue.pop_front().expect("non-empty");
                    debug_assert_eq!(self.usage, 0);
                    self.requeue(h.time + self.period, h.amount, note);
                } else {
                    let from = head.time;
                    head.amount -= take;
                    head.time += take;
                    note(SsNote::Moved {
                        from,
                        to: head.time,
                        amount: head.amount,
                    });
                    self.usage += take;
                    self.fix_front_order(note);
                    self.act = self.queue.front().expect("non-empty").time;
                }
                left -= take;
                t += take;
                continue;
            }
            if head.time > t {
                // Overrun in sliding-window mode: the server runs although its next chunk is
                // not due yet; the borrowed budget is replenished a period after the charge.
                let take = left.min(head.amount);
                let from_time = head.time;
                head.amount -= take;
                head.time += take;
                let (head_amount, head_time) = (head.amount, head.time);
                if head_amount == 0 {
                    self.queue.pop_front();
                } else {
                    note(SsNote::Moved {
                        from: from_time,
                        to: head_time,
                        amount: head_amount,
                    });
                    self.fix_front_order(note);
                }
                self.requeue(now + self.period, take, note);
                left -= take;
                t += take;
                continue;
            }
            if self.usage == 0 {
                // Consumption of a new chunk starts at t.
                if self.strict {
                    self.activate_at(t, &mut |_| {});
                } else {
                    // POSIX rules: the chunk keeps its own release time.
                    self.act = head.time;
                }
            }
            let head = self.queue.front_mut().expect("non-empty");
            let take = left.min(head.amount);
            head.amount -= take;
            self.usage += take;
            left -= take;
            t += take;
            if head.amount == 0 {
                // Exhausted: replenish what this chunk gave at act + T.
                self.queue.pop_front();
                let used = core::mem::take(&mut self.usage);
                self.requeue(self.act + self.period, used, note);
            }
        }
        let exhausted = !self.eligible(now) || self.usage == 0 && self.remaining() == 0;
        if exhausted {
            // An exhausted run has usage 0 (it was turned into a replenishment above), except
            // for an overrun charged to the next chunk under the POSIX rules.
            debug_assert!(self.usage == 0 || !self.strict);
            self.running = false;
        }
        self.debug_check();
        exhausted
    }

    /// The run stops (preemption, or the VCPU has nothing to run). Under
    /// [`ReplenishMode::SlidingWindow`] this is a split check; under the POSIX rules the server
    /// stays active (its usage keeps counting against the head) until it blocks.
    pub fn stop(&mut self, note: &mut impl FnMut(SsNote)) {
        if !self.running {
            return;
        }
        self.running = false;
        if self.strict {
            self.split(note);
        }
        self.debug_check();
    }

    /// Split check, when the VCPU blocks (goes idle): the consumed part of the head is
    /// replenished at `act + T`; the remnant keeps the head's time.
    pub fn block(&mut self, note: &mut impl FnMut(SsNote)) {
        self.running = false;
        self.split(note);
        self.debug_check();
    }

    fn split(&mut self, note: &mut impl FnMut(SsNote)) {
        let used = core::mem::take(&mut self.usage);
        if used > 0 {
            self.requeue(self.act + self.period, used, note);
        }
    }

    /// Insert a replenishment in time order, merging equal times and bounding the length.
    fn requeue(&mut self, time: Nanos, amount: Nanos, note: &mut impl FnMut(SsNote)) {
        if amount == 0 {
            return;
        }
        // Position after every entry with a time <= `time` (usually the tail).
        let mut i = self.queue.len();
        while i > 0 && self.queue[i - 1].time > time {
            i -= 1;
        }
        if i > 0 && self.queue[i - 1].time == time && (i > 1 || self.usage == 0) {
            self.queue[i - 1].amount += amount;
            note(SsNote::Repl { at: time, amount });
            return;
        }
        self.queue.insert(i, Repl { time, amount });
        if self.queue.len() > self.max_repl {
            if i + 1 < self.queue.len() {
                // Merge into the later neighbour: the new budget comes a little later.
                let new = self.queue.remove(i).expect("index valid");
                self.queue[i].amount += new.amount;
                note(SsNote::Repl {
                    at: self.queue[i].time,
                    amount: new.amount,
                });
            } else {
                // The new entry is the latest: delay the previous one to it. Never the head
                // of a running server (len > max_repl >= 2 means i - 1 >= 1 here).
                debug_assert!(i >= 2);
                let prev = self.queue.remove(i - 1).expect("index valid");
                self.queue[i - 1].amount += prev.amount;
                note(SsNote::Repl { at: time, amount });
                note(SsNote::Moved {
                    from: prev.time,
                    to: time,
                    amount: prev.amount,
                });
            }
        } else {
            note(SsNote::Repl { at: time, amount });
        }
    }

    /// After delaying the head, keep times strictly increasing by merging into later entries.
    fn fix_front_order(&mut self, note: &mut impl FnMut(SsNote)) {
        while self.queue.len() >= 2 && self.queue[0].time >= self.queue[1].time {
            let head = self.queue.pop_front().expect("len checked");
            let next = &mut self.queue[0];
            if head.time > next.time {
                note(SsNote::Moved {
                    from: next.time,
                    to: head.time,
                    amount: next.amount,
                });
                next.time = head.time;
            }
            next.amount += head.amount;
        }
    }

    /// Check invariants 1–4; `Err` names the first one violated.
    pub fn check(&self) -> Result<(), &'static str> {
        let sum: Nanos = self.queue.iter().map(|r| r.amount).sum();
        if sum + self.usage != self.budget {
            return Err("usage + sum(replenishments) != C");
        }
        if self.queue.iter().any(|r| r.amount == 0) {
            return Err("zero-amount replenishment");
        }
        if self
            .queue
            .iter()
            .zip(self.queue.iter().skip(1))
            .any(|(a, b)| a.time >= b.time)
        {
            return Err("replenishment times not strictly increasing");
        }
        if self.queue.len() > self.max_repl {
            return Err("replenishment queue longer than max_repl");
        }
        if self.strict && !self.running && self.usage != 0 {
            return Err("usage left over while not running");
        }
        if self.usage > 0 && self.queue.front().is_none_or(|h| h.time != self.act) {
            return Err("usage charged to a chunk that is not the head");
        }
        Ok(())
    }

    #[inline]
    fn debug_check(&self) {
        #[cfg(debug_assertions)]
        if let Err(e) = self.check() {
            panic!("sporadic server invariant violated: {e}: {self:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn drain() -> impl FnMut(SsNote) {
        |_| {}
    }

    #[test]
    fn full_budget_then_replenished_one_period_after_activation() {
        let mut s = SporadicServer::new(20, 100, 8, 0);
        s.unblock(5, &mut |_| {}); // woke at 5: the head moves to 5
        s.activate(5);
        assert!(s.charge(5, 25, &mut drain()));
        assert!(!s.eligible(100));
        assert_eq!(s.next_release(), Some(105));
        assert!(s.eligible(105));
    }

    #[test]
    fn posix_preemption_does_not_split_but_block_does() {
        let mut s = SporadicServer::new(20, 100, 8, 0);
        s.activate(0);
        s.charge(0, 7, &mut drain());
        s.stop(&mut drain());
        assert_eq!(s.usage(), 7);
        assert_eq!(s.queue().count(), 1);
        s.activate(50);
        s.charge(50, 53, &mut drain());
        s.block(&mut drain());
        // Consumed 10 since the head's release at 0: replenished at 100.
        assert_eq!(
            s.queue().collect::<Vec<_>>(),
            [
                Repl {
                    time: 0,
                    amount: 10
                },
                Repl {
                    time: 100,
                    amount: 10
                }
            ]
        );
        // Waking at 60: the remnant is moved to 60 (unblock check).
        s.unblock(60, &mut |_| {});
        assert_eq!(s.next_release(), Some(60));
    }

    #[test]
    fn split_on_stop_keeps_remnant_and_schedules_consumed_part() {
        let mut s = SporadicServer::with_mode(20, 100, 8, 0, ReplenishMode::SlidingWindow);
        let mut notes = Vec::new();
        s.activate(0);
        assert!(!s.charge(0, 7, &mut |n| notes.push(n)));
        s.stop(&mut |n| notes.push(n));
        assert_eq!(
            s.queue().collect::<Vec<_>>(),
            [
                Repl {
                    time: 0,
                    amount: 13
                },
                Repl {
                    time: 100,
                    amount: 7
                }
            ]
        );
        assert_eq!(notes, [SsNote::Repl { at: 100, amount: 7 }]);
        // Resumed much later: the remnant is activated at the resumption time.
        s.activate(50);
        assert!(s.charge(50, 63, &mut drain()));
        assert_eq!(
            s.queue().next(),
            Some(Repl {
                time: 100,
                amount: 7
            })
        );
        assert_eq!(
            s.queue().nth(1),
            Some(Repl {
                time: 150,
                amount: 13
            })
        );
    }

    #[test]
    fn activation_merges_chunks_due_before_head_is_consumed() {
        let mut s = SporadicServer::with_mode(20, 100, 8, 0, ReplenishMode::SlidingWindow);
        s.activate(0);
        s.charge(0, 10, &mut drain());
        s.stop(&mut drain()); // (0,10) (100,10)
        s.activate(95); // head 10 at 95 can run until 105 >= 100: merge
        assert_eq!(s.remaining(), 20);
    }

    #[test]
    fn overrun_delays_next_chunk() {
        let mut s = SporadicServer::new(20, 100, 8, 0);
        s.activate(0);
        // Timer late by 3: ran 23 with 20 of budget.
        assert!(s.charge(0, 23, &mut drain()));
        s.check().unwrap();
        // 20 at 100 was the replenishment; 3 were charged to it early and it was delayed by
        // 3: it comes back, whole, at 203 once consumed.
        let q: Vec<_> = s.queue().collect();
        assert_eq!(
            q,
            [Repl {
                time: 103,
                amount: 17
            }]
        );
        assert_eq!(s.usage(), 3);
        s.activate(103);
        assert!(s.charge(103, 120, &mut drain()));
        assert_eq!(
            s.queue().collect::<Vec<_>>(),
            [Repl {
                time: 203,
                amount: 20
            }]
        );

        // Sliding-window mode: the borrowed part is replenished a period after the charge.
        let mut s = SporadicServer::with_mode(20, 100, 8, 0, ReplenishMode::SlidingWindow);
        s.activate(0);
        assert!(s.charge(0, 23, &mut drain()));
        let q: Vec<_> = s.queue().collect();
        assert_eq!(
            q[0],
            Repl {
                time: 103,
                amount: 17
            }
        );
        assert_eq!(
            q[1],
            Repl {
                time: 123,
                amount: 3
            }
        );
    }

    #[test]
    fn bounded_queue_merges() {
        let mut s = SporadicServer::with_mode(100, 1000, 3, 0, ReplenishMode::SlidingWindow);
        for k in 0..10u64 {
            let t = k * 10;
            s.activate(t);
            s.charge(t, t + 1, &mut drain());
            s.stop(&mut drain());
            assert!(s.queue().count() <= 3);
        }
        s.check().unwrap();
    }
}
