//! Layout: from a configuration to a fully explicit [`Plan`].
//!
//! Host-physical placement (deterministic, first fit from low addresses):
//! 1. Free memory is `LOW_MEMORY_END..machine.memory_bytes` less the reserved ranges and every
//!    explicit range (monitor, sandboxes).
//! 2. The monitor region (if given as a size), then each sandbox given as a size in
//!    configuration order, each at the lowest 2 MiB aligned free place that holds it.
//! 3. One contiguous shared area (2 MiB aligned start) holds every channel region, in
//!    configuration order, back to back (each a multiple of 4 KiB, so each 4 KiB aligned).
//!
//! Guest-physical layout of a sandbox (what the monitor builds with nested paging):
//! - RAM from guest-physical 0: the first 3 GiB at `0..0xc000_0000`, anything beyond at
//!   `0x1_0000_0000` up (the guest PCI hole [`GUEST_PCI_HOLE`] stays free, as on a PC);
//! - the sandbox's channel windows, back to back in configuration order, from the first
//!   2 MiB boundary after its RAM (moved to 4 GiB if the windows would reach into the hole).
//!
//! Invariants of a plan (checked by [`Plan::validate_with_reserved`], which `plan` runs on its
//! own result, and by the property tests): no two of the monitor region, sandbox RAM, channel
//! regions, reserved ranges and the low 1 MiB overlap; each CPU is in at most one sandbox;
//! every channel is mapped exactly into the sandboxes its configuration named; sandbox RAM is
//! 2 MiB aligned, channel regions and windows 4 KiB aligned.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{Error, Owner};
use crate::model::{
    ChannelKind, Config, Console, Image, Machine, Memory, PciAddr, PhysRange, PortRange,
};
use crate::{LOW_MEMORY_END, MONITOR_ALIGN, SANDBOX_ALIGN, SHARED_AREA_ALIGN};

/// The guest-physical hole every sandbox keeps free below 4 GiB (as a PC does for PCI MMIO,
/// the IOAPIC and the local APIC).
pub const GUEST_PCI_HOLE: PhysRange = PhysRange::new(0xc000_0000, 0x1_0000_0000);

/// Guest-physical addresses stay below 64 GiB (36 address bits, which every x86-64 CPU model
/// of interest offers a guest).
pub const GUEST_PHYS_LIMIT: u64 = 1 << 36;

/// A complete, explicit layout: what the monitor needs to partition the machine. Produced by
/// [`plan`], carried to the monitor as a blob ([`Plan::encode`], [`Plan::decode`]) and checked
/// again there ([`Plan::validate_with_reserved`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Plan {
    /// The monitor's own region, if the configuration asked for one.
    pub monitor: Option<PhysRange>,
    /// The sandboxes, in configuration order; `sandboxes[i].id == i`.
    pub sandboxes: Vec<PlannedSandbox>,
    /// The channels, in configuration order.
    pub channels: Vec<PlannedChannel>,
}

/// A sandbox with its exact RAM range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PlannedSandbox {
    /// Its id: its index in [`Plan::sandboxes`] (and in the configuration).
    pub id: u8,
    /// Its name.
    pub name: String,
    /// Physical CPU indices; the first is its bootstrap processor.
    pub cpus: Vec<u32>,
    /// Host-physical RAM, 2 MiB aligned.
    pub ram: PhysRange,
    /// What it boots.
    pub image: Image,
    /// Its console UART.
    pub console: Console,
    /// Further I/O ports passed through.
    pub io_ports: Vec<PortRange>,
    /// PCI functions passed through.
    pub pci: Vec<PciAddr>,
}

/// One contiguous piece of a sandbox's guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestRegion {
    /// Guest-physical start.
    pub guest: u64,
    /// Host-physical start.
    pub host: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The guest RAM pieces of a sandbox with `size` bytes of RAM, with `host` relative to the start
