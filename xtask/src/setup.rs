//! Host setup for `cargo xtask`: make sure the tools Quest-RS needs to build and boot are
//! present, installing what is missing.
//!
//! [`ensure`] is idempotent. It first *probes* the host (cheap: a few `stat`s, one
//! `qemu-system-x86_64 --version` and one `rustup target list --installed`), and only when
//! something is missing does it do any work:
//!
//! * Debian packages, via `apt-get` (directly as root, else through passwordless `sudo -n`;
//!   otherwise it fails with the exact command a human should run — it never prompts):
//!   `qemu-system-x86` (>= 9.0, with the `seabios` and `ipxe-qemu` firmware it needs to boot),
//!   `grub-common` (`grub-mkrescue`), `grub-pc-bin` (`/usr/lib/grub/i386-pc`),
//!   `grub-efi-amd64-bin` (`/usr/lib/grub/x86_64-efi`), `xorriso`, `mtools` (`mformat`),
//!   `ovmf` (only with [`SetupOptions::need_uefi`]) and `musl-tools` (`musl-gcc`, only with
//!   [`SetupOptions::need_musl`]).
//! * On Debian 12 "bookworm" the main archive only has QEMU 7.2, so QEMU comes from
//!   `bookworm-backports`, which is enabled (a deb822 file, [`BACKPORTS_SOURCES_FILE`]) unless
//!   an existing apt source already provides it. Trixie and later have QEMU >= 9 in main.
//! * Rust targets: `x86_64-unknown-none` (and `x86_64-unknown-linux-musl` with `need_musl`) for
//!   the toolchain that `rust-toolchain.toml` pins, via `rustup target add`.
//!
//! Both GRUB platforms are always required, so that `grub-mkrescue` makes the same hybrid
//! BIOS+UEFI ISO on every machine, whether or not this run boots it with UEFI.
//!
//! When it does work it prints concise `setup: ...` lines on stderr (even when `quiet`: an
//! apt-get install that takes minutes should not be silent); when everything is already
//! present it prints a single summary line, and only when not `quiet`.

// Some helpers here (e.g. `ovmf_qemu_args`, `Probe`) are public for the rest of xtask, which
// may not use all of them: do not warn about the unused ones.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Oldest QEMU the project supports.
pub const MIN_QEMU: (u32, u32, u32) = (9, 0, 0);

/// The apt source file [`ensure`] writes on bookworm when no source provides backports.
pub const BACKPORTS_SOURCES_FILE: &str = "/etc/apt/sources.list.d/quest-rs-backports.sources";

/// OVMF firmware files, best first; see [`ovmf_qemu_args`] for how to hand each to QEMU.
///
/// Debian bookworm's `ovmf` installs `/usr/share/ovmf/OVMF.fd` (2 MiB, code and variables in
/// one image, for `-bios`; `/usr/share/qemu/OVMF.fd` links to it) and the split
/// `/usr/share/OVMF/OVMF_CODE{,_4M}.fd` + `OVMF_VARS{,_4M}.fd` (for `-drive if=pflash`).
/// Debian trixie dropped the 2 MiB images and ships only the 4 MiB split ones. The 4 MiB
/// `OVMF_CODE_4M.fd` (3.5 MiB, not a multiple of 64 KiB) cannot be loaded with `-bios`
/// ("could not load PC BIOS"); as read-only pflash unit 0 it boots, even without a
/// variables store.
pub const OVMF_CANDIDATES: &[&str] = &[
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/qemu/OVMF.fd",
    "/usr/share/OVMF/OVMF_CODE.fd",
    "/usr/share/OVMF/OVMF_CODE_4M.fd",
];

/// SeaBIOS image QEMU loads for `-machine q35`/`pc`; QEMU refuses to start without it.
const SEABIOS_CANDIDATES: &[&str] = &[
    "/usr/share/qemu/bios-256k.bin",
    "/usr/share/seabios/bios-256k.bin",
    "/usr/local/share/qemu/bios-256k.bin",
];

const GRUB_PC_DIR: &str = "/usr/lib/grub/i386-pc";
const GRUB_EFI_DIR: &str = "/usr/lib/grub/x86_64-efi";

/// The target every build needs (the kernel and hypervisor).
const KERNEL_TARGET: &str = "x86_64-unknown-none";
/// The target user programs are built for (needs `musl-gcc` too).
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// How many times a failing `apt-get` is run before giving up (lock waits not counted).
const APT_ATTEMPTS: u32 = 3;
/// Pause between two `apt-get` attempts.
const APT_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// How long to wait, in all, for a dpkg/apt lock another process holds.
const APT_LOCK_WAIT: Duration = Duration::from_secs(120);

