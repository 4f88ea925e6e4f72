//! `cargo xtask bench --profile NAME`: where Quest-RS's kernel instructions go in one
//! benchmark.
//!
//! Debian's QEMU is built with TCG plugin support but ships no plugins, so this uses QEMU's
//! own logging instead: `-d in_asm,exec,nochain` with `-dfilter` on the kernel's address range
//! logs every translated block (its instructions) and every execution of a block (nochain: no
//! direct block-to-block jumps that would skip the log). Instructions per block × executions,
//! attributed to the kernel's function symbols, minus the same for a baseline boot that runs no
//! benchmark (boot, calibration, power-off), divided by the operations the benchmark ran
//! (qbench's `@INFO NAME_total_ops`), gives kernel instructions per operation by function.
//! The log is read through a FIFO as QEMU writes it (it is several GB for a whole run).
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSymbol, SymbolKind};

use crate::{image, root};

/// Kernel instructions per translated block start, and how often each block ran.
///
/// Under -icount QEMU also translates blocks limited to a few instructions (to stop exactly at
/// a timer deadline): the exec line's `cflags` carries that limit (`CF_COUNT_MASK`, the low 9
/// bits; 0 = no limit), so a block's length is the longest translation seen at its address,
/// capped per execution by the limit.
#[derive(Default, Debug)]
pub struct Counts {
    len: HashMap<u64, u64>,
    /// (block start, instruction limit or 0) -> executions.
    execs: HashMap<(u64, u64), u64>,
}

/// QEMU's CF_COUNT_MASK.
const CF_COUNT_MASK: u64 = 0x1ff;

impl Counts {
    /// Instructions executed per block start.
    fn instructions(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.execs.iter().map(|((pc, limit), n)| {
            let len = self.len.get(pc).copied().unwrap_or(1);
            (*pc, n * if *limit != 0 { len.min(*limit) } else { len })
        })
    }
}

fn is_byte(t: &str) -> bool {
    t.len() == 2 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses QEMU's `-d in_asm,exec,nochain` log.
pub fn parse_log(r: impl BufRead) -> Counts {
    let mut c = Counts::default();
    let mut block: Option<(u64, u64)> = None; // (start, instructions so far)
    for line in r.lines() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.strip_prefix("Trace ") {
            // Trace 0: 0x7f.. [00000000/ffffffff80154410/0000c0b0/ff022200] 
            let mut f = rest.split('/');
            let pc = f.nth(1).and_then(|p| u64::from_str_radix(p, 16).ok());
            let cflags = f.nth(1).and_then(|p| u64::from_str_radix(p.trim_end_matches(|c: char| !c.is_ascii_hexdigit()), 16).ok());
            if let Some(pc) = pc {
                *c.execs.entry((pc, cflags.unwrap_or(0) & CF_COUNT_MASK)).or_default() += 1;
            }
            continue;
        }
        if line.starts_with("IN:") {
            block = Some((0, 0));
            continue;
        }
        if let Some((start, n)) = block.as_mut() {
            if let Some(rest) = line.strip_prefix("0x") {
                let Some((addr, text)) = rest.split_once(':') else { continue };
                let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
                // A continuation line carries only the rest of a long instruction's bytes.
                if text.split_whitespace().all(is_byte) {
                    continue;
                }
                if *n == 0 {
                    *start = addr;
                }
                *n += 1;
            } else if line.trim().is_empty() {
                if *n > 0 {
                    let l = c.len.entry(*start).or_default();
                    *l = (*l).max(*n);
                }
                block = None;
            }
        }
    }
    c
}

/// Function symbols of the kernel ELF, sorted: (address, size, name without hash).
fn symbols(elf: &[u8]) -> Result<Vec<(u64, u64, String)>> {
    let f = object::File::parse(elf)?;
    let mut v: Vec<(u64, u64, String)> = f
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), format!("{:#}", rustc_demangle::demangle(s.name().ok()?)))))
        .collect();
    v.sort();
    v.dedup_by_key(|s| s.0);
    Ok(v)
}

