//! QEMU harness: boots a Quest-RS image, reads the serial console, types lines at it like a
//! person, and reads the exit status the kernel leaves through QEMU's `isa-debug-exit` device.
//!
//! Used by the integration tests in `tests/tests/` and by `cargo xtask run --batch`. Timeouts
//! only catch hangs; no test asserts on host time.
pub mod bench;
pub mod linux;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// QEMU's exit status when the kernel wrote `ExitCode::Success` (0x10) to the debug-exit port.
pub const EXIT_SUCCESS: i32 = (0x10 << 1) | 1;
/// ... and `ExitCode::Failure` (0x11): a panic or an unhandled fault.
pub const EXIT_FAILURE: i32 = (0x11 << 1) | 1;
/// CPU model for `-icount` runs: QEMU 10's `-cpu max` aborts under icount ("Bad icount read"),
/// EPYC works (and has SVM with nested paging); the features TCG cannot emulate are removed so
/// QEMU does not warn about them.
pub const ICOUNT_CPU: &str = "EPYC,-xsavec,-misalignsse,-osvw,-topoext,-fxsr-opt,-nrip-save";

/// The boot console's prompt.
pub const PROMPT: &str = ">";

/// Which firmware boots the ISO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    /// UEFI with this firmware image (OVMF), passed as `-bios`.
    Uefi(PathBuf),
}

/// How to start QEMU.
#[derive(Clone, Debug)]
pub struct Config {
    pub qemu: PathBuf,
    pub iso: PathBuf,
    pub firmware: Firmware,
    pub smp: u32,
    pub mem_mib: u32,
    pub cpu: String,
    /// Run with `-icount shift=0,sleep=off` (guest time = instructions executed).
    pub icount: bool,
    /// Copy console output to our stdout as it arrives.
    pub echo: bool,
    pub extra_args: Vec<String>,
    /// Give up on any single wait after this long (hang detection only).
    pub timeout: Duration,
    /// Output that marks the end of boot-time activity (programs init.conf starts): `boot`
    /// waits for it and then asks for a fresh prompt, so their output cannot mix with a test's.
    pub settle: Option<String>,
}

/// What the test image's init.conf (tests/fixtures/init.conf) prints last.
pub const TEST_INIT_DONE: &str = "(vcpu_test) has exited with status ";

