//! A discrete-event simulator that drives the real [`Scheduler`] state machine (one per PCPU)
//! with task models, producing a trace in the [`crate::trace`] format.
//!
//! The simulator plays the kernel: it calls `wake`/`block`/`io_request`/`io_complete` when the
//! task models say so and `pick` after every event, and it fires the one-shot timer that
//! `pick` asked for, rounded up to [`Scenario::timer_granularity`] (0 = exact). Between events
//! the picked task runs and its work decreases. There is no tick.
//!
//! Task models ([`TaskModel`]): periodic, sporadic, CPU hog, random bursts, and I/O bursts that
//! go through an IO VCPU (the simulator creates one handler task per IO VCPU, which serves the
//! requests FIFO).
//!
//! The simulator adds `RELEASE`, `DONE` and `MISS` lines for jobs of task models that have
//! deadlines (a job's deadline is its next release, or `release + min_gap` for sporadic ones).

use alloc::collections::{BinaryHeap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Reverse;

use crate::trace::{EventKind, TraceEvent};
use crate::{Config, Error, Nanos, Scheduler, TaskId, VcpuId, VcpuKind, VcpuParams};

/// How a simulated task behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskModel {
    /// A job every `period` from `offset`, each needing `exec`; deadline = next release.
    Periodic {
        /// Release period (ns).
        period: Nanos,
        /// Work per job (ns).
        exec: Nanos,
        /// First release (ns).
        offset: Nanos,
    },
    /// Jobs separated by `min_gap` plus a pseudo-random extra in `[0, jitter]`; each needs
    /// `exec`; deadline = `release + min_gap`.
    Sporadic {
        /// Minimum inter-arrival time (ns).
        min_gap: Nanos,
        /// Maximum extra gap (ns).
        jitter: Nanos,
        /// Work per job (ns).
        exec: Nanos,
        /// PRNG seed.
        seed: u64,
    },
    /// Always runnable from `start` on (a CPU-bound task).
    Hog {
        /// When it becomes runnable.
        start: Nanos,
    },
    /// Runs for a pseudo-random time in `[1, max_run]`, then sleeps for one in `[1, max_sleep]`,
    /// forever; no deadlines. Exercises block/wake at arbitrary instants.
    Bursty {
        /// Longest burst (ns).
        max_run: Nanos,
        /// Longest sleep (ns).
        max_sleep: Nanos,
        /// PRNG seed.
        seed: u64,
    },
    /// A job every `period` from `offset`: compute `pre`, then issue an I/O request served by
    /// the IO VCPU with scenario index `io` (the device answers after `latency`, then the IO
    /// VCPU's handler needs `io_exec`), then compute `post`. Deadline = next release.
    IoBurst {
        /// Release period (ns).
        period: Nanos,
        /// First release (ns).
        offset: Nanos,
        /// Work before the request (ns).
        pre: Nanos,
        /// Scenario index of the IO VCPU.
        io: usize,
        /// Device latency (ns).
        latency: Nanos,
        /// Handler work on the IO VCPU (ns).
        io_exec: Nanos,
        /// Work after the I/O completes (ns).
        post: Nanos,
    },
}

/// A VCPU of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuSpec {
    /// Its PCPU.
    pub pcpu: u32,
    /// Its parameters.
    pub params: VcpuParams,
}

/// A task of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    /// Scenario index of its VCPU.
    pub vcpu: usize,
    /// Its behaviour.
    pub model: TaskModel,
}

/// A complete simulation set-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Name (used for output files).
    pub name: String,
    /// Number of PCPUs.
    pub pcpus: u32,
    /// Scheduler configuration for every PCPU (`pcpu` and `trace_capacity` are overridden).
    pub config: Config,
    /// VCPUs, created at time 0 in this order.
    pub vcpus: Vec<VcpuSpec>,
    /// Tasks; task `i` gets `TaskId(i + 1)`.
    pub tasks: Vec<TaskSpec>,
    /// Timer resolution: timers fire at the next multiple of this (0 = exactly on time).
    pub timer_granularity: Nanos,
    /// Suggested run length (ns).
    pub duration: Nanos,
}

