//! The configuration model: what a partition configuration says, before layout.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The machine a configuration is checked against: what the target machine (or the QEMU run)
/// has.
///
/// `memory_bytes` is the end of the physical address space the partition may use: every region
/// of a plan lies below it. Holes inside it (the PCI hole, firmware and ACPI regions, the
/// monitor image, boot modules) are not described here: pass them to [`crate::plan`] and
/// [`crate::Plan::validate_with_reserved`] as reserved ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Machine {
    /// Number of physical CPUs; CPU indices run from 0 to `cpus - 1` (in the order the firmware
    /// lists them, e.g. the ACPI MADT).
    pub cpus: u32,
    /// End of usable physical memory, in bytes.
    pub memory_bytes: u64,
}

/// A half-open physical (or guest-physical) address range `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl PhysRange {
    /// `start..end`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// `start..start + len`, or `None` if that overflows.
    pub const fn with_len(start: u64, len: u64) -> Option<Self> {
        match start.checked_add(len) {
            Some(end) => Some(Self { start, end }),
            None => None,
        }
    }

    /// Length in bytes (0 for an empty or inverted range).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True if the range holds no byte (including inverted ranges).
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True if the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.start < other.end && other.start < self.end
    }

    /// True if `other` lies entirely inside `self`.
    pub const fn contains_range(&self, other: &PhysRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// True if both ends are multiples of `align` (a power of two).
    pub const fn is_aligned(&self, align: u64) -> bool {
        self.start.is_multiple_of(align) && self.end.is_multiple_of(align)
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", Hex(self.start), Hex(self.end))
    }
}

/// Displays a number as `0x` hex with `_` between groups of four digits (`0x4000_0000`).
#[derive(Clone, Copy, Debug)]
pub struct Hex(pub u64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0u8; 16];
        let mut n = self.0;
        let mut len = 0;
        loop {
            digits[len] = b"0123456789abcdef"[(n & 0xf) as usize];
            len += 1;
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        f.write_str("0x")?;
        for i in (0..len).rev() {
            write!(f, "{}", digits[i] as char)?;
            if i != 0 && i % 4 == 0 {
                f.write_str("_")?;
            }
        }
        Ok(())
    }
}

/// Displays a byte count in the largest binary unit that divides it (`8 GiB`, `1536 MiB`,
/// `4 KiB`, `6000 bytes`).
#[derive(Clone, Copy, Debug)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        let n = self.0;
        if n != 0 {
            for (unit, name) in UNITS {
                if n.is_multiple_of(unit) {
                    return write!(f, "{} {name}", n / unit);
                }
            }
        }
        if n == 1 {
            f.write_str("1 byte")
        } else {
            write!(f, "{n} bytes")
        }
    }
}

/// How much RAM a sandbox (or the monitor) gets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Memory {
    /// This many bytes, placed by [`crate::plan`].
    Size(u64),
    /// Exactly this physical range.
    Range(PhysRange),
}

impl Memory {
    /// The number of bytes asked for (0 for an empty or inverted range).
    pub fn bytes(&self) -> u64 {
        match self {
            Memory::Size(n) => *n,
            Memory::Range(r) => r.len(),
        }
    }
}

/// What a sandbox boots.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Image {
    /// The Quest RTOS kernel built by xtask.
    #[default]
    Quest,
    /// A Linux kernel.
    Linux {
        /// Kernel image (bzImage or a PVH vmlinux). A path relative to the configuration file
        /// for xtask; at boot, the name of the boot module that holds it.
        kernel: String,
        /// Optional initial RAM disk (same naming rules as `kernel`).
        initrd: Option<String>,
        /// Kernel command line (may be empty).
        cmdline: String,
    },
}

impl Image {
    /// `"quest"` or `"linux"`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Image::Quest => "quest",
            Image::Linux { .. } => "linux",
        }
    }
}

/// A sandbox's console: one legacy 16550 UART passed through to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Console {
    /// No console.
    #[default]
    None,
    /// `COMn`, n in 1..=4 (other values are representable and rejected by validation).
    Com(u8),
}

