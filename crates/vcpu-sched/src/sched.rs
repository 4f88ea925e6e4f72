//! The per-PCPU scheduler: a state machine the kernel drives.
//!
//! Invariants (checked by [`Scheduler::check`] after every operation in debug builds, and by
//! the property tests):
//! 1. Every VCPU is in exactly one place: *idle* (no runnable task), *ready* (backlogged with
//!    budget; in the rate-monotonic ready set) or *waiting* (backlogged without budget; in the
//!    release-time set, and, under [`BackgroundPolicy::Background`], the background set).
//! 2. A VCPU's run queue holds exactly its runnable tasks.
//! 3. The foreground VCPU is the first of the ready set after every [`Scheduler::pick`], and it
//!    has non-zero budget: no VCPU ever runs in the foreground with zero budget.
//! 4. Each server's own invariants hold ([`crate::ss`], [`crate::pibs`]).
//!
//! Costs: every operation is `O(log n)` in the number of VCPUs (B-tree sets), plus the length
//! of one VCPU's replenishment queue (bounded by [`Config::max_repl`]) and run queue.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use crate::admission::{self, AdmissionTest};
use crate::pibs::{Activation, IoServer};
use crate::ss::{ReplenishMode, SporadicServer, SsNote};
use crate::trace::{EventKind, Ring, TraceEvent};
use crate::{Error, Nanos, TaskId, VcpuId, VcpuKind, VcpuParams};

/// What the PCPU does when no VCPU with budget has work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackgroundPolicy {
    /// Idle until the next replenishment or wake (default).
    #[default]
    Idle,
    /// Run depleted, backlogged VCPUs at background priority (rate-monotonic among
    /// themselves). Background execution is not charged to any budget.
    Background,
}

/// Scheduler configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Physical CPU number (recorded in traces).
    pub pcpu: u32,
    /// Round-robin quantum for tasks inside one VCPU (ns).
    pub quantum: Nanos,
    /// Maximum replenishment-queue length of a Main VCPU (at least 2).
    pub max_repl: usize,
    /// What to do when no VCPU with budget has work.
    pub background: BackgroundPolicy,
    /// Admission test applied by [`Scheduler::create`]; `None` admits everything.
    pub admission: Option<AdmissionTest>,
    /// Events kept in the trace ring; 0 disables tracing.
    pub trace_capacity: usize,
    /// Sporadic-server replenishment rules for Main VCPUs ([`ReplenishMode::Posix`], the
    /// paper's corrected rules, by default).
    pub replenish: ReplenishMode,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pcpu: 0,
            quantum: 10_000_000,
            max_repl: 32,
            background: BackgroundPolicy::Idle,
            admission: Some(AdmissionTest::ResponseTime),
            trace_capacity: 0,
            replenish: ReplenishMode::Posix,
        }
    }
}

/// A running task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Its VCPU.
    pub vcpu: VcpuId,
    /// The task.
    pub task: TaskId,
    /// `true` when running at background priority (no budget).
    pub background: bool,
}

/// The result of [`Scheduler::pick`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to run, or `None` to idle.
    pub run: Option<Run>,
    /// Absolute time of the next scheduling event (program a one-shot timer for it), or `None`
    /// when nothing will happen until a wake.
    pub timer: Option<Nanos>,
}

impl Decision {
    /// The task to run, if any.
    pub fn task(&self) -> Option<TaskId> {
        self.run.map(|r| r.task)
    }
}

/// A VCPU as listed by [`Scheduler::vcpus`] (what `ps -v` shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Its id.
    pub id: VcpuId,
    /// Its parameters.
    pub params: VcpuParams,
    /// Tasks bound to it.
    pub tasks: usize,
    /// Of which runnable.
    pub runnable: usize,
    /// Current priority key (its period, inherited for IO VCPUs), ns.
    pub period: Nanos,
}

#[derive(Clone, Debug)]
struct IoState {
    srv: IoServer,
    /// Pending requests: (requester period, requester slot) -> count.
    requests: BTreeMap<(Nanos, u32), u32>,
}

#[derive(Clone, Debug)]
enum Server {
    Main(SporadicServer),
    Io(IoState),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Idle,
    Ready,
    Waiting(Nanos),
}

#[derive(Clone, Debug)]
struct Vcpu {
    params: VcpuParams,
    seq: u64,
    server: Server,
    runq: VecDeque<TaskId>,
    bound: usize,
    slice: Nanos,
    place: Place,
    /// Period used as the key in the ready/background sets when it was inserted.
    key: Nanos,
}

impl Vcpu {
    fn period(&self) -> Nanos {
        match &self.server {
            Server::Main(s) => s.period(),
            Server::Io(io) => io.srv.period(),
        }
    }

    fn eligible(&self, now: Nanos) -> bool {
        match &self.server {
            Server::Main(s) => s.eligible(now),
            Server::Io(io) => io.srv.eligible(now),
        }
    }

    fn next_release(&self) -> Nanos {
        match &self.server {
            Server::Main(s) => s
                .next_release()
                .expect("idle sporadic server has budget queued"),
            Server::Io(io) => io.srv.next_release(),
        }
    }