/// A simulation failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimError {
    /// The scenario could not be set up.
    Setup(Error),
    /// A scheduler invariant failed ([`Scheduler::check`]) at this time.
    Invariant(Nanos, &'static str),
    /// The scenario is malformed.
    Scenario(&'static str),
}

impl core::fmt::Display for SimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SimError::Setup(e) => write!(f, "setup failed: {e}"),
            SimError::Invariant(t, e) => write!(f, "invariant violated at {t} ns: {e}"),
            SimError::Scenario(e) => write!(f, "bad scenario: {e}"),
        }
    }
}

impl core::error::Error for SimError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Blocked,
    Running,
    Pre,
    WaitIo,
    Post,
}

#[derive(Clone, Debug)]
struct SimTask {
    id: TaskId,
    pcpu: usize,
    vcpu: VcpuId,
    model: Option<TaskModel>,
    rng: u64,
    work: Nanos,
    phase: Phase,
    /// Released jobs not yet done: (job number, deadline).
    jobs: VecDeque<(u64, Nanos)>,
    released: u64,
    done: u64,
    /// For IO handlers: the IO VCPU's scenario index.
    handler_of: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Release(usize),
    Deadline(usize, u64),
    WakeAt(usize),
    Interrupt { io: usize, requester: usize },
}

/// An IO VCPU's handler task index and its FIFO of (requester task, work).
type IoHandler = (usize, VecDeque<(usize, Nanos)>);

#[derive(Clone, Copy, Debug)]
struct Pcpu {
    running: Option<usize>,
    since: Nanos,
    timer: Option<Nanos>,
}

