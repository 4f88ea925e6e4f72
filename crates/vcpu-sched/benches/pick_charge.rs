//! Cost of one scheduling event (`pick`, which charges first) against the number of VCPUs.
//!
//! Every VCPU is a Main VCPU with a CPU-bound task, so the ready and release sets are full;
//! each iteration advances time to the timer `pick` asked for (budget exhaustion or a
//! replenishment) and calls `pick` again: exactly what the kernel does on a timer interrupt.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vcpu_sched::{Config, Scheduler, TaskId, VcpuParams};

fn setup(n: u32) -> (Scheduler, u64) {
    let mut s = Scheduler::new(Config {
        admission: None,
        ..Config::default()
    });
    for i in 0..n {
        // Periods 1..=n ms, 1/(2n) utilization each: feasible, all distinct priorities.
        let t_us = 1_000 * (i + 1);
        let c_us = (t_us / (2 * n)).max(1);
        let v = s.create(0, VcpuParams::main(c_us, t_us)).unwrap();
        s.add_task(0, TaskId(i), v).unwrap();
        s.wake(0, TaskId(i)).unwrap();
    }
    let d = s.pick(0);
    (s, d.timer.unwrap_or(1))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick_charge");
    for n in [1u32, 4, 16, 64, 256] {
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let (mut s, mut next) = setup(n);
            b.iter(|| {
                s.charge(next);
                let d = s.pick(black_box(next));
                next = d.timer.unwrap_or(next + 1_000);
                black_box(d.run);
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