impl Config {
    /// The configuration the test suite uses, from the environment `cargo xtask test` sets:
    /// `QUEST_QEMU`, `QUEST_ISO` (or `QUEST_KTEST_ISO` when `ktest`), `QUEST_OVMF`.
    pub fn from_env(ktest: bool) -> Result<Config> {
        let var = |k: &str| {
            std::env::var_os(k)
                .map(PathBuf::from)
                .ok_or_else(|| anyhow!("{k} is not set: run the QEMU tests with `cargo xtask test`"))
        };
        let iso = if ktest { var("QUEST_KTEST_ISO")? } else { var("QUEST_ISO")? };
        Ok(Config {
            qemu: var("QUEST_QEMU")?,
            iso,
            firmware: Firmware::Bios,
            smp: 1,
            mem_mib: 256,
            cpu: "max".into(),
            icount: false,
            echo: std::env::var_os("QUEST_ECHO").is_some(),
            extra_args: Vec::new(),
            timeout: Duration::from_secs(
                std::env::var("QUEST_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(120),
            ),
            // The normal image starts user_init, which runs the test init.conf's programs; the
            // test build keeps the kernel console and starts nothing.
            settle: (!ktest).then(|| TEST_INIT_DONE.to_string()),
        })
    }

    /// Switches to UEFI with the firmware `cargo xtask test` found (`QUEST_OVMF`).
    pub fn uefi_from_env(mut self) -> Result<Config> {
        let f = std::env::var_os("QUEST_OVMF")
            .ok_or_else(|| anyhow!("QUEST_OVMF is not set: run the QEMU tests with `cargo xtask test`"))?;
        self.firmware = Firmware::Uefi(f.into());
        Ok(self)
    }

    /// QEMU's arguments (without the serial back-end).
    pub fn qemu_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-machine".into(),
            "q35".into(),
            "-accel".into(),
            "tcg".into(),
            "-cpu".into(),
            if self.icount && self.cpu == "max" { ICOUNT_CPU.into() } else { self.cpu.clone() },
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            format!("{}M", self.mem_mib),
            "-nic".into(),
            "none".into(),
            "-no-reboot".into(),
            "-device".into(),
            "isa-debug-exit,iobase=0xf4,iosize=0x04".into(),
            "-cdrom".into(),
            self.iso.display().to_string(),
            "-boot".into(),
            "d".into(),
        ];
        if let Firmware::Uefi(f) = &self.firmware {
            // Split code images (OVMF_CODE*.fd; the 4 MiB ones are not a multiple of 64 KiB and
            // `-bios` refuses them) go in as read-only pflash; combined images (OVMF.fd) as -bios.
            let is_code = f.file_name().is_some_and(|n| n.to_string_lossy().contains("CODE"));
            if is_code {
                a.push("-drive".into());
                a.push(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", f.display()));
            } else {
                a.push("-bios".into());
                a.push(f.display().to_string());
            }
        }
        if self.icount {
            a.push("-icount".into());
            a.push("shift=0,sleep=off".into());
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    closed: bool,
}

/// One serial console: what the machine printed on it, and its input.
pub struct Console {
    input: Option<Box<dyn Write + Send>>,
    out: Arc<(Mutex<Output>, Condvar)>,
    /// Position in the output up to which `expect` has consumed.
    cursor: usize,
    timeout: Duration,
    /// Output is already on the terminal: errors need not repeat it.
    echo: bool,
    /// Name for messages ("console", "COM2" ...).
    name: String,
}

impl Console {
    /// A console reading `reader` on a thread and writing `input`.
    pub fn new(name: &str, reader: impl Read + Send + 'static, input: Option<Box<dyn Write + Send>>, timeout: Duration, echo: bool) -> Console {
        let out = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let out2 = Arc::clone(&out);
        let mut reader = reader;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = reader.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*out2;
                let mut o = lock.lock().unwrap();
                if n == 0 {
                    o.closed = true;
                    cv.notify_all();
                    return;
                }
                if echo {
                    let mut so = std::io::stdout().lock();
                    let _ = so.write_all(&buf[..n]);
                    let _ = so.flush();
                }
                o.bytes.extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        });
        Console { input, out, cursor: 0, timeout, echo, name: name.to_string() }
    }

    /// The console output for an error message (empty when it was echoed already).
    fn context(&self) -> String {
        if self.echo { String::from("(above)") } else { self.output() }
    }