/// The simulator.
#[derive(Clone, Debug)]
pub struct Sim {
    scheds: Vec<Scheduler>,
    pcpus: Vec<Pcpu>,
    vcpus: Vec<(u32, VcpuId)>,
    tasks: Vec<SimTask>,
    /// Per IO VCPU (scenario index): handler task index and FIFO of (requester task, work).
    io: Vec<Option<IoHandler>>,
    heap: BinaryHeap<Reverse<(Nanos, u64, Ev)>>,
    seq: u64,
    now: Nanos,
    granularity: Nanos,
    trace: Vec<TraceEvent>,
    /// Call [`Scheduler::check`] after every step (slower; on by default).
    pub check_every_step: bool,
    steps: u64,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uniform(state: &mut u64, lo: Nanos, hi: Nanos) -> Nanos {
    if hi <= lo {
        lo
    } else {
        lo + splitmix(state) % (hi - lo + 1)
    }
}

const FOREVER: Nanos = Nanos::MAX / 4;

impl Sim {
    /// Set the scenario up at time 0 (VCPUs created, first releases scheduled).
    pub fn new(sc: &Scenario) -> Result<Self, SimError> {
        if sc.pcpus == 0 {
            return Err(SimError::Scenario("no PCPUs"));
        }
        let mut scheds: Vec<Scheduler> = (0..sc.pcpus)
            .map(|p| {
                Scheduler::new(Config {
                    pcpu: p,
                    trace_capacity: 1 << 16,
                    ..sc.config
                })
            })
            .collect();
        let mut vcpus = Vec::new();
        let mut io = Vec::new();
        for v in &sc.vcpus {
            let s = scheds
                .get_mut(v.pcpu as usize)
                .ok_or(SimError::Scenario("VCPU on a PCPU that does not exist"))?;
            let id = s.create(0, v.params).map_err(SimError::Setup)?;
            vcpus.push((v.pcpu, id));
            io.push(None);
        }
        let mut sim = Sim {
            scheds,
            pcpus: alloc::vec![
                Pcpu {
                    running: None,
                    since: 0,
                    timer: None
                };
                sc.pcpus as usize
            ],
            vcpus,
            tasks: Vec::new(),
            io,
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0,
            granularity: sc.timer_granularity,
            trace: Vec::new(),
            check_every_step: true,
            steps: 0,
        };
        for (i, t) in sc.tasks.iter().enumerate() {
            let &(pcpu, vcpu) = sim
                .vcpus
                .get(t.vcpu)
                .ok_or(SimError::Scenario("task on a VCPU that does not exist"))?;
            if let TaskModel::IoBurst { io, .. } = t.model {
                let Some(spec) = sc.vcpus.get(io) else {
                    return Err(SimError::Scenario(
                        "IoBurst names a VCPU that does not exist",
                    ));
                };
                if spec.params.kind != VcpuKind::Io || spec.pcpu != pcpu {
                    return Err(SimError::Scenario(
                        "IoBurst needs an IO VCPU on the requester's PCPU",
                    ));
                }
            }
            let id = TaskId(i as u32 + 1);
            sim.scheds[pcpu as usize]
                .add_task(0, id, vcpu)
                .map_err(SimError::Setup)?;
            let seed = match t.model {
                TaskModel::Sporadic { seed, .. } | TaskModel::Bursty { seed, .. } => seed,
                _ => i as u64,
            };
            sim.tasks.push(SimTask {
                id,
                pcpu: pcpu as usize,
                vcpu,
                model: Some(t.model),
                rng: seed,
                work: 0,
                phase: Phase::Blocked,
                jobs: VecDeque::new(),
                released: 0,
                done: 0,
                handler_of: None,
            });
        }
        // One handler task per IO VCPU.
        for (k, spec) in sc.vcpus.iter().enumerate() {
            if spec.params.kind != VcpuKind::Io {
                continue;
            }
            let (pcpu, vcpu) = sim.vcpus[k];
            let id = TaskId(sim.tasks.len() as u32 + 1);
            sim.scheds[pcpu as usize]
                .add_task(0, id, vcpu)
                .map_err(SimError::Setup)?;
            sim.io[k] = Some((sim.tasks.len(), VecDeque::new()));
            sim.tasks.push(SimTask {
                id,
                pcpu: pcpu as usize,
                vcpu,
                model: None,
                rng: 0,
                work: 0,
                phase: Phase::Blocked,
                jobs: VecDeque::new(),
                released: 0,
                done: 0,
                handler_of: Some(k),
            });
        }
        for i in 0..sim.tasks.len() {
            match sim.tasks[i].model {
                Some(TaskModel::Periodic { offset, .. })
                | Some(TaskModel::IoBurst { offset, .. }) => sim.push(offset, Ev::Release(i)),
                Some(TaskModel::Sporadic { .. }) => sim.push(0, Ev::Release(i)),
                Some(TaskModel::Hog { start }) => sim.push(start, Ev::WakeAt(i)),
                Some(TaskModel::Bursty { .. }) => sim.push(0, Ev::WakeAt(i)),
                None => {}
            }
        }
        sim.collect_trace();
        Ok(sim)
    }