/// What the caller is about to do, and so what it needs.
#[derive(Default, Clone, Debug)]
pub struct SetupOptions {
    /// Boots with UEFI: OVMF firmware must be present.
    pub need_uefi: bool,
    /// Builds musl user programs: `musl-gcc` and the `x86_64-unknown-linux-musl` target.
    pub need_musl: bool,
    /// Print nothing when there is nothing to do (work is always reported).
    pub quiet: bool,
}

/// The host tools, once [`ensure`] has made sure they are there.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `qemu-system-x86_64`, version >= [`MIN_QEMU`].
    pub qemu: PathBuf,
    /// `grub-mkrescue`, with both the i386-pc and x86_64-efi platforms installed.
    pub grub_mkrescue: PathBuf,
    /// An OVMF firmware image, best of [`OVMF_CANDIDATES`]; always `Some` when `need_uefi`
    /// was set, else `Some` if found. Hand it to QEMU with [`ovmf_qemu_args`]: a split
    /// `*_CODE*.fd` image must be pflash, a unified `OVMF.fd` may be `-bios`.
    pub ovmf_code: Option<PathBuf>,
    /// The version `qemu --version` reported.
    pub qemu_version: (u32, u32, u32),
}

/// Makes sure every host tool and Rust target the project needs is present, installing the
/// missing ones (see the module docs), and returns where the tools are.
pub fn ensure(opts: &SetupOptions) -> Result<Tools> {
    let repo = repo_root();
    let mut probe = Probe::run();
    let plan = Plan::new(&probe, opts);
    let mut installed = false;

    if !plan.is_empty() {
        let os = std::fs::read_to_string("/etc/os-release")
            .map(|s| parse_os_release(&s))
            .unwrap_or_default();
        install_packages(&plan, &os, &probe, opts)?;
        installed = true;
        probe = Probe::run();
        let left = Plan::new(&probe, opts);
        if !left.is_empty() {
            bail!(
                "setup: after installing packages, still missing: {}",
                probe.describe_missing(opts).join(", ")
            );
        }
    }

    // Rust targets, for the toolchain the repository pins.
    let mut wanted = vec![KERNEL_TARGET];
    if opts.need_musl {
        wanted.push(MUSL_TARGET);
    }
    let missing_targets = missing_rust_targets(&repo, &wanted)?.unwrap_or_default();
    if !missing_targets.is_empty() {
        eprintln!("setup: rustup target add {}", missing_targets.join(" "));
        let mut cmd = Command::new("rustup");
        cmd.current_dir(&repo)
            .arg("target")
            .arg("add")
            .args(&missing_targets);
        run_checked(&mut cmd, "rustup target add")?;
    }

    let qemu = probe
        .qemu
        .clone()
        .context("setup: qemu-system-x86_64 not found")?;
    let qemu_version = probe.qemu_version.context("setup: qemu version unknown")?;
    let grub_mkrescue = probe
        .grub_mkrescue
        .clone()
        .context("setup: grub-mkrescue not found")?;
    if opts.need_uefi {
        match &probe.ovmf {
            Some(p) if p.is_file() => {}
            _ => bail!(
                "setup: no OVMF firmware found (looked for {})",
                OVMF_CANDIDATES.join(", ")
            ),
        }
    }

    if installed {
        // Installing QEMU went through apt with --no-install-recommends: check that it really
        // starts a q35 machine (firmware present), so a broken install fails here, not later.
        smoke_test_qemu(&qemu).context("setup: freshly installed QEMU does not start")?;
        eprintln!(
            "setup: done: qemu {} ({}), {}{}",
            fmt_version(qemu_version),
            qemu.display(),
            grub_mkrescue.display(),
            probe
                .ovmf
                .as_ref()
                .map(|p| format!(", OVMF {}", p.display()))
                .unwrap_or_default()
        );
    } else if !opts.quiet && missing_targets.is_empty() {
        eprintln!(
            "setup: host tools present: qemu {}, grub-mkrescue, xorriso, mtools{}{}",
            fmt_version(qemu_version),
            if probe.ovmf.is_some() { ", ovmf" } else { "" },
            if probe.musl_gcc { ", musl-gcc" } else { "" },
        );
    }

    Ok(Tools {
        qemu,
        grub_mkrescue,
        ovmf_code: probe.ovmf,
        qemu_version,
    })
}

// ---------------------------------------------------------------------------------------------
// Probing the host
// ---------------------------------------------------------------------------------------------

/// What is on the host now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    pub qemu: Option<PathBuf>,
    /// `None` when QEMU is missing or its version output did not parse.
    pub qemu_version: Option<(u32, u32, u32)>,
    pub seabios: bool,
    pub grub_mkrescue: Option<PathBuf>,
    pub grub_pc: bool,
    pub grub_efi: bool,
    pub xorriso: bool,
    pub mformat: bool,
    pub ovmf: Option<PathBuf>,
    pub musl_gcc: bool,
}