impl Console {
    /// The I/O ports of `COMn` (8 ports each), or `None` for no console or an invalid `n`.
    pub fn ports(&self) -> Option<PortRange> {
        let base = match self {
            Console::Com(1) => 0x3f8,
            Console::Com(2) => 0x2f8,
            Console::Com(3) => 0x3e8,
            Console::Com(4) => 0x2e8,
            _ => return None,
        };
        Some(PortRange {
            first: base,
            last: base + 7,
        })
    }
}

impl fmt::Display for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Console::None => f.write_str("none"),
            Console::Com(n) => write!(f, "COM{n}"),
        }
    }
}

/// An inclusive range of x86 I/O ports `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// A single port.
    pub const fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    /// The ports both ranges hold, if any.
    pub fn intersection(&self, other: &PortRange) -> Option<PortRange> {
        let first = self.first.max(other.first);
        let last = self.last.min(other.last);
        (first <= last && self.first <= self.last && other.first <= other.last)
            .then_some(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{:#x}", self.first)
        } else {
            write!(f, "{:#x}-{:#x}", self.first, self.last)
        }
    }
}

/// A PCI function `bus:dev.func` (segment 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddr {
    /// Bus, 0..=255.
    pub bus: u8,
    /// Device, 0..=31 (larger values are rejected by validation).
    pub dev: u8,
    /// Function, 0..=7 (larger values are rejected by validation).
    pub func: u8,
}

impl PciAddr {
    /// True if `dev` and `func` are in range.
    pub const fn is_valid(&self) -> bool {
        self.dev <= 31 && self.func <= 7
    }

    /// Parses `bb:dd.f` (hex, as `lspci` prints), optionally prefixed by the segment `0000:`.
    pub fn parse(s: &str) -> Option<PciAddr> {
        let s = s.strip_prefix("0000:").unwrap_or(s);
        let (bus, rest) = s.split_once(':')?;
        let (dev, func) = rest.split_once('.')?;
        let hex = |t: &str, max: u8| -> Option<u8> {
            if t.is_empty() || t.len() > 2 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u8::from_str_radix(t, 16).ok().filter(|v| *v <= max)
        };
        Some(PciAddr {
            bus: hex(bus, 0xff)?,
            dev: hex(dev, 31)?,
            func: hex(func, 7)?,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{:x}", self.bus, self.dev, self.func)
    }
}

/// One sandbox of the configuration. Its id is its index in [`Config::sandboxes`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sandbox {
    /// Unique name: 1..=31 bytes of ASCII letters, digits, `-` and `_`.
    pub name: String,
    /// Physical CPU indices the sandbox owns (its first CPU is its bootstrap processor).
    pub cpus: Vec<u32>,
    /// RAM: a size to be placed, or an explicit physical range (2 MiB aligned).
    pub memory: Memory,
    /// What it boots.
    pub image: Image,
    /// Its console UART.
    pub console: Console,
    /// Further I/O ports passed through to it.
    pub io_ports: Vec<PortRange>,
    /// PCI functions passed through to it.
    pub pci: Vec<PciAddr>,
}

impl Sandbox {
    /// A Quest sandbox with the given name, CPUs and memory size, no console and no devices.
    pub fn quest(name: &str, cpus: &[u32], memory: u64) -> Self {
        Sandbox {
            name: name.into(),
            cpus: cpus.to_vec(),
            memory: Memory::Size(memory),
            image: Image::Quest,
            console: Console::None,
            io_ports: Vec::new(),
            pci: Vec::new(),
        }
    }
}

/// How a shmcomm channel is used (recorded for the sandboxes; the monitor only maps memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Simpson's four-slot asynchronous buffer.
    Async,
    /// A synchronous FIFO ring.
    Sync,
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelKind::Async => "async",
            ChannelKind::Sync => "sync",
        })
    }
}

/// A shared-memory communication channel between sandboxes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Channel {
    /// The shmcomm key (`shmcomm_open_send(153, ...)`), unique.
    pub key: u32,
    /// Size of its shared region in bytes: non-zero, a multiple of 4 KiB.
    pub size: u64,
    /// Async (four-slot) or sync (FIFO), if stated.
    pub kind: Option<ChannelKind>,
    /// Names of the sandboxes that may map it (at least two, each once).
    pub sandboxes: Vec<String>,
}

