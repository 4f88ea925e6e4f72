//! Validation of configurations and plans.
//!
//! Both run the same sandbox checks (names, CPUs, consoles, I/O ports, PCI functions, image
//! strings) over a common view; the memory and channel checks differ because a configuration
//! names sizes and sandboxes while a plan holds exact ranges and sandbox ids.
//!
//! Order of the errors (fixed, so output is deterministic): sandbox count; per sandbox in order
//! (name, list lengths, image, CPUs, console, port ranges, PCI addresses); duplicate names;
//! shared CPUs; shared consoles; port conflicts; PCI conflicts; memory (per region, then
//! overlaps, then totals); channels (in order).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{Error, GuestConflict, Owner, PortUse};
use crate::model::{Config, Console, Image, Machine, Memory, PciAddr, PhysRange, PortRange};
use crate::plan::{GUEST_PCI_HOLE, GUEST_PHYS_LIMIT, Plan, guest_ram_fits, guest_ram_regions};
use crate::{
    CHANNEL_ALIGN, LOW_MEMORY_END, MAX_CHANNELS, MAX_CMDLINE_LEN, MAX_CPUS_PER_SANDBOX,
    MAX_NAME_LEN, MAX_PATH_LEN, MAX_PCI_PER_SANDBOX, MAX_PORT_RANGES_PER_SANDBOX, MAX_SANDBOXES,
    MONITOR_ALIGN, SANDBOX_ALIGN,
};

/// What the common sandbox checks look at.
pub(crate) struct SbView<'a> {
    pub name: &'a str,
    pub cpus: &'a [u32],
    pub image: &'a Image,
    pub console: Console,
    pub io_ports: &'a [PortRange],
    pub pci: &'a [PciAddr],
}

/// True if `name` is a valid sandbox name.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_len(what: impl FnOnce() -> String, count: usize, max: usize, errs: &mut Vec<Error>) {
    if count > max {
        errs.push(Error::TooMany {
            what: what(),
            count,
            max,
        });
    }
}

