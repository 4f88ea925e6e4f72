//! The output protocol of `bench/qbench.c` (the benchmark program `cargo xtask bench` runs on
//! Quest-RS and on Linux): parsing and the per-line host timestamps.
//!
//! ```text
//! @INFO key=value
//! @START group
//! @BENCH name unit median=X max=Y n=N
//! @HIST name bucket:count ...
//! @SKIP name reason ...
//! @DONE
//! ```
//!
//! Lines may arrive in the middle of other console output (kernel messages, a shell prompt):
//! a record is recognised wherever `@` starts one, and anything else is ignored.
use std::collections::BTreeMap;
use std::time::Duration;

/// One `@BENCH` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    /// `ns` (per operation, lower is better) or `ops/<N>ms` (per interval, higher is better).
    pub unit: String,
    pub median: u64,
    pub max: u64,
    pub n: u64,
    /// Host time from the previous record to this one (secondary figure; `None` if the caller
    /// gave no timestamps).
    pub wall: Option<Duration>,
}

impl Sample {
    /// Higher is better (a throughput in operations per interval).
    pub fn higher_is_better(&self) -> bool {
        self.unit.starts_with("ops")
    }
}

/// Everything one run of qbench printed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub samples: Vec<Sample>,
    pub info: BTreeMap<String, String>,
    pub hist: BTreeMap<String, Vec<(String, u64)>>,
    pub skipped: Vec<(String, String)>,
    pub done: bool,
}

impl Report {
    pub fn get(&self, name: &str) -> Option<&Sample> {
        self.samples.iter().find(|s| s.name == name)
    }
}

/// Parses one record; `None` for lines that are not one.
fn parse_sample(rest: &str) -> Option<Sample> {
    let mut it = rest.split_whitespace();
    let name = it.next()?.to_string();
    let unit = it.next()?.to_string();
    let (mut median, mut max, mut n) = (None, None, None);
    for kv in it {
        let (k, v) = kv.split_once('=')?;
        let v: u64 = v.parse().ok()?;
        match k {
            "median" => median = Some(v),
            "max" => max = Some(v),
            "n" => n = Some(v),
            _ => {}
        }
    }
    Some(Sample { name, unit, median: median?, max: max?, n: n?, wall: None })
}

/// Parses console output whose lines carry host arrival times (`(time since start, line)`).
pub fn parse_timed<'a>(lines: impl IntoIterator<Item = (Duration, &'a str)>) -> Report {
    let mut r = Report::default();
    let mut last: Option<Duration> = Some(Duration::ZERO);
    for (t, line) in lines {
        let line = line.trim_end_matches(['\r', '\n']);
        let Some(i) = line.find('@') else { continue };
        let rec = &line[i..];
        let (tag, rest) = rec.split_once(' ').unwrap_or((rec, ""));
        let wall = last.map(|l| t.saturating_sub(l));
        match tag {
            "@BENCH" => {
                if let Some(mut s) = parse_sample(rest) {
                    s.wall = wall;
                    r.samples.push(s);
                    last = Some(t);
                }
            }
            "@START" => last = Some(t),
            "@INFO" => {
                if let Some((k, v)) = rest.trim().split_once('=') {
                    r.info.insert(k.to_string(), v.to_string());
                }
            }
            "@HIST" => {
                let mut it = rest.split_whitespace();
                if let Some(name) = it.next() {
                    let buckets = it
                        .filter_map(|b| b.split_once(':'))
                        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                        .collect();
                    r.hist.insert(name.to_string(), buckets);
                }
            }
            "@SKIP" => {
                let (name, why) = rest.split_once(' ').unwrap_or((rest, ""));
                r.skipped.push((name.to_string(), why.to_string()));
            }
            "@DONE" => r.done = true,
            _ => {}
        }
    }
    r
}

/// Parses console output without timestamps.
pub fn parse(text: &str) -> Report {
    let mut r = parse_timed(text.lines().map(|l| (Duration::ZERO, l)));
    for s in &mut r.samples {
        s.wall = None;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "\
Quest-RS booting\r
@INFO boot_tsc=123\r
@INFO tsc_per_ns=1.0000\r
@BENCH boot_to_user ns median=123 max=123 n=1\r
@START null_syscall\r
> @BENCH null_syscall ns median=409 max=500 n=1000\r
@START wakeup
@BENCH wakeup_latency ns median=54202 max=55235 n=200
@HIST wakeup_latency 54us:153 55us:47
@BENCH broken ns median=x max=1 n=1
@BENCH tm_coop ops/20ms median=9118 max=9122 n=3
@SKIP msg_shm no MAP_SHARED
@DONE
";

    #[test]
    fn parses_records_and_ignores_the_rest() {
        let r = parse(OUT);
        assert!(r.done);
        assert_eq!(r.info["tsc_per_ns"], "1.0000");
        assert_eq!(r.samples.len(), 4, "{r:?}");
        let s = r.get("null_syscall").unwrap();
        assert_eq!((s.unit.as_str(), s.median, s.max, s.n), ("ns", 409, 500, 1000));
        assert!(!s.higher_is_better());
        let t = r.get("tm_coop").unwrap();
        assert!(t.higher_is_better());
        assert_eq!(t.median, 9118);
        assert_eq!(r.hist["wakeup_latency"], vec![("54us".into(), 153), ("55us".into(), 47)]);
        assert_eq!(r.skipped, vec![("msg_shm".into(), "no MAP_SHARED".into())]);
        assert!(r.get("broken").is_none());
    }

    #[test]
    fn wall_time_is_from_the_previous_record() {
        let ms = Duration::from_millis;
        let lines = [
            (ms(100), "@INFO a=b"),
            (ms(150), "@BENCH boot_to_user ns median=1 max=1 n=1"),
            (ms(200), "@START x"),
            (ms(260), "@BENCH x ns median=1 max=1 n=1"),
            (ms(300), "@BENCH y ns median=1 max=1 n=1"),
        ];
        let r = parse_timed(lines);
        assert_eq!(r.get("boot_to_user").unwrap().wall, Some(ms(150)));
        assert_eq!(r.get("x").unwrap().wall, Some(ms(60)));
        assert_eq!(r.get("y").unwrap().wall, Some(ms(40)));
        assert!(!r.done);
    }
}
