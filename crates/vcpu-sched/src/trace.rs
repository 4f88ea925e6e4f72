//! Schedule traces: a line-oriented text format, its writer and its parser.
//!
//! The same format is produced by the simulator and (later) by the kernel from a per-CPU ring,
//! and read by `cargo xtask plot`. One event per line, fields separated by single spaces:
//!
//! ```text
//! # comment lines and blank lines are ignored
//! t_ns pcpu vcpu task EVENT [args...]
//! ```
//!
//! * `t_ns` — absolute time in nanoseconds (decimal `u64`), non-decreasing per PCPU.
//! * `pcpu` — physical CPU number.
//! * `vcpu` — VCPU number, or `-` when the event concerns no VCPU.
//! * `task` — task id, or `-`.
//!
//! | EVENT     | args                    | meaning                                                    |
//! |-----------|-------------------------|------------------------------------------------------------|
//! | `CREATE`  | `main\|io C_ns T_ns`    | VCPU created with these parameters                         |
//! | `DESTROY` |                         | VCPU destroyed                                             |
//! | `RUN`     | `budget_ns`             | `task` of `vcpu` starts running in the foreground with this much budget left |
//! | `BG`      |                         | `task` of `vcpu` starts running in the background (no budget) |
//! | `IDLE`    |                         | the PCPU goes idle                                         |
//! | `WAKE`    |                         | `task` became runnable                                     |
//! | `BLOCK`   |                         | `task` blocked                                             |
//! | `DEPLETE` |                         | `vcpu` ran out of budget                                   |
//! | `REPL`    | `at_ns amount_ns`       | `amount` of budget becomes usable at `at` (Main VCPU)      |
//! | `MOVE`    | `from_ns to_ns amount_ns` | budget scheduled at `from` was delayed to `to`           |
//! | `ELIG`    | `start_ns used_ns at_ns` | IO activation that began at `start` used `used`; eligible again at `at` |
//! | `PRIO`    | `period_ns`             | IO VCPU now runs with this (inherited) period              |
//! | `IOREQ`   | `requester_vcpu`        | a task of `requester` is waiting on IO VCPU `vcpu`         |
//! | `IODONE`  | `requester_vcpu`        | that request was completed                                 |
//! | `RELEASE` | `deadline_ns`           | a job of `task` was released (simulator task models)       |
//! | `DONE`    |                         | the current job of `task` completed                        |
//! | `MISS`    | `deadline_ns`           | a job of `task` missed its deadline                        |
//!
//! Unknown events are rejected by [`parse`] so that format drift is noticed.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::{Nanos, TaskId, VcpuId, VcpuKind};

/// What happened (see the module docs for the text form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum EventKind {
    Create {
        kind: VcpuKind,
        c: Nanos,
        t: Nanos,
    },
    Destroy,
    Run {
        budget: Nanos,
    },
    Background,
    Idle,
    Wake,
    Block,
    Deplete,
    Repl {
        at: Nanos,
        amount: Nanos,
    },
    Move {
        from: Nanos,
        to: Nanos,
        amount: Nanos,
    },
    Elig {
        start: Nanos,
        used: Nanos,
        at: Nanos,
    },
    Prio {
        period: Nanos,
    },
    IoReq {
        requester: VcpuId,
    },
    IoDone {
        requester: VcpuId,
    },
    Release {
        deadline: Nanos,
    },
    Done,
    Miss {
        deadline: Nanos,
    },
}

/// One trace line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Time (ns).
    pub t: Nanos,
    /// Physical CPU.
    pub pcpu: u32,
    /// VCPU concerned, if any.
    pub vcpu: Option<VcpuId>,
    /// Task concerned, if any.
    pub task: Option<TaskId>,
    /// The event.
    pub kind: EventKind,
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.t, self.pcpu)?;
        match self.vcpu {
            Some(v) => write!(f, "{} ", v.0)?,
            None => f.write_str("- ")?,
        }
        match self.task {
            Some(t) => write!(f, "{} ", t.0)?,
            None => f.write_str("- ")?,
        }
        match self.kind {
            EventKind::Create { kind, c, t } => {
                let k = match kind {
                    VcpuKind::Main => "main",
                    VcpuKind::Io => "io",
                };
                write!(f, "CREATE {k} {c} {t}")
            }
            EventKind::Destroy => f.write_str("DESTROY"),
            EventKind::Run { budget } => write!(f, "RUN {budget}"),
            EventKind::Background => f.write_str("BG"),
            EventKind::Idle => f.write_str("IDLE"),
            EventKind::Wake => f.write_str("WAKE"),
            EventKind::Block => f.write_str("BLOCK"),
            EventKind::Deplete => f.write_str("DEPLETE"),
            EventKind::Repl { at, amount } => write!(f, "REPL {at} {amount}"),
            EventKind::Move { from, to, amount } => write!(f, "MOVE {from} {to} {amount}"),
            EventKind::Elig { start, used, at } => write!(f, "ELIG {start} {used} {at}"),
            EventKind::Prio { period } => write!(f, "PRIO {period}"),
            EventKind::IoReq { requester } => write!(f, "IOREQ {}", requester.0),
            EventKind::IoDone { requester } => write!(f, "IODONE {}", requester.0),
            EventKind::Release { deadline } => write!(f, "RELEASE {deadline}"),
            EventKind::Done => f.write_str("DONE"),
            EventKind::Miss { deadline } => write!(f, "MISS {deadline}"),
        }
    }
}

