//! The seed's cases and hand-checked scenarios, run through the simulator.

use vcpu_sched::check;
use vcpu_sched::sim::{self, Scenario, Sim, TaskModel, TaskSpec, VcpuSpec};
use vcpu_sched::trace::{self, EventKind};
use vcpu_sched::{Config, ReplenishMode, Scheduler, TaskId, VcpuId, VcpuParams};

const US: u64 = 1_000;
const MS: u64 = 1_000_000;

#[test]
fn vcpu_test_reports_seed_params() {
    // "Before vcpu bind task: C = 5000, T = 50000" / "After vcpu bind task: C = 20, T = 100"
    let (mut s, be) = Scheduler::with_best_effort(Config::default());
    s.add_task(0, TaskId(1), be).unwrap();
    let p = s.params(s.vcpu_of(TaskId(1)).unwrap()).unwrap();
    assert_eq!((p.c_us, p.t_us), (5000, 50000));
    let v = s.create(0, VcpuParams::main(20, 100)).unwrap();
    s.bind(0, TaskId(1), v).unwrap();
    let p = s.params(s.vcpu_of(TaskId(1)).unwrap()).unwrap();
    assert_eq!((p.c_us, p.t_us), (20, 100));
}

#[test]
fn cpu_bound_task_on_20_100_gets_20_percent() {
    let sc = sim::example("seed-vcpu-test").unwrap();
    let mut sim = Sim::new(&sc).unwrap();
    let end = 1_000 * MS;
    sim.run_until(end).unwrap();
    let svc = check::service(sim.trace(), 0, end);
    let (_, small) = sim.vcpu(1);
    let (_, be) = sim.vcpu(0);
    let got = svc[&(0, small)].0;
    // 20 us of every 100 us: 200 ms in a second (the last period may be cut by the horizon).
    assert!(
        (200 * MS - 20 * US..=200 * MS).contains(&got),
        "got {got} ns"
    );
    // The best-effort VCPU gets its 10% too (5 ms every 50 ms).
    let got_be = svc[&(0, be)].0;
    assert!(
        (100 * MS - 5 * MS..=100 * MS).contains(&got_be),
        "best effort got {got_be}"
    );
    // Event-driven, not ticked: two timer events per 100 us period at most, plus the BE ones.
    assert!(sim.steps() < 2 * 10_000 + 100, "{} steps", sim.steps());
}