    fn remaining(&self) -> Nanos {
        match &self.server {
            Server::Main(s) => s.remaining(),
            Server::Io(io) => io.srv.remaining(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cur {
    slot: u32,
    task: Option<TaskId>,
    since: Nanos,
    bg: bool,
}

#[derive(Clone, Copy, Debug)]
struct TaskInfo {
    slot: u32,
    runnable: bool,
}

/// One PCPU's VCPU scheduler. See the [crate docs](crate) for how a kernel drives it.
#[derive(Clone, Debug)]
pub struct Scheduler {
    cfg: Config,
    vcpus: Vec<Option<Vcpu>>,
    tasks: BTreeMap<TaskId, TaskInfo>,
    /// Backlogged VCPUs with budget: (period, seq, slot).
    ready: BTreeSet<(Nanos, u64, u32)>,
    /// Backlogged VCPUs without budget: (release time, seq, slot).
    waiting: BTreeSet<(Nanos, u64, u32)>,
    /// Same members as `waiting`, by priority (only under `BackgroundPolicy::Background`).
    depleted: BTreeSet<(Nanos, u64, u32)>,
    cur: Option<Cur>,
    idle_logged: bool,
    next_seq: u64,
    last: Nanos,
    /// Times given earlier than `last`: (count, largest difference).
    skew: (u64, Nanos),
    ring: Ring,
}

fn note_to_event(pcpu: u32, v: u32, now: Nanos, n: SsNote) -> TraceEvent {
    let kind = match n {
        SsNote::Repl { at, amount } => EventKind::Repl { at, amount },
        SsNote::Moved { from, to, amount } => EventKind::Move { from, to, amount },
    };
    TraceEvent {
        t: now,
        pcpu,
        vcpu: Some(VcpuId(v)),
        task: None,
        kind,
    }
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            vcpus: Vec::new(),
            tasks: BTreeMap::new(),
            ready: BTreeSet::new(),
            waiting: BTreeSet::new(),
            depleted: BTreeSet::new(),
            cur: None,
            idle_logged: false,
            next_seq: 0,
            last: 0,
            skew: (0, 0),
            ring: Ring::new(cfg.trace_capacity),
        }
    }

    /// A scheduler holding the seed's default best-effort VCPU ([`VcpuParams::BEST_EFFORT`]),
    /// created at time 0. Returns it with the VCPU's id.
    pub fn with_best_effort(cfg: Config) -> (Self, VcpuId) {
        let mut s = Self::new(cfg);
        let id = s
            .create(0, VcpuParams::BEST_EFFORT)
            .expect("the best-effort VCPU is always admissible");
        (s, id)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn log(&mut self, t: Nanos, vcpu: Option<u32>, task: Option<TaskId>, kind: EventKind) {
        if self.ring.enabled() {
            self.ring.push(TraceEvent {
                t,
                pcpu: self.cfg.pcpu,
                vcpu: vcpu.map(VcpuId),
                task,
                kind,
            });
        }
    }

    fn log_elig(&mut self, t: Nanos, slot: u32, a: Option<Activation>) {
        if let Some(a) = a {
            self.log(
                t,
                Some(slot),
                None,
                EventKind::Elig {
                    start: a.start,
                    used: a.used,
                    at: a.eligible_at,
                },
            );
        }
    }

    fn v(&self, slot: u32) -> &Vcpu {
        self.vcpus[slot as usize].as_ref().expect("live slot")
    }

    fn vm(&mut self, slot: u32) -> &mut Vcpu {
        self.vcpus[slot as usize].as_mut().expect("live slot")
    }

    fn slot_of(&self, id: VcpuId) -> Result<u32, Error> {
        match self.vcpus.get(id.0 as usize) {
            Some(Some(_)) => Ok(id.0),
            _ => Err(Error::NoSuchVcpu),
        }
    }

    // ---- VCPU lifecycle -------------------------------------------------------------------

    /// Create a VCPU at time `now`, subject to [`Config::admission`].
    ///
    /// A rejection's [`Rejection::index`](crate::Rejection::index) counts the existing VCPUs in
    /// id order and then the new one (last); [`Rejection::vcpu`](crate::Rejection::vcpu) names
    /// the failing existing VCPU, or is `None` for the new one.
    pub fn create(&mut self, now: Nanos, params: VcpuParams) -> Result<VcpuId, Error> {
        if !params.is_valid() {
            return Err(Error::InvalidParams);
        }
        let now = self.charge(now);
        if let Some(test) = self.cfg.admission {
            let mut ids: Vec<VcpuId> = Vec::new();
            let mut set: Vec<VcpuParams> = Vec::new();
            for (i, v) in self.vcpus.iter().enumerate() {
                if let Some(v) = v {
                    ids.push(VcpuId(i as u32));
                    set.push(v.params);
                }
            }
            set.push(params);
            if let Err(mut r) = admission::admit(&set, test) {
                r.vcpu = ids.get(r.index).copied();
                return Err(Error::Rejected(r));
            }
        }
        let server = match params.kind {
            VcpuKind::Main => Server::Main(SporadicServer::with_mode(
                params.c_ns(),
                params.t_ns(),
                self.cfg.max_repl,
                now,
                self.cfg.replenish,
            )),
            VcpuKind::Io => Server::Io(IoState {
                srv: IoServer::new(params.c_ns(), params.t_ns(), now),
                requests: BTreeMap::new(),
            }),
        };
        let v = Vcpu {
            params,
            seq: self.next_seq,
            server,
            runq: VecDeque::new(),
            bound: 0,
            slice: 0,
            place: Place::Idle,
            key: params.t_ns(),
        };
        self.next_seq += 1;
        let slot = match self.vcpus.iter().position(Option::is_none) {
            Some(i) => {
                self.vcpus[i] = Some(v);
                i as u32
            }
            None => {
                self.vcpus.push(Some(v));
                (self.vcpus.len() - 1) as u32
            }
        };
        self.log(
            now,
            Some(slot),
            None,
            EventKind::Create {
                kind: params.kind,
                c: params.c_ns(),
                t: params.t_ns(),
            },
        );
        self.debug_check();
        Ok(VcpuId(slot))
    }

    /// Destroy a VCPU with no tasks bound to it.
    pub fn destroy(&mut self, now: Nanos, id: VcpuId) -> Result<(), Error> {
        let slot = self.slot_of(id)?;
        if self.v(slot).bound > 0 {
            return Err(Error::VcpuBusy);
        }
        let now = self.charge(now);
        self.unplace(slot);
        self.vcpus[slot as usize] = None;
        // Drop its pending IO requests.
        let ios: Vec<u32> = self
            .vcpus
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                Some(Vcpu {
                    server: Server::Io(io),
                    ..
                }) if io.requests.keys().any(|k| k.1 == slot) => Some(i as u32),
                _ => None,
            })
            .collect();
        for io in ios {
            if let Server::Io(st) = &mut self.vm(io).server {
                st.requests.retain(|k, _| k.1 != slot);
            }
            self.update_io_period(now, io);
        }
        self.log(now, Some(slot), None, EventKind::Destroy);
        self.debug_check();
        Ok(())
    }

    /// The parameters a VCPU was created with (what `vcpu_getparams` reports).
    pub fn params(&self, id: VcpuId) -> Option<VcpuParams> {
        self.vcpus.get(id.0 as usize)?.as_ref().map(|v| v.params)
    }

    /// All VCPUs, in id order.
    pub fn vcpus(&self) -> impl Iterator<Item = VcpuInfo> + '_ {
        self.vcpus.iter().enumerate().filter_map(|(i, v)| {
            v.as_ref().map(|v| VcpuInfo {
                id: VcpuId(i as u32),
                params: v.params,
                tasks: v.bound,
                runnable: v.runq.len(),
                period: v.period(),
            })
        })
    }

