//! USB mass storage (class 08, SCSI transparent 06, bulk-only 50): the protocol ([`Msc`]:
//! INQUIRY, TEST UNIT READY and READ CAPACITY(10) at enumeration, then READ(10) on request,
//! what `/usb`'s FAT reader calls) over any controller's bulk pipes (`host::Bulk`), and the
//! xHCI side (the stick's bulk endpoints configured, transfers on its rings). The protocol's
//! bytes are made and checked by `usb::msc` (host-tested).
//!
//! On xHCI every transfer is waited for by polling the event ring with the controller's lock
//! held and a guest-time deadline (keyboard and serial events met on the way are served, port
//! changes noted, not lost); interrupt completion is EHCI's only so far (`ehci.rs`). A stick that fails a command, answers with a malformed
//! status or moves fewer bytes than asked gives an error for that read; after a transport
//! failure (a halted endpoint, a phase error, a time-out) the stick is marked failed and every
//! later read fails too (recovery by Bulk-Only Mass Storage Reset is not supported yet).
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hal::dma::DmaBuffer;
use usb::msc;
use usb::xhci::{self as x, InputContext, Trb};
use usb::{Interface, Setup};

use super::host::Bulk;
use super::xhci::*;
use crate::drivers::DriverError;

/// The data buffer (64 KiB): READ(10) moves at most this much per command.
const DATA_FRAMES: usize = 16;
/// Guest-time deadline of one bulk transfer.
const BULK_NS: u64 = 2_000_000_000;

/// The bulk-only protocol state of one stick (LUN 0), whatever its controller.
#[derive(Default)]
pub(super) struct Msc {
    tag: u32,
    pub(super) blocks: u64,
    pub(super) block_size: u32,
    pub(super) vendor: String,
    pub(super) product: String,
    /// Why the stick no longer works (a transport failure, or it was unplugged).
    pub(super) failed: Option<String>,
}

impl Msc {
    /// Asks the stick what it is and how large (it must be a ready direct-access device).
    pub(super) fn describe(&mut self, p: &mut dyn Bulk) -> Result<(), String> {
        let r = self.describe_once(p);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn describe_once(&mut self, p: &mut dyn Bulk) -> Result<(), String> {
        let mut b = [0u8; 36];
        let n = self.scsi(p, &msc::inquiry(36), &mut b)?;
        let q = msc::parse_inquiry(&b[..n]).map_err(|e| format!("INQUIRY: {e}"))?;
        if q.device_type != 0 {
            return Err(format!("SCSI device type {:#x}: only direct-access (disk) devices are supported", q.device_type));
        }
        // A stick may need a moment (and a REQUEST SENSE) before it is ready.
        let mut ready = Err(String::new());
        for _ in 0..5 {
            ready = self.scsi(p, &msc::test_unit_ready(), &mut []).map(|_| ());
            if ready.is_ok() {
                break;
            }
            let mut sense = [0u8; 18];
            self.scsi(p, &msc::request_sense(18), &mut sense)?;
        }
        ready.map_err(|e| format!("TEST UNIT READY: {e}"))?;
        let mut c = [0u8; 8];
        let n = self.scsi(p, &msc::read_capacity10(), &mut c)?;
        let (blocks, size) = msc::parse_capacity(&c[..n]).map_err(|e| format!("READ CAPACITY: {e}"))?;
        (self.blocks, self.block_size, self.vendor, self.product) = (blocks, size, q.vendor, q.product);
        Ok(())
    }

    /// One bulk-only command: CBW, the data stage into `data` (device to host; empty for
    /// none), CSW. Returns the bytes the data stage moved. A transport failure marks the
    /// stick failed; a command the stick refuses (CSW status 1) does not.
    fn scsi(&mut self, p: &mut dyn Bulk, cdb: &[u8], data: &mut [u8]) -> Result<usize, String> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let r = self.scsi_once(p, cdb, data);
        if let Err((e, fatal)) = &r {
            if *fatal {
                self.failed = Some(e.clone());
            }
            return Err(e.clone());
        }
        r.map_err(|(e, _)| e)
    }