/// of its RAM.
pub(crate) fn guest_ram_regions(size: u64) -> impl Iterator<Item = GuestRegion> {
    let low_len = size.min(GUEST_PCI_HOLE.start);
    let high_len = size - low_len;
    let low = (low_len > 0).then_some(GuestRegion {
        guest: 0,
        host: 0,
        len: low_len,
    });
    let high = (high_len > 0).then_some(GuestRegion {
        guest: GUEST_PCI_HOLE.end,
        host: low_len,
        len: high_len,
    });
    [low, high].into_iter().flatten()
}

/// End of the guest RAM of a sandbox with `size` bytes of RAM.
fn guest_ram_top(size: u64) -> u64 {
    guest_ram_regions(size)
        .last()
        .map_or(0, |g| g.guest.saturating_add(g.len))
}

/// True if a sandbox with `size` bytes of RAM fits below [`GUEST_PHYS_LIMIT`].
pub(crate) fn guest_ram_fits(size: u64) -> bool {
    guest_ram_top(size) <= GUEST_PHYS_LIMIT
}

/// Where the channel windows of a sandbox with `ram` bytes of RAM and `window` bytes of windows
/// start, guest-physical.
fn guest_window_base(ram: u64, window: u64) -> u64 {
    let base = align_up(guest_ram_top(ram), SANDBOX_ALIGN).unwrap_or(u64::MAX);
    if base < GUEST_PCI_HOLE.end && base.saturating_add(window) > GUEST_PCI_HOLE.start {
        GUEST_PCI_HOLE.end
    } else {
        base
    }
}

impl PlannedSandbox {
    /// The SVM ASID (or VT-x VPID) of the sandbox: `id + 1` (0 is the host's).
    pub fn asid(&self) -> u32 {
        u32::from(self.id) + 1
    }

    /// Its guest RAM: guest-physical 0 up to 3 GiB, the rest from 4 GiB, backed by
    /// [`PlannedSandbox::ram`] in order.
    pub fn guest_ram(&self) -> impl Iterator<Item = GuestRegion> + '_ {
        guest_ram_regions(self.ram.len()).map(|g| GuestRegion {
            host: self.ram.start + g.host,
            ..g
        })
    }
}

/// A channel with its exact shared region and where it appears in each sandbox that maps it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PlannedChannel {
    /// The shmcomm key.
    pub key: u32,
    /// Async or sync, if the configuration said.
    pub kind: Option<ChannelKind>,
    /// Host-physical region, 4 KiB aligned.
    pub phys: PhysRange,
    /// The sandboxes that may map it (in the order the configuration named them) and the
    /// guest-physical address of the window in each.
    pub maps: Vec<ChannelMap>,
}

/// One sandbox's mapping of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelMap {
    /// Sandbox id.
    pub sandbox: u8,
    /// Guest-physical address of the channel in that sandbox (4 KiB aligned).
    pub guest: u64,
}

impl Plan {
    /// The sandbox with this name.
    pub fn sandbox(&self, name: &str) -> Option<&PlannedSandbox> {
        self.sandboxes.iter().find(|s| s.name == name)
    }

    /// The sandbox that owns physical CPU `cpu` (what a monitor on that core launches).
    pub fn sandbox_of_cpu(&self, cpu: u32) -> Option<&PlannedSandbox> {
        self.sandboxes.iter().find(|s| s.cpus.contains(&cpu))
    }

    /// The channel with this key.
    pub fn channel(&self, key: u32) -> Option<&PlannedChannel> {
        self.channels.iter().find(|c| c.key == key)
    }

    /// The channels sandbox `id` may map, each with its guest-physical address there.
    pub fn channels_of(&self, id: u8) -> impl Iterator<Item = (&PlannedChannel, u64)> + '_ {
        self.channels.iter().filter_map(move |c| {
            c.maps
                .iter()
                .find(|m| m.sandbox == id)
                .map(|m| (c, m.guest))
        })
    }
}

