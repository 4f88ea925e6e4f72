//! rt-tests' `cyclictest` (the standard real-time latency tool), unmodified, as a static musl
//! program that runs on Quest-RS and on Linux (issue 25): `cargo xtask rt-tests` builds it into
//! target/rt-tests/cyclictest; `cargo xtask test` and `cargo xtask bench` use it.
//!
//! Debian's `rt-tests` binary is linked dynamically against glibc and Quest runs static
//! programs only, so cyclictest is built from source, as libc-test is (`libc_test.rs`):
//!
//! * **The source**: Debian's source package `rt-tests` (the version the binary package has),
//!   fetched with `apt-get source` into target/debian-src/rt-tests (once; a second run finds it
//!   there) through a private `deb-src` list made from the configured `deb` repositories
//!   (`apt-get indextargets`), so the host's apt configuration is not changed. Where that mirror
//!   does not serve the source tarball (seen here: it serves the .dsc but answers 404 for the
//!   tarballs), `QUEST_RT_TESTS_SRC=DIR` names an unpacked rt-tests source tree instead (an
//!   upstream release or checkout, e.g. tag v2.4); nothing else is downloaded.
//! * **libnuma**: rt-tests 2.x needs it (Debian builds with `libnuma-dev`). Debian's
//!   `libnuma.a` is built for glibc, so libnuma is built here with musl from Debian's source
//!   package `numactl` (fetched the same way, or `QUEST_NUMACTL_SRC=DIR`): the library's own
//!   files, no configure step (its config.h holds one macro).
//! * **The build**: rt-tests' Makefile compiles cyclictest.c with the files of src/lib; the same
//!   here with `musl-gcc -static`. Two musl differences are bridged without changing a source
//!   line: cyclictest names `struct sigevent`'s thread id by glibc's internal field names
//!   (`_sigev_un._tid`), mapped to musl's by `-D` on the command line; and musl answers the
//!   process scheduling calls (`sched_getscheduler`, `sched_getparam`, `sched_setscheduler`,
//!   `sched_setparam`) with ENOSYS by design, where glibc makes the system call —
//!   user/compat/glibc_sched.c, linked first, gives glibc's behaviour. Linux's UAPI headers
//!   (`linux/rtnetlink.h`, `asm/unistd.h`, for libnuma) come from Debian's `linux-libc-dev`
//!   through a directory of links searched after musl's own headers.
//!
//! One difference is left to the command line: cyclictest turns on its NUMA mode by itself when
//! the kernel has NUMA (Debian's Linux does; Quest answers `get_mempolicy` with ENOSYS, as a
//! kernel without NUMA does), and that mode calls `pthread_attr_getstack` on an attribute with
//! no stack set, which glibc answers with 0 and musl with EINVAL ("failed to get stack size for
//! thread 0"). `-S` (one thread per CPU, pinned, no NUMA) avoids it; see docs/benchmarks.md.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::root;

/// The options the QEMU test and the benchmark run cyclictest with (before `-l LOOPS`):
/// `-S` one measuring thread per CPU, pinned to it (on these 1-CPU machines: one thread on
/// CPU 0); `-p 80` SCHED_FIFO priority 80; `-i 1000` a 1 ms interval; `-m` mlockall; `-q`
/// only the summary at the end; `-N` latencies in ns. cyclictest's default wait is
/// `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`.
pub const OPTIONS: &[&str] = &["-S", "-p", "80", "-i", "1000", "-m", "-q", "-N"];

/// The numactl files that make libnuma (its Makefile.am's `libnuma_la_SOURCES`).
const LIBNUMA_SOURCES: &[&str] = &["libnuma.c", "syscall.c", "distance.c", "affinity.c", "sysfs.c", "rtnetlink.c"];

/// The rt-tests files cyclictest is linked from (its Makefile's cyclictest rule: cyclictest.o,
/// the members of librttest and librttestnuma it uses).
const CYCLICTEST_SOURCES: &[&str] = &["src/cyclictest/cyclictest.c", "src/lib/rt-utils.c", "src/lib/rt-error.c", "src/lib/rt-numa.c", "src/lib/rt-sched.c"];

pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("rt-tests: unknown option '{a}' (usage: cargo xtask rt-tests; QUEST_RT_TESTS_SRC=DIR names a source tree)");
    }
    let c = cyclictest()?;
    println!("xtask: {} (rt-tests {}); run it with: cargo xtask run --add {}", c.bin.display(), c.version, c.bin.display());
    Ok(())
}

/// A built cyclictest.
#[derive(Clone, Debug)]
pub struct Cyclictest {
    pub bin: PathBuf,
    /// rt-tests' version (its Makefile's VERSION).
    pub version: String,
}

/// Builds cyclictest (fetching the sources on first use); the binary is target/rt-tests/cyclictest.
pub fn cyclictest() -> Result<Cyclictest> {
    crate::tools(false)?; // musl-gcc
    ensure_host_packages()?;
    let rt = source("rt-tests", "QUEST_RT_TESTS_SRC", "src/cyclictest/cyclictest.c")?;
    let numa = source("numactl", "QUEST_NUMACTL_SRC", "libnuma.c")?;
    let version = rt_tests_version(&fs::read_to_string(rt.join("Makefile")).context("rt-tests has no Makefile")?)
        .context("rt-tests' Makefile names no VERSION")?;
    let out = root().join("target/rt-tests");
    fs::create_dir_all(&out)?;
    let kinc = linux_headers(&out)?;
    let libnuma = build_libnuma(&numa, &out, &kinc)?;
    let bin = out.join("cyclictest");
    let mut cmd = Command::new("musl-gcc");
    cmd.args(["-static", "-fno-pie", "-no-pie", "-O2", "-g", "-w", "-D_GNU_SOURCE"])
        .arg(format!("-DVERSION={version}"))
        // glibc's private names for the thread id of a SIGEV_THREAD_ID sigevent, as musl spells it.
        .args(["-D_sigev_un=__sev_fields", "-D_tid=sigev_notify_thread_id"])
        .arg("-I")
        .arg(rt.join("src/include"))
        .arg("-I")
        .arg(&numa)
        .arg("-idirafter")
        .arg(&kinc)
        .arg(root().join("user/compat/glibc_sched.c"));
    for s in CYCLICTEST_SOURCES {
        cmd.arg(rt.join(s));
    }
    cmd.arg(&libnuma).args(["-lpthread", "-lrt", "-o"]).arg(&bin);
    let o = cmd.output().context("running musl-gcc")?;
    if !o.status.success() {
        bail!("building cyclictest failed:\n{}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(Cyclictest { bin, version })
}

/// `VERSION = 2.4` → "2.4".
pub fn rt_tests_version(makefile: &str) -> Option<String> {
    makefile.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "VERSION").then(|| v.trim().to_string()).filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))
    })
}

/// dpkg-source (`apt-get source` unpacks with it) and Linux's UAPI headers, installed if missing.
fn ensure_host_packages() -> Result<()> {
    let mut missing = Vec::new();
    if crate::setup::which("dpkg-source").is_none() {
        missing.push("dpkg-dev");
    }
    if !Path::new("/usr/include/linux/rtnetlink.h").is_file() {
        missing.push("linux-libc-dev");
    }
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing {} (to build cyclictest)", missing.join(" "));
    let st = Command::new("apt-get").args(["install", "-y", "--no-install-recommends"]).args(&missing).status().context("running apt-get install")?;
    if !st.success() {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

/// The source tree of Debian source package `pkg`: `$env` if set, else target/debian-src/PKG/src
/// (fetched with `apt-get source` on first use). `marker` is a file every tree of it has.
fn source(pkg: &str, env: &str, marker: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(env).map(PathBuf::from) {
        if !dir.join(marker).is_file() {
            bail!("{env}={}: not a {pkg} source tree (no {marker})", dir.display());
        }
        return Ok(dir);
    }
    let dir = root().join("target/debian-src").join(pkg);
    let src = dir.join("src");
    if src.join(".complete").is_file() {
        return Ok(src);
    }
    apt_source(pkg, &dir).with_context(|| {
        format!("could not fetch Debian's source package {pkg}; set {env}=DIR to an unpacked {pkg} source tree instead")
    })?;
    if !src.join(marker).is_file() {
        bail!("Debian's {pkg} source has no {marker}");
    }
    fs::write(src.join(".complete"), pkg)?;
    Ok(src)
}

/// `deb-src` lines for the repositories apt is configured with (their `deb` index targets),
/// the plain release suites first.
pub fn deb_src_lines(indextargets: &str) -> Vec<String> {
    let mut v: Vec<String> = indextargets
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[3] == "Packages").then(|| format!("deb-src {} {} {}", f[0], f[1], f[2]))
        })
        .collect();
    // The release's own suite first (apt takes a source package from the first list that has
    // it, and a security or updates suite may list a version whose files it does not hold).
    v.sort_by_key(|l| (l.split_whitespace().nth(2).is_some_and(|suite| suite.contains('-')), l.clone()));
    v.dedup();
    v
}

