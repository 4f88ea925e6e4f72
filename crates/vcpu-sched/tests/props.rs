//! Property tests: random VCPU sets and random block/wake/IO workloads over long simulated
//! runs, checked against the crate's invariants by trace checkers that look only at what ran
//! when (plus the scheduler's own `check()` after every simulation step).
//!
//! Case counts: the defaults below (256 simulated workloads, 256 admitted sets, 4096 + 4096
//! admission cases, 512 trace round trips) keep `cargo test -p vcpu-sched --release` around
//! ten seconds on 2 cores; debug builds run a quarter of them. Set `PROPTEST_CASES=N` to run
//! every property with `N` cases instead (e.g. `PROPTEST_CASES=20000` for a soak).

use proptest::prelude::*;
use vcpu_sched::admission::{AdmissionTest, response_times, utilization_test};
use vcpu_sched::check;
use vcpu_sched::sim::{Scenario, Sim, TaskModel, TaskSpec, VcpuSpec};
use vcpu_sched::trace::{self, EventKind, TraceEvent};
use vcpu_sched::{BackgroundPolicy, Config, ReplenishMode, TaskId, VcpuId, VcpuKind, VcpuParams};

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        // Debug builds check every invariant after every operation and run ~10x slower:
        // a quarter of the cases there.
        .unwrap_or(if cfg!(debug_assertions) {
            default / 4
        } else {
            default
        });
    ProptestConfig {
        cases: n,
        max_shrink_iters: 2_000,
        max_global_rejects: 100 * n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const PERIODS_US: [u32; 10] = [100, 200, 250, 400, 500, 800, 1000, 1250, 2000, 5000];

fn main_params() -> impl Strategy<Value = VcpuParams> {
    prop::sample::select(&PERIODS_US[..])
        .prop_flat_map(|t| (1..=t).prop_map(move |c| VcpuParams::main(c, t)))
}

/// `n` Main VCPUs of at most `100 / n` percent each: mostly admissible sets.
fn light_mains() -> impl Strategy<Value = Vec<VcpuParams>> {
    (1usize..=6).prop_flat_map(|n| {
        prop::collection::vec(
            (
                prop::sample::select(&PERIODS_US[..]),
                1u32..=(100 / n as u32),
            ),
            n,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(t, pct)| VcpuParams::main((t * pct / 100).max(1), t))
                .collect()
        })
    })
}

fn io_params() -> impl Strategy<Value = VcpuParams> {
    (1u32..=50).prop_map(|pct| VcpuParams::io(pct, 100))
}

/// A workload model for a Main VCPU's task (IO bursts are added separately).
fn model(max_t: u64) -> impl Strategy<Value = TaskModel> {
    let us = 1_000u64;
    prop_oneof![
        (0..max_t).prop_map(move |s| TaskModel::Hog { start: s * us / 4 }),
        (1..max_t, 1..2 * max_t, any::<u64>()).prop_map(move |(r, s, seed)| TaskModel::Bursty {
            max_run: r * us,
            max_sleep: s * us,
            seed
        }),
        (1..max_t, 1..max_t, 0..max_t).prop_map(move |(p, e, o)| TaskModel::Periodic {
            period: p * us + us,
            exec: e * us / 2 + 1,
            offset: o * us
        }),
        (1..max_t, 0..max_t, 1..max_t, any::<u64>()).prop_map(move |(g, j, e, seed)| {
            TaskModel::Sporadic {
                min_gap: g * us + us,
                jitter: j * us,
                exec: e * us / 2 + 1,
                seed,
            }
        }),
    ]
}

#[derive(Clone, Debug)]
struct Workload {
    scenario: Scenario,
}