fn symbolize<'a>(syms: &'a [(u64, u64, String)], pc: u64) -> &'a str {
    match syms.partition_point(|s| s.0 <= pc) {
        0 => "?",
        i => {
            let (a, sz, n) = &syms[i - 1];
            if sz == &0 || pc < a + sz { n } else { "?" }
        }
    }
}

/// Boots `iso` with the block log on a FIFO; returns the counts and the console.
fn profiled_boot(qemu: &Path, iso: &Path, dir: &Path, tag: &str) -> Result<(Counts, String)> {
    let fifo = dir.join(format!("{tag}.fifo"));
    let _ = fs::remove_file(&fifo);
    let st = Command::new("mkfifo").arg(&fifo).status().context("running mkfifo")?;
    if !st.success() {
        bail!("mkfifo {} failed", fifo.display());
    }
    let console = dir.join(format!("{tag}.console"));
    let mut args = crate::bench::machine_args();
    // The serial console goes to a file (stdout is not read here).
    let i = args.iter().position(|a| a == "stdio").unwrap();
    args[i] = format!("file:{}", console.display());
    args.extend(["-cdrom".into(), iso.display().to_string(), "-boot".into(), "d".into()]);
    args.extend(["-d".into(), "in_asm,exec,nochain".into(), "-dfilter".into(), "0xffffffff80000000..0xffffffffffffffff".into()]);
    args.extend(["-D".into(), fifo.display().to_string()]);
    let mut child = Command::new(qemu).args(&args).stdin(Stdio::null()).stdout(Stdio::null()).spawn()?;
    let f = fs::File::open(&fifo)?;
    let counts = parse_log(BufReader::with_capacity(1 << 20, f));
    let st = child.wait()?;
    let _ = fs::remove_file(&fifo);
    let out = fs::read_to_string(&console).unwrap_or_default();
    if st.code() != Some(quest_tests::EXIT_SUCCESS) {
        bail!("profiled Quest-RS boot ({tag}) did not power off cleanly: {st}; console in {}", console.display());
    }
    Ok((counts, out))
}