    /// The sporadic-server state of a Main VCPU (for inspection and tests).
    pub fn main_server(&self, id: VcpuId) -> Option<&SporadicServer> {
        match &self.vcpus.get(id.0 as usize)?.as_ref()?.server {
            Server::Main(s) => Some(s),
            Server::Io(_) => None,
        }
    }

    /// The PIBS state of an IO VCPU (for inspection and tests).
    pub fn io_server(&self, id: VcpuId) -> Option<&IoServer> {
        match &self.vcpus.get(id.0 as usize)?.as_ref()?.server {
            Server::Io(io) => Some(&io.srv),
            Server::Main(_) => None,
        }
    }

    // ---- tasks ----------------------------------------------------------------------------

    /// Register a new task on `vcpu`, blocked. Call [`wake`](Self::wake) when it can run.
    pub fn add_task(&mut self, now: Nanos, task: TaskId, vcpu: VcpuId) -> Result<(), Error> {
        let slot = self.slot_of(vcpu)?;
        if self.tasks.contains_key(&task) {
            return Err(Error::TaskExists);
        }
        self.charge(now);
        self.tasks.insert(
            task,
            TaskInfo {
                slot,
                runnable: false,
            },
        );
        self.vm(slot).bound += 1;
        Ok(())
    }

    /// Remove a task (it exited). Blocks it first if it was runnable.
    pub fn remove_task(&mut self, now: Nanos, task: TaskId) -> Result<(), Error> {
        self.block(now, task)?;
        let info = self.tasks.remove(&task).ok_or(Error::NoSuchTask)?;
        self.vm(info.slot).bound -= 1;
        self.debug_check();
        Ok(())
    }

    /// Move a task to another VCPU, keeping its runnable state (`vcpu_bind_task`).
    pub fn bind(&mut self, now: Nanos, task: TaskId, vcpu: VcpuId) -> Result<(), Error> {
        let slot = self.slot_of(vcpu)?;
        let info = *self.tasks.get(&task).ok_or(Error::NoSuchTask)?;
        if info.slot == slot {
            return Ok(());
        }
        let was_runnable = info.runnable;
        self.block(now, task)?;
        self.vm(info.slot).bound -= 1;
        self.vm(slot).bound += 1;
        self.tasks.get_mut(&task).expect("present").slot = slot;
        if was_runnable {
            self.wake(now, task)?;
        }
        Ok(())
    }