#[test]
fn pibs_eligibility_is_t_plus_used_over_u() {
    // A Main VCPU (10 ms / 100 ms) asks an IO VCPU with U = 10% for 15 ms of work. The IO
    // VCPU inherits T = 100 ms, so its budget is 10 ms: it runs 10 ms from t = 1 ms, becomes
    // eligible at 1 + 10 / 0.1 = 101 ms, and finishes the remaining 5 ms then.
    let sc = Scenario {
        name: "pibs".into(),
        pcpus: 1,
        config: Config::default(),
        vcpus: vec![
            VcpuSpec {
                pcpu: 0,
                params: VcpuParams::main(10_000, 100_000),
            },
            VcpuSpec {
                pcpu: 0,
                params: VcpuParams::io(10, 100),
            },
        ],
        tasks: vec![TaskSpec {
            vcpu: 0,
            model: TaskModel::IoBurst {
                period: 1_000 * MS,
                offset: 0,
                pre: MS / 2,
                io: 1,
                latency: MS / 2,
                io_exec: 15 * MS,
                post: 0,
            },
        }],
        timer_granularity: 0,
        duration: 300 * MS,
    };
    let tr = sim::run(&sc).unwrap();
    let eligs: Vec<_> = tr
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Elig { start, used, at } => Some((start, used, at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        eligs,
        [(MS, 10 * MS, 101 * MS), (101 * MS, 5 * MS, 151 * MS)],
        "{}",
        trace::write(&tr)
    );
    assert!(
        tr.iter()
            .any(|e| e.kind == EventKind::Prio { period: 100 * MS })
    );
    assert_eq!(
        check::pibs(&tr, (0, VcpuId(1)), 10, 100, 300 * MS, 0),
        Ok(2)
    );
    // The requester's job completes when the IO is done, at 106 ms.
    assert!(
        tr.iter()
            .any(|e| e.kind == EventKind::Done && e.t == 106 * MS)
    );
}

#[test]
fn examples_run_clean_and_three_main_one_io_meets_deadlines() {
    for name in sim::EXAMPLES {
        let sc = sim::example(name).unwrap();
        let tr = sim::run(&sc).unwrap();
        assert!(!tr.is_empty());
        assert_eq!(check::misses(&tr), 0, "{name} missed deadlines");
        for (key, cr) in check::created(&tr) {
            let fg = check::foreground(&tr, sc.duration);
            if cr.kind == vcpu_sched::VcpuKind::Main {
                // Default POSIX rules on admitted sets: at most 2C in any window of length T.
                let iv = fg.get(&key).cloned().unwrap_or_default();
                assert!(check::sliding_window(&iv, 2 * cr.c, cr.period, 0).is_ok());
            }
        }
    }
    let sc = sim::example("three-main-one-io").unwrap();
    let tr = sim::run(&sc).unwrap();
    // The IO VCPU ran, inheriting the requester's period.
    assert!(tr.iter().any(|e| matches!(e.kind, EventKind::Elig { .. })));
    assert!(
        tr.iter()
            .any(|e| e.kind == EventKind::Prio { period: 50 * MS })
    );
    // The hog on (5 ms, 25 ms) keeps hitting its budget, and gets exactly 5 ms per 25 ms.
    let depletes = tr
        .iter()
        .filter(|e| e.kind == EventKind::Deplete && e.vcpu == Some(VcpuId(1)))
        .count();
    assert!(depletes >= 8, "{depletes}");
    let got = check::service(&tr, 0, 200 * MS)[&(0, VcpuId(1))].0;
    assert_eq!(got, 40 * MS);
}

#[test]
fn overload_misses_are_reported() {
    // Two periodic tasks that need 70% each: the lower-priority one must miss, and the trace
    // says so.
    let sc = Scenario {
        name: "overload".into(),
        pcpus: 1,
        config: Config {
            admission: None,
            ..Config::default()
        },
        vcpus: vec![
            VcpuSpec {
                pcpu: 0,
                params: VcpuParams::main(7_000, 10_000),
            },
            VcpuSpec {
                pcpu: 0,
                params: VcpuParams::main(14_000, 20_000),
            },
        ],
        tasks: vec![
            TaskSpec {
                vcpu: 0,
                model: TaskModel::Periodic {
                    period: 10 * MS,
                    exec: 7 * MS,
                    offset: 0,
                },
            },
            TaskSpec {
                vcpu: 1,
                model: TaskModel::Periodic {
                    period: 20 * MS,
                    exec: 14 * MS,
                    offset: 0,
                },
            },
        ],
        timer_granularity: 0,
        duration: 100 * MS,
    };
    let tr = sim::run(&sc).unwrap();
    assert!(check::misses(&tr) > 0);
    assert!(
        tr.iter()
            .filter(|e| matches!(e.kind, EventKind::Miss { .. }))
            .all(|e| e.task == Some(TaskId(2)))
    );
    // Admission would have refused it.
    let mut s = Scheduler::new(Config::default());
    s.create(0, VcpuParams::main(7_000, 10_000)).unwrap();
    assert!(s.create(0, VcpuParams::main(14_000, 20_000)).is_err());
}

#[test]
fn trace_of_an_example_round_trips_and_renders() {
    let sc = sim::example("three-main-one-io").unwrap();
    let tr = sim::run(&sc).unwrap();
    let text = trace::write(&tr);
    assert_eq!(trace::parse(&text).unwrap(), tr);
    let svg = vcpu_sched::svg::render(&tr, &vcpu_sched::svg::PlotOptions::default());
    assert!(svg.starts_with("<?xml"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("main C=2ms T=10ms"));
    assert!(svg.contains("IO U=1ms/10ms"));
}

/// The set from the `ss` module docs that shows invariants 1 and 2 cannot both hold:
/// V1 = (2 ms, 5 ms), V2 = (3 ms, 7 ms), both CPU hogs (RTA: R2 = 5 ms <= 7 ms).
fn ratchet(mode: ReplenishMode) -> (Vec<vcpu_sched::TraceEvent>, u64) {
    let sc = Scenario {
        name: "ratchet".into(),
        pcpus: 1,
        config: Config {
            replenish: mode,
            ..Config::default()
        },
        vcpus: vec![
            VcpuSpec {
                pcpu: 0,
                params: VcpuParams::main(2_000, 5_000),
            },
            VcpuSpec {
                pcpu: 0,
                params: VcpuParams::main(3_000, 7_000),
            },
        ],
        tasks: vec![
            TaskSpec {
                vcpu: 0,
                model: TaskModel::Hog { start: 0 },
            },
            TaskSpec {
                vcpu: 1,
                model: TaskModel::Hog { start: 0 },
            },
        ],
        timer_granularity: 0,
        duration: 700 * MS,
    };
    let tr = sim::run(&sc).unwrap();
    let got = check::service(&tr, 0, 700 * MS)[&(0, VcpuId(1))].0;
    (tr, got)
}

#[test]
fn posix_mode_gives_c_per_period_but_not_the_strict_window() {
    let (tr, got) = ratchet(ReplenishMode::Posix);
    assert_eq!(got, 300 * MS, "100 periods of 3 ms");
    let fg = check::foreground(&tr, 700 * MS);
    let iv = &fg[&(0, VcpuId(1))];
    assert!(check::sliding_window(iv, 3 * MS, 7 * MS, 0).is_err());
    assert!(check::sliding_window(iv, 6 * MS, 7 * MS, 0).is_ok());
}

#[test]
fn sliding_window_mode_keeps_the_window_but_drifts() {
    let (tr, got) = ratchet(ReplenishMode::SlidingWindow);
    let fg = check::foreground(&tr, 700 * MS);
    let iv = &fg[&(0, VcpuId(1))];
    assert_eq!(check::sliding_window(iv, 3 * MS, 7 * MS, 0), Ok(3 * MS));
    // Every release is still consumed within a period of it...
    assert!(check::replenishment_deadlines(&tr, (0, VcpuId(1)), 700 * MS, 0).unwrap() > 0);
    // ...but the releases drift: fewer than 100 periods' worth over 700 ms.
    assert!(got < 300 * MS - 3 * MS, "got {got}");
}
