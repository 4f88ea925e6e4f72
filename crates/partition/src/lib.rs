//! Quest-V partition configuration: the model, validation, layout and the boot blob.
//!
//! A configuration ([`Config`]) says which sandboxes exist (CPUs, memory, image, console, I/O
//! ports, PCI functions) and which shared-memory channels join them. xtask reads it from TOML
//! (`from_toml_str`, feature `toml`), validates it against the machine ([`Config::validate`]),
//! lays it out ([`plan`]) into a fully explicit [`Plan`] and encodes that as a compact blob
//! ([`Plan::encode`]). The monitor decodes the blob at boot ([`Plan::decode`]), validates it
//! again against the real machine and the memory it must not touch
//! ([`Plan::validate_with_reserved`]) and refuses to start on any error.
//!
//! ```
//! use partition::{Config, Machine, Sandbox, Channel, ChannelKind, GIB, MIB};
//!
//! let config = Config {
//!     sandboxes: vec![Sandbox::quest("q0", &[0], 128 * MIB), Sandbox::quest("q1", &[1], 128 * MIB)],
//!     channels: vec![Channel {
//!         key: 153,
//!         size: 4096,
//!         kind: Some(ChannelKind::Async),
//!         sandboxes: vec!["q0".into(), "q1".into()],
//!     }],
//!     ..Config::default()
//! };
//! let machine = Machine { cpus: 2, memory_bytes: GIB };
//! let plan = config.plan(&machine, &[]).unwrap();
//! let blob = plan.encode();
//! let back = partition::Plan::decode(&blob).unwrap();
//! assert_eq!(back, plan);
//! back.validate(&machine).unwrap();
//! ```
//!
//! Everything but the TOML front end is `no_std` + `alloc`, so the monitor can use it.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod blob;
mod error;
mod model;
mod pci;
mod plan;
#[cfg(feature = "toml")]
mod toml;
mod validate;

pub use blob::{
    BLOB_HEADER_LEN, BLOB_MAGIC, BLOB_VERSION, BlobError, LoadError, MAX_BLOB_LEN, crc32,
};
pub use error::{Error, GuestConflict, Owner, OwnerName, PortUse};
pub use model::{
    Channel, ChannelKind, Config, Console, Hex, Image, Machine, Memory, PciAddr, PhysRange,
    PortRange, Sandbox, Size,
};
pub use pci::{FoundFunction, check_devices};
pub use plan::{
    ChannelMap, GUEST_PCI_HOLE, GUEST_PHYS_LIMIT, GuestRegion, Plan, PlannedChannel,
    PlannedSandbox, plan,
};
#[cfg(feature = "toml")]
pub use toml::{from_toml_str, parse_size};
pub use validate::is_valid_name;

/// 1 KiB.
pub const KIB: u64 = 1 << 10;
/// 1 MiB.
pub const MIB: u64 = 1 << 20;
/// 1 GiB.
pub const GIB: u64 = 1 << 30;

/// Physical memory below this (real-mode structures, the BIOS, the AP start-up trampoline) is
/// never given to a sandbox, a channel or the monitor.
pub const LOW_MEMORY_END: u64 = MIB;
/// Sandbox RAM sizes and ranges are multiples of 2 MiB, so nested paging can map them with
/// large pages.
pub const SANDBOX_ALIGN: u64 = 2 * MIB;
/// The monitor region's size and explicit range are multiples of 4 KiB (a sized region is
/// placed 2 MiB aligned).
pub const MONITOR_ALIGN: u64 = 4 * KIB;
/// Channel sizes, regions and guest windows are multiples of 4 KiB.
pub const CHANNEL_ALIGN: u64 = 4 * KIB;
/// The shared area holding all channel regions starts 2 MiB aligned.
pub const SHARED_AREA_ALIGN: u64 = 2 * MIB;

/// At most this many sandboxes: one SVM ASID each, and QEMU's SVM offers 16 ASIDs of which 0
/// is the host's.
pub const MAX_SANDBOXES: usize = 15;
/// Sandbox names are at most this many bytes.
pub const MAX_NAME_LEN: usize = 31;
/// At most this many CPUs per sandbox.
pub const MAX_CPUS_PER_SANDBOX: usize = 256;
/// At most this many I/O port ranges per sandbox (besides its console).
pub const MAX_PORT_RANGES_PER_SANDBOX: usize = 64;
/// At most this many PCI functions per sandbox.
pub const MAX_PCI_PER_SANDBOX: usize = 64;
/// At most this many channels.
pub const MAX_CHANNELS: usize = 256;
/// Image paths are at most this many bytes.
pub const MAX_PATH_LEN: usize = 255;
/// A Linux command line is at most this many bytes (Linux's x86 limit less the NUL).
pub const MAX_CMDLINE_LEN: usize = 2047;