    /// The VCPU a task is bound to.
    pub fn vcpu_of(&self, task: TaskId) -> Option<VcpuId> {
        self.tasks.get(&task).map(|t| VcpuId(t.slot))
    }

    /// Whether a task is runnable.
    pub fn is_runnable(&self, task: TaskId) -> Option<bool> {
        self.tasks.get(&task).map(|t| t.runnable)
    }

    /// The task becomes runnable at `now`. Returns `true` when the kernel should call
    /// [`pick`](Self::pick) soon because the decision may change (the woken VCPU can preempt).
    pub fn wake(&mut self, now: Nanos, task: TaskId) -> Result<bool, Error> {
        let info = *self.tasks.get(&task).ok_or(Error::NoSuchTask)?;
        if info.runnable {
            return Ok(false);
        }
        let now = self.charge(now);
        self.tasks.get_mut(&task).expect("present").runnable = true;
        let slot = info.slot;
        self.vm(slot).runq.push_back(task);
        self.log(now, Some(slot), Some(task), EventKind::Wake);
        if self.v(slot).place == Place::Idle {
            let pcpu = self.cfg.pcpu;
            let tracing = self.ring.enabled();
            let ring = &mut self.ring;
            match &mut self.vcpus[slot as usize].as_mut().expect("live slot").server {
                Server::Io(io) => io.srv.wake(now),
                Server::Main(s) => s.unblock(now, &mut |n| {
                    if tracing {
                        ring.push(note_to_event(pcpu, slot, now, n))
                    }
                }),
            }
            self.place_backlogged(now, slot);
        }
        self.debug_check();
        let v = self.v(slot);
        let preempt = match self.cur {
            None => true,
            Some(c) if c.slot == slot => false,
            Some(c) => {
                v.place == Place::Ready
                    && (c.bg || (v.key, v.seq) < (self.v(c.slot).key, self.v(c.slot).seq))
            }
        };
        Ok(preempt)
    }

    /// The task blocks at `now` (waits for something). Idempotent.
    pub fn block(&mut self, now: Nanos, task: TaskId) -> Result<(), Error> {
        let info = *self.tasks.get(&task).ok_or(Error::NoSuchTask)?;
        if !info.runnable {
            return Ok(());
        }
        let now = self.charge(now);
        self.tasks.get_mut(&task).expect("present").runnable = false;
        let slot = info.slot;
        let v = self.vm(slot);
        let pos = v
            .runq
            .iter()
            .position(|&t| t == task)
            .expect("runnable task queued");
        v.runq.remove(pos);
        if pos == 0 {
            v.slice = 0;
        }
        let empty = v.runq.is_empty();
        self.log(now, Some(slot), Some(task), EventKind::Block);
        if empty {
            if matches!(self.cur, Some(c) if c.slot == slot) {
                self.clear_current(now);
            }
            self.unplace(slot);
            let pcpu = self.cfg.pcpu;
            let mut notes: Vec<TraceEvent> = Vec::new();
            let tracing = self.ring.enabled();
            let mut elig = None;
            match &mut self.vm(slot).server {
                Server::Main(s) => s.block(&mut |n| {
                    if tracing {
                        notes.push(note_to_event(pcpu, slot, now, n))
                    }
                }),
                Server::Io(io) => elig = io.srv.idle(),
            }
            for e in notes {
                self.ring.push(e);
            }
            self.log_elig(now, slot, elig);
        }
        self.debug_check();
        Ok(())
    }

    // ---- IO requests ----------------------------------------------------------------------

    /// A task of `requester` now waits on IO VCPU `io`: `io` inherits `requester`'s period
    /// while the request is pending (the smallest period among pending requesters wins).
    pub fn io_request(&mut self, now: Nanos, io: VcpuId, requester: VcpuId) -> Result<(), Error> {
        let slot = self.slot_of(io)?;
        let r = self.slot_of(requester)?;
        let period = self.v(r).params.t_ns();
        let now = self.charge(now);
        match &mut self.vm(slot).server {
            Server::Io(st) => *st.requests.entry((period, r)).or_insert(0) += 1,
            Server::Main(_) => return Err(Error::WrongKind),
        }
        self.log(
            now,
            Some(slot),
            None,
            EventKind::IoReq {
                requester: VcpuId(r),
            },
        );
        self.update_io_period(now, slot);
        self.debug_check();
        Ok(())
    }

    /// The request of `requester` on `io` was served.
    pub fn io_complete(&mut self, now: Nanos, io: VcpuId, requester: VcpuId) -> Result<(), Error> {
        let slot = self.slot_of(io)?;
        let r = self.slot_of(requester)?;
        let period = self.v(r).params.t_ns();
        let now = self.charge(now);
        match &mut self.vm(slot).server {
            Server::Io(st) => {
                if let Some(n) = st.requests.get_mut(&(period, r)) {
                    *n -= 1;
                    if *n == 0 {
                        st.requests.remove(&(period, r));
                    }
                }
            }
            Server::Main(_) => return Err(Error::WrongKind),
        }
        self.log(
            now,
            Some(slot),
            None,
            EventKind::IoDone {
                requester: VcpuId(r),
            },
        );
        self.update_io_period(now, slot);
        self.debug_check();
        Ok(())
    }