    /// Everything the console printed so far (lossy UTF-8).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.0.lock().unwrap().bytes).into_owned()
    }

    /// Whether the console has printed `pat` anywhere (consumed or not).
    pub fn contains(&self, pat: &str) -> bool {
        find(&self.out.0.lock().unwrap().bytes, pat.as_bytes()).is_some()
    }

    /// Waits until `pat` appears in the output after the cursor; moves the cursor past it and
    /// returns the text that came before it.
    pub fn expect(&mut self, pat: &str) -> Result<String> {
        let deadline = Instant::now() + self.timeout;
        let (lock, cv) = &*self.out;
        let mut o = lock.lock().unwrap();
        loop {
            let hay = &o.bytes[self.cursor.min(o.bytes.len())..];
            if let Some(i) = find(hay, pat.as_bytes()) {
                let before = String::from_utf8_lossy(&hay[..i]).into_owned();
                self.cursor += i + pat.len();
                return Ok(before);
            }
            if o.closed {
                drop(o);
                bail!("{}: closed (QEMU exited) before printing {pat:?}; output:\n{}", self.name, self.context());
            }
            let now = Instant::now();
            if now >= deadline {
                drop(o);
                bail!("{}: timed out after {:?} waiting for {pat:?}; output:\n{}", self.name, self.timeout, self.context());
            }
            o = cv.wait_timeout(o, deadline - now).unwrap().0;
        }
    }

    /// Waits for the prompt at the start of a line.
    pub fn expect_prompt(&mut self) -> Result<String> {
        self.expect(&format!("\n{PROMPT}"))
    }

    /// Types `line` and Enter.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let input = self.input.as_mut().context("console input closed")?;
        input.write_all(line.as_bytes())?;
        input.write_all(b"\r")?;
        input.flush()?;
        Ok(())
    }

    /// Sends raw bytes (e.g. ctrl-c, 0x03).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let input = self.input.as_mut().context("console input closed")?;
        input.write_all(bytes)?;
        input.flush()?;
        Ok(())
    }

    /// Types a command at the prompt, waits for the next prompt and returns what the command
    /// printed (without the echoed command line).
    pub fn shell(&mut self, line: &str) -> Result<String> {
        self.send_line(line)?;
        let out = self.expect_prompt()?;
        let out = out.replace('\r', "");
        Ok(out.strip_prefix(line).unwrap_or(&out).trim_start_matches('\n').to_string())
    }

    /// Waits for the reader to see the end of the stream (up to `max`).
    fn wait_closed(&self, max: Duration) {
        let (lock, cv) = &*self.out;
        let o = lock.lock().unwrap();
        let _ = cv.wait_timeout_while(o, max, |o| !o.closed);
    }
}

/// A running Quest-RS machine with its console on QEMU's standard input and output.
pub struct Quest {
    child: Child,
    console: Console,
    timeout: Duration,
    status: Option<ExitStatus>,
}

impl std::ops::Deref for Quest {
    type Target = Console;
    fn deref(&self) -> &Console {
        &self.console
    }
}

impl std::ops::DerefMut for Quest {
    fn deref_mut(&mut self) -> &mut Console {
        &mut self.console
    }
}

impl Quest {
    /// Starts QEMU with the console on a pipe.
    pub fn start(cfg: &Config) -> Result<Quest> {
        let mut cmd = Command::new(&cfg.qemu);
        cmd.args(cfg.qemu_args())
            .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().with_context(|| format!("starting {}", cfg.qemu.display()))?;
        let stdin: Option<Box<dyn Write + Send>> = child.stdin.take().map(|s| Box::new(s) as Box<dyn Write + Send>);
        let stdout = child.stdout.take().context("no stdout")?;
        let console = Console::new("console", stdout, stdin, cfg.timeout, cfg.echo);
        Ok(Quest { child, console, timeout: cfg.timeout, status: None })
    }

    /// Boots and waits for the boot console's prompt.
    pub fn boot(cfg: &Config) -> Result<Quest> {
        let mut q = Quest::start(cfg)?;
        q.expect("Quest-RS ")?;
        match &cfg.settle {
            Some(marker) => {
                q.expect(marker)?;
                q.expect("\n")?;
                // The first prompt may have been printed in the middle of that output.
                q.send_line("")?;
                q.expect_prompt()?;
            }
            None => {
                q.expect_prompt()?;
            }
        }
        Ok(q)
    }

    /// Waits for QEMU to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Result<i32> {
        let (status, _) = wait_child(&mut self.child, &mut self.status, self.timeout, &[&self.console])?;
        Ok(status)
    }

    /// Types `poweroff` and checks the machine reported a clean shutdown.
    pub fn power_off_ok(mut self) -> Result<String> {
        self.send_line("poweroff")?;
        let code = self.wait_exit()?;
        if code != EXIT_SUCCESS {
            bail!("expected a clean power-off (exit {EXIT_SUCCESS}), got exit {code}; console output:\n{}", self.console.context());
        }
        Ok(self.output())
    }
}