/// `apt-get source PKG` into `dir/src`, with a private source list and package lists under
/// target/debian-src/apt (the host's apt configuration is left alone).
fn apt_source(pkg: &str, dir: &Path) -> Result<()> {
    let apt = root().join("target/debian-src/apt");
    let lists = apt.join("lists");
    fs::create_dir_all(lists.join("partial"))?;
    fs::create_dir_all(apt.join("cache/archives/partial"))?;
    let o = Command::new("apt-get")
        .args(["indextargets", "--format", "$(REPO_URI) $(RELEASE) $(COMPONENT) $(CREATED_BY)"])
        .output()
        .context("running apt-get indextargets")?;
    let lines = deb_src_lines(&String::from_utf8_lossy(&o.stdout));
    if lines.is_empty() {
        bail!("apt has no configured Debian repository (apt-get indextargets lists no Packages index; run apt-get update)");
    }
    fs::write(apt.join("sources.list"), lines.join("\n") + "\n")?;
    let opts = |c: &mut Command| {
        c.arg("-o")
            .arg(format!("Dir::Etc::SourceList={}", apt.join("sources.list").display()))
            .args(["-o", "Dir::Etc::SourceParts=/dev/null", "-o"])
            .arg(format!("Dir::State::Lists={}", lists.display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", apt.join("cache").display()));
    };
    let have_lists = fs::read_dir(&lists)?.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().ends_with("_Sources"));
    if !have_lists {
        println!("xtask: apt-get update of the source lists (private, in target/debian-src/apt)");
        let mut c = Command::new("apt-get");
        opts(&mut c);
        if !c.arg("update").status().context("running apt-get update")?.success() {
            bail!("apt-get update of the deb-src lists failed");
        }
    }
    let work = dir.join("work");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    println!("xtask: fetching Debian's source package {pkg} (apt-get source)");
    let mut c = Command::new("apt-get");
    opts(&mut c);
    let st = c.args(["source", pkg]).current_dir(&work).status().context("running apt-get source")?;
    if !st.success() {
        bail!("apt-get source {pkg} failed");
    }
    let tree = fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .with_context(|| format!("apt-get source {pkg} unpacked nothing"))?;
    let src = dir.join("src");
    if src.exists() {
        fs::remove_dir_all(&src)?;
    }
    fs::rename(&tree, &src)?;
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// A directory holding only Linux's UAPI headers (`linux`, `asm`, `asm-generic`: links into
/// Debian's linux-libc-dev), searched after musl's headers so glibc's are never seen.
fn linux_headers(out: &Path) -> Result<PathBuf> {
    let kinc = out.join("linux-uapi");
    fs::create_dir_all(&kinc)?;
    for (name, target) in [("linux", "/usr/include/linux"), ("asm-generic", "/usr/include/asm-generic"), ("asm", "/usr/include/x86_64-linux-gnu/asm")] {
        let link = kinc.join(name);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(target, &link).with_context(|| format!("linking {}", link.display()))?;
        }
    }
    Ok(kinc)
}

/// libnuma.a, built with musl from numactl's source `numa`.
fn build_libnuma(numa: &Path, out: &Path, kinc: &Path) -> Result<PathBuf> {
    let obj = out.join("libnuma");
    fs::create_dir_all(&obj)?;
    // numactl's configure defines this one macro for a compiler with the symver attribute
    // (GCC ≥ 10): libnuma's versioned symbols.
    fs::write(obj.join("config.h"), "#define HAVE_ATTRIBUTE_SYMVER 1\n")?;
    let mut objs = Vec::new();
    for s in LIBNUMA_SOURCES {
        let o = obj.join(s.replace(".c", ".o"));
        let r = Command::new("musl-gcc")
            .args(["-static", "-O2", "-w", "-D_GNU_SOURCE", "-c"])
            .arg("-I")
            .arg(&obj)
            .arg("-I")
            .arg(numa)
            .arg("-idirafter")
            .arg(kinc)
            .arg(numa.join(s))
            .arg("-o")
            .arg(&o)
            .output()
            .context("running musl-gcc")?;
        if !r.status.success() {
            bail!("building libnuma ({s}) failed:\n{}", String::from_utf8_lossy(&r.stderr));
        }
        objs.push(o);
    }
    let lib = out.join("libnuma.a");
    let _ = fs::remove_file(&lib);
    let st = Command::new("ar").arg("rcs").arg(&lib).args(&objs).status().context("running ar")?;
    if !st.success() {
        bail!("ar failed making {}", lib.display());
    }
    Ok(lib)
}

/// cyclictest's summary line for thread `t` (`-q`): (priority, interval µs, cycles, min, act,
/// avg, max); the latencies in cyclictest's unit (ns with `-N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub prio: u32,
    pub interval_us: u64,
    pub cycles: u64,
    pub min: u64,
    pub act: u64,
    pub avg: u64,
    pub max: u64,
}