    fn update_io_period(&mut self, now: Nanos, slot: u32) {
        let Server::Io(st) = &self.v(slot).server else {
            return;
        };
        let want = st
            .requests
            .keys()
            .next()
            .map_or(st.srv.own_period(), |k| k.0);
        if want == st.srv.period() {
            return;
        }
        let place = self.v(slot).place;
        let is_cur_fg = matches!(self.cur, Some(c) if c.slot == slot && !c.bg);
        if place != Place::Idle {
            self.unplace(slot);
        }
        let Server::Io(st) = &mut self.vm(slot).server else {
            unreachable!()
        };
        let ended = st.srv.set_period(want);
        if ended.is_some() && is_cur_fg {
            self.clear_current(now);
        }
        self.log_elig(now, slot, ended);
        self.log(now, Some(slot), None, EventKind::Prio { period: want });
        if place != Place::Idle {
            self.place_backlogged(now, slot);
            // A VCPU running in the background that now has budget stops running there; the
            // next pick runs it in the foreground.
            if self.v(slot).place == Place::Ready
                && matches!(self.cur, Some(c) if c.slot == slot && c.bg)
            {
                self.clear_current(now);
            }
        }
    }

    // ---- placement ------------------------------------------------------------------------

    fn unplace(&mut self, slot: u32) {
        let v = self.v(slot);
        let (seq, key) = (v.seq, v.key);
        match v.place {
            Place::Idle => {}
            Place::Ready => {
                self.ready.remove(&(key, seq, slot));
            }
            Place::Waiting(t) => {
                self.waiting.remove(&(t, seq, slot));
                if self.cfg.background == BackgroundPolicy::Background {
                    self.depleted.remove(&(key, seq, slot));
                }
            }
        }
        self.vm(slot).place = Place::Idle;
    }

    /// Put a backlogged VCPU (currently placed nowhere) in the ready or waiting set.
    fn place_backlogged(&mut self, now: Nanos, slot: u32) {
        let bg = self.cfg.background == BackgroundPolicy::Background;
        let v = self.vm(slot);
        debug_assert_eq!(v.place, Place::Idle);
        debug_assert!(!v.runq.is_empty());
        v.key = v.period();
        let (seq, key) = (v.seq, v.key);
        if v.eligible(now) {
            v.place = Place::Ready;
            self.ready.insert((key, seq, slot));
        } else {
            let t = v.next_release();
            v.place = Place::Waiting(t);
            self.waiting.insert((t, seq, slot));
            if bg {
                self.depleted.insert((key, seq, slot));
            }
        }
    }

    fn release_due(&mut self, now: Nanos) {
        while let Some(&(t, _, slot)) = self.waiting.first() {
            if t > now {
                break;
            }
            self.unplace(slot);
            self.place_backlogged(now, slot);
        }
    }

    // ---- accounting and decisions ---------------------------------------------------------

    /// Charge the running VCPU for the time up to `now` (budget check, quantum accounting).
    /// Every other entry point does this first, so calling it explicitly is optional.
    ///
    /// Returns the time the scheduler uses from now on: `now`, or the latest time it has seen
    /// if `now` is earlier. A kernel reads clocks on several CPUs (a wake from another CPU
    /// passes that CPU's time), so a few nanoseconds of skew are normal; they are clamped and
    /// counted ([`clock_skew`](Self::clock_skew)), never a reason to panic.
    pub fn charge(&mut self, now: Nanos) -> Nanos {
        if now < self.last {
            self.skew.0 += 1;
            self.skew.1 = self.skew.1.max(self.last - now);
        }
        let now = now.max(self.last);
        self.last = now;
        let Some(cur) = self.cur else {
            return now;
        };
        if now <= cur.since {
            return now;
        }
        let elapsed = now - cur.since;
        let slot = cur.slot;
        let pcpu = self.cfg.pcpu;
        let tracing = self.ring.enabled();
        let mut exhausted = false;
        let mut elig = None;
        {
            let ring = &mut self.ring;
            let v = self.vcpus[slot as usize].as_mut().expect("live slot");
            v.slice += elapsed;
            if !cur.bg {
                match &mut v.server {
                    Server::Main(s) => {
                        exhausted = s.charge(cur.since, now, &mut |n| {
                            if tracing {
                                ring.push(note_to_event(pcpu, slot, now, n))
                            }
                        });
                    }
                    Server::Io(io) => {
                        elig = io.srv.charge(cur.since, now);
                        exhausted = elig.is_some();
                    }
                }
            }
        }
        self.log_elig(now, slot, elig);
        if exhausted {
            self.log(now, Some(slot), None, EventKind::Deplete);
            self.clear_current(now);
            self.unplace(slot);
            self.place_backlogged(now, slot);
        } else if let Some(c) = self.cur.as_mut() {
            c.since = now;
        }
        let quantum = self.cfg.quantum;
        let v = self.vm(slot);
        if v.slice >= quantum {
            v.slice = 0;
            if v.runq.len() > 1 {
                v.runq.rotate_left(1);
            }
        }
        now
    }

