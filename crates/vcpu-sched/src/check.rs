//! Trace checkers for the crate's invariants, independent of the scheduler's own accounting:
//! they look only at what ran when (the `RUN`/`BG`/`IDLE` lines) and at the budget the trace
//! says was released. Used by the property tests on simulated runs; usable on kernel traces.
//!
//! * [`sliding_window`]: invariant 1 (at most `C` of foreground execution in any window `T`).
//! * [`replenishment_deadlines`]: invariant 2 (budget released at `r` consumed by `r + T`
//!   while the VCPU is backlogged).
//! * [`pibs`]: invariant 4 (IO consumption never exceeds `U` over an eligibility period).
//! * [`replenishment_latency`]: how late a depleted, backlogged Main VCPU runs again after its
//!   budget comes back (the kernel's timer and interrupt latency, seen from the schedule).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::trace::{EventKind, Segment, TraceEvent, segments};
use crate::{Nanos, VcpuId, VcpuKind};

/// A VCPU in a (possibly multi-PCPU) trace.
pub type Key = (u32, VcpuId);

/// A VCPU's parameters as announced by its `CREATE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Created {
    /// When.
    pub t: Nanos,
    /// Main or IO.
    pub kind: VcpuKind,
    /// C (ns).
    pub c: Nanos,
    /// T (ns).
    pub period: Nanos,
}

/// Every VCPU created in the trace (the last `CREATE` per key wins).
pub fn created(events: &[TraceEvent]) -> BTreeMap<Key, Created> {
    let mut m = BTreeMap::new();
    for e in events {
        if let (EventKind::Create { kind, c, t }, Some(v)) = (e.kind, e.vcpu) {
            m.insert(
                (e.pcpu, v),
                Created {
                    t: e.t,
                    kind,
                    c,
                    period: t,
                },
            );
        }
    }
    m
}

/// Foreground execution intervals per VCPU, sorted and merged where contiguous.
pub fn foreground(events: &[TraceEvent], end: Nanos) -> BTreeMap<Key, Vec<(Nanos, Nanos)>> {
    let mut m: BTreeMap<Key, Vec<(Nanos, Nanos)>> = BTreeMap::new();
    for s in segments(events, end) {
        if s.background {
            continue;
        }
        let v = m.entry((s.pcpu, s.vcpu)).or_default();
        match v.last_mut() {
            Some(last) if last.1 == s.start => last.1 = s.end,
            _ => v.push((s.start, s.end)),
        }
    }
    m
}

/// Total execution per VCPU: `(foreground, background)` ns within `[from, to)`.
pub fn service(events: &[TraceEvent], from: Nanos, to: Nanos) -> BTreeMap<Key, (Nanos, Nanos)> {
    let mut m: BTreeMap<Key, (Nanos, Nanos)> = BTreeMap::new();
    for Segment {
        pcpu,
        vcpu,
        start,
        end,
        background,
        ..
    } in segments(events, to)
    {
        let s = start.max(from);
        let e = end.min(to);
        if e <= s {
            continue;
        }
        let x = m.entry((pcpu, vcpu)).or_default();
        if background {
            x.1 += e - s;
        } else {
            x.0 += e - s;
        }
    }
    m
}

/// Cumulative execution function over sorted, disjoint intervals.
struct Cumulative<'a> {
    iv: &'a [(Nanos, Nanos)],
    prefix: Vec<Nanos>,
}

impl<'a> Cumulative<'a> {
    fn new(iv: &'a [(Nanos, Nanos)]) -> Self {
        let mut prefix = Vec::with_capacity(iv.len() + 1);
        let mut acc = 0;
        prefix.push(0);
        for &(s, e) in iv {
            acc += e - s;
            prefix.push(acc);
        }
        Self { iv, prefix }
    }

    /// Execution in `[0, x)`.
    fn at(&self, x: Nanos) -> Nanos {
        // Number of intervals starting before x.
        let k = self.iv.partition_point(|&(s, _)| s < x);
        if k == 0 {
            return 0;
        }
        let (s, e) = self.iv[k - 1];
        self.prefix[k - 1] + (x.min(e) - s)
    }
}

/// A sliding-window violation: `amount` executed in `[start, start + T)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowViolation {
    /// Window start.
    pub start: Nanos,
    /// Execution in the window.
    pub amount: Nanos,
}