    fn scsi_once(&mut self, p: &mut dyn Bulk, cdb: &[u8], data: &mut [u8]) -> Result<usize, (String, bool)> {
        self.tag = self.tag.wrapping_add(1);
        let tag = self.tag;
        let mut w = msc::cbw(tag, data.len() as u32, true, 0, cdb);
        let fatal = |e: String| (e, true);
        p.bulk(false, &mut w).map_err(|e| fatal(format!("command {:#04x}: {e}", cdb[0])))?;
        let mut moved = 0;
        while moved < data.len() {
            let end = data.len().min(moved + p.max_transfer());
            let n = p.bulk(true, &mut data[moved..end]).map_err(|e| fatal(format!("command {:#04x}: data: {e}", cdb[0])))?;
            moved += n;
            if moved < end {
                break; // a short packet ends the data stage
            }
        }
        let mut status = [0u8; 13];
        let n = p.bulk(true, &mut status).map_err(|e| fatal(format!("command {:#04x}: status: {e}", cdb[0])))?;
        let residue = msc::csw(&status[..n], tag, data.len() as u32).map_err(|e| {
            let broken = !matches!(e, msc::MscError::Failed);
            (format!("command {:#04x}: {e}", cdb[0]), broken)
        })?;
        Ok(moved.min(data.len() - residue as usize))
    }

    /// Reads whole blocks from block `lba` into `out` (a multiple of the block size).
    pub(super) fn read_blocks(&mut self, p: &mut dyn Bulk, lba: u64, out: &mut [u8]) -> Result<(), String> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let bs = self.block_size as usize;
        if bs == 0 || !out.len().is_multiple_of(bs) {
            return Err(String::from("a read of part of a block"));
        }
        let per = ((64 << 10) / bs) as u16;
        let Some(parts) = msc::split_reads(lba, (out.len() / bs) as u64, per, self.blocks) else {
            return Err(format!("blocks {lba}+{} are beyond the stick's {} blocks", out.len() / bs, self.blocks));
        };
        let mut at = 0;
        for (l, n) in parts.collect::<Vec<_>>() {
            let len = usize::from(n) * bs;
            let got = self.scsi(p, &msc::read10(l, n), &mut out[at..at + len])?;
            if got != len {
                return Err(format!("READ(10) of block {l}: {got} of {len} bytes (short read)"));
            }
            at += len;
        }
        Ok(())
    }
}

/// A stick on xHCI.
pub(super) struct Stick {
    pub(super) msc: Msc,
    pub(super) slot: u8,
    dci_in: u8,
    dci_out: u8,
    ring_in: Ring,
    ring_out: Ring,
    data: DmaBuffer,
}

/// A stick's bulk pipes on this controller.
struct Pipes<'a> {
    hc: &'a mut Hc,
    i: usize,
}

impl Bulk for Pipes<'_> {
    fn bulk(&mut self, dir_in: bool, data: &mut [u8]) -> Result<usize, String> {
        self.hc.bulk(self.i, dir_in, data)
    }
    fn max_transfer(&self) -> usize {
        DATA_FRAMES * 4096
    }
}

impl Hc {
    /// Sets up a bulk-only stick on interface `itf` of device `d` (configured already) and
    /// asks it what it is. Returns its index in `sticks`.
    pub(super) fn storage(&mut self, d: &mut Dev, itf: &Interface) -> Result<usize, String> {
        let bulk = |dir_in: bool| itf.endpoints.iter().find(|e| e.attributes & 3 == 2 && e.is_in() == dir_in).copied();
        let (Some(ein), Some(eout)) = (bulk(true), bulk(false)) else {
            return Err(String::from("no bulk IN and OUT endpoints"));
        };
        let oom = |e: DriverError| format!("{e}");
        let ring_in = Ring::new(self.ac64).map_err(oom)?;
        let ring_out = Ring::new(self.ac64).map_err(oom)?;
        let slot_ctx = [d.out.read32(0), d.out.read32(4), d.out.read32(8), d.out.read32(12)];
        let ic = InputContext { csz: self.csz };
        d.input.zero(0, d.input.len());
        let mps = ein.max_packet.max(eout.max_packet) & 0x7ff;
        for (off, v) in ic.configure_bulk(slot_ctx, ein.dci(), eout.dci(), mps, ring_in.buf.phys(), ring_out.buf.phys()) {
            d.input.write32(off, v);
        }
        self.command(x::configure_endpoint(d.input.phys(), d.slot), "Configure Endpoint")?;
        // Get Max LUN may stall on a single-LUN stick: LUN 0 is used either way.
        let _ = self.control(d, Setup { request_type: 0xa1, request: msc::REQ_GET_MAX_LUN, value: 0, index: u16::from(itf.number), length: 1 });
        let data = dma(DATA_FRAMES, self.ac64).map_err(oom)?;
        self.sticks.push(Stick { msc: Msc::default(), slot: d.slot, dci_in: ein.dci(), dci_out: eout.dci(), ring_in, ring_out, data });
        let i = self.sticks.len() - 1;
        let mut m = core::mem::take(&mut self.sticks[i].msc);
        let r = m.describe(&mut Pipes { hc: self, i });
        self.sticks[i].msc = m;
        r.map(|_| i)
    }