/// The list-length limits. Checked first: past them the other checks are not run (they are
/// quadratic in places), so a hostile blob cannot make validation slow.
pub(crate) fn check_limits(sbs: &[SbView<'_>], channels: usize, errs: &mut Vec<Error>) -> bool {
    let before = errs.len();
    if sbs.len() > MAX_SANDBOXES {
        errs.push(Error::TooManySandboxes {
            count: sbs.len(),
            max: MAX_SANDBOXES,
        });
    }
    for sb in sbs {
        let name = sb.name;
        check_len(
            || format!("CPUs in sandbox '{name}'"),
            sb.cpus.len(),
            MAX_CPUS_PER_SANDBOX,
            errs,
        );
        check_len(
            || format!("I/O port ranges in sandbox '{name}'"),
            sb.io_ports.len(),
            MAX_PORT_RANGES_PER_SANDBOX,
            errs,
        );
        check_len(
            || format!("PCI devices in sandbox '{name}'"),
            sb.pci.len(),
            MAX_PCI_PER_SANDBOX,
            errs,
        );
    }
    check_len(|| "channels".into(), channels, MAX_CHANNELS, errs);
    errs.len() == before
}

/// The checks shared by configurations and plans (after [`check_limits`]).
pub(crate) fn check_sandboxes(sbs: &[SbView<'_>], machine: &Machine, errs: &mut Vec<Error>) {
    if sbs.is_empty() {
        errs.push(Error::NoSandboxes);
    }

    for (index, sb) in sbs.iter().enumerate() {
        let name = sb.name;
        if !is_valid_name(name) {
            errs.push(Error::BadName {
                index,
                name: name.into(),
            });
        }
        if let Image::Linux {
            kernel,
            initrd,
            cmdline,
        } = sb.image
        {
            let mut string = |what: &'static str, s: &str, max: usize| {
                if s.len() > max {
                    errs.push(Error::StringTooLong {
                        sandbox: name.into(),
                        what,
                        len: s.len(),
                        max,
                    });
                }
            };
            string("kernel path", kernel, MAX_PATH_LEN);
            if let Some(initrd) = initrd {
                string("initrd path", initrd, MAX_PATH_LEN);
            }
            string("kernel command line", cmdline, MAX_CMDLINE_LEN);
            if kernel.is_empty() {
                errs.push(Error::EmptyPath {
                    sandbox: name.into(),
                    what: "kernel",
                });
            }
            if initrd.as_deref() == Some("") {
                errs.push(Error::EmptyPath {
                    sandbox: name.into(),
                    what: "initrd",
                });
            }
        }

        if sb.cpus.is_empty() {
            errs.push(Error::NoCpus {
                sandbox: name.into(),
            });
        }
        let mut seen = BTreeSet::new();
        for &cpu in sb.cpus {
            if cpu >= machine.cpus {
                errs.push(Error::CpuBeyondMachine {
                    sandbox: name.into(),
                    cpu,
                    machine_cpus: machine.cpus,
                });
            }
            if !seen.insert(cpu) {
                errs.push(Error::CpuListedTwice {
                    sandbox: name.into(),
                    cpu,
                });
            }
        }

        if let Console::Com(com) = sb.console
            && !(1..=4).contains(&com)
        {
            errs.push(Error::BadConsole {
                sandbox: name.into(),
                com,
            });
        }
        for range in sb.io_ports {
            if range.first > range.last {
                errs.push(Error::BadPortRange {
                    sandbox: name.into(),
                    range: *range,
                });
            }
        }
        for addr in sb.pci {
            if !addr.is_valid() {
                errs.push(Error::BadPci {
                    sandbox: name.into(),
                    addr: *addr,
                });
                continue;
            }
            for why in crate::pci::static_problems(sb.image, sb.pci, *addr) {
                errs.push(Error::PciRefused {
                    sandbox: name.into(),
                    addr: *addr,
                    why,
                });
            }
        }
    }

    // Duplicate names: reported once per name, in order of the second use.
    let mut names = BTreeSet::new();
    let mut reported = BTreeSet::new();
    for sb in sbs {
        if !names.insert(sb.name) && reported.insert(sb.name) {
            errs.push(Error::DuplicateName {
                name: sb.name.into(),
            });
        }
    }

    // A CPU in two sandboxes.
    let mut cpu_owner: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, sb) in sbs.iter().enumerate() {
        for &cpu in sb.cpus {
            match cpu_owner.get(&cpu) {
                None => {
                    cpu_owner.insert(cpu, i);
                }
                Some(&j) if j != i => errs.push(Error::CpuShared {
                    cpu,
                    first: sbs[j].name.into(),
                    second: sb.name.into(),
                }),
                Some(_) => {} // listed twice in one sandbox: reported above
            }
        }
    }

    // A console in two sandboxes.
    let mut com_owner: BTreeMap<u8, usize> = BTreeMap::new();
    for (i, sb) in sbs.iter().enumerate() {
        if let Console::Com(com @ 1..=4) = sb.console {
            if let Some(&j) = com_owner.get(&com) {
                errs.push(Error::ConsoleShared {
                    com,
                    first: sbs[j].name.into(),
                    second: sb.name.into(),
                });
            } else {
                com_owner.insert(com, i);
            }
        }
    }

    // I/O ports given twice. A console grants its UART's eight ports; two consoles on the same
    // COM port are reported above, not again here.
    let mut grants: Vec<(usize, Option<u8>, PortRange)> = Vec::new();
    for (i, sb) in sbs.iter().enumerate() {
        if let (Console::Com(n), Some(ports)) = (sb.console, sb.console.ports()) {
            grants.push((i, Some(n), ports));
        }
        for r in sb.io_ports.iter().filter(|r| r.first <= r.last) {
            grants.push((i, None, *r));
        }
    }
    for (b, &(sb_b, com_b, range_b)) in grants.iter().enumerate() {
        for &(sb_a, com_a, range_a) in &grants[..b] {
            if com_a.is_some() && com_b.is_some() {
                continue;
            }
            if let Some(ports) = range_a.intersection(&range_b) {
                errs.push(Error::PortConflict {
                    ports,
                    first: PortUse {
                        sandbox: sbs[sb_a].name.into(),
                        console: com_a,
                    },
                    second: PortUse {
                        sandbox: sbs[sb_b].name.into(),
                        console: com_b,
                    },
                });
            }
        }
    }

    // A PCI function given twice.
    let mut pci_owner: BTreeMap<PciAddr, usize> = BTreeMap::new();
    for (i, sb) in sbs.iter().enumerate() {
        for addr in sb.pci {
            if let Some(&j) = pci_owner.get(addr) {
                errs.push(Error::PciConflict {
                    addr: *addr,
                    first: sbs[j].name.into(),
                    second: sb.name.into(),
                });
            } else {
                pci_owner.insert(*addr, i);
            }
        }
    }
}