/// Invariant 1 for one VCPU: at most `c + tolerance` of execution (sorted, disjoint
/// `intervals`) in any window of length `t`. The maximum over all windows is attained with a
/// window starting at an interval start or ending at an interval end; both are checked.
pub fn sliding_window(
    intervals: &[(Nanos, Nanos)],
    c: Nanos,
    t: Nanos,
    tolerance: Nanos,
) -> Result<Nanos, WindowViolation> {
    let w = Cumulative::new(intervals);
    let mut worst = 0;
    for &(s, e) in intervals {
        for start in [s, e.saturating_sub(t)] {
            let amount = w.at(start + t) - w.at(start);
            worst = worst.max(amount);
            if amount > c + tolerance {
                return Err(WindowViolation { start, amount });
            }
        }
    }
    Ok(worst)
}

/// A replenishment-deadline violation: budget released by `release` not consumed by
/// `release + T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlineViolation {
    /// The release time.
    pub release: Nanos,
    /// Budget released up to then (cumulative, ns).
    pub released: Nanos,
    /// Consumed by `release + T` (cumulative, ns).
    pub consumed: Nanos,
}

/// Invariant 2 for a Main VCPU that is continuously backlogged from its creation until
/// `horizon`: for every release time `r` (creation, `REPL`, `MOVE` targets) with
/// `r + T <= horizon`, the cumulative foreground execution by `r + T` is at least the
/// cumulative budget released by `r`, minus `tolerance`.
pub fn replenishment_deadlines(
    events: &[TraceEvent],
    key: Key,
    horizon: Nanos,
    tolerance: Nanos,
) -> Result<usize, DeadlineViolation> {
    deadlines(events, key, horizon, tolerance, false)
}

/// A PIBS violation for one activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PibsViolation {
    /// Activation start.
    pub start: Nanos,
    /// What went wrong.
    pub what: &'static str,
}

/// Invariant 4 for an IO VCPU with utilization `c / t`: for every finished activation
/// (`ELIG start used at`), `used <= U * (at - start)`, the next activation does not start
/// before `at`, and the execution the trace shows between this activation's start and the
/// next one's is at most `used` (+ `tolerance`). Returns the number of activations checked.
pub fn pibs(
    events: &[TraceEvent],
    key: Key,
    c: Nanos,
    t: Nanos,
    horizon: Nanos,
    tolerance: Nanos,
) -> Result<usize, PibsViolation> {
    let acts: Vec<(Nanos, Nanos, Nanos)> = events
        .iter()
        .filter(|e| (e.pcpu, e.vcpu) == (key.0, Some(key.1)))
        .filter_map(|e| match e.kind {
            EventKind::Elig { start, used, at } => Some((start, used, at)),
            _ => None,
        })
        .collect();
    let fg = foreground(events, horizon);
    let empty = Vec::new();
    let w = Cumulative::new(fg.get(&key).unwrap_or(&empty));
    for (k, &(start, used, at)) in acts.iter().enumerate() {
        if (used as u128) * (t as u128) > (c as u128) * ((at - start) as u128) {
            return Err(PibsViolation {
                start,
                what: "consumption exceeds U over the eligibility period",
            });
        }
        if let Some(&(next, _, _)) = acts.get(k + 1) {
            if next < at {
                return Err(PibsViolation {
                    start: next,
                    what: "activation started before the eligibility time",
                });
            }
            let ran = w.at(next) - w.at(start);
            if ran > used + tolerance {
                return Err(PibsViolation {
                    start,
                    what: "ran more than the activation accounted",
                });
            }
        }
    }
    Ok(acts.len())
}

/// Backlog intervals per VCPU: from the `WAKE` that made one of its tasks runnable while none
/// was, to the `BLOCK` that left none runnable (a task moved by `bind` blocks on the old VCPU
/// and wakes on the new one). Sorted, disjoint; an interval still open ends at `end`.
pub fn backlog(events: &[TraceEvent], end: Nanos) -> BTreeMap<Key, Vec<(Nanos, Nanos)>> {
    let mut runnable: BTreeMap<Key, alloc::collections::BTreeSet<u32>> = BTreeMap::new();
    let mut since: BTreeMap<Key, Nanos> = BTreeMap::new();
    let mut out: BTreeMap<Key, Vec<(Nanos, Nanos)>> = BTreeMap::new();
    for e in events {
        let (Some(v), Some(task)) = (e.vcpu, e.task) else {
            continue;
        };
        let key = (e.pcpu, v);
        match e.kind {
            EventKind::Wake => {
                let set = runnable.entry(key).or_default();
                if set.is_empty() {
                    since.insert(key, e.t);
                }
                set.insert(task.0);
            }
            EventKind::Block => {
                let set = runnable.entry(key).or_default();
                if set.remove(&task.0)
                    && set.is_empty()
                    && let Some(s) = since.remove(&key)
                {
                    push_merged(out.entry(key).or_default(), s, e.t);
                }
            }
            _ => {}
        }
    }
    for (key, s) in since {
        push_merged(out.entry(key).or_default(), s, end.max(s));
    }
    out
}

