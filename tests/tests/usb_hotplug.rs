//! USB hot-plug on xHCI and EHCI through QEMU's monitor (QMP `device_add` / `device_del`): a serial
//! adapter and a stick added at run time are enumerated, get their device file and mount;
//! removing the adapter while `cdc_read` waits on it ends the read with EIO (not a hang, not
//! a fault); removing the stick unmounts /usb; a stick plugged in afterwards is mounted again.
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use quest_tests::{Config, Quest};

struct Qmp {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Qmp> {
        let w = UnixStream::connect(path).with_context(|| format!("QMP socket {}", path.display()))?;
        w.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut q = Qmp { r: BufReader::new(w.try_clone()?), w };
        q.line()?;
        q.execute(r#"{"execute":"qmp_capabilities"}"#)?;
        Ok(q)
    }
    fn line(&mut self) -> Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            bail!("QMP closed");
        }
        Ok(l)
    }
    /// Sends a command and waits for its answer (events in between are skipped).
    fn execute(&mut self, cmd: &str) -> Result<()> {
        self.w.write_all(cmd.as_bytes())?;
        self.w.write_all(b"\n")?;
        loop {
            let l = self.line()?;
            if l.contains("\"return\"") {
                return Ok(());
            }
            if l.contains("\"error\"") {
                bail!("QMP {cmd}: {l}");
            }
        }
    }
}