const fn align_up(x: u64, align: u64) -> Option<u64> {
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Free physical memory: sorted, disjoint, non-empty ranges.
struct FreeList(Vec<PhysRange>);

impl FreeList {
    fn remove(&mut self, r: PhysRange) {
        if r.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for f in &self.0 {
            if !f.overlaps(&r) {
                out.push(*f);
                continue;
            }
            if f.start < r.start {
                out.push(PhysRange::new(f.start, r.start));
            }
            if r.end < f.end {
                out.push(PhysRange::new(r.end, f.end));
            }
        }
        self.0 = out;
    }

    /// Takes the lowest `align`-aligned range of `size` bytes.
    fn take(&mut self, size: u64, align: u64) -> Option<PhysRange> {
        let r = self.0.iter().find_map(|f| {
            let start = align_up(f.start, align)?;
            let r = PhysRange::with_len(start, size)?;
            (r.end <= f.end).then_some(r)
        })?;
        self.remove(r);
        Some(r)
    }
}

/// Lays out `config` on `machine`: validates it ([`Config::validate`]), gives every sandbox
/// given as a size an exact 2 MiB aligned RAM range and every channel an exact region in a
/// shared area, avoiding the low 1 MiB, the monitor's region and `reserved`, and computes
/// where each channel appears in each sandbox that may map it. Reports all errors found.
pub fn plan(
    config: &Config,
    machine: &Machine,
    reserved: &[PhysRange],
) -> Result<Plan, Vec<Error>> {
    config.validate(machine)?;
    let mut errs = Vec::new();

    // Explicit ranges against the reserved ones (the rest was checked by validate).
    let mut explicit: Vec<(Owner, PhysRange)> = Vec::new();
    if let Some(Memory::Range(r)) = &config.monitor_memory {
        explicit.push((Owner::Monitor, *r));
    }
    for sb in &config.sandboxes {
        if let Memory::Range(r) = &sb.memory {
            explicit.push((Owner::Sandbox(sb.name.clone()), *r));
        }
    }
    for (owner, r) in &explicit {
        for res in reserved.iter().filter(|res| res.overlaps(r)) {
            errs.push(Error::Overlap {
                a: owner.clone(),
                a_range: *r,
                b: Owner::Reserved,
                b_range: *res,
            });
        }
    }

    let mut free = FreeList(Vec::new());
    if machine.memory_bytes > LOW_MEMORY_END {
        free.0
            .push(PhysRange::new(LOW_MEMORY_END, machine.memory_bytes));
    }
    for r in reserved.iter().chain(explicit.iter().map(|(_, r)| r)) {
        free.remove(*r);
    }

    let mut place = |owner: Owner, size: u64, align: u64, errs: &mut Vec<Error>| {
        let r = free.take(size, align);
        if r.is_none() {
            errs.push(Error::NoRoom { owner, size, align });
        }
        r.unwrap_or_default()
    };

    let monitor = match &config.monitor_memory {
        None => None,
        Some(Memory::Range(r)) => Some(*r),
        Some(Memory::Size(n)) => Some(place(
            Owner::Monitor,
            *n,
            SANDBOX_ALIGN.max(MONITOR_ALIGN),
            &mut errs,
        )),
    };

    let mut sandboxes = Vec::with_capacity(config.sandboxes.len());
    for (id, sb) in config.sandboxes.iter().enumerate() {
        let ram = match &sb.memory {
            Memory::Range(r) => *r,
            Memory::Size(n) => place(
                Owner::Sandbox(sb.name.clone()),
                *n,
                SANDBOX_ALIGN,
                &mut errs,
            ),
        };
        sandboxes.push(PlannedSandbox {
            id: id as u8, // validate bounds the count by MAX_SANDBOXES
            name: sb.name.clone(),
            cpus: sb.cpus.clone(),
            ram,
            image: sb.image.clone(),
            console: sb.console,
            io_ports: sb.io_ports.clone(),
            pci: sb.pci.clone(),
        });
    }

    let shared_size = config
        .channels
        .iter()
        .map(|c| c.size)
        .fold(0u64, u64::saturating_add);
    let shared = if shared_size == 0 {
        PhysRange::default()
    } else {
        place(Owner::SharedArea, shared_size, SHARED_AREA_ALIGN, &mut errs)
    };
    if !errs.is_empty() {
        return Err(errs);
    }

    // Channel regions back to back in the shared area; windows back to back per sandbox.
    let mut next = shared.start;
    let mut window_next: Vec<u64> = sandboxes
        .iter()
        .map(|s| {
            let window = config
                .channels
                .iter()
                .filter(|c| c.sandboxes.contains(&s.name))
                .map(|c| c.size)
                .fold(0u64, u64::saturating_add);
            guest_window_base(s.ram.len(), window)
        })
        .collect();
    let mut channels = Vec::with_capacity(config.channels.len());
    for ch in &config.channels {
        let phys = PhysRange::new(next, next + ch.size);
        next = phys.end;
        let maps = ch
            .sandboxes
            .iter()
            .map(|name| {
                let id = config.sandbox_id(name).unwrap_or(0); // validate checked the names
                let slot = &mut window_next[usize::from(id)];
                let guest = *slot;
                *slot = slot.saturating_add(ch.size);
                ChannelMap { sandbox: id, guest }
            })
            .collect();
        channels.push(PlannedChannel {
            key: ch.key,
            kind: ch.kind,
            phys,
            maps,
        });
    }

    let plan = Plan {
        monitor,
        sandboxes,
        channels,
    };
    // The layout's own invariants: a failure here is a bug in `plan`, reported, not hidden.
    plan.validate_with_reserved(machine, reserved)?;
    Ok(plan)
}

impl Config {
    /// [`plan`] for this configuration.
    pub fn plan(&self, machine: &Machine, reserved: &[PhysRange]) -> Result<Plan, Vec<Error>> {
        plan(self, machine, reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MIB;

    #[test]
    fn free_list_takes_the_lowest_aligned_fit() {
        let mut f = FreeList(alloc::vec![PhysRange::new(MIB, 64 * MIB)]);
        f.remove(PhysRange::new(3 * MIB, 5 * MIB));
        assert_eq!(
            f.0,
            [
                PhysRange::new(MIB, 3 * MIB),
                PhysRange::new(5 * MIB, 64 * MIB)
            ]
        );
        // 2 MiB aligned, 2 MiB: 2..4 is not free (3..5 taken), so 6..8.
        assert_eq!(
            f.take(2 * MIB, 2 * MIB),
            Some(PhysRange::new(6 * MIB, 8 * MIB))
        );
        assert_eq!(f.take(4096, 4096), Some(PhysRange::new(MIB, MIB + 4096)));
        assert_eq!(f.take(64 * MIB, 2 * MIB), None);
        assert_eq!(f.take(u64::MAX, 2 * MIB), None);
        f.remove(PhysRange::new(0, u64::MAX));
        assert!(f.0.is_empty());
    }

    #[test]
    fn guest_windows_skip_the_pci_hole() {
        assert_eq!(guest_window_base(128 * MIB, 4096), 128 * MIB);
        assert_eq!(guest_window_base(127 * MIB, 4096), 128 * MIB);
        assert_eq!(
            guest_window_base(0xc000_0000 - 2 * MIB, 2 * MIB),
            0xc000_0000 - 2 * MIB
        );
        assert_eq!(
            guest_window_base(0xc000_0000 - 2 * MIB, 2 * MIB + 1),
            0x1_0000_0000
        );
        assert_eq!(guest_window_base(0xc000_0000, 4096), 0x1_0000_0000);
        assert_eq!(
            guest_window_base(0xc000_0000 + MIB, 4096),
            0x1_0000_0000 + 2 * MIB
        );
        assert!(guest_ram_fits(GUEST_PHYS_LIMIT - GUEST_PCI_HOLE.len()));
        assert!(!guest_ram_fits(GUEST_PHYS_LIMIT - GUEST_PCI_HOLE.len() + 1));
    }
}
