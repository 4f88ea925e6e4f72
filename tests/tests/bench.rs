//! Smoke test of the benchmark harness (`cargo xtask bench`): the benchmark program runs on
//! Quest-RS and its output parses. Numbers are not checked (this is not an -icount run), and
//! the Linux side is not run in CI (see docs/benchmarks.md).
use anyhow::Result;
use quest_tests::{Config, Quest, bench};

#[test]
fn qbench_runs_and_its_output_parses() -> Result<()> {
    let mut q = Quest::boot(&Config::from_env(false)?)?;
    let out = q.shell("qbench --quick null_syscall futex_pingpong timerfd")?;
    let r = bench::parse(&out);
    assert!(r.done, "{out}");
    for name in ["boot_to_user", "null_syscall", "futex_pingpong", "timerfd_latency"] {
        let s = r.get(name).unwrap_or_else(|| panic!("no {name} in:\n{out}"));
        assert_eq!(s.unit, "ns");
        assert!(s.median > 0 && s.max >= s.median, "{s:?}");
    }
    assert_eq!(r.get("null_syscall").unwrap().n, 1000);
    assert_eq!(r.get("timerfd_latency").unwrap().n, 200, "the timerfd loop's 200 periods");
    assert!(r.hist.contains_key("timerfd_latency"), "{out}");
    assert!(r.get("pipe_pingpong").is_none(), "only the named benchmarks run");
    assert!(!out.contains("not implemented"), "{out}");
    q.power_off_ok()?;
    Ok(())
}