/// Random VCPUs on 1-2 PCPUs, 1-3 tasks per Main VCPU, IO VCPUs driven by I/O bursts from
/// random Main VCPUs on the same PCPU. No admission control: the invariants must hold for
/// overloaded sets too.
fn workload() -> impl Strategy<Value = Workload> {
    (
        1u32..=2,
        prop::collection::vec((main_params(), 0u32..2), 1..=6),
        prop::collection::vec((io_params(), 0u32..2), 0..=2),
        any::<bool>(),
        2usize..=8,
        prop::sample::select(vec![0u64, 0, 1_000, 7_000]),
        any::<bool>(),
    )
        .prop_flat_map(|(pcpus, mains, ios, bg, max_repl, gran, strict)| {
            let nm = mains.len();
            let tasks = prop::collection::vec(
                (0..nm, model(5_000), any::<bool>(), 1u64..3_000, 1u64..2_000),
                nm..=3 * nm,
            );
            (Just((pcpus, mains, ios, bg, max_repl, gran, strict)), tasks)
        })
        .prop_map(|((pcpus, mains, ios, bg, max_repl, gran, strict), tasks)| {
            let mut vcpus: Vec<VcpuSpec> = mains
                .iter()
                .map(|&(p, c)| VcpuSpec {
                    pcpu: c % pcpus,
                    params: p,
                })
                .collect();
            let io_base = vcpus.len();
            for &(p, c) in &ios {
                vcpus.push(VcpuSpec {
                    pcpu: c % pcpus,
                    params: p,
                });
            }
            let mut specs = Vec::new();
            for (k, (v, m, wants_io, io_us, lat_us)) in tasks.into_iter().enumerate() {
                // Every Main VCPU gets at least one task (task k < nm goes to VCPU k).
                let v = if k < mains.len() { k } else { v };
                let pcpu = vcpus[v].pcpu;
                let io = (io_base..vcpus.len()).find(|&i| vcpus[i].pcpu == pcpu);
                let model = match (wants_io, io) {
                    (true, Some(io)) => TaskModel::IoBurst {
                        period: vcpus[v].params.t_ns() * 3,
                        offset: lat_us * 100,
                        pre: io_us * 200 + 1,
                        io,
                        latency: lat_us * 1_000,
                        io_exec: io_us * 1_000,
                        post: io_us * 100,
                    },
                    _ => m,
                };
                specs.push(TaskSpec { vcpu: v, model });
            }
            Workload {
                scenario: Scenario {
                    name: "random".into(),
                    pcpus,
                    config: Config {
                        admission: None,
                        max_repl,
                        background: if bg {
                            BackgroundPolicy::Background
                        } else {
                            BackgroundPolicy::Idle
                        },
                        quantum: 300_000,
                        replenish: if strict {
                            ReplenishMode::SlidingWindow
                        } else {
                            ReplenishMode::Posix
                        },
                        ..Config::default()
                    },
                    vcpus,
                    tasks: specs,
                    timer_granularity: gran,
                    duration: 200_000_000,
                },
            }
        })
}

fn run(sc: &Scenario) -> Vec<TraceEvent> {
    let mut sim = Sim::new(sc).expect("scenario sets up");
    let r = sim.run_until(sc.duration);
    if std::env::var_os("VCPU_SCHED_STATS").is_some() {
        eprintln!("steps={} events={}", sim.steps(), sim.trace().len());
    }
    if let Err(e) = r {
        let tr = sim.trace();
        let tail = &tr[tr.len().saturating_sub(40)..];
        panic!(
            "{e}\n{:#?}\nlast events:\n{}",
            (0..sc.pcpus)
                .map(|p| sim.scheduler(p).clone())
                .collect::<Vec<_>>(),
            trace::write(tail)
        );
    }
    sim.take_trace()
}

