//! Debian's stock packages as build inputs: fetched with `apt-get download` and unpacked with
//! `dpkg-deb -x` under target/debian/ (never installed on the host), once: a second build finds
//! them there.
//!
//! * the kernel: the `linux-image-*` package `linux-image-amd64` depends on (the current
//!   bookworm kernel, e.g. `linux-image-6.1.0-48-amd64`), its bzImage and, on request, the ELF
//!   inside it (`vmlinux`, for its size);
//! * `busybox-static`, the userland of the Linux sandbox's initramfs.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where the unpacked packages live.
pub fn cache_dir() -> PathBuf {
    crate::root().join("target/debian")
}

/// Debian's kernel, unpacked.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// Its release (`uname -r`), e.g. `6.1.0-48-amd64`.
    pub release: String,
    /// The bzImage.
    pub vmlinuz: PathBuf,
}

/// The kernel package `linux-image-amd64` depends on (the current Debian kernel).
/// The package lists are read once; if they name no kernel (a fresh machine), `apt-get update`
/// runs once and they are read again.
fn kernel_package() -> Result<String> {
    let find = || -> Result<Option<String>> {
        let out = Command::new("apt-cache").args(["depends", "linux-image-amd64"]).output().context("running apt-cache")?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .map(str::trim)
            .find(|p| p.starts_with("linux-image-") && !p.starts_with('<'))
            .map(String::from))
    };
    if let Some(p) = find()? {
        return Ok(p);
    }
    println!("xtask: apt knows no linux-image-amd64; running apt-get update");
    let st = Command::new("apt-get").arg("update").status().context("running apt-get update")?;
    if !st.success() {
        bail!("apt-get update failed");
    }
    find()?.context("apt-cache depends linux-image-amd64 names no linux-image-* package even after apt-get update")
}

/// Downloads `pkg` into `dir` and unpacks it into `dir/x` (unless already there).
fn fetch_and_unpack(pkg: &str, dir: &Path, why: &str) -> Result<PathBuf> {
    let unpacked = dir.join("x");
    if unpacked.join(".complete").is_file() {
        return Ok(unpacked);
    }
    fs::create_dir_all(dir)?;
    println!("xtask: fetching {pkg} for {why} (apt-get download; not installed on the host)");
    let st = Command::new("apt-get").arg("download").arg(pkg).current_dir(dir).status().context("running apt-get download")?;
    if !st.success() {
        bail!("apt-get download {pkg} failed (run `apt-get update` first?)");
    }
    let deb = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(pkg) && n.to_string_lossy().ends_with(".deb")))
        .context("the downloaded .deb is missing")?;
    if unpacked.exists() {
        fs::remove_dir_all(&unpacked)?;
    }
    let st = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked).status().context("running dpkg-deb")?;
    if !st.success() {
        bail!("dpkg-deb -x {} failed", deb.display());
    }
    fs::write(unpacked.join(".complete"), pkg)?;
    let _ = fs::remove_file(&deb);
    Ok(unpacked)
}

