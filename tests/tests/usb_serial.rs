//! USB serial on xHCI: QEMU's `usb-serial` (FTDI) with its chardev a Unix socket the test
//! holds. The adapter becomes /dev/ttyUSB0; the seed's `cdc_read` writes a line to it (the
//! host reads it from the socket) and then reads a byte stream the host sends, counted and
//! hashed (nothing lost, nothing changed). QEMU has no CDC-ACM device model: FTDI only.
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Context, Result};
use quest_tests::{Config, Quest};

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn cdc_read_receives_a_stream_from_the_usb_serial_adapter() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("quest-usbserial-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sock = dir.join("ser.sock");
    let mut cfg = Config::from_env(false)?;
    cfg.extra_args.extend([
        "-device".to_string(),
        "qemu-xhci,id=xhci".to_string(),
        "-chardev".to_string(),
        format!("socket,id=ser0,path={},server=on,wait=off", sock.display()),
        "-device".to_string(),
        // always-plugged: attached at boot although no client is connected yet.
        "usb-serial,bus=xhci.0,port=1,chardev=ser0,always-plugged=on".to_string(),
    ]);
    let mut q = Quest::boot(&cfg)?;
    let boot = q.output();
    assert!(boot.contains("usb: /dev/ttyUSB0: FTDI serial adapter, 115200 8N1"), "{boot}");
    let s = UnixStream::connect(&sock).with_context(|| format!("{}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;

    let n = 20_000usize;
    let data: Vec<u8> = (0..n as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    q.send_line(&format!("cdc_read /dev/ttyUSB0 {n}"))?;
    // The program's write reaches the host side.
    let mut line = String::new();
    r.read_line(&mut line)?;
    assert_eq!(line, "cdc_read: ready\n");
    w.write_all(&data)?;
    let out = q.expect(" us first to last")?;
    assert!(out.contains(&format!("cdc_read: {n} bytes, fnv {:016x}, ", fnv(&data))), "{out}");
    q.expect_prompt()?;
    let _ = std::fs::remove_dir_all(&dir);
    q.power_off_ok()?;
    Ok(())
}

/// Back-pressure without loss: the host sends 100,000 bytes before anybody reads, the driver
/// buffers 64 KiB and stops asking the adapter (QEMU holds the rest back); the reader that
/// drains the buffer queues the adapter's transfer again, so `cdc_read` then gets every byte.
#[test]
fn a_full_receive_buffer_resumes_when_the_reader_drains_it() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("quest-usbfull-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sock = dir.join("ser.sock");
    let mut cfg = Config::from_env(false)?;
    cfg.extra_args.extend([
        "-device".to_string(),
        "qemu-xhci,id=xhci".to_string(),
        "-chardev".to_string(),
        format!("socket,id=ser0,path={},server=on,wait=off", sock.display()),
        "-device".to_string(),
        "usb-serial,bus=xhci.0,port=1,chardev=ser0,always-plugged=on".to_string(),
    ]);
    let mut q = Quest::boot(&cfg)?;
    let s = UnixStream::connect(&sock).with_context(|| format!("{}", sock.display()))?;
    let n = 100_000usize;
    let data: Vec<u8> = (0..n as u32).map(|i| (i.wrapping_mul(2_246_822_519) >> 13) as u8).collect();
    let mut w = s.try_clone()?;
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent));
    // Wait until the driver's buffer is full (64 KiB less one transfer's 512 bytes, or more).
    let mut buffered = 0;
    for _ in 0..60 {
        let out = q.shell("lsusb -v")?;
        let line = out.lines().find(|l| l.contains("Serial: /dev/ttyUSB0")).unwrap_or_else(|| panic!("{out}"));
        buffered = line.split(", ").find_map(|f| f.strip_suffix(" buffered")).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"));
        if buffered > 65_024 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(buffered > 65_024 && buffered <= 65_536, "{buffered} bytes buffered");
    q.send_line(&format!("cdc_read /dev/ttyUSB0 {n}"))?;
    let out = q.expect(" us first to last")?;
    assert!(out.contains(&format!("cdc_read: {n} bytes, fnv {:016x}, ", fnv(&data))), "{out}");
    q.expect_prompt()?;
    writer.join().expect("writer")?;
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    q.power_off_ok()?;
    Ok(())
}

/// The real-time bound (issue 18, item 4) under `-icount` (guest time = instructions) beside
/// two CPU hogs: the adapter is looped back (a udp chardev sending to itself), `cdc_read -l`
/// times write-to-read of single bytes. The bound, by interrupt: the transfer's completion
/// interrupts the controller's top half, which wakes the bottom half on the driver's IO VCPU
/// (C = 100 us every T = 5 ms); eligible, it runs at once, else when PIBS makes it eligible
/// again, at most T after its last activation began: the kernel's own measurement (`lsusb -v`)
/// must stay within T + C. The median is the interrupt path itself: below 1 ms, where the
/// 10 ms poll this replaced measured 3.4-3.8 ms.
#[test]
fn serial_latency_under_icount_beside_cpu_hogs_is_bounded() -> Result<()> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut cfg = Config::from_env(false)?;
    cfg.icount = true;
    cfg.timeout = cfg.timeout.max(Duration::from_secs(300));
    cfg.extra_args.extend([
        "-device".to_string(),
        "qemu-xhci,id=xhci".to_string(),
        "-chardev".to_string(),
        format!("udp,id=ser0,host=127.0.0.1,port={port},localaddr=127.0.0.1,localport={port}"),
        "-device".to_string(),
        "usb-serial,bus=xhci.0,port=1,chardev=ser0,always-plugged=on".to_string(),
    ]);
    let mut q = Quest::boot(&cfg)?;
    assert!(q.output().contains("usb: /dev/ttyUSB0: FTDI serial adapter"), "{}", q.output());
    q.shell("nowait cpu_hog 3000")?;
    let out = q.shell("cdc_read -l 60")?;
    let line = out.lines().find(|l| l.starts_with("cdc_read: latency ")).unwrap_or_else(|| panic!("{out}"));
    let us = |key: &str| -> u64 { line.split(key).nth(1).and_then(|r| r.split(' ').nth(1)).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{key}: {line}")) };
    let (min, median, max) = (us(" min"), us(" median"), us(" max"));
    println!("{line}");
    assert!(min <= median && median <= max, "{line}");
    let usb = q.shell("lsusb -v")?;
    let bh = usb.lines().find(|l| l.contains("Bottom half: IO VCPU")).unwrap_or_else(|| panic!("{usb}"));
    let port = usb.lines().find(|l| l.contains("Serial: /dev/ttyUSB0")).unwrap_or_else(|| panic!("{usb}"));
    println!("{}\n{}", bh.trim(), port.trim());
    let field = |l: &str, key: &str| -> u64 { l.split(key).nth(1).and_then(|r| r.split(' ').next()).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{key}: {l}")) };
    let (c, t) = (field(bh, "C="), field(bh, "T="));
    // The design's promise, measured in the kernel: an interrupt's bottom half starts within
    // one IO VCPU period plus its budget (PIBS eligibility; nothing of higher priority runs
    // on CPU 0 here: the hogs' VCPUs have 20 ms periods).
    let wait = field(bh, "longest wait after an interrupt ");
    assert!(wait <= t + c, "bottom half started {wait} us after an interrupt: above T + C = {} us\n{bh}", t + c);
    assert!(field(bh, "longest pass ") <= c, "{bh}");
    // End to end adds the write, the host's loopback and the reader's wake-up: `cdc_read` is
    // best-effort and waits behind the hogs' Main VCPUs (2 + 5 ms every 20 ms; hand-overs up to
    // 4.7 ms measured, end to end up to 11.6 ms): 20 ms allowed.
    assert!(max <= 20_000, "{line}\n{bh}\n{port}");
    assert!(median <= 1_000, "the median is not the interrupt path's: {line}");
    q.power_off_ok()?;
    Ok(())
}