proptest! {
    #![proptest_config(cases(256))]

    /// Invariants 1 (sliding-window mode), 3, 4, 5 on random, possibly overloaded sets and
    /// random block/wake/IO workloads, in both replenishment modes.
    #[test]
    fn invariants_hold_on_random_workloads(w in workload()) {
        let sc = &w.scenario;
        let tr = run(sc);
        let horizon = sc.duration;
        let fg = check::foreground(&tr, horizon);
        let tol = sc.timer_granularity;
        for (key, cr) in check::created(&tr) {
            let iv = fg.get(&key).cloned().unwrap_or_default();
            match cr.kind {
                VcpuKind::Main if sc.config.replenish == ReplenishMode::SlidingWindow => {
                    // An overrun (late timer) is at most one granularity per run, and it is
                    // borrowed from later budget, so a window can see at most one of them.
                    let r = check::sliding_window(&iv, cr.c, cr.period, tol);
                    prop_assert!(r.is_ok(), "sliding window violated for {:?}: {:?} (C={} T={})",
                        key, r, cr.c, cr.period);
                }
                VcpuKind::Main => {}
                VcpuKind::Io => {
                    let r = check::pibs(&tr, key, cr.c, cr.period, horizon, tol);
                    prop_assert!(r.is_ok(), "PIBS bound violated for {:?}: {:?}", key, r);
                }
            }
        }
        // Nobody runs in the foreground unless the trace gave it budget: every RUN line
        // announces a positive budget.
        for e in &tr {
            if let EventKind::Run { budget } = e.kind {
                prop_assert!(budget > 0);
            }
        }
    }

    /// Invariant 2: sets the RTA admits, with every Main VCPU continuously backlogged (CPU
    /// hogs), consume every piece of budget within one period of its release; plus IO VCPUs
    /// driven by an extra requester VCPU that is not checked.
    #[test]
    fn admitted_backlogged_sets_meet_their_deadlines(
        mains in light_mains(),
        io in prop::option::of(((1u32..=20).prop_map(|p| VcpuParams::io(p, 100)), main_params())),
        gran in prop::sample::select(vec![0u64, 0, 1_000]),
        max_repl in 4usize..=32,
        strict in any::<bool>(),
    ) {
        let mode = if strict { ReplenishMode::SlidingWindow } else { ReplenishMode::Posix };
        let mut set: Vec<VcpuParams> = mains.clone();
        let mut tasks: Vec<TaskSpec> = (0..mains.len())
            .map(|v| TaskSpec { vcpu: v, model: TaskModel::Hog { start: 0 } })
            .collect();
        if let Some((iop, req)) = io {
            set.push(req);
            set.push(iop);
            let n = set.len();
            tasks.push(TaskSpec {
                vcpu: n - 2,
                model: TaskModel::IoBurst {
                    period: req.t_ns(),
                    offset: 0,
                    pre: 1,
                    io: n - 1,
                    latency: 1_000,
                    io_exec: iop.t_ns(),
                    post: 0,
                },
            });
        }
        prop_assume!(response_times(&set).is_ok());
        let horizon = 40 * set.iter().map(|p| p.t_ns()).max().unwrap();
        let sc = Scenario {
            name: "admitted".into(),
            pcpus: 1,
            config: Config {
                admission: Some(AdmissionTest::ResponseTime),
                max_repl,
                replenish: mode,
                ..Config::default()
            },
            vcpus: set.iter().map(|&params| VcpuSpec { pcpu: 0, params }).collect(),
            tasks,
            timer_granularity: gran,
            duration: horizon,
        };
        let tr = run(&sc);
        for v in 0..mains.len() {
            let key = (0, VcpuId(v as u32));
            // A late timer delays each release by at most one granularity per preemption
            // chain; allow one granularity per higher-priority VCPU plus one.
            let tol = gran * (set.len() as u64 + 1);
            let r = check::replenishment_deadlines(&tr, key, horizon, tol);
            prop_assert!(r.is_ok(), "VCPU {} missed: {:?} in set {:?}", v, r, set);
            prop_assert!(r.unwrap() > 0);
            let p = set[v];
            let iv = check::foreground(&tr, horizon).get(&key).cloned().unwrap_or_default();
            if strict {
                // Sliding window: at most C in any window of length T.
                let w = check::sliding_window(&iv, p.c_ns(), p.t_ns(), gran);
                prop_assert!(w.is_ok(), "VCPU {}: {:?}", v, w);
            } else {
                // POSIX rules: releases stay one period apart, so C in every period [kT, (k+1)T)
                // (the hogs start at 0 with full budget)...
                // With late timers (gran > 0) an overrun delays the next release by the
                // overrun (the paper's rule), so the phase may slip by up to one granularity
                // per period: check the long-run share instead.
                let periods = horizon / p.t_ns();
                if gran == 0 {
                    for k in 0..periods {
                        let (a, b) = (k * p.t_ns(), (k + 1) * p.t_ns());
                        let got = check::service(&tr, a, b)[&key].0;
                        prop_assert!(got >= p.c_ns(), "VCPU {} got {} in period {} of {:?}", v, got, k, set);
                    }
                } else {
                    let got = check::service(&tr, 0, horizon)[&key].0;
                    let due = (periods - 1) * p.c_ns();
                    prop_assert!(got + periods * gran >= due, "VCPU {} got {} < {}", v, got, due);
                }
                // ...and at most 2C in any window of length T.
                let w = check::sliding_window(&iv, 2 * p.c_ns(), p.t_ns(), 2 * gran);
                prop_assert!(w.is_ok(), "VCPU {}: {:?}", v, w);
            }
        }
    }


    /// Invariant 2 with blocking: sets the RTA admits (Main VCPUs and an IO VCPU) whose tasks
    /// block and wake at random (bursts, periodic and sporadic jobs, I/O through the IO VCPU,
    /// hogs), with and without background execution of depleted VCPUs. Every Main VCPU that
    /// stays backlogged for a whole period after a release gets the budget released by then
    /// (`check::backlogged_deadlines`), never runs in the foreground beyond the budget released
    /// so far (`check::budget_accounting`), and the IO VCPU keeps to PIBS. These are the
    /// checkers the kernel's randomized schedule test applies to the kernel's own trace.
    #[test]
    fn admitted_sets_with_blocking_tasks_keep_their_budgets(
        mains in light_mains(),
        models in prop::collection::vec(model(5_000), 6),
        extra in prop::collection::vec((0usize..6, model(5_000)), 0..=4),
        io in prop::option::of((1u32..=20).prop_map(|p| VcpuParams::io(p, 100))),
        gran in prop::sample::select(vec![0u64, 0, 1_000]),
        bg in any::<bool>(),
    ) {
        let mut set: Vec<VcpuParams> = mains.clone();
        let n = mains.len();
        let mut tasks: Vec<TaskSpec> = (0..n).map(|v| TaskSpec { vcpu: v, model: models[v] }).collect();
        for (v, m) in extra {
            tasks.push(TaskSpec { vcpu: v % n, model: m });
        }
        if let Some(iop) = io {
            set.push(iop);
            // The last Main VCPU's first task does I/O instead.
            tasks[n - 1].model = TaskModel::IoBurst {
                period: set[n - 1].t_ns() * 2,
                offset: 0,
                pre: set[n - 1].c_ns() / 2 + 1,
                io: n,
                latency: 20_000,
                io_exec: iop.c_ns(),
                post: 1_000,
            };
        }
        prop_assume!(response_times(&set).is_ok());
        let horizon = 30 * set.iter().map(|p| p.t_ns()).max().unwrap();
        let sc = Scenario {
            name: "admitted-blocking".into(),
            pcpus: 1,
            config: Config {
                admission: Some(AdmissionTest::ResponseTime),
                background: if bg { BackgroundPolicy::Background } else { BackgroundPolicy::Idle },
                ..Config::default()
            },
            vcpus: set.iter().map(|&params| VcpuSpec { pcpu: 0, params }).collect(),
            tasks,
            timer_granularity: gran,
            duration: horizon,
        };
        let tr = run(&sc);
        let tol = gran * (set.len() as u64 + 1);
        for v in 0..n {
            let key = (0, VcpuId(v as u32));
            let r = check::backlogged_deadlines(&tr, key, horizon, tol);
            prop_assert!(r.is_ok(), "VCPU {} missed: {:?} in set {:?}", v, r, set);
            let a = check::budget_accounting(&tr, key, horizon, tol);
            prop_assert!(a.is_ok(), "VCPU {} over budget: {:?} in set {:?}", v, a, set);
        }
        if let Some(iop) = io {
            let r = check::pibs(&tr, (0, VcpuId(n as u32)), iop.c_ns(), iop.t_ns(), horizon, tol);
            prop_assert!(r.is_ok(), "PIBS: {:?}", r);
        }
    }
}