    fn push(&mut self, t: Nanos, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, ev)));
    }

    fn sim_event(&mut self, i: usize, kind: EventKind) {
        let t = &self.tasks[i];
        self.trace.push(TraceEvent {
            t: self.now,
            pcpu: t.pcpu as u32,
            vcpu: Some(t.vcpu),
            task: Some(t.id),
            kind,
        });
    }

    /// Current simulated time.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// The trace so far.
    pub fn trace(&self) -> &[TraceEvent] {
        &self.trace
    }

    /// Take the trace, leaving it empty.
    pub fn take_trace(&mut self) -> Vec<TraceEvent> {
        core::mem::take(&mut self.trace)
    }

    /// The scheduler of a PCPU.
    pub fn scheduler(&self, pcpu: u32) -> &Scheduler {
        &self.scheds[pcpu as usize]
    }

    /// `(pcpu, id)` of the VCPU with scenario index `index`.
    pub fn vcpu(&self, index: usize) -> (u32, VcpuId) {
        self.vcpus[index]
    }

    /// Simulation steps taken so far (one per distinct event time).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Jobs released and completed by task `index` (scenario order).
    pub fn jobs(&self, index: usize) -> (u64, u64) {
        (self.tasks[index].released, self.tasks[index].done)
    }

    fn wake(&mut self, i: usize) {
        let (p, id) = (self.tasks[i].pcpu, self.tasks[i].id);
        self.scheds[p].wake(self.now, id).expect("known task");
    }

    fn block(&mut self, i: usize) {
        let (p, id) = (self.tasks[i].pcpu, self.tasks[i].id);
        self.tasks[i].phase = Phase::Blocked;
        self.tasks[i].work = 0;
        self.scheds[p].block(self.now, id).expect("known task");
    }

    /// Start the next queued job of a blocked task, if any.
    fn start_job(&mut self, i: usize) {
        if self.tasks[i].phase != Phase::Blocked || self.tasks[i].jobs.is_empty() {
            return;
        }
        match self.tasks[i].model {
            Some(TaskModel::Periodic { exec, .. }) | Some(TaskModel::Sporadic { exec, .. }) => {
                self.tasks[i].phase = Phase::Running;
                self.tasks[i].work = exec.max(1);
                self.wake(i);
            }
            Some(TaskModel::IoBurst { pre, .. }) => {
                self.tasks[i].phase = Phase::Pre;
                self.tasks[i].work = pre.max(1);
                self.wake(i);
            }
            _ => {}
        }
    }

    fn job_done(&mut self, i: usize) {
        self.tasks[i].jobs.pop_front();
        self.tasks[i].done += 1;
        self.sim_event(i, EventKind::Done);
        self.block(i);
        self.start_job(i);
    }

    /// The running task `i` finished its current piece of work.
    fn work_done(&mut self, i: usize) {
        if let Some(k) = self.tasks[i].handler_of {
            // IO handler finished a request.
            let (_, q) = self.io[k].as_mut().expect("handler has a queue");
            let (req, _) = q.pop_front().expect("handler was serving a request");
            let next = q.front().map(|r| r.1);
            let (p, io_id) = self.vcpus[k];
            let req_vcpu = self.tasks[req].vcpu;
            self.scheds[p as usize]
                .io_complete(self.now, io_id, req_vcpu)
                .expect("known VCPUs");
            match next {
                Some(w) => self.tasks[i].work = w,
                None => self.block(i),
            }
            // The requester continues with its post-processing.
            if let Some(TaskModel::IoBurst { post, .. }) = self.tasks[req].model {
                if post == 0 {
                    self.job_done(req);
                } else {
                    self.tasks[req].phase = Phase::Post;
                    self.tasks[req].work = post;
                    self.wake(req);
                }
            }
            return;
        }
        match (self.tasks[i].model, self.tasks[i].phase) {
            (Some(TaskModel::Bursty { max_sleep, .. }), _) => {
                let sleep = uniform(&mut self.tasks[i].rng, 1, max_sleep.max(1));
                self.block(i);
                let at = self.now + sleep;
                self.push(at, Ev::WakeAt(i));
            }
            (Some(TaskModel::IoBurst { io, latency, .. }), Phase::Pre) => {
                let (p, io_id) = self.vcpus[io];
                let me = self.tasks[i].vcpu;
                self.scheds[p as usize]
                    .io_request(self.now, io_id, me)
                    .expect("known VCPUs");
                self.block(i);
                self.tasks[i].phase = Phase::WaitIo;
                let at = self.now + latency;
                self.push(at, Ev::Interrupt { io, requester: i });
            }
            (Some(TaskModel::Hog { .. }), _) => self.tasks[i].work = FOREVER,
            _ => self.job_done(i),
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Release(i) => {
                let job = self.tasks[i].released;
                self.tasks[i].released += 1;
                let (next, deadline) = match self.tasks[i].model {
                    Some(TaskModel::Periodic { period, .. })
                    | Some(TaskModel::IoBurst { period, .. }) => {
                        (self.now + period, self.now + period)
                    }
                    Some(TaskModel::Sporadic {
                        min_gap, jitter, ..
                    }) => {
                        let extra = uniform(&mut self.tasks[i].rng, 0, jitter);
                        (self.now + min_gap + extra, self.now + min_gap)
                    }
                    _ => return,
                };
                self.push(next, Ev::Release(i));
                self.push(deadline, Ev::Deadline(i, job));
                self.tasks[i].jobs.push_back((job, deadline));
                self.sim_event(i, EventKind::Release { deadline });
                self.start_job(i);
            }
            Ev::Deadline(i, job) => {
                if self.tasks[i].done <= job {
                    self.sim_event(i, EventKind::Miss { deadline: self.now });
                }
            }
            Ev::WakeAt(i) => {
                let work = match self.tasks[i].model {
                    Some(TaskModel::Bursty { max_run, .. }) => {
                        uniform(&mut self.tasks[i].rng, 1, max_run.max(1))
                    }
                    _ => FOREVER,
                };
                self.tasks[i].phase = Phase::Running;
                self.tasks[i].work = work;
                self.wake(i);
            }
            Ev::Interrupt { io, requester } => {
                let Some(TaskModel::IoBurst { io_exec, .. }) = self.tasks[requester].model else {
                    return;
                };
                let (h, q) = self.io[io].as_mut().expect("IO VCPU has a handler");
                let h = *h;
                q.push_back((requester, io_exec.max(1)));
                if self.tasks[h].phase == Phase::Blocked {
                    self.tasks[h].phase = Phase::Running;
                    self.tasks[h].work = io_exec.max(1);
                    self.wake(h);
                }
            }
        }
    }

    fn collect_trace(&mut self) {
        for s in &mut self.scheds {
            s.drain_trace(|e| self.trace.push(e));
        }
    }

    fn next_time(&self) -> Option<Nanos> {
        let mut t = self.heap.peek().map(|Reverse((t, _, _))| *t);
        for p in &self.pcpus {
            let mut cand = p.timer;
            if let Some(i) = p.running {
                let done = p.since.saturating_add(self.tasks[i].work);
                cand = Some(cand.map_or(done, |c| c.min(done)));
            }
            if let Some(c) = cand {
                t = Some(t.map_or(c, |x| x.min(c)));
            }
        }
        t
    }

    /// Run until `end` (inclusive of events at `end`).
    pub fn run_until(&mut self, end: Nanos) -> Result<(), SimError> {
        loop {
            let Some(t) = self.next_time() else {
                self.advance(end);
                return Ok(());
            };
            if t > end {
                self.advance(end);
                return Ok(());
            }
            self.step(t)?;
        }
    }

    fn advance(&mut self, t: Nanos) {
        let t = t.max(self.now);
        for p in &mut self.pcpus {
            if let Some(i) = p.running {
                let ran = t - p.since;
                debug_assert!(ran <= self.tasks[i].work, "ran past the end of the work");
                self.tasks[i].work -= ran.min(self.tasks[i].work);
            }
            p.since = t;
        }
        self.now = t;
    }

    fn step(&mut self, t: Nanos) -> Result<(), SimError> {
        self.steps += 1;
        self.advance(t);
        // Work that finished now.
        for p in 0..self.pcpus.len() {
            if let Some(i) = self.pcpus[p].running
                && self.tasks[i].work == 0
                && self.tasks[i].phase != Phase::Blocked
            {
                self.pcpus[p].running = None;
                self.work_done(i);
            }
        }
        // External events due now.
        while let Some(Reverse((et, _, ev))) = self.heap.peek().copied() {
            if et > t {
                break;
            }
            self.heap.pop();
            self.handle(ev);
        }
        // Decisions.
        for p in 0..self.pcpus.len() {
            let d = self.scheds[p].pick(t);
            let running = d.task().map(|id| id.0 as usize - 1);
            if let Some(i) = running {
                debug_assert!(self.tasks[i].phase != Phase::Blocked && self.tasks[i].work > 0);
            }
            let g = self.granularity;
            self.pcpus[p] = Pcpu {
                running,
                since: t,
                timer: d.timer.map(|x| if g > 0 { x.div_ceil(g) * g } else { x }),
            };
            if self.check_every_step
                && let Err(e) = self.scheds[p].check()
            {
                return Err(SimError::Invariant(t, e));
            }
        }
        self.collect_trace();
        Ok(())
    }
}