fn push_merged(v: &mut Vec<(Nanos, Nanos)>, s: Nanos, e: Nanos) {
    match v.last_mut() {
        Some(last) if last.1 >= s => last.1 = last.1.max(e),
        _ => v.push((s, e)),
    }
}

/// Whether `[a, b]` lies inside one of the sorted, disjoint `intervals`.
fn covered(intervals: &[(Nanos, Nanos)], a: Nanos, b: Nanos) -> bool {
    let i = intervals.partition_point(|iv| iv.1 < b);
    intervals.get(i).is_some_and(|&(s, e)| s <= a && b <= e)
}

/// Budget releases of a Main VCPU as `(time, signed amount)`: `C` at creation, every `REPL`,
/// and every `MOVE` (taken away at `from`, given at `to`), sorted by time.
fn releases(events: &[TraceEvent], key: Key, cr: &Created) -> Vec<(Nanos, i128)> {
    let mut deltas: Vec<(Nanos, i128)> = alloc::vec![(cr.t, cr.c as i128)];
    for e in events {
        if (e.pcpu, e.vcpu) != (key.0, Some(key.1)) || e.t < cr.t {
            continue;
        }
        match e.kind {
            EventKind::Repl { at, amount } => deltas.push((at, amount as i128)),
            EventKind::Move { from, to, amount } => {
                deltas.push((from, -(amount as i128)));
                deltas.push((to, amount as i128));
            }
            _ => {}
        }
    }
    deltas.sort();
    deltas
}

/// Invariant 2 for a Main VCPU whose tasks block and wake (sporadic-server rules): for every
/// release time `r` (creation, `REPL`, `MOVE` target) with `r + T <= horizon` such that the VCPU
/// is backlogged throughout `[r, r + T]`, its cumulative foreground execution by `r + T` is at
/// least the cumulative budget released by `r`, minus `tolerance`. (Budget a server did not
/// use while blocked is released again at its wake, which the trace shows as `MOVE`; so at
/// every wake what was released before has been used or moved, and the cumulative form holds
/// from there on.) Returns the number of deadlines checked.
pub fn backlogged_deadlines(
    events: &[TraceEvent],
    key: Key,
    horizon: Nanos,
    tolerance: Nanos,
) -> Result<usize, DeadlineViolation> {
    deadlines(events, key, horizon, tolerance, true)
}

/// The cumulative deadline check; with `only_backlogged`, only at releases after which the
/// VCPU stays backlogged for a whole period.
fn deadlines(
    events: &[TraceEvent],
    key: Key,
    horizon: Nanos,
    tolerance: Nanos,
    only_backlogged: bool,
) -> Result<usize, DeadlineViolation> {
    let Some(cr) = created(events).get(&key).copied() else {
        return Ok(0);
    };
    let deltas = releases(events, key, &cr);
    let fg = foreground(events, horizon);
    let empty = Vec::new();
    let w = Cumulative::new(fg.get(&key).unwrap_or(&empty));
    let base = w.at(cr.t);
    let bl = if only_backlogged { backlog(events, horizon) } else { BTreeMap::new() };
    let busy = bl.get(&key).unwrap_or(&empty);
    let mut released: i128 = 0;
    let mut checked = 0;
    let mut i = 0;
    while i < deltas.len() {
        let r = deltas[i].0;
        while i < deltas.len() && deltas[i].0 == r {
            released += deltas[i].1;
            i += 1;
        }
        if r + cr.period > horizon {
            break;
        }
        if only_backlogged && !covered(busy, r, r + cr.period) {
            continue;
        }
        let consumed = w.at(r + cr.period) - base;
        checked += 1;
        if (consumed as i128) + (tolerance as i128) < released {
            return Err(DeadlineViolation {
                release: r,
                released: released.max(0) as Nanos,
                consumed,
            });
        }
    }
    Ok(checked)
}

/// A Main VCPU that ran in the foreground more than the budget released so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountingViolation {
    /// When the excess was seen.
    pub at: Nanos,
    /// Budget released by then (cumulative, ns).
    pub released: Nanos,
    /// Foreground execution by then (cumulative, ns).
    pub consumed: Nanos,
}