/// A whole partition configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Config {
    /// The machine the configuration is written for, if it says (xtask can size the QEMU run
    /// from it). Validation always takes the machine as an argument.
    pub machine: Option<Machine>,
    /// Memory set aside for the monitor's own use (nested page tables, VMCBs, stacks), placed
    /// like sandbox RAM. `None`: the monitor lives only in ranges the caller reserves.
    pub monitor_memory: Option<Memory>,
    /// The sandboxes; sandbox id = index.
    pub sandboxes: Vec<Sandbox>,
    /// The channels.
    pub channels: Vec<Channel>,
}

impl Config {
    /// The id (index) of the sandbox with this name.
    pub fn sandbox_id(&self, name: &str) -> Option<u8> {
        self.sandboxes
            .iter()
            .position(|s| s.name == name)
            .and_then(|i| u8::try_from(i).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn hex_groups_digits_by_four() {
        assert_eq!(Hex(0).to_string(), "0x0");
        assert_eq!(Hex(0xfff).to_string(), "0xfff");
        assert_eq!(Hex(0x1_0000).to_string(), "0x1_0000");
        assert_eq!(Hex(0x4000_0000).to_string(), "0x4000_0000");
        assert_eq!(Hex(u64::MAX).to_string(), "0xffff_ffff_ffff_ffff");
    }

    #[test]
    fn sizes_use_the_largest_exact_unit() {
        assert_eq!(Size(0).to_string(), "0 bytes");
        assert_eq!(Size(1).to_string(), "1 byte");
        assert_eq!(Size(6000).to_string(), "6000 bytes");
        assert_eq!(Size(4096).to_string(), "4 KiB");
        assert_eq!(Size(3 << 20).to_string(), "3 MiB");
        assert_eq!(Size(1536 << 20).to_string(), "1536 MiB");
        assert_eq!(Size(8 << 30).to_string(), "8 GiB");
    }

    #[test]
    fn pci_addresses_parse_and_print_like_lspci() {
        let a = PciAddr {
            bus: 0,
            dev: 0x1f,
            func: 2,
        };
        assert_eq!(PciAddr::parse("00:1f.2"), Some(a));
        assert_eq!(PciAddr::parse("0000:00:1f.2"), Some(a));
        assert_eq!(PciAddr::parse("0:1F.2"), Some(a));
        assert_eq!(a.to_string(), "00:1f.2");
        for bad in [
            "00:20.0", "00:1f.8", "100:00.0", "00.1f.2", "00:1f", "", "0x0:1f.2", "00:+1.0",
        ] {
            assert_eq!(PciAddr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let r = PhysRange::new(0x1000, 0x3000);
        assert!(r.overlaps(&PhysRange::new(0x2fff, 0x4000)));
        assert!(!r.overlaps(&PhysRange::new(0x3000, 0x4000)));
        assert!(
            !r.overlaps(&PhysRange::new(0x2000, 0x2000)),
            "empty ranges overlap nothing"
        );
        assert!(!PhysRange::new(5, 1).overlaps(&r));
        assert_eq!(PhysRange::new(5, 1).len(), 0);
        assert_eq!(PhysRange::with_len(u64::MAX, 1), None);
        assert_eq!(r.to_string(), "0x1000..0x3000");
        let p = PortRange {
            first: 0x3f8,
            last: 0x3ff,
        };
        assert_eq!(
            p.intersection(&PortRange::single(0x3ff)),
            Some(PortRange::single(0x3ff))
        );
        assert_eq!(p.intersection(&PortRange::single(0x400)), None);
        assert_eq!(p.to_string(), "0x3f8-0x3ff");
        assert_eq!(
            Console::Com(3).ports(),
            Some(PortRange {
                first: 0x3e8,
                last: 0x3ef
            })
        );
        assert_eq!(Console::Com(5).ports(), None);
    }
}