fn fat_image(path: &Path, file: &Path) -> Result<()> {
    std::fs::File::create(path)?.set_len(16 << 20)?;
    let p = path.to_str().unwrap();
    for (tool, args) in [("mformat", vec!["-i", p, "-t", "16", "-h", "64", "-s", "32", "-v", "HOTSTICK", "::"]), ("mcopy", vec!["-i", p, file.to_str().unwrap(), "::/data.bin"])] {
        let out = Command::new(tool).args(&args).output().with_context(|| format!("{tool} (Debian's mtools)"))?;
        if !out.status.success() {
            bail!("{tool}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn devices_added_and_removed_at_run_time() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("quest-usbhotplug-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let data: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(2_246_822_519) >> 9) as u8).collect();
    std::fs::write(dir.join("data.bin"), &data)?;
    for n in ["a", "b"] {
        fat_image(&dir.join(format!("{n}.img")), &dir.join("data.bin"))?;
    }
    let qmp = dir.join("qmp.sock");
    let mut cfg = Config::from_env(false)?;
    cfg.extra_args.extend([
        "-device".to_string(),
        "qemu-xhci,id=xhci".to_string(),
        "-drive".to_string(),
        format!("if=none,id=sticka,format=raw,file={}", dir.join("a.img").display()),
        "-drive".to_string(),
        format!("if=none,id=stickb,format=raw,file={}", dir.join("b.img").display()),
        "-chardev".to_string(),
        format!("socket,id=ser0,path={},server=on,wait=off", dir.join("ser.sock").display()),
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", qmp.display()),
    ]);
    let mut q = Quest::boot(&cfg)?;
    assert!(q.output().contains(": 0 device(s) enumerated"), "{}", q.output());
    let mut m = Qmp::connect(&qmp)?;

    m.execute(r#"{"execute":"device_add","arguments":{"driver":"usb-serial","bus":"xhci.0","chardev":"ser0","always-plugged":true,"id":"ser"}}"#)?;
    q.expect("usb: /dev/ttyUSB0: FTDI serial adapter, 115200 8N1")?;
    m.execute(r#"{"execute":"device_add","arguments":{"driver":"usb-storage","bus":"xhci.0","drive":"sticka","id":"sa"}}"#)?;
    q.expect("usb: /usb: Fat16 volume \"HOTSTICK\"")?;
    let out = q.shell("lsusb")?;
    assert!(out.contains("ID 0403:6001 QEMU QEMU USB SERIAL") && out.contains("ID 46f4:0001 QEMU QEMU USB HARDDRIVE"), "{out}");
    let out = q.shell("fsum /usb/data.bin")?;
    assert!(out.contains(&format!("50000 {:016x} /usb/data.bin", fnv(&data))), "{out}");

    // A reader waits on the adapter; unplugging it ends the read with an error.
    q.shell("nowait cdc_read /dev/ttyUSB0 100")?;
    std::thread::sleep(Duration::from_millis(500));
    m.execute(r#"{"execute":"device_del","arguments":{"id":"ser"}}"#)?;
    q.expect("cdc_read: read /dev/ttyUSB0 after 0 bytes: I/O error")?;
    q.expect("device removed: ID 0403:6001 QEMU USB SERIAL")?;

    // The stick goes: /usb is unmounted; another stick plugged in is mounted.
    m.execute(r#"{"execute":"device_del","arguments":{"id":"sa"}}"#)?;
    q.expect("usb: /usb: unmounted (the stick was unplugged)")?;
    let out = q.shell("fsum /usb/data.bin")?;
    assert!(out.contains("fsum: /usb/data.bin: No such file or directory"), "{out}");
    let out = q.shell("lsusb -v")?;
    assert!(out.contains(", 0 device(s)"), "{out}");
    m.execute(r#"{"execute":"device_add","arguments":{"driver":"usb-storage","bus":"xhci.0","drive":"stickb","id":"sb"}}"#)?;
    q.expect("usb: /usb: Fat16 volume \"HOTSTICK\"")?;
    let out = q.shell("fsum /usb/data.bin")?;
    assert!(out.contains(&format!("50000 {:016x} /usb/data.bin", fnv(&data))), "{out}");
    assert_eq!(q.shell("hello_world")?.trim(), "Hello World!");
    q.power_off_ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Hot-plug on EHCI: a stick added at run time (a port change interrupt) is enumerated and
/// mounted, removing it unmounts /usb, and another stick plugged into the same port is mounted.
#[test]
fn sticks_added_and_removed_on_ehci() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("quest-usbhotplug-ehci-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let data: Vec<u8> = (0..30_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    std::fs::write(dir.join("data.bin"), &data)?;
    for n in ["a", "b"] {
        fat_image(&dir.join(format!("{n}.img")), &dir.join("data.bin"))?;
    }
    let qmp = dir.join("qmp.sock");
    let mut cfg = Config::from_env(false)?;
    cfg.extra_args.extend([
        "-device".to_string(),
        "usb-ehci,id=ehci".to_string(),
        "-drive".to_string(),
        format!("if=none,id=sticka,format=raw,file={}", dir.join("a.img").display()),
        "-drive".to_string(),
        format!("if=none,id=stickb,format=raw,file={}", dir.join("b.img").display()),
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", qmp.display()),
    ]);
    let mut q = Quest::boot(&cfg)?;
    assert!(q.output().contains(": EHCI at ") && q.output().contains(": 0 device(s) enumerated"), "{}", q.output());
    let mut m = Qmp::connect(&qmp)?;
    m.execute(r#"{"execute":"device_add","arguments":{"driver":"usb-storage","bus":"ehci.0","port":"2","drive":"sticka","id":"sa"}}"#)?;
    q.expect("usb: EHCI port 2: device added: ID 46f4:0001 QEMU USB HARDDRIVE")?;
    q.expect("usb: /usb: Fat16 volume \"HOTSTICK\"")?;
    let out = q.shell("fsum /usb/data.bin")?;
    assert!(out.contains(&format!("30000 {:016x} /usb/data.bin", fnv(&data))), "{out}");
    m.execute(r#"{"execute":"device_del","arguments":{"id":"sa"}}"#)?;
    q.expect("usb: EHCI port 2: device removed: ID 46f4:0001")?;
    q.expect("usb: /usb: unmounted (the stick was unplugged)")?;
    let out = q.shell("lsusb -v")?;
    assert!(out.contains("EHCI at PCI") && out.contains(", 0 device(s), interrupt "), "{out}");
    m.execute(r#"{"execute":"device_add","arguments":{"driver":"usb-storage","bus":"ehci.0","port":"2","drive":"stickb","id":"sb"}}"#)?;
    q.expect("usb: /usb: Fat16 volume \"HOTSTICK\"")?;
    let out = q.shell("fsum /usb/data.bin")?;
    assert!(out.contains(&format!("30000 {:016x} /usb/data.bin", fnv(&data))), "{out}");
    q.power_off_ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
