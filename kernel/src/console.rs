//! The kernel console: a command prompt (`>`) on COM1 with line editing. The test build (and
//! `console=kernel` on the command line) runs it instead of `/boot/user_init` and the
//! user-space shell; the normal build falls back to it when `user_init` is missing or ends.
//! The QEMU tests and `cargo xtask run --ktest --batch` talk to it.
use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};

use hal::{print, println};

use crate::drivers::serial;
use crate::initrd::BootFs;

pub const PROMPT: &str = ">";

const HELP: &str = "\
commands:
  help              this list
  echo TEXT         print TEXT
  mem               physical frames and kernel heap in use
  devices           registered device drivers
  cpus              processors found in the ACPI MADT
  pci [-v]          PCI functions (lspci-like; -v: BARs, interrupts, MSI)
  ls                list /boot
  cat FILE          print a file of /boot
  ps -v | -t        list VCPUs | threads
  trace CPU         print and clear CPU's scheduling trace (vcpu-sched text format)
  vmexits [MS]      Quest-V: the monitor's exit counters per CPU (since launch, or during
                    MS ms of guest time with a periodic task running)
  poweroff          power the machine off";

/// Whether the last line ended with CR (so a following LF belongs to it, not a new line).
static LAST_CR: AtomicBool = AtomicBool::new(false);

/// Reads one line with echo and backspace handling; CR, LF and CR LF all end a line.
fn read_line(line: &mut String) {
    line.clear();
    loop {
        let b = serial::read_byte();
        let last_cr = LAST_CR.swap(b == b'\r', Ordering::Relaxed);
        match b {
            b'\n' if last_cr => continue,
            b'\r' | b'\n' => {
                println!();
                return;
            }
            0x08 | 0x7f => {
                if line.pop().is_some() {
                    hal::serial::write_raw(b"\x08 \x08");
                }
            }
            0x20..=0x7e => {
                line.push(b as char);
                hal::serial::write_raw(&[b]);
            }
            _ => {}
        }
    }
}

pub fn run(fs: BootFs) {
    println!("Quest-RS boot console; type 'help' for commands.");
    let mut line = String::new();
    loop {
        print!("{PROMPT}");
        read_line(&mut line);
        let cmd = line.trim();
        let (name, args) = cmd.split_once(' ').map_or((cmd, ""), |(n, a)| (n, a.trim()));
        match name {
            "" => {}
            "help" => println!("{HELP}"),
            "echo" => println!("{args}"),
            "vmexits" => match args.parse::<u64>().or_else(|_| if args.is_empty() { Ok(0) } else { Err(()) }) {
                Ok(ms) => match crate::questv::vmexits(ms) {
                    Ok(s) => print!("{s}"),
                    Err(e) => println!("vmexits: {e}"),
                },
                Err(()) => println!("vmexits: MS must be a number of milliseconds"),
            },
            "mem" => {
                let (free, total) = hal::mm::frame_counts();
                let (used, hfree) = hal::mm::heap_usage();
                println!(
                    "frames: {} of {} free ({} MiB of {} MiB); heap: {} bytes used, {} bytes free",
                    free,
                    total,
                    free * 4096 >> 20,
                    total * 4096 >> 20,
                    used,
                    hfree
                );
                let (dropped, irqs) = serial::stats();
                println!("serial: {irqs} receive interrupts, {dropped} bytes dropped (buffer full)");
            }
            "devices" => {
                let devs = crate::drivers::devices();
                println!("{} devices", devs.len());
                for d in devs {
                    let how = d.irq_how();
                    let how = if how.is_empty() { how } else { alloc::format!(" ({how})") };
                    println!("{}: {}{how}; bottom half on IO VCPU {}; {} interrupts", d.name(), d.resource(), d.vcpu_id(), d.irqs());
                }
            }
            "pci" => print!("{}", crate::drivers::pci::listing(args == "-v")),
            "cpus" => match hal::acpi::platform() {
                Some(p) => {
                    println!("{} CPUs:", p.cpu_count);
                    for (i, id) in p.apic_ids[..p.cpu_count].iter().enumerate() {
                        println!("  cpu{i}: APIC id {id}");
                    }
                }
                None => match hal::mptable::probe() {
                    Some(mp) => {
                        println!("{} CPUs (MP table):", mp.cpu_count);
                        for (i, id) in mp.apic_ids[..mp.cpu_count].iter().enumerate() {
                            println!("  cpu{i}: APIC id {id}");
                        }
                    }
                    None => println!("no ACPI or MP processor information"),
                },
            },
            "ls" => {
                let mut n = 0;
                for (name, size) in fs.files() {
                    println!("{size:>10}  /boot/{name}");
                    n += 1;
                }
                println!("{n} files");
            }
            "cat" => match fs.read(args) {
                Some(data) => match core::str::from_utf8(data) {
                    Ok(text) => print!("{text}"),
                    Err(_) => println!("cat: {args}: binary file ({} bytes)", data.len()),
                },
                None => println!("cat: {args}: no such file in /boot"),
            },
            "ps" => ps(args),
            "trace" => match args.parse::<usize>() {
                Ok(cpu) if cpu < hal::percpu::online() => {
                    let (events, dropped) = crate::sched::drain_trace(cpu);
                    println!("# trace pcpu {cpu}: {} events, {dropped} dropped", events.len());
                    for e in events {
                        println!("{e}");
                    }
                    println!("# end of trace");
                }
                _ => println!("trace: usage: trace CPU (0..{})", hal::percpu::online()),
            },
            "poweroff" => {
                println!("Quest-RS: powering off.");
                hal::cpu::power_off(hal::cpu::ExitCode::Success);
            }
            #[cfg(feature = "ktest")]
            "ktest" => crate::ktest::run(args),
            prog => match crate::process::spawn(&fs, prog, &args.split_whitespace().collect::<alloc::vec::Vec<_>>(), 0) {
                Ok(p) => {
                    p.exited.down();
                }
                Err(crate::process::SpawnError::NotFound) => println!("{prog}: unknown command or program (try 'help' or 'ls')"),
                Err(e) => println!("{prog}: {e}"),
            },
        }
    }
}

fn ps(args: &str) {
    match args {
        "-v" => {
            let all = crate::vcpu::all();
            println!("{} VCPUs", all.len());
            println!("VCPU PCPU Type      C      T  num_tasks");
            for (id, cpu, v) in all {
                let kind = match v.params.kind {
                    vcpu_sched::VcpuKind::Main => "main",
                    vcpu_sched::VcpuKind::Io => "io",
                };
                println!("{:>4} {:>4} {:<4} {:>7} {:>7} {:>6}", id, cpu, kind, v.params.c_us, v.params.t_us, v.tasks);
            }
        }
        "-t" | "" => {
            let ts = crate::sched::threads();
            println!("{} tasks", ts.len());
            println!("  ID          Name Parent VCPU PCPU      Status Thread");
            for t in ts {
                // The global VCPU number (what `ps -v` and the VCPU calls use).
                let vcpu = t.vcpu.and_then(|v| crate::vcpu::global_id(t.cpu, v)).map_or(alloc::string::String::from("-"), |v| alloc::format!("{v}"));
                println!(
                    "{:>4} {:>13} {:>6} {:>4} {:>4} {:>11} {:>6}  {} ms",
                    t.id,
                    t.name,
                    "-",
                    vcpu,
                    t.cpu,
                    t.state.name(),
                    "-",
                    t.runtime_ns / 1_000_000
                );
            }
        }
        _ => println!("ps: usage: ps <-v|-t>"),
    }
}
