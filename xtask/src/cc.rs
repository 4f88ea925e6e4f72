//! `cargo xtask cc`: builds user programs for Quest-RS.
//!
//! Quest-RS runs static ELF64 Linux x86-64 executables from `/boot`. A C program is built with
//! musl's GCC wrapper:
//!
//! ```text
//! musl-gcc -static -fno-pie -no-pie -O2 -Wall -Wno-main -I user/include \
//!          FILE.c... user/libquest/c/{quest,shmcomm,shmcomm_sys}.c -lpthread -o OUT
//! ```
//!
//! * **static, non-PIE**: one `PT_LOAD` image at a fixed address (0x400000), no interpreter, no
//!   relocations — the simplest thing for the kernel's loader: map the segments, build the
//!   stack, jump to `e_entry`.
//! * `-I user/include` gives `<vcpu.h>`, `<quest.h>` and `<quest_compat.h>`; `quest.c` is the
//!   C side of the Quest calls (`vcpu_create` …), linked into every program.
//! * `-Wno-main`: the seed's programs use `void main()`.
//!
//! Rust programs (`user/examples/hello_rust`) are built with cargo for
//! `x86_64-unknown-linux-musl` with `-C relocation-model=static -C target-feature=+crt-static`,
//! which makes the same kind of executable (Rust's default for that target is a static PIE).
//!
//! [`build_examples`] builds everything in `user/examples/` for the `/boot` image.
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The C compiler driver (Debian's `musl-tools`).
const MUSL_GCC: &str = "musl-gcc";
/// The Rust target of user programs.
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// Flags for every C program (see the module documentation).
const CFLAGS: &[&str] = &[
    "-static",
    "-fno-pie",
    "-no-pie",
    "-O2",
    "-Wall",
    "-Wno-main",
];
/// Libraries, after the sources.
const LIBS: &[&str] = &["-lpthread"];
/// rustc flags for Rust user programs: a static, non-PIE executable.
const RUSTFLAGS: &[&str] = &["-Crelocation-model=static", "-Ctarget-feature=+crt-static"];
/// Where the Rust examples are (each a standalone cargo package), relative to the root.
const RUST_EXAMPLES: &[&str] = &["user/examples/hello_rust", "user/examples/tokio_evloop"];

const USAGE: &str = "\
usage: cargo xtask cc -o OUT FILE.c...    build a static Quest-RS program with musl-gcc
       cargo xtask cc --examples DIR      build every program in user/examples/ into DIR

FILE may be any input musl-gcc accepts (.c, .S, .o, .a); <vcpu.h>, <quest.h> and
<quest_compat.h> are on the include path and the Quest calls (user/libquest/c/quest.c) are
linked in.";

/// Root of the workspace (the directory above `xtask/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a subdirectory of the workspace")
        .to_path_buf()
}

/// What `cargo xtask cc` was asked to do.
#[derive(Debug, PartialEq, Eq)]
enum CcArgs {
    /// `-o OUT FILE...`
    Compile { out: PathBuf, sources: Vec<PathBuf> },
    /// `--examples DIR`
    Examples { out_dir: PathBuf },
    /// `-h` / `--help`
    Help,
}

impl CcArgs {
    fn parse(args: &[String]) -> Result<CcArgs> {
        let mut out: Option<PathBuf> = None;
        let mut examples: Option<PathBuf> = None;
        let mut sources = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-h" | "--help" => return Ok(CcArgs::Help),
                "-o" => {
                    let v = it.next().context("-o needs a value (the output file)")?;
                    if out.replace(PathBuf::from(v)).is_some() {
                        bail!("-o given twice\n\n{USAGE}");
                    }
                }
                "--examples" => {
                    let v = it
                        .next()
                        .context("--examples needs a value (a directory)")?;
                    if examples.replace(PathBuf::from(v)).is_some() {
                        bail!("--examples given twice\n\n{USAGE}");
                    }
                }
                s if s.starts_with("-o") && s.len() > 2 => {
                    if out.replace(PathBuf::from(&s[2..])).is_some() {
                        bail!("-o given twice\n\n{USAGE}");
                    }
                }
                s if s.starts_with('-') => bail!("unknown option '{s}'\n\n{USAGE}"),
                s => sources.push(PathBuf::from(s)),
            }
        }
        match (out, examples) {
            (Some(_), Some(_)) => bail!("-o and --examples do not go together\n\n{USAGE}"),
            (None, Some(out_dir)) if sources.is_empty() => Ok(CcArgs::Examples { out_dir }),
            (None, Some(_)) => bail!("--examples takes no source files\n\n{USAGE}"),
            (Some(out), None) if !sources.is_empty() => Ok(CcArgs::Compile { out, sources }),
            (Some(_), None) => bail!("no source files\n\n{USAGE}"),
            (None, None) if sources.is_empty() => Ok(CcArgs::Help),
            (None, None) => bail!("missing -o OUT\n\n{USAGE}"),
        }
    }
}

