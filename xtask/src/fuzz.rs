//! `cargo xtask fuzz`: bounded libFuzzer runs of the host fuzz targets (`fuzz/`, cargo-fuzz
//! layout; target bodies in `crates/fuzz-targets`).
//!
//! The toolchain is the pinned stable one. cargo-fuzz needs nightly only for its sanitizers, so
//! the targets run with `--sanitizer none` (the code under test forbids `unsafe`; what is looked
//! for is panics, overflows — built with debug assertions — and broken invariants). cargo-fuzz is
//! installed with `cargo install cargo-fuzz` the first time it is needed (`ensure_cargo_fuzz`).
//!
//! Each run starts from `fuzz/corpus/TARGET/` (checked-in seeds) in a scratch copy, so a run
//! does not change the checked-in corpus; a crash's input is left in `fuzz/artifacts/TARGET/`
//! and should become a file in `fuzz/regressions/TARGET/` plus a test in the parser's crate.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The targets, in `fuzz/Cargo.toml` and `fuzz_targets::TARGETS` order.
pub const TARGETS: &[&str] = &["elf", "cpio", "multiboot2", "partition_toml", "partition_blob", "channels", "usb_descriptors", "fat_volume"];

const USAGE: &str = "\
usage: cargo xtask fuzz [--time SECONDS] [--runs N] [TARGET...]
  runs each fuzz target (default: all) for SECONDS (default 30) or N executions, and prints the
  executions per target; targets: elf cpio multiboot2 partition_toml partition_blob channels";

/// How long each target runs.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    Seconds(u64),
    Runs(u64),
}

pub fn run(args: &[String]) -> Result<()> {
    let mut bound = Bound::Seconds(30);
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => bound = Bound::Seconds(it.next().context("--time needs SECONDS")?.parse().context("--time")?),
            "--runs" => bound = Bound::Runs(it.next().context("--runs needs N")?.parse().context("--runs")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            t if TARGETS.contains(&t) => targets.push(t.to_string()),
            other => bail!("unknown fuzz option or target '{other}'\n\n{USAGE}"),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|s| s.to_string()).collect();
    }
    let results = run_targets(&targets, bound)?;
    print_summary(&results);
    Ok(())
}

pub fn print_summary(results: &[(String, u64)]) {
    println!("xtask: fuzz executions per target:");
    for (t, n) in results {
        println!("  {t:<16} {n:>12}");
    }
}

/// Runs each target for `bound`; returns (target, executions). Fails on a crash.
pub fn run_targets(targets: &[String], bound: Bound) -> Result<Vec<(String, u64)>> {
    let cargo_fuzz = ensure_cargo_fuzz()?;
    let root = crate::root();
    let fuzz = root.join("fuzz");
    let mut results = Vec::new();
    for t in targets {
        let scratch = root.join("target/fuzz-corpus").join(t);
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        for e in std::fs::read_dir(fuzz.join("corpus").join(t)).with_context(|| format!("fuzz/corpus/{t}"))? {
            let p = e?.path();
            if p.is_file() {
                std::fs::copy(&p, scratch.join(p.file_name().unwrap()))?;
            }
        }
        let artifacts = fuzz.join("artifacts").join(t);
        std::fs::create_dir_all(&artifacts)?;
        let mut c = Command::new(&cargo_fuzz);
        c.current_dir(&fuzz)
            .args(["fuzz", "run", "--sanitizer", "none", "--release", "--debug-assertions"])
            .arg(t)
            .arg(&scratch)
            .arg("--")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .arg("-max_len=65536");
        match bound {
            Bound::Seconds(s) => c.arg(format!("-max_total_time={s}")),
            Bound::Runs(n) => c.arg(format!("-runs={n}")),
        };
        // The pinned toolchain is stable: nothing here needs -Z flags, but cargo-fuzz's build
        // passes a few nightly-only ones in some versions.
        c.env("RUSTC_BOOTSTRAP", "1");
        println!("xtask: fuzzing {t} ({bound:?})");
        let out = c.output().with_context(|| format!("running cargo fuzz for {t}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("fuzz target {t} failed (a crash's input is in fuzz/artifacts/{t}/):\n{}", tail.join("\n"));
        }
        let execs = executions(&stderr).with_context(|| format!("no execution count in the output of {t}:\n{stderr}"))?;
        println!("xtask: {t}: {execs} executions, no crash");
        results.push((t.clone(), execs));
    }
    Ok(results)
}

/// libFuzzer's `stat::number_of_executed_units: N` (from -print_final_stats=1).
pub fn executions(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
}

/// cargo-fuzz, installed with `cargo install cargo-fuzz` if it is not there (idempotent).
fn ensure_cargo_fuzz() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let have = Command::new(&cargo).args(["fuzz", "--version"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !have {
        eprintln!("setup: cargo install cargo-fuzz (first fuzzing run on this machine)");
        let st = Command::new(&cargo)
            .args(["install", "--locked", "cargo-fuzz"])
            .current_dir(Path::new("/"))
            .status()
            .context("cargo install cargo-fuzz")?;
        if !st.success() {
            bail!("cargo install cargo-fuzz failed");
        }
    }
    Ok(PathBuf::from(cargo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_count_is_read_from_final_stats() {
        let s = "INFO: seed\n#1024 DONE cov: 10\nstat::number_of_executed_units: 123456\nstat::average_exec_per_sec: 100\n";
        assert_eq!(executions(s), Some(123456));
        assert_eq!(executions("nothing"), None);
    }

    #[test]
    fn targets_match_the_fuzz_workspace() {
        let toml = std::fs::read_to_string(crate::root().join("fuzz/Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(toml.contains(&format!("name = \"{t}\"")), "{t} not in fuzz/Cargo.toml");
            assert!(crate::root().join(format!("fuzz/fuzz_targets/{t}.rs")).is_file());
            assert!(crate::root().join(format!("fuzz/corpus/{t}")).is_dir());
        }
    }
}