/// Parses `T: 0 (  123) P:80 I:1000 C:   1000 Min:   2852 Act:   3020 Avg:   2999 Max:   7698`.
pub fn parse_summary(out: &str, thread: u32) -> Option<Summary> {
    let want = format!("T:{thread:>2} ");
    let line = out.lines().map(str::trim_start).find(|l| l.starts_with(&want))?;
    let field = |key: &str| -> Option<u64> {
        let rest = line.split(key).nth(1)?.trim_start();
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    Some(Summary {
        prio: field(" P:")? as u32,
        interval_us: field(" I:")?,
        cycles: field(" C:")?,
        min: field(" Min:")?,
        act: field(" Act:")?,
        avg: field(" Avg:")?,
        max: field(" Max:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_parse() {
        let out = "WARN: stat /dev/cpu_dma_latency failed: No such file or directory\r\n\
                   T: 0 (    7) P:80 I:1000 C:    200 Min:   2852 Act:   3020 Avg:   2999 Max:   7698\r\n\
                   T: 1 (23061) P:80 I:1500 C:    144 Min:  20324 Act:   25197 Avg:   57506 Max: 1900226\n";
        let s = parse_summary(out, 0).unwrap();
        assert_eq!(s, Summary { prio: 80, interval_us: 1000, cycles: 200, min: 2852, act: 3020, avg: 2999, max: 7698 });
        assert_eq!(parse_summary(out, 1).unwrap().max, 1_900_226);
        assert_eq!(parse_summary(out, 2), None);
        assert_eq!(parse_summary("T: 0 (7) P:80 I:1000 C:", 0), None);
    }

    #[test]
    fn version_and_source_lists() {
        assert_eq!(rt_tests_version("VERSION = 2.4\nCC = gcc\n").as_deref(), Some("2.4"));
        assert_eq!(rt_tests_version("VERSION_STRING = 0.83\n"), None);
        let t = "http://m/debian/ bookworm main Packages\nhttp://m/debian/ bookworm main DEP-11\n\
                 http://m/debian/ bookworm main Packages\nhttp://m/security/ bookworm-security main Packages\n";
        let t = format!("http://m/security/ bookworm-security main Packages\n{t}");
        assert_eq!(deb_src_lines(&t), ["deb-src http://m/debian/ bookworm main", "deb-src http://m/security/ bookworm-security main"]);
    }
}