/// `cargo xtask cc ARGS`.
pub fn run(args: &[String]) -> Result<()> {
    match CcArgs::parse(args)? {
        CcArgs::Help => println!("{USAGE}"),
        CcArgs::Compile { out, sources } => {
            cc(&out, &sources)?;
            println!("cc: built {}", out.display());
        }
        CcArgs::Examples { out_dir } => {
            for p in build_examples(&out_dir)? {
                println!("cc: built {}", p.display());
            }
        }
    }
    Ok(())
}

/// The musl-gcc command line for `sources` → `out` (see the module documentation).
fn cc_command(root: &Path, out: &Path, sources: &[PathBuf]) -> Command {
    let mut c = Command::new(MUSL_GCC);
    c.args(CFLAGS)
        .arg("-I")
        .arg(root.join("user/include"))
        .args(sources)
        .arg(root.join("user/libquest/c/quest.c"))
        .arg(root.join("user/libquest/c/shmcomm.c"))
        .arg(root.join("user/libquest/c/shmcomm_sys.c"))
        .args(LIBS)
        .arg("-o")
        .arg(out);
    c
}

/// Builds a static, non-PIE Quest-RS program `out` from C `sources` with musl-gcc, with the
/// Quest headers on the include path and the Quest calls linked in.
pub fn cc(out: &Path, sources: &[PathBuf]) -> Result<()> {
    if sources.is_empty() {
        bail!("cc: no source files for {}", out.display());
    }
    for s in sources {
        if !s.is_file() {
            bail!("cc: {}: no such file", s.display());
        }
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut cmd = cc_command(&root(), out, sources);
    let res = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "{MUSL_GCC} not found: install Debian's musl-tools (`cargo xtask setup` does)"
            )
        } else {
            anyhow::Error::new(e).context(format!("running {MUSL_GCC}"))
        }
    })?;
    // Warnings go to our stderr; errors fail the build with the compiler's message.
    let stderr = String::from_utf8_lossy(&res.stderr);
    if !res.status.success() {
        bail!(
            "{MUSL_GCC} failed building {}:\n{}",
            out.display(),
            stderr.trim_end()
        );
    }
    if !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    Ok(())
}

/// The C programs in `dir` (`*.c`), sorted by name.
fn c_examples(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    v.retain(|p| p.extension().is_some_and(|e| e == "c") && p.is_file());
    v.sort();
    Ok(v)
}

/// `CARGO_ENCODED_RUSTFLAGS` for Rust user programs (flags separated by 0x1f). It takes
/// precedence over any `RUSTFLAGS` in the environment, which are meant for the host.
fn encoded_rustflags() -> OsString {
    OsString::from(RUSTFLAGS.join("\x1f"))
}

/// Builds the Rust example at `manifest_dir` (a standalone cargo package) with cargo into
/// `target_dir`; returns the binary.
fn build_rust_example(manifest_dir: &Path, target_dir: &Path) -> Result<PathBuf> {
    let name = manifest_dir
        .file_name()
        .context("Rust example without a name")?
        .to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            MUSL_TARGET,
            "--manifest-path",
        ])
        .arg(manifest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags())
        .env_remove("RUSTFLAGS")
        .status()
        .context("running cargo")?;
    if !st.success() {
        bail!("cargo build of {} failed", manifest_dir.display());
    }
    let bin = target_dir.join(MUSL_TARGET).join("release").join(&name);
    if !bin.is_file() {
        bail!(
            "cargo built {} but {} is missing",
            manifest_dir.display(),
            bin.display()
        );
    }
    Ok(bin)
}