proptest! {
    #![proptest_config(cases(4096))]

    /// The RTA accepts every Main-only set the seed's bound accepts.
    #[test]
    fn rta_dominates_the_bound_for_main_only_sets(
        set in prop::collection::vec(main_params(), 1..=10)
    ) {
        if utilization_test(&set).is_ok() {
            prop_assert!(response_times(&set).is_ok(), "bound accepts, RTA rejects {:?}", set);
        }
    }

    /// The integer bound never accepts a set the real-number bound rejects, and the RTA test
    /// (as enforced) accepts everything the bound accepts, IO VCPUs included.
    #[test]
    fn bound_is_conservative_and_rta_test_accepts_a_superset(
        mains in prop::collection::vec(main_params(), 1..=8),
        ios in prop::collection::vec(io_params(), 0..=3),
    ) {
        let mut set = mains.clone();
        set.extend(ios.iter().copied());
        let n = mains.len() as f64;
        let mut lhs = 0.0f64;
        for p in &set {
            let u = p.c_us as f64 / p.t_us as f64;
            lhs += match p.kind { VcpuKind::Main => u, VcpuKind::Io => (2.0 - u) * u };
        }
        let rhs = n * (2f64.powf(1.0 / n) - 1.0);
        let ours = vcpu_sched::admit(&set, AdmissionTest::UtilizationBound).is_ok();
        if ours {
            prop_assert!(lhs <= rhs + 1e-12, "accepted {} > {}", lhs, rhs);
            prop_assert!(vcpu_sched::admit(&set, AdmissionTest::ResponseTime).is_ok());
        }
        if lhs < rhs - 1e-9 {
            prop_assert!(ours, "rejected {} < {}", lhs, rhs);
        }
    }

}

proptest! {
    #![proptest_config(cases(512))]

    /// Trace text round-trips through the writer and the parser.
    #[test]
    fn trace_round_trips(evs in prop::collection::vec(
        (any::<u64>(), 0u32..4, prop::option::of(0u32..300), prop::option::of(any::<u32>()),
         any::<u64>(), any::<u64>(), 0u8..6), 0..50))
    {
        let evs: Vec<TraceEvent> = evs.into_iter().map(|(t, pcpu, v, task, a, b, k)| TraceEvent {
            t, pcpu, vcpu: v.map(VcpuId), task: task.map(TaskId),
            kind: match k {
                0 => EventKind::Run { budget: a },
                1 => EventKind::Repl { at: a, amount: b },
                2 => EventKind::Move { from: a, to: b, amount: a ^ b },
                3 => EventKind::Elig { start: a, used: b, at: a.wrapping_add(b) },
                4 => EventKind::Create { kind: VcpuKind::Io, c: a, t: b },
                _ => EventKind::Miss { deadline: b },
            },
        }).collect();
        prop_assert_eq!(trace::parse(&trace::write(&evs)).unwrap(), evs);
    }
}
