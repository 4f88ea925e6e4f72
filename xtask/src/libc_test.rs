//! `cargo xtask libc-test --src DIR`: the conformance measurement of issue 22 — musl's
//! libc-test (its `functional` and `regression` tests), built statically with musl-gcc, run on
//! Quest-RS and on Debian's Linux in the same emulated machine; writes
//! target/libc-test/results.md with both pass counts and each test's result.
//!
//! libc-test's sources are not part of this repository: DIR is a checkout of it (upstream
//! `git://repo.or.cz/libc-test`; docs/conformance.md names the commit measured). Not built:
//! the `math` tests (pure computation in libc, nothing of the kernel: they would add the same
//! count on both sides) and the tests that need shared objects or `dlopen` (those with a `.mk`
//! file: Quest runs static programs only). A test that does not build is listed and counted on
//! neither side.
//!
//! Each system boots once and runs every test in a child with a time limit
//! (`user/tools/libc_test_run.c`, the same static binary on both: in Quest's shell, and as
//! Linux's init). Busybox (Debian's `busybox-static`) is `/bin/sh` on both, for `popen` and
//! `system`.
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::root;

const USAGE: &str = "libc-test --src DIR [--label TEXT] [--limit S] [--quest-only | --linux-only]";

/// libc-test's compiler flags (its config.mak.def, without the glibc-only parts), static.
const CFLAGS: &[&str] = &[
    "-static",
    "-fno-pie",
    "-no-pie",
    "-pipe",
    "-std=c99",
    "-D_POSIX_C_SOURCE=200809L",
    "-Wno-unused-function",
    "-Wno-missing-braces",
    "-Wno-unused",
    "-Wno-overflow",
    "-Wno-unknown-pragmas",
    "-fno-builtin",
    "-frounding-math",
    "-Werror=implicit-function-declaration",
    "-Werror=implicit-int",
    "-Werror=pointer-sign",
    "-Werror=pointer-arith",
    "-g",
];
const LIBS: &[&str] = &["-lpthread", "-lm", "-lrt"];

pub fn run(args: &[String]) -> Result<()> {
    let mut src: Option<PathBuf> = None;
    let mut limit = 10u32;
    let mut label: Option<String> = None;
    let (mut quest, mut linux) = (true, true);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--src" => src = Some(PathBuf::from(it.next().context("--src needs a directory")?)),
            "--label" => label = Some(it.next().context("--label needs a text (e.g. the libc-test commit)")?.clone()),
            "--limit" => limit = it.next().context("--limit needs seconds")?.parse().context("--limit: a number of seconds")?,
            "--quest-only" => linux = false,
            "--linux-only" => quest = false,
            other => bail!("libc-test: unknown option '{other}'\n\nusage: {USAGE}"),
        }
    }
    let src = src.with_context(|| format!("libc-test needs --src DIR (a checkout of musl's libc-test)\n\nusage: {USAGE}"))?;
    if !src.join("src/common/test.h").is_file() {
        bail!("{}: not a libc-test checkout (no src/common/test.h)", src.display());
    }
    let out = root().join("target/libc-test");
    let (tests, unbuilt) = build(&src, &out)?;
    println!("libc-test: {} tests built, {} did not build", tests.len(), unbuilt.len());
    let list = out.join("libc-tests");
    fs::write(&list, tests.iter().map(|t| format!("{t}\n")).collect::<String>())?;
    let runner = out.join("libc_test_run");
    crate::cc::cc(&runner, &[root().join("user/tools/libc_test_run.c")])?;
    let busybox = crate::debian::busybox()?;
    let mut files: Vec<PathBuf> = tests.iter().map(|t| out.join("bin").join(t)).collect();
    files.push(list);
    files.push(busybox);
    let t = crate::tools(false)?;
    // Every test may take the whole limit (guest time) plus its start; the boot on top.
    let timeout = Duration::from_secs(120 + u64::from(limit + 3) * tests.len() as u64);
    let quest_out = if quest {
        let mut add = files.clone();
        add.push(runner.clone());
        let img = crate::image::build_with("kernel-release", false, "libc-test", &crate::boot_files(&add)?)?;
        let cfg = quest_tests::Config {
            qemu: t.qemu.clone(),
            iso: img.iso,
            firmware: quest_tests::Firmware::Bios,
            smp: 1,
            mem_mib: 256,
            cpu: "max".into(),
            icount: false,
            echo: std::env::var_os("QUEST_ECHO").is_some(),
            extra_args: vec![],
            timeout,
            settle: None,
        };
        let mut q = quest_tests::Quest::boot(&cfg)?;
        let text = q.shell(&format!("libc_test_run {limit}"))?;
        q.power_off_ok()?;
        Some(text)
    } else {
        None
    };
    let linux_out = if linux {
        let k = crate::debian::kernel()?;
        Some(quest_tests::linux::run_init_with(&t.qemu, &k.vmlinuz, &runner, &files, &[&limit.to_string()], timeout)?)
    } else {
        None
    };
    let q = quest_out.as_deref().map(results);
    let l = linux_out.as_deref().map(results);
    let label = label.unwrap_or_else(|| format!("from {}", src.display()));
    let md = report(&label, &tests, &unbuilt, q.as_ref(), l.as_ref(), limit);
    fs::write(out.join("results.md"), &md)?;
    if let Some(text) = &quest_out {
        fs::write(out.join("quest.log"), text)?;
    }
    if let Some(text) = &linux_out {
        fs::write(out.join("linux.log"), text)?;
    }
    println!("{}", md.lines().take_while(|l| !l.starts_with("| test")).collect::<Vec<_>>().join("\n"));
    println!("libc-test: wrote {}", out.join("results.md").display());
    Ok(())
}

