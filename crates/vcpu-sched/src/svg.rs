//! SVG Gantt charts of schedule traces (pure string output, `no_std` + `alloc`).
//!
//! One row per VCPU (grouped by PCPU, in order of creation), labelled with its parameters.
//! In each row:
//! * foreground execution: solid bars, one colour per task;
//! * background execution: the same colour, pale and hatched;
//! * budget exhaustion (`DEPLETE`): a black tick down from the top of the row;
//! * replenishments (`REPL`, at the time the budget becomes usable): a green triangle at the
//!   bottom; IO eligibility times (`ELIG`): a blue diamond;
//! * job releases (`RELEASE`): a small grey arrow above the bar;
//! * deadline misses (`MISS`): a red line across the row and a red cross.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::trace::{EventKind, TraceEvent, segments};
use crate::{Nanos, TaskId, VcpuId, VcpuKind};

/// Rendering options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlotOptions {
    /// Title shown at the top.
    pub title: String,
    /// Width of the time axis area in pixels.
    pub width: u32,
    /// Height of one VCPU row in pixels.
    pub row_height: u32,
    /// Start of the plotted window (default: first event).
    pub start: Option<Nanos>,
    /// End of the plotted window (default: last event).
    pub end: Option<Nanos>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self {
            title: String::from("VCPU schedule"),
            width: 1200,
            row_height: 44,
            start: None,
            end: None,
        }
    }
}

const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7",
    "#bab0ac", "#e15759",
];

fn colour(task: TaskId) -> &'static str {
    PALETTE[task.0 as usize % PALETTE.len()]
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            _ => o.push(c),
        }
    }
    o
}

/// Human-readable duration: `1.5ms`, `20us`, `3s`.
pub fn fmt_ns(ns: Nanos) -> String {
    let (div, unit) = if ns >= 1_000_000_000 && ns.is_multiple_of(100_000_000) {
        (1_000_000_000, "s")
    } else if ns >= 1_000_000 {
        (1_000_000, "ms")
    } else if ns >= 1_000 {
        (1_000, "us")
    } else {
        (1, "ns")
    };
    let whole = ns / div;
    let frac = ns % div;
    if frac == 0 {
        format!("{whole}{unit}")
    } else {
        // Up to three decimals, trailing zeros trimmed.
        let mut f = format!("{:03}", frac * 1000 / div);
        while f.ends_with('0') {
            f.pop();
        }
        if f.is_empty() {
            format!("{whole}{unit}")
        } else {
            format!("{whole}.{f}{unit}")
        }
    }
}

fn nice_step(span: Nanos, target_ticks: u64) -> Nanos {
    let raw = (span / target_ticks.max(1)).max(1);
    let mut p: Nanos = 1;
    while p.saturating_mul(10) <= raw {
        p *= 10;
    }
    for m in [1, 2, 5, 10] {
        if p * m >= raw {
            return p * m;
        }
    }
    p * 10
}