/// `after`: benchmarks run first in both boots (their instructions cancel out), to see how
/// `name` behaves after them; `full`: qbench's full iteration counts instead of --quick.
pub fn run(name: &str, after: &[String], full: bool, debug_kernel: bool) -> Result<()> {
    let t = crate::bench::setup::tools()?;
    let dir = root().join("target/bench/profile");
    fs::create_dir_all(&dir)?;
    let profile = if debug_kernel { image::PROFILE } else { image::BENCH_PROFILE };
    let mut isos = Vec::new();
    let pre = if after.is_empty() { "none".to_string() } else { after.join(" ") };
    let quick = if full { "" } else { "--quick " };
    for (tag, bench) in [("base", pre.clone()), ("bench", format!("{pre} {name}"))] {
        let conf = dir.join("init.conf");
        fs::write(&conf, format!("qbench {quick}--poweroff {bench} {}\n", crate::bench::QUEST_VCPU))?;
        let img = image::build_with(profile, false, &format!("profile-{tag}"), &crate::boot_files(&[conf])?)?;
        isos.push((tag, img));
    }
    let syms = symbols(&fs::read(&isos[0].1.elf)?)?;
    let mut by_sym: Vec<HashMap<String, u64>> = Vec::new();
    let mut ops = 0u64;
    for (tag, img) in &isos {
        println!("xtask: profiling Quest-RS ({profile}): {tag} run (QEMU block log; slow)");
        let (c, out) = profiled_boot(&t.qemu, &img.iso, &dir, tag)?;
        let r = quest_tests::bench::parse(&out);
        if !r.done {
            bail!("qbench did not finish in the {tag} run; console in target/bench/profile/{tag}.console");
        }
        if *tag == "bench" {
            ops = r
                .info
                .iter()
                .filter(|(k, _)| k.strip_suffix("_total_ops") == Some(name))
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum();
        }
        let mut m: HashMap<String, u64> = HashMap::new();
        for (pc, n) in c.instructions() {
            *m.entry(symbolize(&syms, pc).to_string()).or_default() += n;
        }
        by_sym.push(m);
    }
    if ops == 0 {
        bail!("no @INFO *_total_ops from qbench for '{name}' (a latency benchmark name is needed)");
    }
    let (base, bench) = (&by_sym[0], &by_sym[1]);
    let mut delta: Vec<(String, i64)> = bench
        .iter()
        .map(|(k, v)| (k.clone(), *v as i64 - base.get(k).copied().unwrap_or(0) as i64))
        .filter(|(_, d)| *d > 0)
        .collect();
    delta.sort_by_key(|d| -d.1);
    let total: i64 = delta.iter().map(|d| d.1).sum();
    let mut s = format!(
        "# Kernel instructions per operation: `{name}` on Quest-RS ({profile}{}{})\n\n\
         {ops} operations (warm-up included); kernel instructions above the baseline boot: {total} \
         = {} per operation.\n\n| function | instructions / op | share |\n|---|---:|---:|\n",
        if after.is_empty() { String::new() } else { format!(", after {}", after.join(" ")) },
        if full { ", full iterations" } else { "" },
        total / ops as i64
    );
    for (k, d) in delta.iter().take(30) {
        s.push_str(&format!("| `{k}` | {} | {:.1} % |\n", d / ops as i64, 100.0 * *d as f64 / total as f64));
    }
    let out = dir.join(if after.is_empty() { format!("{name}.md") } else { format!("{name}-after-{}.md", after.join("-")) });
    fs::write(&out, &s)?;
    println!("{s}\nxtask: wrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
----------------
IN: 
0xffffffff80154410:  55                       pushq    %rbp
0xffffffff80154446:  66 2e 0f 1f 84 00 00 00  nopw     %cs:(%rax, %rax)
0xffffffff8015444e:  00 00
0xffffffff8015445a:  75 06                    jne      0xffffffff80154462

Trace 0: 0x7f4d145466c0 [00000000/ffffffff80154410/0000c0b0/ff022200] 
Trace 0: 0x7f4d145466c0 [00000000/ffffffff80154410/0000c0b0/ff022200] 
----------------
IN: 
0xffffffff80154410:  55                       pushq    %rbp

Trace 0: 0x7f4d14546000 [00000000/ffffffff80154410/0000c0b0/ff022201] 
----------------
IN: 
0xffffffff8015445c:  eb 11                    jmp      0xffffffff8015446f

Trace 0: 0x7f4d14546bc0 [00000000/ffffffff8015445c/0000c0b0/ff022200] 
";

    #[test]
    fn block_log_counts_instructions() {
        let c = parse_log(LOG.as_bytes());
        assert_eq!(c.len[&0xffffffff80154410], 3, "continuation lines are not instructions");
        let mut v: Vec<(u64, u64)> = c.instructions().collect();
        v.sort();
        // Two full runs of the 3-instruction block, one run limited to 1 instruction (icount).
        let mut by_pc: HashMap<u64, u64> = HashMap::new();
        for (pc, n) in v.drain(..) {
            *by_pc.entry(pc).or_default() += n;
        }
        assert_eq!(by_pc[&0xffffffff80154410], 7);
        assert_eq!(by_pc[&0xffffffff8015445c], 1);
    }

    #[test]
    fn symbols_resolve() {
        let syms = vec![(0x100, 0x10, "a".to_string()), (0x200, 0, "b".to_string())];
        assert_eq!(symbolize(&syms, 0x105), "a");
        assert_eq!(symbolize(&syms, 0x150), "?");
        assert_eq!(symbolize(&syms, 0x250), "b");
        assert_eq!(symbolize(&syms, 0x50), "?");
    }
}
