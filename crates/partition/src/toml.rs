//! The TOML front end (feature `toml`, host only).
//!
//! Syntax and type errors, unknown or missing fields and bad values (a size like `512 MB`, a
//! console like `COM5`, a PCI address like `00:40.0`) are reported as one [`Error::Toml`] with
//! the line and column of the offending text. Rules that relate several items (overlaps, a CPU
//! in two sandboxes, unknown sandbox names...) are checked by [`Config::validate`].

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};

use crate::Error;
use crate::model::{
    Channel, ChannelKind, Config, Console, Image, Machine, Memory, PciAddr, PhysRange, PortRange,
    Sandbox,
};

/// Parses a configuration from TOML. On error the vector holds one [`Error::Toml`] with the
/// line and column of the problem. The result is not yet validated: call
/// [`Config::validate`] or [`crate::plan`].
pub fn from_toml_str(text: &str) -> Result<Config, Vec<Error>> {
    let raw: RawConfig = ::toml::from_str(text).map_err(|e| alloc::vec![toml_error(text, &e)])?;
    Ok(raw.into_config())
}

impl Config {
    /// [`from_toml_str`].
    pub fn from_toml_str(text: &str) -> Result<Config, Vec<Error>> {
        from_toml_str(text)
    }
}

fn toml_error(text: &str, e: &::toml::de::Error) -> Error {
    let (line, column) = match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let before = text.get(..start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
            (line, column)
        }
        None => (0, 0),
    };
    Error::Toml {
        line,
        column,
        message: e.message().trim_end().to_owned(),
    }
}

/// Parses a size: an integer (`1048576`, `0x10_0000`) with an optional binary unit `K`/`KiB`,
/// `M`/`MiB`, `G`/`GiB`, `T`/`TiB` or `B` (`512 MiB`, `2G`). Decimal units (`MB`) are
/// refused, to avoid guessing.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = if t.starts_with("0x") || t.starts_with("0X") {
        2 + t[2..]
            .find(|c: char| !(c.is_ascii_hexdigit() || c == '_'))
            .unwrap_or(t.len() - 2)
    } else {
        t.find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(t.len())
    };
    let (num, unit) = t.split_at(split);
    let n =
        parse_int(num).ok_or_else(|| format!("'{s}' is not a size (e.g. 4096, \"512 MiB\")"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "m" | "MiB" => 20,
        "G" | "g" | "GiB" => 30,
        "T" | "t" | "TiB" => 40,
        u @ ("KB" | "kB" | "MB" | "GB" | "TB") => {
            let binary = format!("{}iB", &u[..1].to_ascii_uppercase());
            return Err(format!(
                "size '{s}': write {binary} (sizes are binary; {u} is ambiguous)"
            ));
        }
        u => {
            return Err(format!(
                "size '{s}' has unknown unit '{u}' (use KiB, MiB, GiB or TiB)"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

/// An unsigned integer: decimal or `0x` hex, `_` allowed between digits.
fn parse_int(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    u64::from_str_radix(&clean, radix).ok()
}

fn non_negative<E: de::Error>(v: i64) -> Result<u64, E> {
    u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))
}

/// Deserializes a string through `parse`, so that its error carries the string's span.
fn from_str_with<'de, D, T, F>(d: D, expecting: &'static str, parse: F) -> Result<T, D::Error>
where
    D: de::Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct V<T, F>(F, &'static str, PhantomData<T>);
    impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for V<T, F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.1)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V(parse, expecting, PhantomData))
}