/// Sporadic-server accounting from the trace alone: at every instant up to `horizon`, a Main
/// VCPU's cumulative foreground execution is at most the cumulative budget released by then
/// (creation, `REPL`, `MOVE`) plus `tolerance` (a late timer's overrun). Returns the largest
/// excess seen.
pub fn budget_accounting(
    events: &[TraceEvent],
    key: Key,
    horizon: Nanos,
    tolerance: Nanos,
) -> Result<Nanos, AccountingViolation> {
    let Some(cr) = created(events).get(&key).copied() else {
        return Ok(0);
    };
    let deltas = releases(events, key, &cr);
    let fg = foreground(events, horizon);
    let empty = Vec::new();
    let iv = fg.get(&key).unwrap_or(&empty);
    let w = Cumulative::new(iv);
    let base = w.at(cr.t);
    let (mut j, mut released) = (0usize, 0i128);
    let mut worst: Nanos = 0;
    // The excess can only peak at the end of an execution interval (both lists are sorted).
    for &(_, e) in iv {
        if e < cr.t {
            continue;
        }
        while j < deltas.len() && deltas[j].0 <= e {
            released += deltas[j].1;
            j += 1;
        }
        let consumed = w.at(e) - base;
        let excess = consumed as i128 - released;
        if excess > 0 {
            worst = worst.max(excess as Nanos);
            if excess > tolerance as i128 {
                return Err(AccountingViolation {
                    at: e,
                    released: released.max(0) as Nanos,
                    consumed,
                });
            }
        }
    }
    Ok(worst)
}

/// The largest delay from a budget release to the `RUN` it allows, for a Main VCPU that ran
/// out of budget (`DEPLETE`) while backlogged and stays backlogged until it runs again: the
/// earliest release after the depletion (`REPL` time or `MOVE` target) to its next `RUN`.
/// Returns `(largest delay, number of depletions measured)`. Zero delay is what the sporadic
/// server promises a VCPU nothing of higher priority competes with; what a kernel adds is its
/// timer and interrupt latency (interrupts held off, say).
pub fn replenishment_latency(events: &[TraceEvent], key: Key, horizon: Nanos) -> (Nanos, usize) {
    let Some(cr) = created(events).get(&key).copied() else {
        return (0, 0);
    };
    let rel: Vec<Nanos> = releases(events, key, &cr).into_iter().filter(|d| d.1 > 0).map(|d| d.0).collect();
    let back = backlog(events, horizon);
    let empty = Vec::new();
    let back = back.get(&key).unwrap_or(&empty);
    let mine = |e: &&TraceEvent| (e.pcpu, e.vcpu) == (key.0, Some(key.1)) && e.t <= horizon;
    let (mut worst, mut n) = (0, 0);
    for (i, d) in events.iter().enumerate().filter(|(_, e)| mine(e) && e.kind == EventKind::Deplete) {
        let Some(&r) = rel.iter().find(|&&r| r > d.t) else { continue };
        let Some(run) = events[i..].iter().filter(mine).find(|e| matches!(e.kind, EventKind::Run { .. })) else { continue };
        if run.t >= r && covered(back, d.t, run.t) {
            worst = worst.max(run.t - r);
            n += 1;
        }
    }
    (worst, n)
}