impl Probe {
    /// Looks at the host: file checks plus one `qemu-system-x86_64 --version`.
    pub fn run() -> Probe {
        let qemu = which("qemu-system-x86_64");
        let qemu_version = qemu.as_ref().and_then(|q| {
            let out = Command::new(q)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .ok()?;
            parse_qemu_version(&String::from_utf8_lossy(&out.stdout))
        });
        Probe {
            qemu,
            qemu_version,
            seabios: SEABIOS_CANDIDATES.iter().any(|p| Path::new(p).is_file()),
            grub_mkrescue: which("grub-mkrescue"),
            grub_pc: Path::new(GRUB_PC_DIR).is_dir(),
            grub_efi: Path::new(GRUB_EFI_DIR).is_dir(),
            xorriso: which("xorriso").is_some(),
            mformat: which("mformat").is_some(),
            ovmf: OVMF_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file()),
            musl_gcc: which("musl-gcc").is_some(),
        }
    }

    /// `true` when QEMU is present and new enough.
    pub fn qemu_ok(&self) -> bool {
        self.qemu.is_some() && self.qemu_version.is_some_and(|v| v >= MIN_QEMU)
    }

    /// Human-readable list of what is missing, for error messages.
    pub fn describe_missing(&self, opts: &SetupOptions) -> Vec<String> {
        let mut m = Vec::new();
        match (&self.qemu, self.qemu_version) {
            (None, _) => m.push("qemu-system-x86_64".to_string()),
            (Some(p), None) => m.push(format!("{} (unparsable --version)", p.display())),
            (Some(p), Some(v)) if v < MIN_QEMU => m.push(format!(
                "qemu-system-x86_64 >= {} ({} is {})",
                fmt_version(MIN_QEMU),
                p.display(),
                fmt_version(v)
            )),
            _ => {}
        }
        if !self.seabios {
            m.push("SeaBIOS (bios-256k.bin)".into());
        }
        if self.grub_mkrescue.is_none() {
            m.push("grub-mkrescue".into());
        }
        if !self.grub_pc {
            m.push(GRUB_PC_DIR.into());
        }
        if !self.grub_efi {
            m.push(GRUB_EFI_DIR.into());
        }
        if !self.xorriso {
            m.push("xorriso".into());
        }
        if !self.mformat {
            m.push("mformat".into());
        }
        if opts.need_uefi && self.ovmf.is_none() {
            m.push("OVMF firmware".into());
        }
        if opts.need_musl && !self.musl_gcc {
            m.push("musl-gcc".into());
        }
        m
    }
}

/// Finds an executable in `$PATH` (and the usual system directories, for a minimal `PATH`).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Parses the first line of `qemu-system-x86_64 --version`, e.g.
/// `QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)`.
pub fn parse_qemu_version(output: &str) -> Option<(u32, u32, u32)> {
    let line = output.lines().find(|l| l.contains("version"))?;
    let rest = &line[line.find("version")? + "version".len()..];
    let word = rest.split_whitespace().next()?;
    let mut parts = word.split('.').map(|p| {
        let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

fn fmt_version(v: (u32, u32, u32)) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

// ---------------------------------------------------------------------------------------------
// Deciding what to install
// ---------------------------------------------------------------------------------------------

/// The Debian packages to install, split in two: QEMU's may come from a backports suite.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// QEMU and the firmware it needs to boot (`seabios`; `ipxe-qemu` for NIC option ROMs).
    pub qemu_packages: Vec<&'static str>,
    /// Everything else, from the distribution's main suite.
    pub packages: Vec<&'static str>,
}

impl Plan {
    /// Decides which packages provide what `probe` found missing.
    pub fn new(probe: &Probe, opts: &SetupOptions) -> Plan {
        let mut plan = Plan::default();
        if !probe.qemu_ok() || !probe.seabios {
            plan.qemu_packages = vec!["qemu-system-x86", "seabios", "ipxe-qemu"];
        }
        let mut add = |missing: bool, pkg: &'static str| {
            if missing {
                plan.packages.push(pkg);
            }
        };
        add(probe.grub_mkrescue.is_none(), "grub-common");
        add(!probe.grub_pc, "grub-pc-bin");
        add(!probe.grub_efi, "grub-efi-amd64-bin");
        add(!probe.xorriso, "xorriso");
        add(!probe.mformat, "mtools");
        add(opts.need_uefi && probe.ovmf.is_none(), "ovmf");
        add(opts.need_musl && !probe.musl_gcc, "musl-tools");
        plan
    }

    pub fn is_empty(&self) -> bool {
        self.qemu_packages.is_empty() && self.packages.is_empty()
    }

    /// All packages, QEMU's first.
    pub fn all(&self) -> Vec<&'static str> {
        self.qemu_packages
            .iter()
            .chain(&self.packages)
            .copied()
            .collect()
    }
}