/// A parse failure: 1-based line number and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// Description.
    pub msg: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trace line {}: {}", self.line, self.msg)
    }
}

impl core::error::Error for ParseError {}

/// Render events as trace text, with a header comment.
pub fn write(events: &[TraceEvent]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(events.len() * 32 + 64);
    s.push_str("# quest-rs vcpu trace v1: t_ns pcpu vcpu task EVENT [args]\n");
    for e in events {
        let _ = writeln!(s, "{e}");
    }
    s
}

/// Parse one line (without comment/blank handling).
pub fn parse_line(line: &str) -> Result<TraceEvent, &'static str> {
    let mut it = line.split_ascii_whitespace();
    let mut num = |what: &'static str| -> Result<u64, &'static str> {
        it.next().ok_or(what)?.parse::<u64>().map_err(|_| what)
    };
    let t = num("bad or missing time")?;
    let pcpu = u32::try_from(num("bad or missing pcpu")?).map_err(|_| "pcpu too large")?;
    let mut it2 = it;
    let opt = |s: Option<&str>, what: &'static str| -> Result<Option<u32>, &'static str> {
        match s {
            Some("-") => Ok(None),
            Some(x) => x.parse::<u32>().map(Some).map_err(|_| what),
            None => Err(what),
        }
    };
    let vcpu = opt(it2.next(), "bad or missing vcpu")?.map(VcpuId);
    let task = opt(it2.next(), "bad or missing task")?.map(TaskId);
    let name = it2.next().ok_or("missing event")?;
    let mut arg = |what: &'static str| -> Result<u64, &'static str> {
        it2.next().ok_or(what)?.parse::<u64>().map_err(|_| what)
    };
    let kind = match name {
        "CREATE" => {
            let k = match it2.next() {
                Some("main") => VcpuKind::Main,
                Some("io") => VcpuKind::Io,
                _ => return Err("CREATE needs main|io"),
            };
            let mut arg = |what: &'static str| -> Result<u64, &'static str> {
                it2.next().ok_or(what)?.parse::<u64>().map_err(|_| what)
            };
            EventKind::Create {
                kind: k,
                c: arg("CREATE needs C")?,
                t: arg("CREATE needs T")?,
            }
        }
        "DESTROY" => EventKind::Destroy,
        "RUN" => EventKind::Run {
            budget: arg("RUN needs budget")?,
        },
        "BG" => EventKind::Background,
        "IDLE" => EventKind::Idle,
        "WAKE" => EventKind::Wake,
        "BLOCK" => EventKind::Block,
        "DEPLETE" => EventKind::Deplete,
        "REPL" => EventKind::Repl {
            at: arg("REPL needs at")?,
            amount: arg("REPL needs amount")?,
        },
        "MOVE" => EventKind::Move {
            from: arg("MOVE needs from")?,
            to: arg("MOVE needs to")?,
            amount: arg("MOVE needs amount")?,
        },
        "ELIG" => EventKind::Elig {
            start: arg("ELIG needs start")?,
            used: arg("ELIG needs used")?,
            at: arg("ELIG needs at")?,
        },
        "PRIO" => EventKind::Prio {
            period: arg("PRIO needs period")?,
        },
        "IOREQ" => EventKind::IoReq {
            requester: VcpuId(
                u32::try_from(arg("IOREQ needs requester")?).map_err(|_| "vcpu too large")?,
            ),
        },
        "IODONE" => EventKind::IoDone {
            requester: VcpuId(
                u32::try_from(arg("IODONE needs requester")?).map_err(|_| "vcpu too large")?,
            ),
        },
        "RELEASE" => EventKind::Release {
            deadline: arg("RELEASE needs deadline")?,
        },
        "DONE" => EventKind::Done,
        "MISS" => EventKind::Miss {
            deadline: arg("MISS needs deadline")?,
        },
        _ => return Err("unknown event"),
    };
    if it2.next().is_some() {
        return Err("trailing fields");
    }
    Ok(TraceEvent {
        t,
        pcpu,
        vcpu,
        task,
        kind,
    })
}

/// Parse a whole trace; `#` comments and blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<TraceEvent>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|msg| ParseError { line: i + 1, msg })?);
    }
    Ok(out)
}

/// A stretch of time during which one task ran on one PCPU, derived from `RUN`/`BG`/`IDLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// PCPU.
    pub pcpu: u32,
    /// VCPU.
    pub vcpu: VcpuId,
    /// Task.
    pub task: TaskId,
    /// Start (inclusive, ns).
    pub start: Nanos,
    /// End (exclusive, ns).
    pub end: Nanos,
    /// Ran at background priority.
    pub background: bool,
}