/// Number of `MISS` lines.
pub fn misses(events: &[TraceEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Miss { .. }))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskId;
    use crate::trace::parse;

    /// A (2, 10) VCPU 0 on PCPU 0 with task 1; `body` is more trace lines.
    fn with(body: &str) -> Vec<TraceEvent> {
        let head = "0 0 0 - CREATE main 2 10\n";
        parse(&alloc::format!("{head}{body}")).unwrap()
    }

    #[test]
    fn replenishment_latency_measures_from_the_release_to_the_run() {
        // Backlogged throughout; depleted at 2, budget back at 10 (REPL), runs at 13: 3 late.
        // Depleted again at 15, back at 20, runs at 20: on time. The last depletion (at 22) has
        // no RUN after it and is not counted.
        let tr = with(
            "0 0 0 1 WAKE\n0 0 0 1 RUN 2\n2 0 0 - REPL 10 2\n2 0 0 - DEPLETE\n2 0 - - IDLE\n\
             13 0 0 1 RUN 2\n15 0 0 - REPL 20 2\n15 0 0 - DEPLETE\n15 0 - - IDLE\n20 0 0 1 RUN 2\n\
             22 0 0 - REPL 30 2\n22 0 0 - DEPLETE\n22 0 - - IDLE\n",
        );
        assert_eq!(replenishment_latency(&tr, (0, VcpuId(0)), 40), (3, 2));
        // Blocked in between (not backlogged): the run after the wake is not a late one.
        let tr = with(
            "0 0 0 1 WAKE\n0 0 0 1 RUN 2\n2 0 0 - REPL 10 2\n2 0 0 - DEPLETE\n2 0 - - IDLE\n\
             3 0 0 1 BLOCK\n12 0 0 1 WAKE\n13 0 0 1 RUN 2\n",
        );
        assert_eq!(replenishment_latency(&tr, (0, VcpuId(0)), 40), (0, 0));
    }

    #[test]
    fn backlogged_deadlines_catch_a_starved_backlogged_vcpu() {
        // Backlogged from 0 to 30, but runs only [12, 13): the budget released at 0 was due
        // by 10.
        let tr = with("0 0 0 1 WAKE\n12 0 0 1 RUN 2\n13 0 - - IDLE\n30 0 0 1 BLOCK\n");
        let r = backlogged_deadlines(&tr, (0, VcpuId(0)), 30, 0);
        assert_eq!(r, Err(DeadlineViolation { release: 0, released: 2, consumed: 0 }));
        // One unit of tolerance is not enough either.
        assert!(backlogged_deadlines(&tr, (0, VcpuId(0)), 30, 1).is_err());
        assert!(backlogged_deadlines(&tr, (0, VcpuId(0)), 30, 2).is_ok());
    }

    #[test]
    fn backlogged_deadlines_skip_periods_with_blocking() {
        // Blocked in [1, 15): the release at 0 is not owed by 10. After the wake at 15 its
        // budget moved there (MOVE) and it got it by 25.
        let tr = with(
            "0 0 0 1 WAKE\n0 0 0 1 RUN 2\n1 0 0 1 BLOCK\n1 0 - - IDLE\n1 0 0 - REPL 10 1\n\
             15 0 0 - MOVE 0 15 1\n15 0 0 - MOVE 10 15 1\n15 0 0 1 WAKE\n16 0 0 1 RUN 2\n18 0 - - IDLE\n\
             18 0 0 - REPL 25 2\n40 0 0 1 BLOCK\n",
        );
        assert_eq!(backlogged_deadlines(&tr, (0, VcpuId(0)), 40, 0), Err(DeadlineViolation {
            release: 25,
            released: 5,
            consumed: 3,
        }));
        // Up to 35 only the release at 15 is checked (25 + 10 is past the horizon), and met.
        assert_eq!(backlogged_deadlines(&tr, (0, VcpuId(0)), 34, 0), Ok(1));
        let b = backlog(&tr, 40);
        assert_eq!(b[&(0, VcpuId(0))], alloc::vec![(0, 1), (15, 40)]);
    }

    #[test]
    fn budget_accounting_catches_a_run_beyond_the_released_budget() {
        // C = 2 released at 0, but it runs [0, 5): 3 more than released.
        let tr = with("0 0 0 1 WAKE\n0 0 0 1 RUN 2\n5 0 - - IDLE\n");
        let r = budget_accounting(&tr, (0, VcpuId(0)), 20, 0);
        assert_eq!(r, Err(AccountingViolation { at: 5, released: 2, consumed: 5 }));
        assert_eq!(budget_accounting(&tr, (0, VcpuId(0)), 20, 3), Ok(3));
        // Background time is not foreground execution.
        let tr = with("0 0 0 1 WAKE\n0 0 0 1 RUN 2\n2 0 0 1 BG\n9 0 - - IDLE\n");
        assert_eq!(budget_accounting(&tr, (0, VcpuId(0)), 20, 0), Ok(0));
        let _ = TaskId(1);
    }

    #[test]
    fn sliding_window_finds_back_to_back_runs() {
        // C=2, T=10: [8,10) then [10,12) is 4 in [8,18).
        let iv = [(8, 12)];
        assert_eq!(
            sliding_window(&iv, 2, 10, 0),
            Err(WindowViolation {
                start: 8,
                amount: 4
            })
        );
        let iv = [(0, 2), (10, 12), (20, 22)];
        assert_eq!(sliding_window(&iv, 2, 10, 0), Ok(2));
        let iv = [(0, 2), (9, 11)];
        assert!(sliding_window(&iv, 2, 10, 0).is_err());
    }

    #[test]
    fn cumulative() {
        let iv = [(2, 4), (6, 10)];
        let w = Cumulative::new(&iv);
        assert_eq!(w.at(0), 0);
        assert_eq!(w.at(3), 1);
        assert_eq!(w.at(5), 2);
        assert_eq!(w.at(7), 3);
        assert_eq!(w.at(100), 6);
    }
}