/// Parses `/etc/os-release` (`KEY=value`, values optionally quoted).
pub fn parse_os_release(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (
                k.trim().to_string(),
                v.replace("\\\"", "\"").replace("\\\\", "\\"),
            )
        })
        .collect()
}

/// The backports suite QEMU >= 9 must come from on this OS, if its main archive is too old:
/// only Debian 12 "bookworm" (QEMU 7.2 in main, 9.x/10.x in bookworm-backports).
pub fn qemu_backports_suite(os: &HashMap<String, String>) -> Option<String> {
    let is_debian = os.get("ID").is_some_and(|id| id == "debian");
    let codename = os.get("VERSION_CODENAME").map(String::as_str).unwrap_or("");
    (is_debian && codename == "bookworm").then(|| format!("{codename}-backports"))
}

/// Whether a one-line-style (`*.list`) apt sources file enables `suite` for binary packages.
pub fn one_line_sources_enable(text: &str, suite: &str) -> bool {
    text.lines().any(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            return false;
        }
        let mut word = words.next();
        // Options: `[arch=amd64 signed-by=...]`, possibly spread over several words.
        if word.is_some_and(|w| w.starts_with('[')) {
            while let Some(w) = word {
                word = words.next();
                if w.ends_with(']') {
                    break;
                }
            }
        }
        let _uri = word;
        words
            .next()
            .is_some_and(|s| s.trim_end_matches('/') == suite)
    })
}

/// Whether a deb822-style (`*.sources`) apt sources file enables `suite` for binary packages.
pub fn deb822_sources_enable(text: &str, suite: &str) -> bool {
    let mut stanzas: Vec<HashMap<String, String>> = vec![HashMap::new()];
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !stanzas.last().is_some_and(HashMap::is_empty) {
                stanzas.push(HashMap::new());
            }
            last_key = None;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let stanza = stanzas.last_mut().expect("never empty");
        if line.starts_with([' ', '\t']) {
            if let Some(v) = last_key.as_ref().and_then(|k| stanza.get_mut(k)) {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            stanza.insert(k.clone(), v.trim().to_string());
            last_key = Some(k);
        }
    }
    stanzas.iter().any(|s| {
        let has = |key: &str, word: &str| {
            s.get(key)
                .is_some_and(|v| v.split_whitespace().any(|w| w == word))
        };
        let enabled = s
            .get("enabled")
            .is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        enabled
            && has("types", "deb")
            && s.get("suites").is_some_and(|v| {
                v.split_whitespace()
                    .any(|w| w.trim_end_matches('/') == suite)
            })
    })
}

/// Whether any apt source on this host already enables `suite`.
fn apt_sources_enable(suite: &str) -> bool {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.flatten().map(|e| e.path()));
    }
    files.iter().any(|f| {
        let Ok(text) = std::fs::read_to_string(f) else {
            return false;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => deb822_sources_enable(&text, suite),
            Some("list") => one_line_sources_enable(&text, suite),
            _ if f.ends_with("sources.list") => one_line_sources_enable(&text, suite),
            _ => false,
        }
    })
}