    /// How often an entry point was given a time earlier than one it had already seen, and
    /// the largest such difference (ns). Both are clamped to the latest time.
    pub fn clock_skew(&self) -> (u64, Nanos) {
        self.skew
    }

    /// Decide what runs from `now` on, and when the next scheduling event is.
    ///
    /// The kernel switches to `run` (or idles) and programs a one-shot timer for `timer`.
    /// Calling `pick` again without any change returns the same task.
    pub fn pick(&mut self, now: Nanos) -> Decision {
        let now = self.charge(now);
        self.release_due(now);
        let choice = match self.ready.first() {
            Some(&(_, _, slot)) => Some((slot, false)),
            None if self.cfg.background == BackgroundPolicy::Background => {
                self.depleted.first().map(|&(_, _, slot)| (slot, true))
            }
            None => None,
        };
        let same = match (self.cur, choice) {
            (Some(c), Some((slot, bg))) => c.slot == slot && c.bg == bg,
            _ => false,
        };
        if !same {
            self.stop_current(now);
            if let Some((slot, bg)) = choice {
                if !bg {
                    let v = self.vm(slot);
                    debug_assert!(v.eligible(now), "foreground VCPU without budget");
                    match &mut v.server {
                        Server::Main(s) => s.activate(now),
                        Server::Io(io) => io.srv.activate(now),
                    }
                }
                self.cur = Some(Cur {
                    slot,
                    task: None,
                    since: now,
                    bg,
                });
            }
        }
        let mut timer = self.waiting.first().map(|k| k.0);
        let run = match self.cur {
            None => {
                if !self.idle_logged {
                    self.idle_logged = true;
                    self.log(now, None, None, EventKind::Idle);
                }
                None
            }
            Some(c) => {
                self.idle_logged = false;
                let v = self.v(c.slot);
                let task = *v.runq.front().expect("running VCPU is backlogged");
                let remaining = v.remaining();
                if !c.bg {
                    // Invariant 5: never in the foreground with zero budget.
                    debug_assert!(remaining > 0);
                    timer = Some(timer.map_or(now + remaining, |t| t.min(now + remaining)));
                }
                if v.runq.len() > 1 {
                    let q = now + self.cfg.quantum.saturating_sub(v.slice).max(1);
                    timer = Some(timer.map_or(q, |t| t.min(q)));
                }
                if c.task != Some(task) {
                    self.cur.as_mut().expect("some").task = Some(task);
                    let kind = if c.bg {
                        EventKind::Background
                    } else {
                        EventKind::Run { budget: remaining }
                    };
                    self.log(now, Some(c.slot), Some(task), kind);
                }
                Some(Run {
                    vcpu: VcpuId(c.slot),
                    task,
                    background: c.bg,
                })
            }
        };
        self.debug_check();
        Decision { run, timer }
    }

    /// Nothing is current from `now` until the next [`pick`](Self::pick): the trace says so
    /// (`IDLE`), so that what it shows as execution is exactly what was charged — a kernel
    /// calls `pick` a little later, and that gap is charged to no VCPU.
    fn clear_current(&mut self, now: Nanos) {
        if self.cur.take().is_some() && !self.idle_logged {
            self.idle_logged = true;
            self.log(now, None, None, EventKind::Idle);
        }
    }

    fn stop_current(&mut self, now: Nanos) {
        let Some(c) = self.cur.take() else {
            return;
        };
        if c.bg {
            return;
        }
        let pcpu = self.cfg.pcpu;
        let tracing = self.ring.enabled();
        let ring = &mut self.ring;
        let v = self.vcpus[c.slot as usize].as_mut().expect("live slot");
        match &mut v.server {
            Server::Main(s) => s.stop(&mut |n| {
                if tracing {
                    ring.push(note_to_event(pcpu, c.slot, now, n))
                }
            }),
            Server::Io(io) => io.srv.stop(),
        }
    }

    /// What is running now (as last decided by [`pick`](Self::pick)).
    pub fn current(&self) -> Option<Run> {
        let c = self.cur?;
        Some(Run {
            vcpu: VcpuId(c.slot),
            task: c.task?,
            background: c.bg,
        })
    }

    // ---- tracing --------------------------------------------------------------------------

    /// Hand every buffered trace event to `f`, oldest first.
    pub fn drain_trace(&mut self, mut f: impl FnMut(TraceEvent)) {
        for e in self.ring.drain() {
            f(e);
        }
    }

    /// Hand at most `max` of the oldest buffered trace events to `f`; returns how many are
    /// left. A kernel drains in bounded steps so that it never keeps interrupts off for long.
    pub fn drain_trace_upto(&mut self, max: usize, mut f: impl FnMut(TraceEvent)) -> usize {
        for e in self.ring.drain_upto(max) {
            f(e);
        }
        self.ring.len()
    }

    /// Trace events lost because the ring was full.
    pub fn trace_dropped(&self) -> u64 {
        self.ring.dropped()
    }

    // ---- invariants -----------------------------------------------------------------------