/// Programs for the Linux sandbox's initramfs, built for Linux (sources under `user/`): the
/// shmcomm examples and `qv_latency`, whose raw calls there are the Linux library
/// (user/linux/shmcomm), and
/// queshe's two halves (`qshd`, the daemon behind /dev/qSB<n>, and `queshe`, the session).
pub const LINUX_PROGRAMS: &[&str] = &["examples/async_send", "examples/async_recv", "examples/shm_stream", "examples/qv_latency", "examples/boomerang", "linux/qshd", "linux/queshe"];

/// Builds [`LINUX_PROGRAMS`] for a Quest-V Linux sandbox into `out_dir`: the static library
/// `user/linux/shmcomm` (cargo, for the musl target), then each program with musl-gcc, its
/// source + `user/libquest/c/quest.c` (Quest's own calls, which fail with ENOSYS on Linux, as
/// on any Linux) + `shmcomm.c` (the seed API's marshalling layer, shared with Quest) + that
/// library in place of Quest's shmcomm system calls (`shmcomm_sys.c`). Returns (name, path)
/// pairs.
pub fn linux_programs(out_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let root = root();
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let target_dir = root.join("target/linux-user");
    let manifest = root.join("user/linux/shmcomm/Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "--target", MUSL_TARGET, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .status()
        .context("running cargo")?;
    if !st.success() {
        bail!("cargo build of {} failed", manifest.display());
    }
    let lib = target_dir.join(MUSL_TARGET).join("release/libshmcomm_linux.a");
    // Rust's std in that library needs an unwinder: the one rustup ships for the musl target
    // (gcc's own libgcc_eh, which musl-gcc would pick, is built for glibc and wants
    // `_dl_find_object`).
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().context("running rustc --print sysroot")?;
    let unwind = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join(format!("lib/rustlib/{MUSL_TARGET}/lib/self-contained/libunwind.a"));
    if !unwind.is_file() {
        bail!("{} is missing: `rustup target add {MUSL_TARGET}` (cargo xtask setup does)", unwind.display());
    }
    let mut built = Vec::new();
    for src in LINUX_PROGRAMS {
        let name = src.rsplit('/').next().unwrap_or(src);
        let out = out_dir.join(name);
        let res = Command::new(MUSL_GCC)
            .args(CFLAGS)
            .arg("-I")
            .arg(root.join("user/include"))
            .arg(root.join(format!("user/{src}.c")))
            .arg(root.join("user/libquest/c/quest.c"))
            .arg(root.join("user/libquest/c/shmcomm.c"))
            .arg(&lib)
            .arg(&unwind)
            .args(LIBS)
            .arg("-s")
            .arg("-o")
            .arg(&out)
            .output()
            .with_context(|| format!("running {MUSL_GCC} (install Debian's musl-tools: `cargo xtask setup`)"))?;
        if !res.status.success() {
            bail!("{MUSL_GCC} failed building the Linux {name}:\n{}", String::from_utf8_lossy(&res.stderr).trim_end());
        }
        built.push((name.to_string(), out));
    }
    Ok(built)
}

/// Builds every program in `user/examples/` into `out_dir`: each `*.c` to `out_dir/<stem>`
/// (with [`cc`]) and each Rust example (`hello_rust`) to `out_dir/<name>`. Returns the paths, C
/// programs first, each group sorted by name.
pub fn build_examples(out_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = root();
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut built = Vec::new();
    for src in c_examples(&root.join("user/examples"))? {
        let stem = src.file_stem().context("example without a name")?;
        let out = out_dir.join(stem);
        cc(&out, std::slice::from_ref(&src))?;
        built.push(out);
    }
    let target_dir = root.join("target/user");
    for dir in RUST_EXAMPLES {
        let dir = root.join(dir);
        let bin = build_rust_example(&dir, &target_dir)?;
        let out = out_dir.join(bin.file_name().context("binary without a name")?);
        std::fs::copy(&bin, &out)
            .with_context(|| format!("copying {} to {}", bin.display(), out.display()))?;
        built.push(out);
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn parse(s: &str) -> Result<CcArgs> {
        CcArgs::parse(&args(s))
    }

    #[test]
    fn parse_compile() {
        assert_eq!(
            parse("-o out/hello hello.c util.c").unwrap(),
            CcArgs::Compile {
                out: "out/hello".into(),
                sources: vec!["hello.c".into(), "util.c".into()]
            }
        );
        // -o after the sources, and the joined form -oOUT.
        assert_eq!(
            parse("a.c -o a").unwrap(),
            CcArgs::Compile {
                out: "a".into(),
                sources: vec!["a.c".into()]
            }
        );
        assert_eq!(
            parse("-oa a.c").unwrap(),
            CcArgs::Compile {
                out: "a".into(),
                sources: vec!["a.c".into()]
            }
        );
    }

    #[test]
    fn parse_examples_and_help() {
        assert_eq!(
            parse("--examples target/boot").unwrap(),
            CcArgs::Examples {
                out_dir: "target/boot".into()
            }
        );
        assert_eq!(parse("").unwrap(), CcArgs::Help);
        assert_eq!(parse("-h").unwrap(), CcArgs::Help);
        assert_eq!(parse("-o x --help").unwrap(), CcArgs::Help);
    }

    #[test]
    fn parse_errors() {
        for (cmd, msg) in [
            ("-o", "-o needs a value"),
            ("-o a", "no source files"),
            ("a.c", "missing -o OUT"),
            ("-o a -o b a.c", "-o given twice"),
            ("-o a -ob a.c", "-o given twice"),
            ("-o a --examples d", "do not go together"),
            ("--examples d a.c", "takes no source files"),
            ("--examples", "--examples needs a value"),
            ("--examples a --examples b", "--examples given twice"),
            ("-O3 -o a a.c", "unknown option '-O3'"),
        ] {
            let e = parse(cmd).expect_err(cmd).to_string();
            assert!(e.contains(msg), "{cmd:?}: {e}");
        }
    }

    #[test]
    fn command_line_is_static_non_pie_with_quest_headers_and_library() {
        let c = cc_command(Path::new("/r"), Path::new("out/p"), &["p.c".into()]);
        assert_eq!(c.get_program(), MUSL_GCC);
        let a: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            a,
            [
                "-static",
                "-fno-pie",
                "-no-pie",
                "-O2",
                "-Wall",
                "-Wno-main",
                "-I",
                "/r/user/include",
                "p.c",
                "/r/user/libquest/c/quest.c",
                "/r/user/libquest/c/shmcomm.c",
                "/r/user/libquest/c/shmcomm_sys.c",
                "-lpthread",
                "-o",
                "out/p"
            ]
        );
    }

    #[test]
    fn rustflags_are_encoded() {
        assert_eq!(
            encoded_rustflags(),
            OsString::from("-Crelocation-model=static\x1f-Ctarget-feature=+crt-static")
        );
    }

    #[test]
    fn root_has_the_user_tree() {
        let r = root();
        assert!(r.join("user/include/vcpu.h").is_file(), "{}", r.display());
        assert!(r.join("user/libquest/c/quest.c").is_file());
        for d in RUST_EXAMPLES {
            assert!(r.join(d).join("Cargo.toml").is_file(), "{d}");
        }
        let c = c_examples(&r.join("user/examples")).unwrap();
        for name in ["hello_world.c", "fork_test.c", "vcpu_test.c", "thread.c"] {
            assert!(
                c.iter().any(|p| p.file_name().unwrap() == name),
                "{name} missing"
            );
        }
    }

    #[test]
    fn missing_source_is_reported() {
        let e = cc(Path::new("/nonexistent/out"), &["/nonexistent/x.c".into()]).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
        let e = cc(Path::new("out"), &[]).unwrap_err();
        assert!(e.to_string().contains("no source files"), "{e}");
    }

    /// Compiles and runs a tiny program on the host (a static musl binary runs on any x86-64
    /// Linux). Skipped with a message if musl-gcc is missing.
    #[test]
    fn cc_builds_a_static_program_that_runs_on_the_host() {
        if Command::new(MUSL_GCC).arg("--version").output().is_err() {
            eprintln!("SKIPPED: {MUSL_GCC} not found (install musl-tools / cargo xtask setup)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("xtask-cc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("t.c");
        std::fs::write(
            &src,
            "#include <stdio.h>\n#include <errno.h>\n#include <vcpu.h>\n\
             int main(void) { struct sched_param p = {.type = MAIN_VCPU, .C = 20, .T = 100};\n\
             int r = vcpu_create(&p); printf(\"r=%d errno=%d\\n\", r, errno); return 0; }\n",
        )
        .unwrap();
        let out = dir.join("sub/t");
        cc(&out, &[src]).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert_eq!(
            u16::from_le_bytes([bytes[16], bytes[17]]),
            2,
            "e_type must be ET_EXEC"
        );
        let run = Command::new(&out).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&run.stdout), "r=-1 errno=38\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
