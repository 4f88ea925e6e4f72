//! `cargo xtask plot`: render a schedule trace as an SVG Gantt chart.
//!
//! ```text
//! cargo xtask plot --example three-main-one-io            # simulate a built-in scenario
//! cargo xtask plot --trace run.trace -o out.svg           # a trace file (simulator or kernel)
//! cargo xtask plot --example background --save-trace t.txt
//! cargo xtask plot --list                                 # built-in scenarios
//! ```
//!
//! Options: `--start-ms N` / `--end-ms N` crop the time axis; `--width PX` sets the plot width.
//! The default output is `target/plot/<name>.svg`; the path written is printed.
//! The trace format is documented in `vcpu_sched::trace` (and docs/vcpu-sched.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use vcpu_sched::svg::{PlotOptions, render};
use vcpu_sched::{sim, trace};

const USAGE: &str = "usage: cargo xtask plot (--example NAME | --trace FILE | --list) \
[-o OUT.svg] [--save-trace FILE] [--start-ms N] [--end-ms N] [--width PX]";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Entry point: `args` are the arguments after `plot`.
pub fn run(args: &[String]) -> Result<()> {
    let mut example: Option<String> = None;
    let mut trace_file: Option<PathBuf> = None;
    let mut out: Option<PathBuf> = None;
    let mut save_trace: Option<PathBuf> = None;
    let mut opts = PlotOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<String> {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--example" => example = Some(value("--example")?),
            "--trace" => trace_file = Some(value("--trace")?.into()),
            "-o" | "--out" => out = Some(value("-o")?.into()),
            "--save-trace" => save_trace = Some(value("--save-trace")?.into()),
            "--start-ms" => opts.start = Some(value("--start-ms")?.parse::<u64>()? * 1_000_000),
            "--end-ms" => opts.end = Some(value("--end-ms")?.parse::<u64>()? * 1_000_000),
            "--width" => opts.width = value("--width")?.parse()?,
            "--list" => {
                for name in sim::EXAMPLES {
                    println!("{name}");
                }
                return Ok(());
            }
            "-h" | "--help" => {
                println!("{USAGE}\nexamples: {}", sim::EXAMPLES.join(", "));
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }

    let (name, events) = match (example, trace_file) {
        (Some(name), None) => {
            let sc = sim::example(&name).with_context(|| {
                format!(
                    "no example {name:?}; available: {}",
                    sim::EXAMPLES.join(", ")
                )
            })?;
            let events = sim::run(&sc).map_err(|e| anyhow::anyhow!("simulation failed: {e}"))?;
            if opts.end.is_none() {
                opts.end = Some(sc.duration);
            }
            if opts.start.is_none() {
                opts.start = Some(0);
            }
            opts.title = format!("{name}: simulated VCPU schedule");
            (name, events)
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let events =
                trace::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "trace".into());
            opts.title = format!("{name}: VCPU schedule");
            (name, events)
        }
        _ => bail!("give exactly one of --example NAME or --trace FILE\n{USAGE}"),
    };

    if let Some(path) = save_trace {
        write(&path, &trace::write(&events))?;
        println!("{}", path.display());
    }
    let svg = render(&events, &opts);
    let out = out.unwrap_or_else(|| {
        workspace_root()
            .join("target")
            .join("plot")
            .join(format!("{name}.svg"))
    });
    write(&out, &svg)?;
    println!("{}", out.display());
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