/// Reports every overlapping pair among `regions` (empty ranges skipped), the later region
/// first. Pairs of the low 1 MiB and reserved ranges are not checked against each other.
pub(crate) fn check_overlaps(regions: &[(Owner, PhysRange)], errs: &mut Vec<Error>) {
    let fixed = |o: &Owner| matches!(o, Owner::LowMemory | Owner::Reserved);
    for (j, (a, ra)) in regions.iter().enumerate() {
        for (b, rb) in &regions[..j] {
            if fixed(a) && fixed(b) {
                continue;
            }
            if ra.overlaps(rb) {
                errs.push(Error::Overlap {
                    a: a.clone(),
                    a_range: *ra,
                    b: b.clone(),
                    b_range: *rb,
                });
            }
        }
    }
}

/// Checks one explicit range: empty, alignment, beyond the machine.
fn check_range(owner: &Owner, r: PhysRange, align: u64, machine: &Machine, errs: &mut Vec<Error>) {
    if r.is_empty() {
        errs.push(Error::EmptyRange {
            owner: owner.clone(),
            range: r,
        });
        return;
    }
    if !r.is_aligned(align) {
        errs.push(Error::RangeMisaligned {
            owner: owner.clone(),
            range: r,
            align,
        });
    }
    if r.end > machine.memory_bytes {
        errs.push(Error::BeyondMachine {
            owner: owner.clone(),
            range: r,
            machine_end: machine.memory_bytes,
        });
    }
}

/// Checks one size: zero, multiple of `align`, larger than the machine. True if too big.
fn check_size(
    owner: &Owner,
    size: u64,
    align: u64,
    machine: &Machine,
    errs: &mut Vec<Error>,
) -> bool {
    if size == 0 {
        errs.push(Error::ZeroSize {
            owner: owner.clone(),
        });
    } else if !size.is_multiple_of(align) {
        errs.push(Error::SizeMisaligned {
            owner: owner.clone(),
            size,
            align,
        });
    }
    if size > machine.memory_bytes {
        errs.push(Error::TooBig {
            owner: owner.clone(),
            need: size,
            have: machine.memory_bytes,
        });
        return true;
    }
    false
}

fn check_memory(
    owner: &Owner,
    m: &Memory,
    align: u64,
    machine: &Machine,
    errs: &mut Vec<Error>,
) -> bool {
    match m {
        Memory::Size(n) => check_size(owner, *n, align, machine, errs),
        Memory::Range(r) => {
            check_range(owner, *r, align, machine, errs);
            false
        }
    }
}

fn low_memory() -> (Owner, PhysRange) {
    (Owner::LowMemory, PhysRange::new(0, LOW_MEMORY_END))
}