/// Waits (up to `timeout`) for `child` to exit; lets the consoles drain; returns its code.
fn wait_child(child: &mut Child, status: &mut Option<ExitStatus>, timeout: Duration, consoles: &[&Console]) -> Result<(i32, ())> {
    if let Some(s) = *status {
        return Ok((s.code().ok_or_else(|| anyhow!("QEMU was killed by a signal"))?, ()));
    }
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait()? {
            *status = Some(s);
            for c in consoles {
                c.wait_closed(Duration::from_secs(2));
            }
            return Ok((s.code().ok_or_else(|| anyhow!("QEMU was killed by a signal"))?, ()));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out: Vec<String> = consoles.iter().map(|c| format!("--- {} ---\n{}", c.name, c.context())).collect();
            bail!("timed out after {timeout:?} waiting for QEMU to exit; output:\n{}", out.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Quest-V machine: the monitor and its sandboxes, each serial port (COM1..COMn) on its own
/// Unix socket.
pub struct QuestV {
    child: Child,
    /// `consoles[i]` is COM(i+1).
    pub consoles: Vec<Console>,
    timeout: Duration,
    status: Option<ExitStatus>,
    _dir: PathBuf,
}

impl QuestV {
    /// Starts QEMU with `serials` UARTs, each connected to a socket this harness listens on.
    pub fn start(cfg: &Config, serials: usize) -> Result<QuestV> {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("questv-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut listeners = Vec::new();
        let mut cmd = Command::new(&cfg.qemu);
        cmd.args(cfg.qemu_args()).args(["-display", "none", "-monitor", "none"]);
        for i in 0..serials {
            let path = dir.join(format!("com{}.sock", i + 1));
            let l = UnixListener::bind(&path).with_context(|| format!("listening on {}", path.display()))?;
            l.set_nonblocking(true)?;
            listeners.push(l);
            cmd.arg("-serial").arg(format!("unix:{}", path.display()));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().with_context(|| format!("starting {}", cfg.qemu.display()))?;
        let mut consoles = Vec::new();
        for (i, l) in listeners.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(30);
            let stream = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if let Some(st) = child.try_wait()? {
                            bail!("QEMU exited ({st}) before connecting COM{}", i + 1);
                        }
                        if Instant::now() >= deadline {
                            let _ = child.kill();
                            bail!("QEMU did not connect COM{} within 30 s", i + 1);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            stream.set_nonblocking(false)?;
            let reader = stream.try_clone()?;
            consoles.push(Console::new(&format!("COM{}", i + 1), reader, Some(Box::new(stream)), cfg.timeout, cfg.echo));
        }
        Ok(QuestV { child, consoles, timeout: cfg.timeout, status: None, _dir: dir })
    }

    /// COMn (1-based).
    pub fn com(&mut self, n: usize) -> &mut Console {
        &mut self.consoles[n - 1]
    }

    /// Waits for QEMU to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Result<i32> {
        let cons: Vec<&Console> = self.consoles.iter().collect();
        let (status, _) = wait_child(&mut self.child, &mut self.status, self.timeout, &cons)?;
        Ok(status)
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for QuestV {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

impl Drop for Quest {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_works() {
        assert_eq!(find(b"abc>def", b">"), Some(3));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"", b""), Some(0));
    }

    #[test]
    fn uefi_args_include_firmware() {
        let cfg = Config {
            qemu: "qemu".into(),
            iso: "q.iso".into(),
            firmware: Firmware::Uefi("/ovmf.fd".into()),
            smp: 2,
            mem_mib: 128,
            cpu: "max".into(),
            icount: true,
            echo: false,
            extra_args: vec![],
            timeout: Duration::from_secs(1),
            settle: None,
        };
        let a = cfg.qemu_args().join(" ");
        assert!(a.contains("-bios /ovmf.fd"), "{a}");
        assert!(a.contains("-smp 2") && a.contains("-m 128M") && a.contains("-icount shift=0,sleep=off"), "{a}");
        assert!(a.contains("isa-debug-exit,iobase=0xf4"), "{a}");
    }
}