/// (test name, passed) from a runner's output.
fn results(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("libc-test: "))
        .filter_map(|r| {
            let (name, rest) = r.split_once(' ')?;
            match rest {
                "ok" => Some((name.to_string(), true)),
                _ if rest.starts_with("FAILED") => Some((name.to_string(), false)),
                _ => None,
            }
        })
        .collect()
}

fn report(label: &str, tests: &[String], unbuilt: &[String], q: Option<&Vec<(String, bool)>>, l: Option<&Vec<(String, bool)>>, limit: u32) -> String {
    let pass = |r: Option<&Vec<(String, bool)>>, t: &str| r.and_then(|v| v.iter().find(|(n, _)| n == t).map(|x| x.1));
    let count = |r: Option<&Vec<(String, bool)>>| tests.iter().filter(|t| pass(r, t) == Some(true)).count();
    let both = tests.iter().filter(|t| pass(q, t) == Some(true) && pass(l, t) == Some(true)).count();
    let (nq, nl) = (count(q), count(l));
    let mut s = String::new();
    let _ = writeln!(s, "# musl libc-test on Quest-RS and Linux\n");
    let _ = writeln!(s, "libc-test {} (functional + regression, static, musl-gcc); {} tests built, {} not; limit {limit} s per test.\n", label, tests.len(), unbuilt.len());
    if q.is_some() {
        let _ = writeln!(s, "- Quest-RS passes {nq} of {}", tests.len());
    }
    if l.is_some() {
        let _ = writeln!(s, "- Linux passes {nl} of {}", tests.len());
    }
    if q.is_some() && l.is_some() && nl > 0 {
        let _ = writeln!(s, "- Quest-RS passes {both} of the {nl} Linux passes: {:.1} %", 100.0 * both as f64 / nl as f64);
    }
    let _ = writeln!(s, "\nNot built: {}\n", if unbuilt.is_empty() { "none".into() } else { unbuilt.join(", ") });
    let _ = writeln!(s, "| test | Quest-RS | Linux |\n|---|---|---|");
    let show = |p: Option<bool>| match p {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "—",
    };
    for t in tests {
        let _ = writeln!(s, "| {t} | {} | {} |", show(pass(q, t)), show(pass(l, t)));
    }
    s
}

/// Builds libtest (src/common) and every test of `functional` and `regression` that needs no
/// shared object into `out/bin` (names `f-NAME`, `r-NAME`); returns (built, not built).
fn build(src: &Path, out: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let obj = out.join("obj");
    fs::create_dir_all(&obj)?;
    fs::create_dir_all(out.join("bin"))?;
    // options.h: the POSIX option macros <unistd.h> defines (libc-test's Makefile derives it
    // with the preprocessor the same way).
    let pre = Command::new("musl-gcc").args(["-E", "-x", "c"]).arg(src.join("src/common/options.h.in")).output().context("running musl-gcc -E")?;
    if !pre.status.success() {
        bail!("musl-gcc -E options.h.in failed: {}", String::from_utf8_lossy(&pre.stderr));
    }
    let text = String::from_utf8_lossy(&pre.stdout);
    let mut opts = String::new();
    let mut started = false;
    for line in text.lines() {
        if line.contains("optiongroups_unistd_end") {
            started = true;
            continue;
        }
        if !started || line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let _ = writeln!(opts, "#define {line}");
    }
    fs::write(obj.join("options.h"), opts)?;
    let mut common: Vec<PathBuf> = Vec::new();
    for e in sorted(&src.join("src/common"))? {
        let name = e.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !name.ends_with(".c") || name == "runtest.c" {
            continue;
        }
        let o = obj.join(name.replace(".c", ".o"));
        let st = Command::new("musl-gcc").args(CFLAGS).arg("-c").arg("-I").arg(&obj).arg("-I").arg(src.join("src/common")).arg(&e).arg("-o").arg(&o).status()?;
        if !st.success() {
            bail!("libtest: {} does not build", e.display());
        }
        common.push(o);
    }
    let (mut built, mut unbuilt) = (Vec::new(), Vec::new());
    for (dir, prefix) in [("functional", "f-"), ("regression", "r-")] {
        for e in sorted(&src.join("src").join(dir))? {
            let file = e.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let Some(stem) = file.strip_suffix(".c") else { continue };
            if stem.ends_with("_dso") || e.with_extension("mk").exists() {
                continue; // shared objects / dlopen: not for static Quest programs
            }
            let name = format!("{prefix}{stem}");
            let bin = out.join("bin").join(&name);
            let o = Command::new("musl-gcc")
                .args(CFLAGS)
                .arg("-I")
                .arg(&obj)
                .arg("-I")
                .arg(src.join("src/common"))
                .arg(&e)
                .args(&common)
                .args(LIBS)
                .arg("-o")
                .arg(&bin)
                .output()?;
            if o.status.success() {
                built.push(name);
            } else {
                unbuilt.push(name);
            }
        }
    }
    Ok((built, unbuilt))
}

fn sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}