/// Execution segments of a trace, per PCPU in time order: a `RUN` or `BG` line starts one, the
/// next `RUN`, `BG` or `IDLE` line of the same PCPU ends it; the last ends at `end`.
/// Zero-length segments are dropped.
pub fn segments(events: &[TraceEvent], end: Nanos) -> Vec<Segment> {
    let mut open: alloc::collections::BTreeMap<u32, Segment> = alloc::collections::BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        let starts = matches!(e.kind, EventKind::Run { .. } | EventKind::Background);
        if !(starts || e.kind == EventKind::Idle) {
            continue;
        }
        if let Some(mut s) = open.remove(&e.pcpu) {
            s.end = e.t.max(s.start);
            if s.end > s.start {
                out.push(s);
            }
        }
        if starts && let (Some(vcpu), Some(task)) = (e.vcpu, e.task) {
            open.insert(
                e.pcpu,
                Segment {
                    pcpu: e.pcpu,
                    vcpu,
                    task,
                    start: e.t,
                    end: e.t,
                    background: e.kind == EventKind::Background,
                },
            );
        }
    }
    for (_, mut s) in open {
        s.end = end.max(s.start);
        if s.end > s.start {
            out.push(s);
        }
    }
    out.sort_by_key(|s| (s.pcpu, s.start));
    out
}

/// A bounded in-memory ring of events (the scheduler's trace buffer). When full, the oldest
/// event is dropped and counted.
#[derive(Clone, Debug, Default)]
pub struct Ring {
    buf: alloc::collections::VecDeque<TraceEvent>,
    cap: usize,
    dropped: u64,
}

impl Ring {
    /// A ring holding at most `cap` events; `cap == 0` disables tracing.
    pub fn new(cap: usize) -> Self {
        Self {
            buf: alloc::collections::VecDeque::new(),
            cap,
            dropped: 0,
        }
    }

    /// Whether events are being recorded.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.cap > 0
    }

    /// Record an event (no-op when disabled).
    #[inline]
    pub fn push(&mut self, e: TraceEvent) {
        if self.cap == 0 {
            return;
        }
        if self.buf.len() == self.cap {
            self.buf.pop_front();
            self.dropped += 1;
        }
        self.buf.push_back(e);
    }

    /// Events lost to overflow so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Remove and return all buffered events, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = TraceEvent> + '_ {
        self.buf.drain(..)
    }

    /// Remove and return at most `max` of the oldest buffered events.
    pub fn drain_upto(&mut self, max: usize) -> impl Iterator<Item = TraceEvent> + '_ {
        let n = max.min(self.buf.len());
        self.buf.drain(..n)
    }

    /// Events buffered now.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips() {
        let kinds = [
            EventKind::Create {
                kind: VcpuKind::Main,
                c: 20_000,
                t: 100_000,
            },
            EventKind::Create {
                kind: VcpuKind::Io,
                c: 1,
                t: 10,
            },
            EventKind::Destroy,
            EventKind::Run { budget: 5 },
            EventKind::Background,
            EventKind::Idle,
            EventKind::Wake,
            EventKind::Block,
            EventKind::Deplete,
            EventKind::Repl { at: 1, amount: 2 },
            EventKind::Move {
                from: 1,
                to: 2,
                amount: 3,
            },
            EventKind::Elig {
                start: 1,
                used: 2,
                at: 3,
            },
            EventKind::Prio { period: 7 },
            EventKind::IoReq {
                requester: VcpuId(3),
            },
            EventKind::IoDone {
                requester: VcpuId(3),
            },
            EventKind::Release { deadline: 9 },
            EventKind::Done,
            EventKind::Miss { deadline: 9 },
        ];
        let evs: Vec<_> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| TraceEvent {
                t: i as u64 * 1000,
                pcpu: 1,
                vcpu: if i % 2 == 0 {
                    Some(VcpuId(i as u32))
                } else {
                    None
                },
                task: if i % 3 == 0 { Some(TaskId(7)) } else { None },
                kind: *k,
            })
            .collect();
        let text = write(&evs);
        assert_eq!(parse(&text).unwrap(), evs);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let e = parse("# hi\n1 0 - - IDLE\n2 0 x - IDLE\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(parse("1 0 - - NOPE").is_err());
        assert!(parse("1 0 - - IDLE extra").is_err());
        assert!(parse("1 0 - - REPL 5").is_err());
    }

    #[test]
    fn ring_drops_oldest() {
        let mut r = Ring::new(2);
        for t in 0..3 {
            r.push(TraceEvent {
                t,
                pcpu: 0,
                vcpu: None,
                task: None,
                kind: EventKind::Idle,
            });
        }
        assert_eq!(r.dropped(), 1);
        assert_eq!(r.drain().map(|e| e.t).collect::<Vec<_>>(), [1, 2]);
    }
}