/// Names of the built-in scenarios (for `cargo xtask plot --example NAME`).
pub const EXAMPLES: &[&str] = &["three-main-one-io", "seed-vcpu-test", "background"];

const MS: Nanos = 1_000_000;

/// A built-in scenario by name (see [`EXAMPLES`]).
pub fn example(name: &str) -> Option<Scenario> {
    let base = |name: &str| Scenario {
        name: name.into(),
        pcpus: 1,
        config: Config::default(),
        vcpus: Vec::new(),
        tasks: Vec::new(),
        timer_granularity: 0,
        duration: 200 * MS,
    };
    match name {
        // Three Main VCPUs and one IO VCPU on one PCPU: a periodic control task, a CPU hog that
        // keeps hitting its budget, and a task doing I/O through the IO VCPU.
        "three-main-one-io" => {
            let mut s = base(name);
            s.vcpus = alloc::vec![
                VcpuSpec {
                    pcpu: 0,
                    params: VcpuParams::main(2_000, 10_000)
                },
                VcpuSpec {
                    pcpu: 0,
                    params: VcpuParams::main(5_000, 25_000)
                },
                VcpuSpec {
                    pcpu: 0,
                    params: VcpuParams::main(10_000, 50_000)
                },
                VcpuSpec {
                    pcpu: 0,
                    params: VcpuParams::io(1_000, 10_000)
                },
            ];
            s.tasks = alloc::vec![
                TaskSpec {
                    vcpu: 0,
                    model: TaskModel::Periodic {
                        period: 10 * MS,
                        exec: 1_500_000,
                        offset: 0
                    },
                },
                TaskSpec {
                    vcpu: 1,
                    model: TaskModel::Hog { start: 0 }
                },
                TaskSpec {
                    vcpu: 2,
                    model: TaskModel::IoBurst {
                        period: 40 * MS,
                        offset: 3 * MS,
                        pre: 4 * MS,
                        io: 3,
                        latency: 2 * MS,
                        io_exec: 3 * MS,
                        post: 2 * MS,
                    },
                },
            ];
            Some(s)
        }
        // The seed's vcpu_test: a CPU-bound task on a (20 us, 100 us) VCPU beside the default
        // best-effort VCPU (5000 us, 50000 us) running another CPU-bound task.
        "seed-vcpu-test" => {
            let mut s = base(name);
            s.duration = MS;
            s.vcpus = alloc::vec![
                VcpuSpec {
                    pcpu: 0,
                    params: VcpuParams::BEST_EFFORT
                },
                VcpuSpec {
                    pcpu: 0,
                    params: VcpuParams::main(20, 100)
                },
            ];
            s.tasks = alloc::vec![
                TaskSpec {
                    vcpu: 0,
                    model: TaskModel::Hog { start: 0 }
                },
                TaskSpec {
                    vcpu: 1,
                    model: TaskModel::Hog { start: 0 }
                },
            ];
            Some(s)
        }
        // Background policy: two hogs on small budgets share the idle time at background
        // priority; a periodic task still meets its deadlines.
        "background" => {
            let mut s = base(name);
            s.duration = 100 * MS;
            s.config.background = crate::BackgroundPolicy::Background;
            s.vcpus = alloc::vec![
                VcpuSpec {
                    pcpu: 0,
                    params: VcpuParams::main(3_000, 10_000)
                },
                VcpuSpec {
                    pcpu: 0,
                    params: VcpuParams::main(5_000, 20_000)
                },
                VcpuSpec {
                    pcpu: 0,
                    params: VcpuParams::main(5_000, 40_000)
                },
            ];
            s.tasks = alloc::vec![
                TaskSpec {
                    vcpu: 0,
                    model: TaskModel::Periodic {
                        period: 10 * MS,
                        exec: 2 * MS,
                        offset: 0
                    },
                },
                TaskSpec {
                    vcpu: 1,
                    model: TaskModel::Hog { start: 0 }
                },
                TaskSpec {
                    vcpu: 2,
                    model: TaskModel::Hog { start: 0 }
                },
            ];
            Some(s)
        }
        _ => None,
    }
}

/// Run a scenario for its [`Scenario::duration`] and return the trace.
pub fn run(sc: &Scenario) -> Result<Vec<TraceEvent>, SimError> {
    let mut sim = Sim::new(sc)?;
    sim.run_until(sc.duration)?;
    Ok(sim.take_trace())
}
