//! Properties of the multiprocessor placement rules (`vcpu_sched::placement`).
use proptest::prelude::*;
use vcpu_sched::placement::{CpuLoad, CpuMask, fit_order, least_loaded, pull_source};

fn loads() -> impl Strategy<Value = Vec<CpuLoad>> {
    prop::collection::vec((0u32..6, 0u32..700_000), 1..8).prop_map(|v| {
        v.into_iter().enumerate().map(|(cpu, (r, u))| CpuLoad { cpu, best_effort_runnable: r, reserved_ppm: u }).collect()
    })
}

proptest! {
    /// The chosen CPU is allowed and no allowed CPU has fewer runnable best-effort threads.
    #[test]
    fn least_loaded_is_a_minimum(ls in loads(), bits in 0u64..256) {
        let mut m = CpuMask::EMPTY;
        for i in 0..8 { if bits & (1 << i) != 0 { m.set(i); } }
        match least_loaded(&ls, &m) {
            None => prop_assert!(ls.iter().all(|l| !m.has(l.cpu))),
            Some(c) => {
                prop_assert!(m.has(c));
                let me = ls.iter().find(|l| l.cpu == c).unwrap();
                for l in ls.iter().filter(|l| m.has(l.cpu)) {
                    prop_assert!(me.best_effort_runnable <= l.best_effort_runnable);
                }
            }
        }
    }

    /// Placing threads one by one never leaves two allowed CPUs more than one thread apart if
    /// they started equal.
    #[test]
    fn placement_keeps_counts_even(n in 1usize..8, k in 0usize..40) {
        let mut ls: Vec<CpuLoad> = (0..n).map(|cpu| CpuLoad { cpu, best_effort_runnable: 0, reserved_ppm: 0 }).collect();
        for _ in 0..k {
            let c = least_loaded(&ls, &CpuMask::first(n)).unwrap();
            ls[c].best_effort_runnable += 1;
        }
        let max = ls.iter().map(|l| l.best_effort_runnable).max().unwrap();
        let min = ls.iter().map(|l| l.best_effort_runnable).min().unwrap();
        prop_assert!(max - min <= 1);
    }

    /// A pull leaves the source at least one runnable thread and never widens the gap between
    /// the source and the puller (so threads cannot ping-pong), and repeated pulls by idle CPUs
    /// end (each pull lowers the sum of squares of the counts).
    #[test]
    fn pulls_are_safe_and_terminate(mut ls in loads()) {
        let n = ls.len();
        let mut steps = 0;
        loop {
            let idle = ls.iter().position(|l| l.best_effort_runnable == 0);
            let Some(me) = idle else { break };
            let Some(src) = pull_source(&ls, me) else { break };
            prop_assert!(src != me);
            let before = ls[src].best_effort_runnable;
            prop_assert!(before >= 2);
            let sq: u64 = ls.iter().map(|l| u64::from(l.best_effort_runnable).pow(2)).sum();
            ls[src].best_effort_runnable -= 1;
            ls[me].best_effort_runnable += 1;
            prop_assert!(ls[src].best_effort_runnable >= 1);
            let sq2: u64 = ls.iter().map(|l| u64::from(l.best_effort_runnable).pow(2)).sum();
            prop_assert!(sq2 < sq);
            steps += 1;
            prop_assert!(steps <= 6 * n);
        }
    }

    /// Worst fit tries every allowed CPU exactly once, least reserved first.
    #[test]
    fn fit_order_is_a_sorted_permutation(ls in loads()) {
        let all = CpuMask::first(8);
        let o = fit_order(&ls, &all);
        prop_assert_eq!(o.len(), ls.len());
        for w in o.windows(2) {
            prop_assert!(ls[w[0]].reserved_ppm <= ls[w[1]].reserved_ppm);
        }
    }
}