impl Config {
    /// Checks the configuration against `machine`, reporting every error found (in a fixed
    /// order). Layout problems that depend on reserved ranges or fragmentation are found by
    /// [`crate::plan`], which runs this first.
    pub fn validate(&self, machine: &Machine) -> Result<(), Vec<Error>> {
        let mut errs = Vec::new();
        let views: Vec<SbView<'_>> = self
            .sandboxes
            .iter()
            .map(|s| SbView {
                name: &s.name,
                cpus: &s.cpus,
                image: &s.image,
                console: s.console,
                io_ports: &s.io_ports,
                pci: &s.pci,
            })
            .collect();
        if !check_limits(&views, self.channels.len(), &mut errs) {
            return Err(errs);
        }
        check_sandboxes(&views, machine, &mut errs);

        // Memory, per region.
        let mut too_big = false;
        if let Some(m) = &self.monitor_memory {
            too_big |= check_memory(&Owner::Monitor, m, MONITOR_ALIGN, machine, &mut errs);
        }
        for sb in &self.sandboxes {
            let owner = Owner::Sandbox(sb.name.clone());
            let big = check_memory(&owner, &sb.memory, SANDBOX_ALIGN, machine, &mut errs);
            if !big && !guest_ram_fits(sb.memory.bytes()) {
                errs.push(Error::GuestRamTooBig {
                    sandbox: sb.name.clone(),
                    size: sb.memory.bytes(),
                });
            }
            too_big |= big;
        }

        // Explicit ranges must not overlap each other or the low 1 MiB.
        let mut regions = alloc::vec![low_memory()];
        if let Some(Memory::Range(r)) = &self.monitor_memory {
            regions.push((Owner::Monitor, *r));
        }
        for sb in &self.sandboxes {
            if let Memory::Range(r) = &sb.memory {
                regions.push((Owner::Sandbox(sb.name.clone()), *r));
            }
        }
        check_overlaps(&regions, &mut errs);

        // Channels.
        let mut keys = BTreeSet::new();
        let mut reported = BTreeSet::new();
        for ch in &self.channels {
            if !keys.insert(ch.key) && reported.insert(ch.key) {
                errs.push(Error::DuplicateChannelKey { key: ch.key });
            }
            too_big |= check_size(
                &Owner::Channel(ch.key),
                ch.size,
                CHANNEL_ALIGN,
                machine,
                &mut errs,
            );
            let mut named = BTreeSet::new();
            for name in &ch.sandboxes {
                if !self.sandboxes.iter().any(|s| &s.name == name) {
                    errs.push(Error::UnknownSandbox {
                        key: ch.key,
                        name: name.clone(),
                    });
                }
                if !named.insert(name.as_str()) {
                    errs.push(Error::ChannelNamesTwice {
                        key: ch.key,
                        name: name.clone(),
                    });
                }
            }
            if named.len() < 2 {
                errs.push(Error::ChannelTooFewSandboxes {
                    key: ch.key,
                    count: named.len(),
                });
            }
        }

        // Totals (only when no single region is already too big).
        if !too_big {
            let need = self
                .monitor_memory
                .iter()
                .map(Memory::bytes)
                .chain(self.sandboxes.iter().map(|s| s.memory.bytes()))
                .chain(self.channels.iter().map(|c| c.size))
                .fold(0u64, u64::saturating_add);
            if need > machine.memory_bytes {
                errs.push(Error::TotalTooBig {
                    need,
                    have: machine.memory_bytes,
                });
            }
        }

        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

impl Plan {
    /// Checks the plan against `machine`: what the monitor runs at boot on a decoded blob.
    /// Same as [`Plan::validate_with_reserved`] with no reserved ranges.
    pub fn validate(&self, machine: &Machine) -> Result<(), Vec<Error>> {
        self.validate_with_reserved(machine, &[])
    }

    /// Checks every invariant of a plan: the sandbox checks of a configuration, sandbox ids,
    /// alignment and bounds of every range, no two of the monitor region, sandbox RAM, channel
    /// regions, `reserved` and the low 1 MiB overlap, every channel maps into at least two
    /// distinct existing sandboxes, and each channel's guest window is 4 KiB aligned and clear
    /// of the sandbox's guest RAM, the guest PCI hole and its other channel windows.
    pub fn validate_with_reserved(
        &self,
        machine: &Machine,
        reserved: &[PhysRange],
    ) -> Result<(), Vec<Error>> {
        let mut errs = Vec::new();
        let views: Vec<SbView<'_>> = self
            .sandboxes
            .iter()
            .map(|s| SbView {
                name: &s.name,
                cpus: &s.cpus,
                image: &s.image,
                console: s.console,
                io_ports: &s.io_ports,
                pci: &s.pci,
            })
            .collect();
        if !check_limits(&views, self.channels.len(), &mut errs) {
            return Err(errs);
        }
        check_sandboxes(&views, machine, &mut errs);

        for (index, sb) in self.sandboxes.iter().enumerate() {
            if usize::from(sb.id) != index {
                errs.push(Error::BadSandboxId { index, id: sb.id });
            }
        }

        if let Some(r) = self.monitor {
            check_range(&Owner::Monitor, r, MONITOR_ALIGN, machine, &mut errs);
        }
        for sb in &self.sandboxes {
            let owner = Owner::Sandbox(sb.name.clone());
            check_range(&owner, sb.ram, SANDBOX_ALIGN, machine, &mut errs);
        }
        for ch in &self.channels {
            check_range(
                &Owner::Channel(ch.key),
                ch.phys,
                CHANNEL_ALIGN,
                machine,
                &mut errs,
            );
        }

        let mut regions = alloc::vec![low_memory()];
        regions.extend(reserved.iter().map(|r| (Owner::Reserved, *r)));
        if let Some(r) = self.monitor {
            regions.push((Owner::Monitor, r));
        }
        regions.extend(
            self.sandboxes
                .iter()
                .map(|s| (Owner::Sandbox(s.name.clone()), s.ram)),
        );
        regions.extend(
            self.channels
                .iter()
                .map(|c| (Owner::Channel(c.key), c.phys)),
        );
        check_overlaps(&regions, &mut errs);

        // Channels: keys, mapped sandboxes, guest windows.
        let sandbox_name = |id: u8| self.sandboxes.get(usize::from(id)).map(|s| s.name.as_str());
        let mut keys = BTreeSet::new();
        let mut reported = BTreeSet::new();
        for ch in &self.channels {
            if !keys.insert(ch.key) && reported.insert(ch.key) {
                errs.push(Error::DuplicateChannelKey { key: ch.key });
            }
            let mut mapped = BTreeSet::new();
            for m in &ch.maps {
                match sandbox_name(m.sandbox) {
                    None => errs.push(Error::UnknownSandboxId {
                        key: ch.key,
                        id: m.sandbox,
                    }),
                    Some(name) => {
                        if !mapped.insert(m.sandbox) {
                            errs.push(Error::ChannelNamesTwice {
                                key: ch.key,
                                name: name.into(),
                            });
                        }
                        if !m.guest.is_multiple_of(CHANNEL_ALIGN) {
                            errs.push(Error::GuestMisaligned {
                                key: ch.key,
                                sandbox: name.into(),
                                guest: m.guest,
                            });
                        }
                    }
                }
            }
            if mapped.len() < 2 {
                errs.push(Error::ChannelTooFewSandboxes {
                    key: ch.key,
                    count: mapped.len(),
                });
            }
        }

        // Guest windows, per sandbox: clear of guest RAM, the PCI hole, the limit and each
        // other.
        for (id, sb) in self.sandboxes.iter().enumerate() {
            let ram: Vec<PhysRange> = guest_ram_regions(sb.ram.len())
                .map(|g| PhysRange::new(g.guest, g.guest.saturating_add(g.len)))
                .collect();
            if !guest_ram_fits(sb.ram.len()) {
                errs.push(Error::GuestRamTooBig {
                    sandbox: sb.name.clone(),
                    size: sb.ram.len(),
                });
            }
            let mut windows: Vec<(u32, PhysRange)> = Vec::new();
            for ch in &self.channels {
                for m in ch.maps.iter().filter(|m| usize::from(m.sandbox) == id) {
                    let conflict = |with| Error::GuestConflict {
                        key: ch.key,
                        sandbox: sb.name.clone(),
                        range: PhysRange::new(m.guest, m.guest.saturating_add(ch.phys.len())),
                        with,
                    };
                    let Some(w) = PhysRange::with_len(m.guest, ch.phys.len()) else {
                        errs.push(conflict(GuestConflict::Limit));
                        continue;
                    };
                    if w.end > GUEST_PHYS_LIMIT {
                        errs.push(conflict(GuestConflict::Limit));
                    }
                    if w.overlaps(&GUEST_PCI_HOLE) {
                        errs.push(conflict(GuestConflict::PciHole));
                    }
                    for r in ram.iter().filter(|r| r.overlaps(&w)) {
                        errs.push(conflict(GuestConflict::Ram(*r)));
                    }
                    for (key, other) in windows.iter().filter(|(_, o)| o.overlaps(&w)) {
                        errs.push(conflict(GuestConflict::Channel {
                            key: *key,
                            range: *other,
                        }));
                    }
                    windows.push((ch.key, w));
                }
            }
        }

        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}
