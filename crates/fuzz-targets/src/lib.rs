//! The host fuzz targets: one function per parser of outside input, each taking arbitrary bytes.
//! A target returns normally for every input; it panics (a crash, for the fuzzer) only when the
//! parser panics or its output breaks an invariant the kernel relies on.
//!
//! * [`elf`]: `elf::load_plan` (the kernel's program loader) and the initial stack.
//! * [`cpio`]: the /boot initrd reader.
//! * [`multiboot2`]: the multiboot2 information block, through `bootinfo::parse` (what hal
//!   copies out of it at boot).
//! * [`partition_toml`] and [`partition_blob`]: the Quest-V partition configuration (TOML, then
//!   validation and layout) and its boot blob decoder.
//! * [`channels`]: attaching to a shared-memory channel region with an arbitrary header, then
//!   using it.
//! * [`usb_descriptors`]: what a USB device answers to GET_DESCRIPTOR (device, configuration,
//!   string, hub), through the parsers the xHCI driver uses, and a mass-storage stick's
//!   answers (command status, INQUIRY, READ CAPACITY, sense data).
//! * [`fat_volume`]: a USB stick's blocks as the `/usb` FAT reader sees them (the input is the
//!   device's contents): mount, list every directory, read every file.
//!
//! `fuzz/` (cargo-fuzz, libFuzzer) calls these; `tests/corpus.rs` replays every input checked in
//! under `fuzz/corpus/TARGET/` and `fuzz/regressions/TARGET/` through them in the normal test run,
//! so a regression is caught without cargo-fuzz.
#![forbid(unsafe_code)]