    /// Reads blocks of stick `i` (see [`Msc::read_blocks`]).
    pub(super) fn read_blocks(&mut self, i: usize, lba: u64, out: &mut [u8]) -> Result<(), String> {
        if i >= self.sticks.len() {
            return Err(String::from("no such stick"));
        }
        let mut m = core::mem::take(&mut self.sticks[i].msc);
        let r = m.read_blocks(&mut Pipes { hc: self, i }, lba, out);
        self.sticks[i].msc = m;
        r
    }

    /// A bulk transfer of `data` on stick `i`'s IN or OUT endpoint through its DMA buffer,
    /// one TD per 64 KiB piece; returns the bytes moved (a short packet ends it early).
    fn bulk(&mut self, i: usize, dir_in: bool, data: &mut [u8]) -> Result<usize, String> {
        let s = &mut self.sticks[i];
        if data.len() > s.data.len() {
            return Err(String::from("transfer larger than the DMA buffer"));
        }
        if !dir_in {
            let mut padded = data.to_vec();
            padded.resize(data.len().div_ceil(4) * 4, 0);
            for (k, c) in padded.chunks_exact(4).enumerate() {
                s.data.write32(4 * k, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            }
        }
        let buf = s.data.phys();
        let mut moved = 0;
        for (at, n) in InputContext::split_64k(buf, data.len()) {
            let s = &mut self.sticks[i];
            let (slot, dci) = (s.slot, if dir_in { s.dci_in } else { s.dci_out });
            let ring = if dir_in { &mut s.ring_in } else { &mut s.ring_out };
            let trb = ring.push(x::normal(at, n));
            self.w32(self.db + 4 * u64::from(slot), u32::from(dci));
            let e = self.wait_transfer(slot, dci, trb, BULK_NS)?;
            let got = (n as usize).saturating_sub(x::transfer_residue(&e) as usize);
            moved += got;
            match x::completion_code(&e) {
                x::CC_SUCCESS if got == n as usize => {}
                x::CC_SUCCESS | x::CC_SHORT_PACKET => break,
                cc => return Err(format!("endpoint {dci}: {}", x::completion_name(cc))),
            }
        }
        if dir_in {
            self.sticks[i].data.read_bytes(0, &mut data[..moved]);
        }
        Ok(moved)
    }

    /// Waits for the transfer event of the TRB at `trb` on (`slot`, `dci`); keyboard reports
    /// that arrive meanwhile are served.
    pub(super) fn wait_transfer(&mut self, slot: u8, dci: u8, trb: u64, ns: u64) -> Result<Trb, String> {
        let end = hal::time::now_ns().saturating_add(ns);
        loop {
            let left = end.saturating_sub(hal::time::now_ns());
            let Some(e) = self.next_event(left) else {
                return Err(String::from("no completion (timed out)"));
            };
            if x::trb_type(&e) == x::TRB_TRANSFER_EVENT && x::event_slot(&e) == slot && x::event_endpoint(&e) == dci && x::event_pointer(&e) == trb {
                return Ok(e);
            }
            self.other_event(&e); // a port status change is noted for hot-plug, not dropped
        }
    }
}