/// A size: integer or size string.
struct SizeValue(u64);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: an integer or a string such as \"512 MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeValue, E> {
                non_negative(v).map(SizeValue)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeValue, E> {
                Ok(SizeValue(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeValue, E> {
                parse_size(v).map(SizeValue).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    start: SizeValue,
    end: Option<SizeValue>,
    size: Option<SizeValue>,
}

/// Memory: a size, or `{ start = ..., end = ... }` / `{ start = ..., size = ... }`.
struct MemoryValue(Memory);

impl<'de> Deserialize<'de> for MemoryValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MemoryValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a size (\"512 MiB\") or a range ({ start = \"1 GiB\", size = \"512 MiB\" } or \
                     { start = ..., end = ... })",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MemoryValue, E> {
                non_negative(v).map(|n| MemoryValue(Memory::Size(n)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MemoryValue, E> {
                Ok(MemoryValue(Memory::Size(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MemoryValue, E> {
                parse_size(v)
                    .map(|n| MemoryValue(Memory::Size(n)))
                    .map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MemoryValue, A::Error> {
                let r = RawRange::deserialize(MapAccessDeserializer::new(map))?;
                let start = r.start.0;
                let end = match (r.end, r.size) {
                    (Some(end), None) => end.0,
                    (None, Some(size)) => start
                        .checked_add(size.0)
                        .ok_or_else(|| de::Error::custom("memory range start + size overflows"))?,
                    _ => {
                        return Err(de::Error::custom(
                            "a memory range needs `start` and exactly one of `end` and `size`",
                        ));
                    }
                };
                Ok(MemoryValue(Memory::Range(PhysRange { start, end })))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    kind: String,
    kernel: Option<String>,
    initrd: Option<String>,
    cmdline: Option<String>,
}

/// An image: `"quest"`, or `{ kind = "linux", kernel = ..., initrd = ..., cmdline = ... }`.
struct ImageValue(Image);

impl<'de> Deserialize<'de> for ImageValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ImageValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"quest\" or { kind = \"linux\", kernel = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ImageValue, E> {
                match v {
                    "quest" => Ok(ImageValue(Image::Quest)),
                    "linux" => Err(E::custom(
                        "a linux image names its kernel: image = { kind = \"linux\", kernel = \
                         \"bzImage\", initrd = \"initramfs.cpio\", cmdline = \"console=ttyS0\" }",
                    )),
                    _ => Err(E::custom(format!(
                        "unknown image '{v}' (use \"quest\" or \"linux\")"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ImageValue, A::Error> {
                let r = RawImage::deserialize(MapAccessDeserializer::new(map))?;
                match r.kind.as_str() {
                    "quest" => {
                        let extra = [
                            ("kernel", &r.kernel),
                            ("initrd", &r.initrd),
                            ("cmdline", &r.cmdline),
                        ];
                        if let Some((field, _)) = extra.iter().find(|(_, v)| v.is_some()) {
                            return Err(de::Error::custom(format!(
                                "a quest image takes no `{field}` (the Quest kernel is built by xtask)"
                            )));
                        }
                        Ok(ImageValue(Image::Quest))
                    }
                    "linux" => {
                        let kernel = r.kernel.ok_or_else(|| de::Error::missing_field("kernel"))?;
                        Ok(ImageValue(Image::Linux {
                            kernel,
                            initrd: r.initrd,
                            cmdline: r.cmdline.unwrap_or_default(),
                        }))
                    }
                    k => Err(de::Error::custom(format!(
                        "unknown image kind '{k}' (use \"quest\" or \"linux\")"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A console: `"COM1"` .. `"COM4"` or `"none"`.
struct ConsoleValue(Console);

impl<'de> Deserialize<'de> for ConsoleValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_with(d, "\"COM1\" .. \"COM4\" or \"none\"", |s| {
            if s.eq_ignore_ascii_case("none") {
                return Ok(ConsoleValue(Console::None));
            }
            s.get(..3)
                .filter(|p| p.eq_ignore_ascii_case("com"))
                .and_then(|_| s.get(3..))
                .and_then(|n| n.parse::<u8>().ok())
                .filter(|n| (1..=4).contains(n))
                .map(|n| ConsoleValue(Console::Com(n)))
                .ok_or_else(|| {
                    format!(
                        "unknown console '{s}' (use \"COM1\", \"COM2\", \"COM3\", \"COM4\" or \"none\")"
                    )
                })
        })
    }
}

/// I/O ports: a port number, or a string `"0x3f8"` or `"0x3f8-0x3ff"` (inclusive).
struct PortValue(PortRange);

fn parse_port(s: &str) -> Option<u16> {
    parse_int(s.trim()).and_then(|v| u16::try_from(v).ok())
}

impl<'de> Deserialize<'de> for PortValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an I/O port (0x60) or an inclusive range string (\"0x3f8-0x3ff\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortValue, E> {
                u16::try_from(v)
                    .map(|p| PortValue(PortRange::single(p)))
                    .map_err(|_| E::custom(format!("I/O port {v} is not in 0..=0xffff")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortValue, E> {
                let bad = || {
                    E::custom(format!(
                        "'{v}' is not an I/O port or range (\"0x3f8-0x3ff\")"
                    ))
                };
                let (first, last) = match v.split_once('-') {
                    Some((a, b)) => (
                        parse_port(a).ok_or_else(bad)?,
                        parse_port(b).ok_or_else(bad)?,
                    ),
                    None => {
                        let p = parse_port(v).ok_or_else(bad)?;
                        (p, p)
                    }
                };
                if first > last {
                    return Err(E::custom(format!(
                        "I/O port range '{v}' is empty (first > last)"
                    )));
                }
                Ok(PortValue(PortRange { first, last }))
            }
        }
        d.deserialize_any(V)
    }
}

/// A PCI function: `"bb:dd.f"` (hex).
struct PciValue(PciAddr);

impl<'de> Deserialize<'de> for PciValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_with(d, "a PCI address \"bus:device.function\"", |s| {
            PciAddr::parse(s).map(PciValue).ok_or_else(|| {
                format!(
                    "'{s}' is not a PCI address: use \"bus:device.function\" in hex, e.g. \
                     \"00:1f.2\" (device 00..1f, function 0..7)"
                )
            })
        })
    }
}

/// `"async"` or `"sync"`.
struct KindValue(ChannelKind);

impl<'de> Deserialize<'de> for KindValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_with(d, "\"async\" or \"sync\"", |s| match s {
            "async" => Ok(KindValue(ChannelKind::Async)),
            "sync" => Ok(KindValue(ChannelKind::Sync)),
            _ => Err(format!(
                "unknown channel kind '{s}' (use \"async\" for four-slot or \"sync\" for FIFO)"
            )),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachine {
    cpus: u32,
    memory: SizeValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    memory: MemoryValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    name: String,
    cpus: Vec<u32>,
    memory: MemoryValue,
    image: Option<ImageValue>,
    console: Option<ConsoleValue>,
    #[serde(default)]
    io_ports: Vec<PortValue>,
    #[serde(default)]
    pci: Vec<PciValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    key: u32,
    size: SizeValue,
    kind: Option<KindValue>,
    sandboxes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    machine: Option<RawMachine>,
    monitor: Option<RawMonitor>,
    #[serde(default)]
    sandbox: Vec<RawSandbox>,
    #[serde(default)]
    channel: Vec<RawChannel>,
}

impl RawConfig {
    fn into_config(self) -> Config {
        Config {
            machine: self.machine.map(|m| Machine {
                cpus: m.cpus,
                memory_bytes: m.memory.0,
            }),
            monitor_memory: self.monitor.map(|m| m.memory.0),
            sandboxes: self
                .sandbox
                .into_iter()
                .map(|s| Sandbox {
                    name: s.name,
                    cpus: s.cpus,
                    memory: s.memory.0,
                    image: s.image.map(|i| i.0).unwrap_or_default(),
                    console: s.console.map(|c| c.0).unwrap_or_default(),
                    io_ports: s.io_ports.into_iter().map(|p| p.0).collect(),
                    pci: s.pci.into_iter().map(|p| p.0).collect(),
                })
                .collect(),
            channels: self
                .channel
                .into_iter()
                .map(|c| Channel {
                    key: c.key,
                    size: c.size.0,
                    kind: c.kind.map(|k| k.0),
                    sandboxes: c.sandboxes,
                })
                .collect(),
        }
    }
}

/// A TOML string literal (quoted and escaped).
fn quote(s: &str) -> String {
    ::toml::Value::String(s.into()).to_string()
}

fn size_str(n: u64) -> String {
    let s = format!("{}", crate::Size(n));
    if s.ends_with("bytes") || s.ends_with("byte") {
        format!("{n}")
    } else {
        quote(&s)
    }
}

impl Config {
    /// The configuration as TOML, in the syntax [`from_toml_str`] reads (round trip:
    /// `from_toml_str(&c.to_toml()) == Ok(c)`).
    pub fn to_toml(&self) -> String {
        use core::fmt::Write;
        let mut out = String::new();
        let mem = |m: &Memory| match m {
            Memory::Size(n) => size_str(*n),
            Memory::Range(r) => format!("{{ start = {:#x}, end = {:#x} }}", r.start, r.end),
        };
        let w = &mut out;
        if let Some(m) = &self.machine {
            let _ = write!(
                w,
                "[machine]\ncpus = {}\nmemory = {}\n\n",
                m.cpus,
                size_str(m.memory_bytes)
            );
        }
        if let Some(m) = &self.monitor_memory {
            let _ = write!(w, "[monitor]\nmemory = {}\n\n", mem(m));
        }
        for s in &self.sandboxes {
            let _ = writeln!(w, "[[sandbox]]\nname = {}", quote(&s.name));
            let cpus: Vec<String> = s.cpus.iter().map(|c| format!("{c}")).collect();
            let _ = writeln!(w, "cpus = [{}]", cpus.join(", "));
            let _ = writeln!(w, "memory = {}", mem(&s.memory));
            match &s.image {
                Image::Quest => {
                    let _ = writeln!(w, "image = \"quest\"");
                }
                Image::Linux {
                    kernel,
                    initrd,
                    cmdline,
                } => {
                    let _ = write!(w, "image = {{ kind = \"linux\", kernel = {}", quote(kernel));
                    if let Some(i) = initrd {
                        let _ = write!(w, ", initrd = {}", quote(i));
                    }
                    let _ = writeln!(w, ", cmdline = {} }}", quote(cmdline));
                }
            }
            let _ = writeln!(w, "console = \"{}\"", s.console);
            if !s.io_ports.is_empty() {
                let ports: Vec<String> =
                    s.io_ports.iter().map(|p| quote(&format!("{p}"))).collect();
                let _ = writeln!(w, "io_ports = [{}]", ports.join(", "));
            }
            if !s.pci.is_empty() {
                let pci: Vec<String> = s.pci.iter().map(|p| quote(&format!("{p}"))).collect();
                let _ = writeln!(w, "pci = [{}]", pci.join(", "));
            }
            w.push('\n');
        }
        for c in &self.channels {
            let _ = write!(
                w,
                "[[channel]]\nkey = {}\nsize = {}\n",
                c.key,
                size_str(c.size)
            );
            if let Some(k) = c.kind {
                let _ = writeln!(w, "kind = \"{k}\"");
            }
            let names: Vec<String> = c.sandboxes.iter().map(|n| quote(n)).collect();
            let _ = write!(w, "sandboxes = [{}]\n\n", names.join(", "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x10_0000"), Ok(1 << 20));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size(" 2 GiB "), Ok(2 << 30));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1_024 KiB"), Ok(1 << 20));
        assert_eq!(parse_size("1 TiB"), Ok(1 << 40));
        assert!(parse_size("512 MB").unwrap_err().contains("write MiB"));
        assert!(parse_size("1 kB").unwrap_err().contains("write KiB"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("1__0").is_ok(), "underscores between digits");
        assert!(parse_size("_1").is_err());
        assert!(parse_size("0x").is_err());
        assert!(parse_size("-1 MiB").is_err());
        assert!(parse_size("1.5 GiB").is_err());
        assert!(
            parse_size("16777216 TiB")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_size("99999999999999999999").is_err());
    }
}