    /// Check all invariants (module docs); `Err` names the first one violated.
    pub fn check(&self) -> Result<(), &'static str> {
        let mut n_ready = 0;
        let mut n_wait = 0;
        let mut runnable = alloc::vec![0usize; self.vcpus.len()];
        let mut bound = alloc::vec![0usize; self.vcpus.len()];
        for t in self.tasks.values() {
            let slot = t.slot as usize;
            if slot >= self.vcpus.len() || self.vcpus[slot].is_none() {
                return Err("task bound to a destroyed VCPU");
            }
            bound[slot] += 1;
            runnable[slot] += usize::from(t.runnable);
        }
        for (i, v) in self.vcpus.iter().enumerate() {
            let Some(v) = v else { continue };
            let slot = i as u32;
            match &v.server {
                Server::Main(s) => s.check()?,
                Server::Io(io) => io.srv.check()?,
            }
            if runnable[i] != v.runq.len() || bound[i] != v.bound {
                return Err("run queue or task count does not match the tasks");
            }
            match v.place {
                Place::Idle => {
                    if !v.runq.is_empty() {
                        return Err("backlogged VCPU not placed");
                    }
                }
                Place::Ready => {
                    n_ready += 1;
                    if !self.ready.contains(&(v.key, v.seq, slot)) {
                        return Err("ready VCPU missing from the ready set");
                    }
                    if v.key != v.period() {
                        return Err("stale priority key");
                    }
                }
                Place::Waiting(t) => {
                    n_wait += 1;
                    if !self.waiting.contains(&(t, v.seq, slot)) {
                        return Err("waiting VCPU missing from the release set");
                    }
                    if self.cfg.background == BackgroundPolicy::Background
                        && !self.depleted.contains(&(v.key, v.seq, slot))
                    {
                        return Err("waiting VCPU missing from the background set");
                    }
                }
            }
        }
        if n_ready != self.ready.len() || n_wait != self.waiting.len() {
            return Err("stale entries in the ready or release sets");
        }
        if let Some(c) = self.cur {
            let v = self.vcpus[c.slot as usize]
                .as_ref()
                .ok_or("current VCPU destroyed")?;
            if c.bg {
                if !matches!(v.place, Place::Waiting(_)) {
                    return Err("background VCPU has budget");
                }
            } else {
                if v.place != Place::Ready {
                    return Err("foreground VCPU not ready");
                }
                if v.remaining() == 0 {
                    return Err("foreground VCPU with zero budget");
                }
            }
        }
        Ok(())
    }

    #[inline]
    fn debug_check(&self) {
        #[cfg(debug_assertions)]
        if let Err(e) = self.check() {
            panic!("scheduler invariant violated: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            admission: None,
            ..Config::default()
        }
    }

    #[test]
    fn seed_vcpu_test_params() {
        let (mut s, be) = Scheduler::with_best_effort(Config::default());
        assert_eq!(s.params(be), Some(VcpuParams::main(5000, 50000)));
        let v = s.create(0, VcpuParams::main(20, 100)).unwrap();
        let p = s.params(v).unwrap();
        assert_eq!((p.c_us, p.t_us), (20, 100));
        // vcpu_bind_task moves the task from the best-effort VCPU.
        s.add_task(0, TaskId(9), be).unwrap();
        s.wake(0, TaskId(9)).unwrap();
        s.bind(0, TaskId(9), v).unwrap();
        assert_eq!(s.vcpu_of(TaskId(9)), Some(v));
        let info: Vec<_> = s.vcpus().collect();
        assert_eq!(info[0].tasks, 0);
        assert_eq!(info[1].tasks, 1);
        assert_eq!(s.pick(0).run.unwrap().vcpu, v);
    }

    #[test]
    fn rate_monotonic_order_and_tie_break_by_creation() {
        let mut s = Scheduler::new(cfg());
        let a = s.create(0, VcpuParams::main(10, 100)).unwrap();
        let b = s.create(0, VcpuParams::main(10, 50)).unwrap();
        let c = s.create(0, VcpuParams::main(10, 50)).unwrap();
        for (i, v) in [a, b, c].into_iter().enumerate() {
            s.add_task(0, TaskId(i as u32), v).unwrap();
            s.wake(0, TaskId(i as u32)).unwrap();
        }
        let order: Vec<_> = (0..3)
            .map(|k| {
                let d = s.pick(k * 10_000);
                d.run.unwrap().vcpu
            })
            .collect();
        assert_eq!(order, [b, c, a]);
    }

    #[test]
    fn wake_of_higher_priority_requests_preemption() {
        let mut s = Scheduler::new(cfg());
        let lo = s.create(0, VcpuParams::main(50, 100)).unwrap();
        let hi = s.create(0, VcpuParams::main(10, 20)).unwrap();
        s.add_task(0, TaskId(1), lo).unwrap();
        s.add_task(0, TaskId(2), hi).unwrap();
        s.wake(0, TaskId(1)).unwrap();
        assert_eq!(s.pick(0).task(), Some(TaskId(1)));
        assert!(s.wake(5_000, TaskId(2)).unwrap());
        let d = s.pick(5_000);
        assert_eq!(d.task(), Some(TaskId(2)));
        assert_eq!(d.timer, Some(15_000));
        // POSIX rules: the preempted VCPU stays active, its 5 us still charged to the head.
        let srv = s.main_server(lo).unwrap();
        assert_eq!(srv.usage(), 5_000);
        assert_eq!(srv.queue().count(), 1);
        // It resumes with the rest of its budget and is replenished at 0 + T.
        s.block(15_000, TaskId(2)).unwrap();
        assert_eq!(s.pick(15_000).timer, Some(60_000));
        s.pick(60_000);
        let q: Vec<_> = s.main_server(lo).unwrap().queue().collect();
        assert_eq!(
            q,
            [crate::ss::Repl {
                time: 100_000,
                amount: 50_000
            }]
        );
    }

    #[test]
    fn round_robin_inside_a_vcpu() {
        let mut s = Scheduler::new(Config {
            quantum: 1_000,
            ..cfg()
        });
        let v = s.create(0, VcpuParams::main(100, 100)).unwrap();
        for t in 1..=3 {
            s.add_task(0, TaskId(t), v).unwrap();
            s.wake(0, TaskId(t)).unwrap();
        }
        let mut now = 0;
        let mut seen = Vec::new();
        for _ in 0..6 {
            let d = s.pick(now);
            seen.push(d.task().unwrap().0);
            now = d.timer.unwrap();
        }
        assert_eq!(seen, [1, 2, 3, 1, 2, 3]);
    }

    /// A wake from another CPU carries that CPU's clock, which may be a little behind this
    /// scheduler's: the time is clamped and counted, and nothing panics (it was a debug
    /// assertion, live in the kernel build).
    #[test]
    fn times_from_a_skewed_clock_are_clamped_not_fatal() {
        let (mut s, be) = Scheduler::with_best_effort(Config::default());
        s.add_task(0, TaskId(1), be).unwrap();
        s.add_task(0, TaskId(2), be).unwrap();
        s.wake(1_000, TaskId(1)).unwrap();
        assert_eq!(s.pick(1_000).task(), Some(TaskId(1)));
        s.wake(990, TaskId(2)).unwrap(); // 10 ns behind
        let d = s.pick(995);
        assert_eq!(d.task(), Some(TaskId(1)));
        assert_eq!(s.clock_skew(), (2, 10));
        s.check().unwrap();
    }

    #[test]
    fn background_policy_runs_depleted_vcpus() {
        let mut s = Scheduler::new(Config {
            background: BackgroundPolicy::Background,
            ..cfg()
        });
        let v = s.create(0, VcpuParams::main(20, 100)).unwrap();
        s.add_task(0, TaskId(1), v).unwrap();
        s.wake(0, TaskId(1)).unwrap();
        assert_eq!(s.pick(0).timer, Some(20_000));
        let d = s.pick(20_000);
        assert!(d.run.unwrap().background);
        assert_eq!(d.timer, Some(100_000));
        let d = s.pick(100_000);
        assert!(!d.run.unwrap().background);
    }

    #[test]
    fn destroy_requires_no_tasks_and_ids_are_reused() {
        let mut s = Scheduler::new(cfg());
        let v = s.create(0, VcpuParams::main(1, 10)).unwrap();
        s.add_task(0, TaskId(1), v).unwrap();
        assert_eq!(s.destroy(0, v), Err(Error::VcpuBusy));
        s.remove_task(0, TaskId(1)).unwrap();
        s.destroy(0, v).unwrap();
        assert_eq!(s.params(v), None);
        assert_eq!(s.create(0, VcpuParams::main(2, 10)).unwrap(), v);
    }

    #[test]
    fn io_vcpu_inherits_smallest_requester_period() {
        let mut s = Scheduler::new(cfg());
        let m1 = s.create(0, VcpuParams::main(10, 100)).unwrap();
        let m2 = s.create(0, VcpuParams::main(10, 40)).unwrap();
        let io = s.create(0, VcpuParams::io(1, 10)).unwrap();
        assert_eq!(s.io_server(io).unwrap().period(), 10_000);
        s.io_request(0, io, m1).unwrap();
        assert_eq!(s.io_server(io).unwrap().period(), 100_000);
        s.io_request(0, io, m2).unwrap();
        assert_eq!(s.io_server(io).unwrap().period(), 40_000);
        assert_eq!(s.io_server(io).unwrap().budget(), 4_000);
        s.io_complete(0, io, m2).unwrap();
        assert_eq!(s.io_server(io).unwrap().period(), 100_000);
        assert_eq!(s.io_request(0, m1, m2), Err(Error::WrongKind));
    }

    #[test]
    fn admission_rejection_names_the_vcpu() {
        let mut s = Scheduler::new(Config {
            admission: Some(AdmissionTest::UtilizationBound),
            ..Config::default()
        });
        s.create(0, VcpuParams::main(50, 100)).unwrap();
        match s.create(0, VcpuParams::main(40, 100)) {
            Err(Error::Rejected(r)) => {
                assert_eq!(r.index, 1);
                assert_eq!(r.vcpu, None);
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}