/// The deb822 file that enables `suite` from the Debian archive.
pub fn backports_sources_text(suite: &str) -> String {
    format!(
        "# Written by `cargo xtask` (xtask/src/setup.rs): Quest-RS needs QEMU >= 9,\n\
         # which Debian bookworm only has in backports.\n\
         Types: deb\n\
         URIs: http://deb.debian.org/debian\n\
         Suites: {suite}\n\
         Components: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
}

/// The commands a human should run to install `plan` (used when we cannot).
pub fn manual_instructions(plan: &Plan, backports: Option<&str>) -> String {
    let base = "sudo apt-get install -y --no-install-recommends";
    let mut s = String::new();
    match backports {
        Some(suite) if !plan.qemu_packages.is_empty() => {
            let _ = write!(
                s,
                "enable {suite} (e.g. write {BACKPORTS_SOURCES_FILE} with:\n{}) then run \
                 `sudo apt-get update && {base} -t {suite} {}`",
                backports_sources_text(suite),
                plan.qemu_packages.join(" ")
            );
            if !plan.packages.is_empty() {
                let _ = write!(s, " and `{base} {}`", plan.packages.join(" "));
            }
        }
        _ => {
            let _ = write!(
                s,
                "run `sudo apt-get update && {base} {}`",
                plan.all().join(" ")
            );
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Installing
// ---------------------------------------------------------------------------------------------

/// How to run privileged commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Privilege {
    Root,
    Sudo,
}

impl Privilege {
    fn detect() -> Option<Privilege> {
        if is_root() {
            return Some(Privilege::Root);
        }
        let sudo_ok = which("sudo").is_some()
            && Command::new("sudo")
                .args(["-n", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        sudo_ok.then_some(Privilege::Sudo)
    }

    /// A command running `program` with root rights and `env` set.
    fn command(self, program: &str, env: &[(&str, &str)]) -> Command {
        match self {
            Privilege::Root => {
                let mut c = Command::new(program);
                c.envs(env.iter().copied());
                c
            }
            Privilege::Sudo => {
                let mut c = Command::new("sudo");
                c.args(["-n", "env"]);
                c.args(env.iter().map(|(k, v)| format!("{k}={v}")));
                c.arg(program);
                c
            }
        }
    }

    fn write_file(self, path: &str, text: &str) -> Result<()> {
        match self {
            Privilege::Root => {
                std::fs::write(path, text).with_context(|| format!("writing {path}"))
            }
            Privilege::Sudo => {
                let mut child = Command::new("sudo")
                    .args(["-n", "tee", path])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
                    .with_context(|| format!("running `sudo -n tee {path}`"))?;
                child
                    .stdin
                    .take()
                    .expect("piped")
                    .write_all(text.as_bytes())?;
                let status = child.wait()?;
                if !status.success() {
                    bail!("`sudo -n tee {path}` failed: {status}");
                }
                Ok(())
            }
        }
    }
}

/// Whether this process runs as uid 0 (from `/proc/self/status`, else `id -u`).
fn is_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
    {
        return line.split_whitespace().nth(2) == Some("0"); // effective uid
    }
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn install_packages(
    plan: &Plan,
    os: &HashMap<String, String>,
    probe: &Probe,
    opts: &SetupOptions,
) -> Result<()> {
    let backports = if plan.qemu_packages.is_empty() {
        None
    } else {
        qemu_backports_suite(os)
    };
    let wanted = plan.all().join(" ");
    eprintln!("setup: missing {}", probe.describe_missing(opts).join(", "));
    if which("apt-get").is_none() {
        bail!(
            "setup: missing host tools and this host has no apt-get (not Debian?): install the \
             equivalents of these Debian packages by hand: {wanted}"
        );
    }
    let Some(privilege) = Privilege::detect() else {
        bail!(
            "setup: missing Debian packages {wanted}; not root and no passwordless sudo: {}",
            manual_instructions(plan, backports.as_deref())
        );
    };

    if let Some(suite) = &backports
        && !apt_sources_enable(suite)
    {
        eprintln!(
            "setup: enabling {suite} for qemu >= {} ({BACKPORTS_SOURCES_FILE})",
            MIN_QEMU.0
        );
        privilege.write_file(BACKPORTS_SOURCES_FILE, &backports_sources_text(suite))?;
    }

    eprintln!("setup: apt-get update");
    apt(privilege, &["update"])?;

    let install = ["install", "-y", "--no-install-recommends"];
    match &backports {
        Some(suite) => {
            if !plan.packages.is_empty() {
                eprintln!("setup: apt-get install {}", plan.packages.join(" "));
                apt(privilege, &[&install[..], &plan.packages].concat())?;
            }
            eprintln!(
                "setup: apt-get install -t {suite} {}",
                plan.qemu_packages.join(" ")
            );
            apt(
                privilege,
                &[&install[..], &["-t", suite], &plan.qemu_packages].concat(),
            )?;
        }
        None => {
            eprintln!("setup: apt-get install {wanted}");
            apt(privilege, &[&install[..], &plan.all()].concat())?;
        }
    }
    Ok(())
}

/// Runs `apt-get ARGS` with root rights, non-interactively, retrying transient failures
/// ([`APT_ATTEMPTS`] in all) and waiting up to [`APT_LOCK_WAIT`] for a held dpkg/apt lock.
fn apt(privilege: Privilege, args: &[&str]) -> Result<()> {
    let env = [
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("NEEDRESTART_MODE", "a"),
    ];
    let shown = format!("apt-get {}", args.join(" "));
    let mut failures = 0;
    let mut lock_wait_start: Option<Instant> = None;
    let mut repaired_dpkg = false;
    loop {
        let mut cmd = privilege.command("apt-get", &env);
        cmd.args([
            "-q",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ]);
        cmd.args(args).stdin(Stdio::null());
        let out = cmd
            .output()
            .with_context(|| format!("setup: could not run `{shown}`"))?;
        if out.status.success() {
            return Ok(());
        }
        let text = combined_output(&out);
        if is_lock_error(&text) {
            if lock_wait_start.is_none() {
                eprintln!(
                    "setup: dpkg/apt lock held by another process; waiting up to {} s",
                    APT_LOCK_WAIT.as_secs()
                );
            }
            let start = *lock_wait_start.get_or_insert_with(Instant::now);
            if start.elapsed() < APT_LOCK_WAIT {
                sleep(Duration::from_secs(5));
                continue;
            }
        } else if text.contains("dpkg --configure -a") && !repaired_dpkg {
            eprintln!("setup: dpkg was interrupted; running dpkg --configure -a");
            repaired_dpkg = true;
            let mut fix = privilege.command("dpkg", &env);
            fix.args(["--configure", "-a"]).stdin(Stdio::null());
            let _ = fix.output();
            continue;
        }
        failures += 1;
        if failures >= APT_ATTEMPTS {
            bail!(
                "setup: `{shown}` failed {failures} times ({}); last output:\n{}",
                out.status,
                tail(&text, 30)
            );
        }
        eprintln!("setup: `{shown}` failed ({}); retrying", out.status);
        sleep(APT_RETRY_PAUSE);
    }
}

/// Whether apt/dpkg output says another process holds its lock.
pub fn is_lock_error(output: &str) -> bool {
    [
        "Could not get lock",
        "Unable to acquire the dpkg frontend lock",
        "Unable to lock directory",
    ]
    .iter()
    .any(|m| output.contains(m))
}

fn combined_output(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd`, failing with its output when it fails.
fn run_checked(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}):\n{}",
            out.status,
            tail(&combined_output(&out), 30)
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Rust targets
// ---------------------------------------------------------------------------------------------

/// The repository root: where `rust-toolchain.toml` is, so rustup picks the pinned toolchain.
pub fn repo_root() -> PathBuf {
    let has_toolchain = |d: &Path| d.join("rust-toolchain.toml").is_file();
    // xtask lives at <root>/xtask.
    if let Some(root) = Path::new(env!("CARGO_MANIFEST_DIR")).parent()
        && has_toolchain(root)
    {
        return root.to_path_buf();
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|d| has_toolchain(d))
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

/// The `wanted` targets the repository's toolchain lacks; `None` when there is no rustup
/// (a toolchain not managed by rustup: nothing we can add).
fn missing_rust_targets(repo: &Path, wanted: &[&str]) -> Result<Option<Vec<String>>> {
    if which("rustup").is_none() {
        return Ok(None);
    }
    let mut cmd = Command::new("rustup");
    cmd.current_dir(repo)
        .args(["target", "list", "--installed"]);
    let out = run_checked(&mut cmd, "rustup target list --installed")?;
    let installed = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = installed.lines().map(str::trim).collect();
    Ok(Some(
        wanted
            .iter()
            .filter(|t| !installed.contains(t))
            .map(|t| t.to_string())
            .collect(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Firmware arguments
// ---------------------------------------------------------------------------------------------

/// The QEMU arguments that boot `ovmf` (one of [`OVMF_CANDIDATES`], e.g.
/// [`Tools::ovmf_code`]): a split code image (`OVMF_CODE*.fd`) goes in as read-only pflash
/// unit 0 (it runs without a variables store, which is all a test boot needs); a unified
/// `OVMF.fd` goes in with `-bios`.
pub fn ovmf_qemu_args(ovmf: &Path) -> Vec<String> {
    let name = ovmf.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.contains("_CODE") {
        vec![
            "-drive".into(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                ovmf.display()
            ),
        ]
    } else {
        vec!["-bios".into(), ovmf.display().to_string()]
    }
}

// ---------------------------------------------------------------------------------------------
// QEMU smoke test
// ---------------------------------------------------------------------------------------------

/// Starts `qemu -machine q35` with the CPU stopped and quits it through the monitor: fails if
/// QEMU cannot create the machine (e.g. missing SeaBIOS or VGA ROM).
pub fn smoke_test_qemu(qemu: &Path) -> Result<()> {
    let mut child = Command::new(qemu)
        .args([
            "-machine",
            "q35",
            "-display",
            "none",
            "-nic",
            "none",
            "-S",
            "-no-reboot",
        ])
        .args(["-monitor", "stdio", "-serial", "none", "-parallel", "none"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {}", qemu.display()))?;
    // If QEMU already died, the write fails: its exit status tells why.
    let _ = child.stdin.take().expect("piped").write_all(b"quit\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(anyhow!(
                "{} -machine q35 did not quit within 20 s",
                qemu.display()
            ));
        }
        sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!(
            "{} -machine q35 -S failed ({status}): {}",
            qemu.display(),
            err.trim()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tests (pure parts only)
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn everything() -> Probe {
        Probe {
            qemu: Some("/usr/bin/qemu-system-x86_64".into()),
            qemu_version: Some((10, 0, 2)),
            seabios: true,
            grub_mkrescue: Some("/usr/bin/grub-mkrescue".into()),
            grub_pc: true,
            grub_efi: true,
            xorriso: true,
            mformat: true,
            ovmf: Some("/usr/share/ovmf/OVMF.fd".into()),
            musl_gcc: true,
        }
    }

    const ALL: SetupOptions = SetupOptions {
        need_uefi: true,
        need_musl: true,
        quiet: true,
    };

    #[test]
    fn qemu_version_parsing() {
        let v10 = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n\
                   Copyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(parse_qemu_version(v10), Some((10, 0, 2)));
        let v7 = "QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u12)\nCopyright\n";
        assert_eq!(parse_qemu_version(v7), Some((7, 2, 15)));
        assert_eq!(
            parse_qemu_version("QEMU emulator version 9.1.50 (v9.1.0-1-g1)"),
            Some((9, 1, 50))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 9.2"),
            Some((9, 2, 0))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)"),
            Some((8, 2, 2))
        );
        assert_eq!(parse_qemu_version(""), None);
        assert_eq!(parse_qemu_version("garbage"), None);
        assert!(Some((7, 2, 15)) < Some(MIN_QEMU) && (9, 0, 0) >= MIN_QEMU);
    }

    #[test]
    fn os_release_parsing() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                    VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\n\
                    ID=debian\n# comment\n\nHOME_URL='https://www.debian.org/'\n";
        let os = parse_os_release(text);
        assert_eq!(os["ID"], "debian");
        assert_eq!(os["VERSION_CODENAME"], "bookworm");
        assert_eq!(os["PRETTY_NAME"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os["HOME_URL"], "https://www.debian.org/");
        assert_eq!(
            qemu_backports_suite(&os).as_deref(),
            Some("bookworm-backports")
        );

        let trixie = parse_os_release("ID=debian\nVERSION_CODENAME=trixie\n");
        assert_eq!(qemu_backports_suite(&trixie), None);
        let ubuntu = parse_os_release("ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n");
        assert_eq!(qemu_backports_suite(&ubuntu), None);
        assert_eq!(qemu_backports_suite(&HashMap::new()), None);
    }

    #[test]
    fn nothing_missing_means_empty_plan() {
        assert!(Plan::new(&everything(), &ALL).is_empty());
    }

    #[test]
    fn fresh_host_needs_everything() {
        let plan = Plan::new(&Probe::default(), &ALL);
        assert_eq!(
            plan.qemu_packages,
            ["qemu-system-x86", "seabios", "ipxe-qemu"]
        );
        assert_eq!(
            plan.packages,
            [
                "grub-common",
                "grub-pc-bin",
                "grub-efi-amd64-bin",
                "xorriso",
                "mtools",
                "ovmf",
                "musl-tools"
            ]
        );
        // Without UEFI or musl their packages are not needed.
        let plan = Plan::new(&Probe::default(), &SetupOptions::default());
        assert!(!plan.packages.contains(&"ovmf") && !plan.packages.contains(&"musl-tools"));
        assert!(
            plan.packages.contains(&"grub-efi-amd64-bin"),
            "ISOs are always hybrid"
        );
    }

    #[test]
    fn old_qemu_or_missing_firmware_reinstalls_qemu() {
        let old = Probe {
            qemu_version: Some((7, 2, 15)),
            ..everything()
        };
        let plan = Plan::new(&old, &ALL);
        assert_eq!(
            plan.qemu_packages,
            ["qemu-system-x86", "seabios", "ipxe-qemu"]
        );
        assert!(plan.packages.is_empty());
        let unparsable = Probe {
            qemu_version: None,
            ..everything()
        };
        assert!(!Plan::new(&unparsable, &ALL).qemu_packages.is_empty());
        let no_bios = Probe {
            seabios: false,
            ..everything()
        };
        assert!(!Plan::new(&no_bios, &ALL).qemu_packages.is_empty());
    }

    #[test]
    fn single_missing_pieces() {
        let cases: [(Probe, &str); 7] = [
            (
                Probe {
                    grub_mkrescue: None,
                    ..everything()
                },
                "grub-common",
            ),
            (
                Probe {
                    grub_pc: false,
                    ..everything()
                },
                "grub-pc-bin",
            ),
            (
                Probe {
                    grub_efi: false,
                    ..everything()
                },
                "grub-efi-amd64-bin",
            ),
            (
                Probe {
                    xorriso: false,
                    ..everything()
                },
                "xorriso",
            ),
            (
                Probe {
                    mformat: false,
                    ..everything()
                },
                "mtools",
            ),
            (
                Probe {
                    ovmf: None,
                    ..everything()
                },
                "ovmf",
            ),
            (
                Probe {
                    musl_gcc: false,
                    ..everything()
                },
                "musl-tools",
            ),
        ];
        for (probe, pkg) in cases {
            let plan = Plan::new(&probe, &ALL);
            assert_eq!(plan.all(), [pkg]);
            assert_eq!(probe.describe_missing(&ALL).len(), 1);
        }
        // Not needed: not installed.
        let no_ovmf = Probe {
            ovmf: None,
            musl_gcc: false,
            ..everything()
        };
        assert!(Plan::new(&no_ovmf, &SetupOptions::default()).is_empty());
    }

    #[test]
    fn deb822_backports_detection() {
        let debian = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                      URIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\n\
                      Suites: bookworm-security\nComponents: main\n";
        assert!(!deb822_sources_enable(debian, "bookworm-backports"));
        assert!(deb822_sources_enable(debian, "bookworm-updates"));

        let with_bpo = format!(
            "{debian}\nTypes: deb deb-src\nURIs: http://mirror.example/debian\n\
                                Suites: bookworm bookworm-updates\n bookworm-backports\nComponents: main\n"
        );
        assert!(
            deb822_sources_enable(&with_bpo, "bookworm-backports"),
            "continuation line"
        );

        assert!(deb822_sources_enable(
            &backports_sources_text("bookworm-backports"),
            "bookworm-backports"
        ));

        let src_only =
            "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n";
        assert!(!deb822_sources_enable(src_only, "bookworm-backports"));
        let disabled = "types: deb\nuris: http://deb.debian.org/debian\nsuites: bookworm-backports\n\
                        Enabled: no\n";
        assert!(!deb822_sources_enable(disabled, "bookworm-backports"));
        let commented = "# Types: deb\n# Suites: bookworm-backports\n";
        assert!(!deb822_sources_enable(commented, "bookworm-backports"));
    }

    #[test]
    fn one_line_backports_detection() {
        assert!(one_line_sources_enable(
            "deb http://deb.debian.org/debian bookworm-backports main\n",
            "bookworm-backports"
        ));
        assert!(one_line_sources_enable(
            "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
             http://deb.debian.org/debian bookworm-backports main contrib\n",
            "bookworm-backports"
        ));
        assert!(one_line_sources_enable(
            "deb [ arch=amd64 ] http://ftp.de.debian.org/debian/ bookworm-backports main",
            "bookworm-backports"
        ));
        assert!(!one_line_sources_enable(
            "# deb http://deb.debian.org/debian bookworm-backports main\n",
            "bookworm-backports"
        ));
        assert!(!one_line_sources_enable(
            "deb-src http://deb.debian.org/debian bookworm-backports main\n",
            "bookworm-backports"
        ));
        assert!(!one_line_sources_enable(
            "deb http://deb.debian.org/debian bookworm main\n\
             deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n",
            "bookworm-backports"
        ));
    }

    #[test]
    fn manual_instructions_name_every_package() {
        let plan = Plan::new(&Probe::default(), &ALL);
        let bookworm = manual_instructions(&plan, Some("bookworm-backports"));
        assert!(bookworm.contains("-t bookworm-backports qemu-system-x86 seabios ipxe-qemu"));
        assert!(bookworm.contains("musl-tools") && bookworm.contains(BACKPORTS_SOURCES_FILE));
        let trixie = manual_instructions(&plan, None);
        assert!(trixie.contains(
            "sudo apt-get install -y --no-install-recommends qemu-system-x86 seabios ipxe-qemu \
             grub-common grub-pc-bin grub-efi-amd64-bin xorriso mtools ovmf musl-tools"
        ));
    }

    #[test]
    fn ovmf_args_match_the_image_kind() {
        assert_eq!(
            ovmf_qemu_args(Path::new("/usr/share/ovmf/OVMF.fd")),
            ["-bios", "/usr/share/ovmf/OVMF.fd"]
        );
        assert_eq!(
            ovmf_qemu_args(Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd")),
            [
                "-drive",
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
            ]
        );
        assert_eq!(
            ovmf_qemu_args(Path::new("/usr/share/OVMF/OVMF_CODE.fd"))[0],
            "-drive"
        );
    }

    #[test]
    fn lock_errors_are_recognised() {
        assert!(is_lock_error(
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234 (apt-get)"
        ));
        assert!(is_lock_error(
            "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend)"
        ));
        assert!(!is_lock_error(
            "E: Unable to locate package qemu-system-x86"
        ));
    }
}
