//! Configuration and plan errors. Every message names the offending items.

use alloc::string::String;
use core::fmt;

use crate::model::{Hex, PciAddr, PhysRange, PortRange, Size};

/// Who a physical memory region belongs to (for messages).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A sandbox's RAM.
    Sandbox(String),
    /// The monitor's own memory.
    Monitor,
    /// A channel's shared region.
    Channel(u32),
    /// The block that holds all channel regions (during layout).
    SharedArea,
    /// A range the caller reserved (firmware, monitor image, boot modules...).
    Reserved,
    /// The first MiB of physical memory (real-mode structures, BIOS, the AP trampoline).
    LowMemory,
}

impl Owner {
    /// The owner as a noun: `sandbox 'rt0'`, `the monitor`, `channel 153`.
    pub fn name(&self) -> OwnerName<'_> {
        OwnerName(self, false)
    }

    /// The owner's memory as a noun: `sandbox 'rt0' memory`, `the monitor's memory`.
    pub fn region(&self) -> OwnerName<'_> {
        OwnerName(self, true)
    }
}

/// Display adapter for [`Owner::name`] and [`Owner::region`].
#[derive(Clone, Copy, Debug)]
pub struct OwnerName<'a>(&'a Owner, bool);

impl fmt::Display for OwnerName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let region = self.1;
        match self.0 {
            Owner::Sandbox(n) if region => write!(f, "sandbox '{n}' memory"),
            Owner::Sandbox(n) => write!(f, "sandbox '{n}'"),
            Owner::Monitor if region => f.write_str("the monitor's memory"),
            Owner::Monitor => f.write_str("the monitor"),
            Owner::Channel(k) => write!(f, "channel {k}"),
            Owner::SharedArea => f.write_str("the shared channel area"),
            Owner::Reserved => f.write_str("a reserved range"),
            Owner::LowMemory => f.write_str("the low 1 MiB"),
        }
    }
}

/// A sandbox's use of some I/O ports: through its console or its `io_ports` list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortUse {
    /// The sandbox.
    pub sandbox: String,
    /// `Some(n)` if the ports come from its console `COMn`.
    pub console: Option<u8>,
}

impl fmt::Display for PortUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.sandbox)?;
        if let Some(n) = self.console {
            write!(f, " (console COM{n})")?;
        }
        Ok(())
    }
}

/// What a channel's guest-physical window collides with inside one sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GuestConflict {
    /// The sandbox's guest RAM region at this guest-physical range.
    Ram(PhysRange),
    /// Another channel's window in the same sandbox.
    Channel {
        /// Its key.
        key: u32,
        /// Its guest-physical range.
        range: PhysRange,
    },
    /// The guest PCI/MMIO hole [`crate::GUEST_PCI_HOLE`].
    PciHole,
    /// The end of guest-physical address space [`crate::GUEST_PHYS_LIMIT`].
    Limit,
}