/// Debian's current stock kernel (downloaded on first use).
pub fn kernel() -> Result<Kernel> {
    let dir = cache_dir().join("linux-image");
    let find = |unpacked: &Path| -> Option<PathBuf> {
        fs::read_dir(unpacked.join("boot"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
    };
    let cached = dir.join("x");
    let vmlinuz = match find(&cached).filter(|_| cached.join(".complete").is_file()) {
        Some(v) => v,
        None => {
            let pkg = kernel_package()?;
            let unpacked = fetch_and_unpack(&pkg, &dir, "the Linux kernel")?;
            find(&unpacked).context("no boot/vmlinuz-* in the kernel package")?
        }
    };
    let release = vmlinuz.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    Ok(Kernel { release, vmlinuz })
}

/// The ELF inside a bzImage (Debian compresses it with xz): everything from the xz magic,
/// through `xz -dc --single-stream` (which ignores what follows the stream). Written to `out`
/// once.
pub fn vmlinux(vmlinuz: &Path, out: &Path) -> Result<()> {
    if out.is_file() {
        return Ok(());
    }
    let img = fs::read(vmlinuz)?;
    const XZ: &[u8] = b"\xfd7zXZ\x00";
    let at = img.windows(XZ.len()).position(|w| w == XZ).context("no xz stream in the bzImage")?;
    let tail = out.with_extension("xz-tail");
    fs::write(&tail, &img[at..])?;
    let res = Command::new("xz").args(["-dc", "--single-stream"]).arg(&tail).output().context("running xz (package xz-utils)")?;
    let _ = fs::remove_file(&tail);
    if !res.stdout.starts_with(b"\x7fELF") {
        bail!("xz did not produce an ELF from {}", vmlinuz.display());
    }
    fs::write(out, &res.stdout)?;
    Ok(())
}

/// Debian's statically linked busybox (downloaded on first use).
pub fn busybox() -> Result<PathBuf> {
    let unpacked = fetch_and_unpack("busybox-static", &cache_dir().join("busybox-static"), "the Linux sandbox's shell")?;
    let bin = unpacked.join("bin/busybox");
    if !bin.is_file() {
        bail!("busybox-static has no bin/busybox");
    }
    Ok(bin)
}

/// A Debian package, unpacked under target/debian/PKG (downloaded on first use).
pub fn package(pkg: &str, why: &str) -> Result<PathBuf> {
    fetch_and_unpack(pkg, &cache_dir().join(pkg), why)
}

/// The packages the CAN tools of the Linux sandbox come from: can-utils (`cansend`, `candump`),
/// iproute2 (`ip`, which sets a CAN interface's bit rate: busybox's `ip` cannot) and the
/// libraries they link against (checked by [`linked_libraries`], which names any missing).
pub const CAN_PACKAGES: &[&str] = &["can-utils", "iproute2", "libc6", "libbpf1", "libelf1", "libmnl0", "libbsd0", "libcap2", "zlib1g", "libmd0"];

/// The shared libraries `bins` need (their DT_NEEDED, recursively), found in the library
/// directories of the unpacked packages `roots`: (soname, file). The dynamic loader comes
/// first. Fails naming a library no package provides.
pub fn linked_libraries(bins: &[PathBuf], roots: &[PathBuf]) -> Result<Vec<(String, PathBuf)>> {
    let find = |name: &str| -> Option<PathBuf> {
        roots.iter().flat_map(|r| ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64"].map(|d| r.join(d).join(name))).find(|p| p.exists())
    };
    let loader = "ld-linux-x86-64.so.2";
    let mut out: Vec<(String, PathBuf)> = vec![(loader.into(), find(loader).context("no package provides the dynamic loader ld-linux-x86-64.so.2")?)];
    let mut todo: Vec<PathBuf> = bins.to_vec();
    while let Some(f) = todo.pop() {
        for need in needed(&f)? {
            if out.iter().any(|(n, _)| *n == need) {
                continue;
            }
            let p = find(&need).with_context(|| format!("{} needs {need}, which none of the packages {CAN_PACKAGES:?} provides", f.display()))?;
            todo.push(p.clone());
            out.push((need, p));
        }
    }
    Ok(out)
}

/// The DT_NEEDED entries of the ELF file `path` (symbolic links followed).
fn needed(path: &Path) -> Result<Vec<String>> {
    use object::read::elf::{Dyn, ElfFile64, FileHeader};
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let elf = ElfFile64::<object::Endianness>::parse(&*data).with_context(|| format!("{} is not a 64-bit ELF", path.display()))?;
    let endian = elf.endian();
    let sections = elf.elf_header().sections(endian, &*data)?;
    let Some((dyns, link)) = sections.dynamic(endian, &*data)? else { return Ok(Vec::new()) };
    let strings = sections.strings(endian, &*data, link)?;
    let mut out = Vec::new();
    for d in dyns {
        if d.tag32(endian) == Some(object::elf::DT_NEEDED) {
            out.push(String::from_utf8_lossy(d.string(endian, strings)?).into_owned());
        }
    }
    Ok(out)
}

/// The kernel modules `names` (file names without `.ko`) and every module they depend on
/// (the `depends=` of each module's `.modinfo`), from the kernel package's modules tree of
/// `release`, in an order `insmod` can load them: dependencies first. (name, file).
pub fn modules_with_dependencies(release: &str, names: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let tree = cache_dir().join("linux-image/x/lib/modules").join(release).join("kernel");
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![tree.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
                files.insert(n.replace('_', "-"), p.clone());
            }
        }
    }
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    fn visit(name: &str, files: &std::collections::BTreeMap<String, PathBuf>, out: &mut Vec<(String, PathBuf)>, depth: usize) -> Result<()> {
        if out.iter().any(|(n, _)| n.replace('_', "-") == name.replace('_', "-")) {
            return Ok(());
        }
        if depth > 32 {
            bail!("module dependencies of {name} loop");
        }
        let path = files.get(&name.replace('_', "-")).with_context(|| format!("the kernel package has no module {name}"))?;
        let data = fs::read(path)?;
        let depends = data
            .split(|&b| b == 0)
            .find_map(|s| s.strip_prefix(b"depends="))
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default();
        for dep in depends.split(',').filter(|d| !d.is_empty()) {
            visit(dep, files, out, depth + 1)?;
        }
        let file_name = path.file_stem().unwrap().to_string_lossy().into_owned();
        out.push((file_name, path.clone()));
        Ok(())
    }
    for n in names {
        visit(n, &files, &mut out, 0)?;
    }
    Ok(out)
}
