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