use std::sync::atomic::AtomicU64;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/NAME.rs` and its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("elf", elf),
    ("cpio", cpio),
    ("multiboot2", multiboot2),
    ("partition_toml", partition_toml),
    ("partition_blob", partition_blob),
    ("channels", channels),
    ("usb_descriptors", usb_descriptors),
    ("fat_volume", fat_volume),
];

/// ELF64 load plans, as the kernel asks for them (program headers required), and the System V
/// initial stack built from a plan.
pub fn elf(data: &[u8]) {
    for require_phdr in [true, false] {
        let opts = elf::LoadOptions { require_phdr, ..elf::LoadOptions::default() };
        let Ok(plan) = elf::load_plan(data, &opts) else { continue };
        let mut prev_end = 0;
        for s in &plan.segments {
            assert!(s.filesz <= s.memsz, "filesz > memsz accepted: {s:?}");
            assert!(s.vaddr >= prev_end, "overlapping or unsorted segments accepted");
            assert!(s.vaddr >= opts.min_vaddr && s.end() <= opts.user_limit, "segment outside user space: {s:?}");
            assert!(s.file_range().end <= data.len(), "segment file range beyond the file: {s:?}");
            prev_end = s.end();
            for c in s.copy_chunks() {
                assert!(c.file_range().end <= data.len());
            }
            for _ in s.zero_chunks() {}
        }
        for r in plan.page_runs() {
            assert!(r.start < r.end && r.end <= opts.user_limit.next_multiple_of(elf::PAGE_SIZE), "bad page run {r:?}");
        }
        let auxv = elf::standard_auxv(&plan, &elf::AuxvParams::default());
        let argv: [&[u8]; 2] = [b"/boot/x", b"arg"];
        let envp: [&[u8]; 1] = [b"PATH=/boot"];
        let _ = elf::build_initial_stack(0x7fff_ffff_0000, &argv, &envp, &auxv, [7; 16], b"x86_64");
    }
}

/// The cpio "newc" reader: every entry's data lies inside the archive, and `validate` agrees
/// with iteration.
pub fn cpio(data: &[u8]) {
    let a = cpio::Archive::new(data);
    let mut n = 0usize;
    let mut failed = false;
    for e in a.entries() {
        match e {
            Ok(e) => {
                n += 1;
                let base = data.as_ptr() as usize;
                let p = e.data.as_ptr() as usize;
                assert!(e.data.is_empty() || (p >= base && p + e.data.len() <= base + data.len()));
                let _ = e.symlink_target();
                let _ = a.try_find(e.name);
            }
            Err(_) => failed = true,
        }
    }
    match a.validate() {
        Ok(count) => assert!(!failed && count == n, "validate says {count} entries, iteration saw {n} (failed: {failed})"),
        Err(_) => assert!(failed, "validate failed but iteration did not"),
    }
    let _ = a.find("init.conf");
}

/// The multiboot2 information block: what hal keeps of it (`bootinfo::parse`), every accessor
/// used.
pub fn multiboot2(data: &[u8]) {
    let Ok(info) = boot_info(data) else { return };
    assert!(info.memory_regions().len() <= bootinfo::MAX_MEMORY_REGIONS);
    assert!(info.modules().len() <= bootinfo::MAX_MODULES);
    for r in info.memory_regions() {
        assert!(r.range.start <= r.range.end, "inverted memory region {r:?}");
    }
    for m in info.modules() {
        assert!(m.range.start <= m.range.end, "inverted module range {:?}", m.range);
        let _ = m.name();
    }
    let _ = info.usable_bytes();
    let _ = (info.cmdline(), info.loader_name(), info.firmware.name(), info.module("initrd"));
}

/// What hal keeps of the multiboot2 block `data` (`bootinfo::parse`, as at boot).
pub fn boot_info(data: &[u8]) -> Result<bootinfo::BootInfo, &'static str> {
    bootinfo::parse(data, 0x10_0000)
}

fn machine() -> partition::Machine {
    partition::Machine { cpus: 8, memory_bytes: 4 << 30 }
}

/// The partition configuration: TOML, then validation and layout; a plan that is laid out
/// encodes to a blob that decodes to the same plan.
pub fn partition_toml(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else { return };
    let Ok(cfg) = partition::from_toml_str(text) else { return };
    let _ = cfg.validate(&machine());
    if let Ok(plan) = cfg.plan(&machine(), &[]) {
        let blob = plan.encode();
        assert_eq!(partition::Plan::decode(&blob).as_ref(), Ok(&plan), "blob round trip");
    }
}

/// The boot blob decoder (what the monitor reads at boot): a decoded plan encodes back to a
/// blob that decodes to the same plan.
pub fn partition_blob(data: &[u8]) {
    let Ok(plan) = partition::Plan::decode(data) else { return };
    let _ = plan.validate(&machine());
    if let Ok(blob) = plan.try_encode() {
        assert_eq!(partition::Plan::decode(&blob).as_ref(), Ok(&plan), "blob round trip");
    }
}

/// A shared-memory channel region with an arbitrary header (the other side of a channel is
/// another partition: its header cannot be trusted). The first byte picks what to attach as;
/// the region is the rest, as little-endian words (at most 64 KiB).
pub fn channels(data: &[u8]) {
    let Some((&op, rest)) = data.split_first() else { return };
    let words: Vec<AtomicU64> = rest
        .chunks(8)
        .take(8192)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            AtomicU64::new(u64::from_le_bytes(b))
        })
        .collect();
    let _ = channels::probe(&words);
    let mut buf = vec![0u8; 4096];
    let msg = &rest[..rest.len().min(64)];
    match op % 4 {
        0 => {
            if let Ok(mut p) = channels::FifoProducer::attach(&words) {
                for _ in 0..4 {
                    let _ = p.try_push(msg);
                }
            }
        }
        1 => {
            if let Ok(mut c) = channels::FifoConsumer::attach(&words) {
                for _ in 0..4 {
                    if c.slot_size() > buf.len() {
                        buf.resize(c.slot_size(), 0);
                    }
                    if let Ok(n) = c.try_pop(&mut buf) {
                        assert!(n <= c.slot_size(), "popped {n} bytes from slots of {}", c.slot_size());
                    }
                }
            }
        }
        2 => {
            if let Ok(mut w) = channels::FourSlotWriter::attach(&words) {
                for _ in 0..4 {
                    let _ = w.write(msg);
                }
            }
        }
        _ => {
            if let Ok(mut r) = channels::FourSlotReader::attach(&words) {
                for _ in 0..4 {
                    let _ = r.read(&mut buf);
                }
            }
        }
    }
}

/// USB descriptors and reports as a (hostile) device returns them: every parser on the same
/// bytes (descriptors, hub descriptor, mass-storage replies, boot-keyboard reports, FTDI
/// packets, and what a controller writes back: xHCI event TRBs, EHCI qTD tokens); an accepted
/// configuration holds what its descriptors declared and nothing beyond the data.
pub fn usb_descriptors(data: &[u8]) {
    let _ = usb::desc::max_packet0_prefix(data);
    if let Ok(d) = usb::DeviceDescriptor::parse(data) {
        let mps = d.ep0_max_packet().expect("an accepted device descriptor has a valid EP0 size");
        assert!(matches!(mps, 8 | 16 | 32 | 64 | 512));
    }
    if let Ok(total) = usb::desc::config_total_length(data) {
        assert!(total >= 9);
    }
    if let Ok(c) = usb::Configuration::parse(data) {
        assert!(usize::from(c.total_length) <= data.len());
        assert!(c.interfaces.len() <= usb::desc::MAX_INTERFACES);
        for i in &c.interfaces {
            for e in &i.endpoints {
                assert!((2..=31).contains(&e.dci()), "endpoint {e:?} outside the device context");
            }
        }
    }
    let _ = usb::desc::lang_ids(data);
    if let Ok(s) = usb::desc::string(data) {
        assert!(!s.chars().any(char::is_control), "control characters reach lsusb");
    }
    if let Ok(m) = usb::desc::qualifier_max_packet0(data) {
        assert!(matches!(m, 8 | 16 | 32 | 64));
    }
    if let Ok(h) = usb::HubDescriptor::parse(data) {
        assert!((1..=15).contains(&h.ports));
    }
    if data.len() >= 4 {
        let tag = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        if let Ok(residue) = usb::msc::csw(&data[4..], tag, 512) {
            assert!(residue <= 512);
        }
    }
    let _ = usb::msc::parse_inquiry(data);
    if let Ok((blocks, size)) = usb::msc::parse_capacity(data) {
        assert!(blocks > 0 && size.is_power_of_two());
    }
    let _ = usb::msc::parse_sense(data);
    // Boot-keyboard reports, 8 bytes at a time (and a short tail): only keys pressed anew
    // become bytes, at most six per report.
    let mut kbd = usb::hid::BootKeyboard::new();
    for r in data.chunks(8) {
        assert!(kbd.report(r).len() <= 6);
    }
    // FTDI bulk IN data with any packet size: the status bytes only ever shrink it.
    let mp = data.first().map_or(64, |&b| usize::from(b));
    let (bytes, _) = usb::ftdi::strip_status(data, mp);
    assert!(bytes.len() <= data.len());
    // Controller-written words: event TRBs and qTD tokens.
    for w in data.chunks_exact(16) {
        let d = |i: usize| u32::from_le_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]);
        let t: usb::xhci::Trb = [d(0), d(4), d(8), d(12)];
        let _ = usb::xhci::completion_name(usb::xhci::completion_code(&t));
        let _ = (usb::xhci::trb_type(&t), usb::xhci::event_slot(&t), usb::xhci::event_pointer(&t), usb::xhci::event_port(&t));
        assert!(usb::xhci::transfer_residue(&t) < 1 << 24);
        assert!(usb::xhci::event_endpoint(&t) < 32);
        if let Some(Ok(left)) = usb::ehci::token_result(d(0)) {
            assert!(left <= 0x7fff);
        }
    }
}

/// A RAM block device over a fuzz input (512-byte blocks; the last partial block is dropped).
struct RamBlocks<'a>(&'a [u8]);

impl fat::BlockDevice for RamBlocks<'_> {
    fn block_size(&self) -> usize {
        512
    }
    fn blocks(&self) -> u64 {
        (self.0.len() / 512) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), String> {
        let at = usize::try_from(lba).ok().and_then(|l| l.checked_mul(512)).ok_or("block number")?;
        let src = at.checked_add(buf.len()).and_then(|end| self.0.get(at..end)).ok_or("read past the device")?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Mounts the input as a FAT volume and walks it: every directory listed (two levels), every
/// file read whole; what is read never exceeds the entry's size.
pub fn fat_volume(data: &[u8]) {
    let mut dev = RamBlocks(data);
    let Ok(mut v) = fat::Volume::open(&mut dev) else { return };
    let root = v.root();
    let Ok(top) = v.list(&mut dev, &root) else { return };
    for e in top.iter().take(64) {
        let below = if e.is_dir { v.list(&mut dev, e).unwrap_or_default() } else { vec![e.clone()] };
        for f in below.iter().filter(|f| !f.is_dir).take(64) {
            if let Ok(b) = v.read(&mut dev, f, 0, 1 << 20) {
                assert!(b.len() as u64 <= u64::from(f.size), "read past a file's size");
            }
        }
    }
    let _ = v.lookup(&mut dev, "sub/data.bin");
}