/// A configuration or plan error. `Display` gives a one-line message naming the offending
/// items; validation reports every error it finds, in a fixed order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The TOML text could not be read (syntax, a wrong type, an unknown field, a bad value).
    /// `line` and `column` are 1-based; 0 if unknown.
    Toml {
        /// Line of the offending text.
        line: usize,
        /// Column (in characters) of the offending text.
        column: usize,
        /// What is wrong (names the field for unknown or missing fields).
        message: String,
    },

    /// The configuration has no sandbox.
    NoSandboxes,
    /// More sandboxes than the monitor supports.
    TooManySandboxes {
        /// How many there are.
        count: usize,
        /// The limit ([`crate::MAX_SANDBOXES`]).
        max: usize,
    },
    /// A list is longer than its limit.
    TooMany {
        /// What the list is (`channels`, `sandbox 'rt0' I/O port ranges`, ...).
        what: String,
        /// Its length.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A sandbox name is empty, too long or uses characters other than letters, digits, `-`
    /// and `_`.
    BadName {
        /// Index (id) of the sandbox.
        index: usize,
        /// The name.
        name: String,
    },
    /// Two sandboxes have the same name.
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A string of a sandbox's image is too long.
    StringTooLong {
        /// The sandbox.
        sandbox: String,
        /// Which string (`kernel path`, `initrd path`, `kernel command line`).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A Linux sandbox names no kernel (or an empty initrd path).
    EmptyPath {
        /// The sandbox.
        sandbox: String,
        /// `kernel` or `initrd`.
        what: &'static str,
    },
    /// A sandbox lists no CPU.
    NoCpus {
        /// The sandbox.
        sandbox: String,
    },
    /// A sandbox lists a CPU the machine does not have.
    CpuBeyondMachine {
        /// The sandbox.
        sandbox: String,
        /// The CPU index.
        cpu: u32,
        /// The machine's CPU count.
        machine_cpus: u32,
    },
    /// A sandbox lists the same CPU twice.
    CpuListedTwice {
        /// The sandbox.
        sandbox: String,
        /// The CPU index.
        cpu: u32,
    },
    /// Two sandboxes list the same CPU.
    CpuShared {
        /// The CPU index.
        cpu: u32,
        /// The sandbox listed first.
        first: String,
        /// The sandbox listed later.
        second: String,
    },

    /// A region has size zero.
    ZeroSize {
        /// Whose.
        owner: Owner,
    },
    /// A region's size is not a multiple of its alignment.
    SizeMisaligned {
        /// Whose.
        owner: Owner,
        /// The size.
        size: u64,
        /// The required multiple.
        align: u64,
    },
    /// An explicit range does not start and end on its alignment.
    RangeMisaligned {
        /// Whose.
        owner: Owner,
        /// The range.
        range: PhysRange,
        /// The required alignment.
        align: u64,
    },
    /// An explicit range is empty or inverted.
    EmptyRange {
        /// Whose.
        owner: Owner,
        /// The range.
        range: PhysRange,
    },
    /// A region is larger than the machine's memory.
    TooBig {
        /// Whose.
        owner: Owner,
        /// Its size.
        need: u64,
        /// The machine's memory.
        have: u64,
    },
    /// A region ends beyond the machine's memory.
    BeyondMachine {
        /// Whose.
        owner: Owner,
        /// The range.
        range: PhysRange,
        /// The machine's `memory_bytes`.
        machine_end: u64,
    },
    /// Two regions overlap. `a` is the later one in the order: the low 1 MiB, reserved ranges,
    /// the monitor, sandboxes, channels.
    Overlap {
        /// The later region's owner.
        a: Owner,
        /// Its range.
        a_range: PhysRange,
        /// The earlier region's owner.
        b: Owner,
        /// Its range.
        b_range: PhysRange,
    },
    /// Everything together needs more memory than the machine has.
    TotalTooBig {
        /// Sum of all sandbox, monitor and channel sizes.
        need: u64,
        /// The machine's memory.
        have: u64,
    },
    /// Layout found no free, aligned place for a region.
    NoRoom {
        /// Whose.
        owner: Owner,
        /// Its size.
        size: u64,
        /// The alignment it needs.
        align: u64,
    },

    /// A console other than COM1..COM4.
    BadConsole {
        /// The sandbox.
        sandbox: String,
        /// The n of `COMn`.
        com: u8,
    },
    /// Two sandboxes have the same console.
    ConsoleShared {
        /// The n of `COMn`.
        com: u8,
        /// The sandbox listed first.
        first: String,
        /// The sandbox listed later.
        second: String,
    },
    /// An I/O port range with `first > last`.
    BadPortRange {
        /// The sandbox.
        sandbox: String,
        /// The range.
        range: PortRange,
    },
    /// I/O ports given twice (to two sandboxes, or twice to one).
    PortConflict {
        /// The ports both grants hold.
        ports: PortRange,
        /// The earlier grant.
        first: PortUse,
        /// The later grant.
        second: PortUse,
    },
    /// A PCI address with device > 31 or function > 7.
    BadPci {
        /// The sandbox.
        sandbox: String,
        /// The address.
        addr: PciAddr,
    },
    /// A PCI function given twice (to two sandboxes, or twice to one).
    PciConflict {
        /// The function.
        addr: PciAddr,
        /// The sandbox listed first.
        first: String,
        /// The sandbox listed later (equal to `first` if one sandbox lists it twice).
        second: String,
    },

    /// A PCI function that cannot be given to its sandbox: the configuration asks for
    /// something not supported, or the machine's device (found at boot) makes it impossible.
    PciRefused {
        /// The sandbox.
        sandbox: String,
        /// The function.
        addr: PciAddr,
        /// Why, as a phrase completing "sandbox 'x' PCI function 00:04.0 ...".
        why: String,
    },

    /// Two channels have the same key.
    DuplicateChannelKey {
        /// The key.
        key: u32,
    },
    /// A channel names a sandbox that does not exist.
    UnknownSandbox {
        /// The channel key.
        key: u32,
        /// The name.
        name: String,
    },
    /// A channel names (or maps) the same sandbox twice.
    ChannelNamesTwice {
        /// The channel key.
        key: u32,
        /// The sandbox.
        name: String,
    },
    /// A channel joins fewer than two sandboxes.
    ChannelTooFewSandboxes {
        /// The channel key.
        key: u32,
        /// How many it names.
        count: usize,
    },

    /// A plan's sandbox id differs from its index.
    BadSandboxId {
        /// Index in the plan.
        index: usize,
        /// The id it carries.
        id: u8,
    },
    /// A plan's channel maps a sandbox id that does not exist.
    UnknownSandboxId {
        /// The channel key.
        key: u32,
        /// The id.
        id: u8,
    },
    /// A sandbox's RAM does not fit below [`crate::GUEST_PHYS_LIMIT`] in its guest-physical
    /// layout (RAM from 0, skipping the guest PCI hole).
    GuestRamTooBig {
        /// The sandbox.
        sandbox: String,
        /// Its RAM size.
        size: u64,
    },
    /// A channel's guest-physical address is not 4 KiB aligned.
    GuestMisaligned {
        /// The channel key.
        key: u32,
        /// The sandbox.
        sandbox: String,
        /// The guest-physical address.
        guest: u64,
    },
    /// A channel's guest-physical window collides with something in a sandbox.
    GuestConflict {
        /// The channel key.
        key: u32,
        /// The sandbox.
        sandbox: String,
        /// The channel's guest-physical range there.
        range: PhysRange,
        /// What it collides with.
        with: GuestConflict,
    },
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            Toml {
                line: 0, message, ..
            } => write!(f, "{message}"),
            Toml {
                line,
                column,
                message,
            } => write!(f, "line {line}, column {column}: {message}"),
            NoSandboxes => f.write_str("the configuration has no sandboxes"),
            TooManySandboxes { count, max } => write!(
                f,
                "{count} sandboxes, but at most {max} are supported (one SVM ASID each)"
            ),
            TooMany { what, count, max } => write!(f, "too many {what}: {count} (at most {max})"),
            BadName { index, name } => write!(
                f,
                "sandbox #{index} name '{name}' is invalid: use 1 to {} letters, digits, '-' \
                 and '_'",
                crate::MAX_NAME_LEN
            ),
            DuplicateName { name } => write!(f, "sandbox name '{name}' is used twice"),
            StringTooLong {
                sandbox,
                what,
                len,
                max,
            } => {
                write!(
                    f,
                    "sandbox '{sandbox}' {what} is {len} bytes long (at most {max})"
                )
            }
            EmptyPath { sandbox, what } => {
                write!(f, "sandbox '{sandbox}' has an empty {what} path")
            }
            NoCpus { sandbox } => write!(f, "sandbox '{sandbox}' has no CPUs"),
            CpuBeyondMachine {
                sandbox,
                cpu,
                machine_cpus,
            } => write!(
                f,
                "sandbox '{sandbox}' cpu {cpu} is beyond the machine, which has {machine_cpus} \
                 {}",
                plural(u64::from(*machine_cpus), "CPU", "CPUs")
            ),
            CpuListedTwice { sandbox, cpu } => {
                write!(f, "sandbox '{sandbox}' lists cpu {cpu} twice")
            }
            CpuShared { cpu, first, second } => {
                write!(f, "cpu {cpu} is assigned to both '{first}' and '{second}'")
            }
            ZeroSize {
                owner: o @ Owner::Channel(_),
            } => write!(f, "{} has size zero", o.name()),
            ZeroSize { owner } => write!(f, "{} has zero memory", owner.name()),
            SizeMisaligned {
                owner: o @ Owner::Channel(_),
                size,
                align,
            } => write!(
                f,
                "{} size {} is not a multiple of {}",
                o.name(),
                Size(*size),
                Size(*align)
            ),
            SizeMisaligned { owner, size, align } => write!(
                f,
                "{} size {} is not a multiple of {}",
                owner.region(),
                Size(*size),
                Size(*align)
            ),
            RangeMisaligned {
                owner,
                range,
                align,
            } => {
                write!(
                    f,
                    "{} {range} is not {} aligned",
                    owner.region(),
                    Size(*align)
                )
            }
            EmptyRange { owner, range } => write!(f, "{} {range} is empty", owner.region()),
            TooBig { owner, need, have } => write!(
                f,
                "{} needs {} but the machine has {}",
                owner.name(),
                Size(*need),
                Size(*have)
            ),
            BeyondMachine {
                owner,
                range,
                machine_end,
            } => write!(
                f,
                "{} {range} is beyond the machine's memory, which ends at {} ({})",
                owner.region(),
                Hex(*machine_end),
                Size(*machine_end)
            ),
            Overlap {
                a,
                a_range,
                b: b @ Owner::Sandbox(_),
                b_range,
            } => {
                write!(
                    f,
                    "{} {a_range} overlaps {} {b_range}",
                    a.region(),
                    b.name()
                )
            }
            Overlap {
                a,
                a_range,
                b,
                b_range,
            } => {
                write!(
                    f,
                    "{} {a_range} overlaps {} {b_range}",
                    a.region(),
                    b.region()
                )
            }
            TotalTooBig { need, have } => write!(
                f,
                "the sandboxes, channels and monitor need {} in total but the machine has {}",
                Size(*need),
                Size(*have)
            ),
            NoRoom { owner, size, align } => write!(
                f,
                "no room for {} ({}, {} aligned) in free physical memory",
                owner.region(),
                Size(*size),
                Size(*align)
            ),
            BadConsole { sandbox, com } => write!(
                f,
                "sandbox '{sandbox}' console COM{com} does not exist (use COM1..COM4 or none)"
            ),
            ConsoleShared { com, first, second } => {
                write!(
                    f,
                    "console COM{com} is used by both '{first}' and '{second}'"
                )
            }
            BadPortRange { sandbox, range } => write!(
                f,
                "sandbox '{sandbox}' I/O port range {:#x}-{:#x} is empty (first > last)",
                range.first, range.last
            ),
            PortConflict {
                ports,
                first,
                second,
            } => {
                let word = if ports.first == ports.last {
                    "I/O port"
                } else {
                    "I/O ports"
                };
                if first.sandbox == second.sandbox {
                    write!(f, "{word} {ports} given twice to '{}'", first.sandbox)?;
                    if let Some(n) = first.console.or(second.console) {
                        write!(f, " (console COM{n} already has them)")?;
                    }
                    Ok(())
                } else {
                    write!(f, "{word} {ports} given to both {first} and {second}")
                }
            }
            BadPci { sandbox, addr } => write!(
                f,
                "sandbox '{sandbox}' PCI device {:02x}:{:02x}.{:x} is invalid (device 0..=1f, \
                 function 0..=7)",
                addr.bus, addr.dev, addr.func
            ),
            PciConflict {
                addr,
                first,
                second,
            } if first == second => {
                write!(f, "PCI device {addr} given twice to '{first}'")
            }
            PciConflict {
                addr,
                first,
                second,
            } => {
                write!(
                    f,
                    "PCI device {addr} given twice: to '{first}' and '{second}'"
                )
            }
            PciRefused { sandbox, addr, why } => {
                write!(f, "sandbox '{sandbox}' PCI function {addr} {why}")
            }
            DuplicateChannelKey { key } => write!(f, "channel key {key} is used twice"),
            UnknownSandbox { key, name } => {
                write!(f, "channel {key} names unknown sandbox '{name}'")
            }
            ChannelNamesTwice { key, name } => {
                write!(f, "channel {key} names sandbox '{name}' twice")
            }
            ChannelTooFewSandboxes { key, count } => write!(
                f,
                "channel {key} names {count} {}; a channel joins at least two",
                plural(*count as u64, "sandbox", "sandboxes")
            ),
            BadSandboxId { index, id } => write!(f, "sandbox #{index} carries id {id}"),
            UnknownSandboxId { key, id } => write!(f, "channel {key} maps unknown sandbox id {id}"),
            GuestRamTooBig { sandbox, size } => write!(
                f,
                "sandbox '{sandbox}' memory {} does not fit in guest-physical space below {}",
                Size(*size),
                Hex(crate::GUEST_PHYS_LIMIT)
            ),
            GuestMisaligned {
                key,
                sandbox,
                guest,
            } => write!(
                f,
                "channel {key} guest address {} in sandbox '{sandbox}' is not 4 KiB aligned",
                Hex(*guest)
            ),
            GuestConflict {
                key,
                sandbox,
                range,
                with,
            } => {
                write!(
                    f,
                    "channel {key} guest window {range} in sandbox '{sandbox}' "
                )?;
                match with {
                    crate::GuestConflict::Ram(r) => write!(f, "overlaps its RAM at {r}"),
                    crate::GuestConflict::Channel { key, range } => {
                        write!(f, "overlaps channel {key} at {range}")
                    }
                    crate::GuestConflict::PciHole => {
                        write!(f, "overlaps the guest PCI hole {}", crate::GUEST_PCI_HOLE)
                    }
                    crate::GuestConflict::Limit => write!(
                        f,
                        "ends beyond the guest-physical limit {}",
                        Hex(crate::GUEST_PHYS_LIMIT)
                    ),
                }
            }
        }
    }
}

impl core::error::Error for Error {}