/// Render a trace as an SVG document.
pub fn render(events: &[TraceEvent], opts: &PlotOptions) -> String {
    let first = events.iter().map(|e| e.t).min().unwrap_or(0);
    let last = events.iter().map(|e| e.t).max().unwrap_or(0);
    let t0 = opts.start.unwrap_or(first);
    let t1 = opts.end.unwrap_or(last).max(t0 + 1);
    let span = t1 - t0;

    // Rows: VCPUs in creation order per PCPU (plus any VCPU seen without CREATE).
    let mut rows: Vec<(u32, VcpuId)> = Vec::new();
    let mut label: BTreeMap<(u32, VcpuId), String> = BTreeMap::new();
    for e in events {
        if let Some(v) = e.vcpu {
            let key = (e.pcpu, v);
            if let EventKind::Create { kind, c, t } = e.kind {
                let l = match kind {
                    VcpuKind::Main => {
                        format!("P{} V{} main C={} T={}", e.pcpu, v.0, fmt_ns(c), fmt_ns(t))
                    }
                    VcpuKind::Io => {
                        format!("P{} V{} IO U={}/{}", e.pcpu, v.0, fmt_ns(c), fmt_ns(t))
                    }
                };
                label.insert(key, l);
            }
            if !rows.contains(&key) {
                rows.push(key);
            }
        }
    }
    rows.sort_by_key(|k| k.0);
    let row_index: BTreeMap<(u32, VcpuId), usize> =
        rows.iter().enumerate().map(|(i, k)| (*k, i)).collect();

    let left = 210u32;
    let top = 50u32;
    let rh = opts.row_height.max(20);
    let width = opts.width.max(200);
    let total_w = left + width + 30;
    let legend_h = 40;
    let total_h = top + rh * rows.len() as u32 + 40 + legend_h;
    let x = |t: Nanos| -> f64 {
        let t = t.clamp(t0, t1);
        left as f64 + (t - t0) as f64 * width as f64 / span as f64
    };
    let row_y = |i: usize| -> u32 { top + rh * i as u32 };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" viewBox="0 0 {total_w} {total_h}" font-family="sans-serif" font-size="12">
<defs><pattern id="bg" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="white" fill-opacity="0.0"/><line x1="0" y1="0" x2="0" y2="6" stroke="black" stroke-opacity="0.35" stroke-width="2"/></pattern></defs>
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="22" font-size="16" font-weight="bold">{}</text>
<text x="{left}" y="40" fill="#555">{} .. {} ({} rows)</text>"##,
        esc(&opts.title),
        fmt_ns(t0),
        fmt_ns(t1),
        rows.len()
    );

    // Row backgrounds and labels.
    for (i, k) in rows.iter().enumerate() {
        let y = row_y(i);
        let fill = if i % 2 == 0 { "#f7f7f7" } else { "#ffffff" };
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{y}" width="{width}" height="{rh}" fill="{fill}" stroke="#ddd"/>"##
        );
        let text = label
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("P{} V{}", k.0, k.1.0));
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 8,
            y + rh / 2 + 4,
            esc(&text)
        );
    }

    // Time axis.
    let step = nice_step(span, 10);
    let axis_y = top + rh * rows.len() as u32;
    let mut tick = t0.div_ceil(step) * step;
    while tick <= t1 {
        let tx = x(tick);
        let _ = writeln!(
            s,
            r##"<line x1="{tx:.1}" y1="{top}" x2="{tx:.1}" y2="{}" stroke="#ccc" stroke-dasharray="2,3"/><text x="{tx:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##,
            axis_y + 5,
            axis_y + 18,
            fmt_ns(tick)
        );
        tick += step;
    }

    // Execution bars.
    let bar_top = 12;
    let bar_h = rh.saturating_sub(24).max(8);
    for seg in segments(events, t1) {
        if seg.end <= t0 || seg.start >= t1 {
            continue;
        }
        let Some(&i) = row_index.get(&(seg.pcpu, seg.vcpu)) else {
            continue;
        };
        let (x0, x1) = (x(seg.start), x(seg.end));
        let w = (x1 - x0).max(0.5);
        let y = row_y(i) + bar_top;
        let c = colour(seg.task);
        if seg.background {
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.2}" y="{y}" width="{w:.2}" height="{bar_h}" fill="{c}" fill-opacity="0.35"><title>task {} background {}..{}</title></rect><rect x="{x0:.2}" y="{y}" width="{w:.2}" height="{bar_h}" fill="url(#bg)"/>"#,
                seg.task.0,
                fmt_ns(seg.start),
                fmt_ns(seg.end)
            );
        } else {
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.2}" y="{y}" width="{w:.2}" height="{bar_h}" fill="{c}"><title>task {} {}..{}</title></rect>"#,
                seg.task.0,
                fmt_ns(seg.start),
                fmt_ns(seg.end)
            );
        }
    }

    // Marks.
    for e in events {
        let Some(v) = e.vcpu else { continue };
        let Some(&i) = row_index.get(&(e.pcpu, v)) else {
            continue;
        };
        let y = row_y(i);
        match e.kind {
            EventKind::Deplete if e.t >= t0 && e.t <= t1 => {
                let px = x(e.t);
                let _ = writeln!(
                    s,
                    r#"<line x1="{px:.2}" y1="{}" x2="{px:.2}" y2="{}" stroke="black" stroke-width="1.5"><title>budget exhausted at {}</title></line>"#,
                    y + 2,
                    y + bar_top + bar_h / 2,
                    fmt_ns(e.t)
                );
            }
            EventKind::Repl { at, amount } if at >= t0 && at <= t1 => {
                let px = x(at);
                let by = y + rh - 2;
                let _ = writeln!(
                    s,
                    r##"<path d="M{:.2},{by} l4,0 l-4,-7 l-4,7 z" fill="#2ca02c"><title>replenish {} at {}</title></path>"##,
                    px,
                    fmt_ns(amount),
                    fmt_ns(at)
                );
            }
            EventKind::Elig { at, used, .. } if at >= t0 && at <= t1 => {
                let px = x(at);
                let by = y + rh - 6;
                let _ = writeln!(
                    s,
                    r##"<path d="M{px:.2},{} l4,4 l-4,4 l-4,-4 z" fill="#1f77b4"><title>eligible at {} (used {})</title></path>"##,
                    by - 4,
                    fmt_ns(at),
                    fmt_ns(used)
                );
            }
            EventKind::Release { .. } if e.t >= t0 && e.t <= t1 => {
                let px = x(e.t);
                let _ = writeln!(
                    s,
                    r##"<path d="M{px:.2},{} l0,-9 M{px:.2},{} l-3,4 M{px:.2},{} l3,4" stroke="#666" stroke-width="1.2" fill="none"><title>release at {}</title></path>"##,
                    y + bar_top,
                    y + 3,
                    y + 3,
                    fmt_ns(e.t)
                );
            }
            EventKind::Miss { deadline } if e.t >= t0 && e.t <= t1 => {
                let px = x(e.t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{px:.2}" y1="{y}" x2="{px:.2}" y2="{}" stroke="red" stroke-width="2"/><path d="M{:.2},{} l8,8 m0,-8 l-8,8" stroke="red" stroke-width="2.5"><title>deadline miss (deadline {})</title></path>"##,
                    y + rh,
                    px - 4.0,
                    y + rh / 2 - 4,
                    fmt_ns(deadline)
                );
            }
            _ => {}
        }
    }

    // Legend.
    let ly = axis_y + 40;
    let _ = writeln!(
        s,
        r##"<g transform="translate({left},{ly})"><rect x="0" y="-10" width="14" height="12" fill="#4e79a7"/><text x="20" y="0">foreground (colour = task)</text><rect x="200" y="-10" width="14" height="12" fill="#4e79a7" fill-opacity="0.35"/><rect x="200" y="-10" width="14" height="12" fill="url(#bg)"/><text x="220" y="0">background</text><line x1="320" y1="-10" x2="320" y2="2" stroke="black" stroke-width="1.5"/><text x="326" y="0">budget exhausted</text><path d="M460,2 l4,0 l-4,-7 l-4,7 z" fill="#2ca02c"/><text x="470" y="0">replenishment</text><path d="M580,-8 l4,4 l-4,4 l-4,-4 z" fill="#1f77b4"/><text x="590" y="0">IO eligible</text><path d="M680,2 l0,-9 M680,-7 l-3,4 M680,-7 l3,4" stroke="#666" fill="none"/><text x="688" y="0">job release</text><path d="M780,-8 l8,8 m0,-8 l-8,8" stroke="red" stroke-width="2.5"/><text x="794" y="0">deadline miss</text></g>"##
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_exactly() {
        assert_eq!(fmt_ns(20_000), "20us");
        assert_eq!(fmt_ns(1_500_000), "1.5ms");
        assert_eq!(fmt_ns(50_000_000), "50ms");
        assert_eq!(fmt_ns(999), "999ns");
        assert_eq!(fmt_ns(2_000_000_000), "2s");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(200_000_000, 10), 20_000_000);
        assert_eq!(nice_step(1_000_000, 10), 100_000);
        assert_eq!(nice_step(3, 10), 1);
    }
}
