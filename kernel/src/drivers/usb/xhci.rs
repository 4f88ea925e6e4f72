//! USB 3 host controller (xHCI; QEMU's `qemu-xhci`, `nec-usb-xhci`) on the driver model:
//! bring-up and enumeration, interrupt-driven event handling, the `/dev/usb` listing (what
//! `lsusb` prints).
//!
//! - Probe (PCI class 0c/03, programming interface 0x30): claims BAR0 (`hal::pci::Mmio`),
//!   halts and resets the controller, waits for Controller Not Ready to clear, switches bus
//!   mastering on ([`crate::drivers::enable_bus_master`]: this driver is a [`crate::drivers::DmaDriver`]), sets
//!   MaxSlotsEn, the Device Context Base Address Array (and scratchpad buffers if the
//!   controller asks), the command ring and one event-ring segment on interrupter 0, and runs.
//! - Every structure the controller reads or writes is a `hal::dma::DmaBuffer`: rings,
//!   contexts, the transfer bounce buffer; they live for the rest of the run (hal's DMA rule).
//! - Enumeration, per root port with a device connected: USB2 port reset (a SuperSpeed port
//!   comes up enabled), Enable Slot, input context (slot + EP0) and Address Device, the first 8
//!   bytes of the device descriptor, Evaluate Context if EP0's packet size differs from the
//!   speed's default, the device descriptor, the configuration (with its interfaces and
//!   endpoints), the language ids and the manufacturer and product strings, SET_CONFIGURATION.
//!   A hub (class 9) is enumerated through: its hub descriptor, port power, port reset through
//!   hub class requests, its devices addressed with a route string.
//! - Everything a device sends is parsed by `crates/usb` (fuzzed on the host); a device whose
//!   descriptors are malformed is refused with a log line naming the problem.
//!
//! - A boot-protocol keyboard (HID 03/01/01): SET_PROTOCOL (boot), SET_IDLE, Configure
//!   Endpoint for its interrupt IN endpoint, eight reports always queued; each report's newly
//!   pressed keys become console input (`serial::inject`, as if typed on the UART).
//! - Mass storage (`storage.rs`, bulk endpoints) and FTDI serial adapters (`serial.rs`).
//!
//! Interrupts: MSI when the function offers it (`drivers::register_dma_msi`; qemu-xhci needs
//! `msi=on`, its default offers only MSI-X, which the PCI layer does not drive yet), else its
//! INTx line through the IOAPIC. At boot, in `probe`, before the interrupt is routed, every
//! command and transfer is waited for by polling the event ring with a guest-time deadline;
//! `start` then enables interrupter 0 (IMAN.IE, USBCMD.INTE; no moderation). The top half only
//! acknowledges (IMAN.IP, USBSTS.EINT) and wakes the bottom half, a thread on the driver's IO
//! VCPU, which drains the event ring (keyboard reports, serial data, port status changes for
//! hot-plug, `enumerate.rs`) and then clears Event Handler Busy: events that arrive while it
//! drains raise no interrupt of their own, and one left behind the dequeue pointer raises it
//! again at once, so no event waits for a timer and there is no polling safety net. A stick's
//! reads and a serial port's writes still wait for their own completion by polling the ring
//! (with the controller's lock held); events they meet are served or noted the same way.
//!
//! - A STALL on EP0 (a request the device refuses, such as a full-speed-only device's device
//!   qualifier) halts it; `Hc::control` restarts it (Reset Endpoint, Set TR Dequeue Pointer).
//!
//! Not done yet (each says so where it would be needed): a halted bulk or interrupt endpoint's
//! reset (CLEAR_FEATURE(ENDPOINT_HALT)),
//! MSI-X, interrupt-driven completion of stick reads and serial writes, a high-speed hub's transaction translator for full/low-speed devices behind it,
//! hot-plug below a hub (root ports only), S3 resume.
//!
//! Register and TRB layouts are hand-written in `crates/usb::xhci` (host-tested) rather than
//! taken from the `xhci` crate: see that crate's doc for why.
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use hal::dma::DmaBuffer;
use hal::pci::{Bdf, Mmio};
use hal::sync::IrqLock;
use usb::desc;
use usb::xhci::{self as x, Consumer, InputContext, Producer, Trb, portsc};
use usb::Setup;
use vcpu_sched::VcpuParams;

use crate::drivers::{Device, Driver, DriverError, Resource};

use super::UsbDevice;

/// TRBs per ring (one 4 KiB frame).
pub(super) const RING_TRBS: usize = 256;
/// Device slots used (of the controller's MaxSlots).
pub(super) const MAX_SLOTS: u32 = 32;
/// Hub tiers followed below a root port (a route string has 5).
pub(super) const MAX_HUB_DEPTH: u32 = 5;
/// Guest-time deadlines.
pub(super) const RESET_NS: u64 = 500_000_000;
pub(super) const COMMAND_NS: u64 = 200_000_000;
pub(super) const PORT_RESET_NS: u64 = 200_000_000;

// Operational registers.
pub(super) const USBCMD: u64 = 0;
pub(super) const USBSTS: u64 = 4;
pub(super) const PAGESIZE: u64 = 8;
pub(super) const CRCR: u64 = 0x18;
pub(super) const DCBAAP: u64 = 0x30;
pub(super) const CONFIG: u64 = 0x38;
pub(super) const CMD_RS: u32 = 1;
pub(super) const CMD_HCRST: u32 = 2;
pub(super) const STS_HCH: u32 = 1;
pub(super) const STS_HSE: u32 = 1 << 2;
pub(super) const STS_CNR: u32 = 1 << 11;
pub(super) const CMD_INTE: u32 = 1 << 2;
pub(super) const STS_EINT: u32 = 1 << 3;
// Interrupter 0's registers (runtime base + 0x20).
pub(super) const IMAN: u64 = 0;
pub(super) const IMOD: u64 = 4;
pub(super) const IMAN_IP: u32 = 1;
pub(super) const IMAN_IE: u32 = 2;
pub(super) const ERSTSZ: u64 = 8;
pub(super) const ERSTBA: u64 = 0x10;
pub(super) const ERDP: u64 = 0x18;
pub(super) const ERDP_EHB: u32 = 1 << 3;


/// A ring the driver produces on (command ring, a transfer ring).
pub(super) struct Ring {
    pub(super) buf: DmaBuffer,
    pub(super) p: Producer,
}

impl Ring {
    pub(super) fn new(ac64: bool) -> Result<Ring, DriverError> {
        let buf = dma(1, ac64)?;
        let p = Producer::new(RING_TRBS).ok_or(DriverError::Broken("ring size"))?;
        let l = x::link(buf.phys());
        write_trb(&buf, p.link_index(), &Producer::stamp(l, false));
        Ok(Ring { buf, p })
    }

    /// Enqueues `t` (cycle bit last); returns its bus address.
    pub(super) fn push(&mut self, t: Trb) -> u64 {
        let s = self.p.push();
        write_trb(&self.buf, s.index, &Producer::stamp(t, s.cycle));
        if let Some(c) = s.link_cycle {
            let l = x::link(self.buf.phys());
            write_trb(&self.buf, self.p.link_index(), &Producer::stamp(l, c));
        }
        self.buf.phys() + 16 * s.index as u64
    }
}

pub(super) fn write_trb(b: &DmaBuffer, index: usize, t: &Trb) {
    let off = index * 16;
    b.write32(off, t[0]);
    b.write32(off + 4, t[1]);
    b.write32(off + 8, t[2]);
    // Release: the device sees the rest of the TRB before the cycle bit that hands it over.
    b.write32(off + 12, t[3]);
}

/// A DMA buffer the controller can address (below 4 GiB unless it does 64-bit addressing).
pub(super) fn dma(frames: usize, ac64: bool) -> Result<DmaBuffer, DriverError> {
    let b = DmaBuffer::alloc(frames).ok_or(DriverError::Broken("no memory for DMA buffers"))?;
    if !ac64 && b.phys() + b.len() as u64 > 1 << 32 {
        return Err(DriverError::NotSupported("a 32-bit xHCI with DMA memory above 4 GiB"));
    }
    Ok(b)
}

/// The controller: set up and enumerated in `probe` (by polling), then used by the bottom half
/// and by the users of its sticks and serial ports.
pub(super) struct Hc {
    /// Shared with the top half, which touches only interrupter 0's IMAN and USBSTS.EINT.
    pub(super) regs: Arc<Mmio>,
    pub(super) op: u64,
    pub(super) rt: u64,
    pub(super) db: u64,
    pub(super) ac64: bool,
    pub(super) csz: usize,
    pub(super) max_ports: u8,
    pub(super) slots: u32,
    pub(super) dcbaa: DmaBuffer,
    pub(super) cmd: Ring,
    pub(super) ev: DmaBuffer,
    pub(super) evc: Consumer,
    pub(super) log: Vec<String>,
    pub(super) kbds: Vec<Kbd>,
    pub(super) sticks: Vec<super::storage::Stick>,
    pub(super) serials: Vec<super::serial::SerialDev>,
    /// Every device enumerated and not unplugged since.
    pub(super) devices: Vec<UsbDevice>,
    /// Root ports whose status changed (port status change events not handled yet).
    pub(super) pending_ports: Vec<u8>,
    /// Halted endpoints restarted after a STALL.
    pub(super) halts_recovered: u64,
}

/// A boot-protocol keyboard's interrupt IN endpoint: its ring, always holding [`KBD_TRBS`]
/// Normal TRBs, and the report buffer (16 bytes per ring index).
pub(super) struct Kbd {
    pub(super) slot: u8,
    pub(super) dci: u8,
    pub(super) ring: Ring,
    pub(super) buf: DmaBuffer,
    pub(super) state: usb::hid::BootKeyboard,
    pub(super) reports: u64,
}

/// Reports queued per keyboard.
pub(super) const KBD_TRBS: usize = 8;

/// A device's DMA structures: EP0's transfer ring, the output and input contexts, the bounce
/// buffer for control data.
pub(super) struct Dev {
    pub(super) slot: u8,
    pub(super) ring: Ring,
    pub(super) out: DmaBuffer,
    pub(super) input: DmaBuffer,
    pub(super) data: DmaBuffer,
}

impl Hc {
    pub(super) fn r32(&self, off: u64) -> u32 {
        self.regs.read32(off)
    }
    pub(super) fn w32(&self, off: u64, v: u32) {
        self.regs.write32(off, v)
    }
    pub(super) fn w64(&self, off: u64, v: u64) {
        self.w32(off, v as u32);
        self.w32(off + 4, (v >> 32) as u32);
    }

    pub(super) fn wait(&self, ns: u64, mut ok: impl FnMut(&Self) -> bool) -> bool {
        let end = hal::time::now_ns().saturating_add(ns);
        loop {
            if ok(self) {
                return true;
            }
            if hal::time::now_ns() > end {
                return false;
            }
            core::hint::spin_loop();
        }
    }

    /// The next event, if one arrives within `ns`.
    pub(super) fn next_event(&mut self, ns: u64) -> Option<Trb> {
        let end = hal::time::now_ns().saturating_add(ns);
        loop {
            let off = self.evc.index() * 16;
            let d3 = self.ev.read32(off + 12);
            if self.evc.is_new(d3 & 1 != 0) {
                let t = [self.ev.read32(off), self.ev.read32(off + 4), self.ev.read32(off + 8), d3];
                let next = self.evc.advance();
                // The dequeue pointer moves; Event Handler Busy stays set until `ack_events`,
                // so events arriving while the ring is being drained raise no interrupt.
                let erdp = self.ev.phys() + 16 * next as u64;
                self.w64(self.rt + 0x20 + ERDP, erdp);
                return Some(t);
            }
            if hal::time::now_ns() > end {
                return None;
            }
            core::hint::spin_loop();
        }
    }

    /// Clears Event Handler Busy (the handler has drained the ring): the next event raises an
    /// interrupt again, and one already queued behind the dequeue pointer raises it at once.
    pub(super) fn ack_events(&self) {
        let erdp = self.ev.phys() + 16 * self.evc.index() as u64;
        self.w64(self.rt + 0x20 + ERDP, erdp | u64::from(ERDP_EHB));
    }

    /// Waits for an event of `kind` (for `slot`, or the command at `pointer`); other events
    /// (port status changes) are passed over.
    pub(super) fn wait_event(&mut self, kind: u32, pointer: Option<u64>, slot: Option<u8>) -> Result<Trb, String> {
        loop {
            let Some(e) = self.next_event(COMMAND_NS) else {
                let sts = self.r32(self.op + USBSTS);
                return Err(if sts & STS_HSE != 0 {
                    String::from("host system error (the controller halted)")
                } else {
                    String::from("no completion event (timed out)")
                });
            };
            if x::trb_type(&e) != kind || pointer.is_some_and(|p| p != x::event_pointer(&e)) || slot.is_some_and(|s| s != x::event_slot(&e)) {
                self.other_event(&e);
                continue;
            }
            return Ok(e);
        }
    }

    pub(super) fn command(&mut self, t: Trb, what: &str) -> Result<Trb, String> {
        let at = self.cmd.push(t);
        self.w32(self.db, 0);
        let e = self.wait_event(x::TRB_COMMAND_COMPLETION, Some(at), None).map_err(|e| format!("{what}: {e}"))?;
        match x::completion_code(&e) {
            x::CC_SUCCESS => Ok(e),
            cc => Err(format!("{what}: {}", x::completion_name(cc))),
        }
    }

    /// A control transfer on EP0 of `d`; returns the data stage's bytes (`setup.length` of
    /// them; what the device did not send reads as zero).
    pub(super) fn control(&mut self, d: &mut Dev, setup: Setup) -> Result<Vec<u8>, String> {
        let len = usize::from(setup.length);
        if len > d.data.len() {
            return Err(String::from("control transfer larger than the bounce buffer"));
        }
        d.data.zero(0, len);
        let (trbs, n) = x::control_transfer(&setup, d.data.phys());
        let mut last = 0;
        for t in &trbs[..n] {
            last = d.ring.push(*t);
        }
        self.w32(self.db + 4 * u64::from(d.slot), 1); // EP0: DCI 1
        loop {
            let e = self.wait_event(x::TRB_TRANSFER_EVENT, None, Some(d.slot))?;
            match x::completion_code(&e) {
                x::CC_SUCCESS | x::CC_SHORT_PACKET if x::event_pointer(&e) == last => break,
                x::CC_SUCCESS | x::CC_SHORT_PACKET => continue, // the data stage's short packet
                x::CC_STALL => {
                    // The device refused the request (a protocol stall, USB 2.0 8.5.3.4): the
                    // device's pipe clears with the next SETUP, but xHCI halted EP0.
                    let deq = d.ring.buf.phys() + 16 * d.ring.p.next_index() as u64;
                    let cycle = d.ring.p.cycle();
                    self.restart_endpoint(d.slot, 1, deq, cycle)
                        .map_err(|e| format!("control transfer {:#04x}/{:#04x}: stall, and EP0 not restarted: {e}", setup.request_type, setup.request))?;
                    return Err(format!("control transfer {:#04x}/{:#04x}: stall (refused; EP0 restarted)", setup.request_type, setup.request));
                }
                cc => return Err(format!("control transfer {:#04x}/{:#04x}: {}", setup.request_type, setup.request, x::completion_name(cc))),
            }
        }
        let mut out = alloc::vec![0u8; len];
        d.data.read_bytes(0, &mut out);
        Ok(out)
    }

    /// Restarts endpoint `dci` of `slot` after the controller halted it on a STALL: Reset
    /// Endpoint (Halted to Stopped) and Set TR Dequeue Pointer to `deq` (the ring's next free
    /// TRB, cycle state `cycle`: what was queued behind the stalled TD is abandoned). The next
    /// doorbell runs the endpoint again.
    pub(super) fn restart_endpoint(&mut self, slot: u8, dci: u8, deq: u64, cycle: bool) -> Result<(), String> {
        self.command(x::reset_endpoint(slot, dci), "Reset Endpoint")?;
        self.command(x::set_tr_dequeue(deq, cycle, slot, dci), "Set TR Dequeue Pointer")?;
        self.halts_recovered += 1;
        Ok(())
    }

    pub(super) fn port_reg(&self, port: u8) -> u64 {
        self.op + 0x400 + 0x10 * u64::from(port - 1)
    }

    /// Resets a USB2 root port if it is not enabled; returns its PORTSC afterwards.
    pub(super) fn reset_root_port(&self, port: u8) -> u32 {
        let reg = self.port_reg(port);
        let v = self.r32(reg);
        if v & portsc::PED == 0 {
            self.w32(reg, portsc::reset(v));
            self.wait(PORT_RESET_NS, |h| h.r32(reg) & portsc::PRC != 0);
        }
        let v = self.r32(reg);
        self.w32(reg, portsc::clear_changes(v));
        self.r32(reg)
    }

    /// Enable Slot and Address Device for a device at `route` below `root_port`.
    pub(super) fn address(&mut self, root_port: u8, route: u32, speed: u8) -> Result<(Dev, u8), String> {
        let e = self.command(x::enable_slot(), "Enable Slot")?;
        let slot = x::event_slot(&e);
        if slot == 0 || u32::from(slot) > self.slots {
            return Err(format!("Enable Slot gave slot {slot}"));
        }
        let oom = |e: DriverError| format!("{e}");
        let mut d = Dev {
            slot,
            ring: Ring::new(self.ac64).map_err(oom)?,
            out: dma(1, self.ac64).map_err(oom)?,
            input: dma(1, self.ac64).map_err(oom)?,
            data: dma(1, self.ac64).map_err(oom)?,
        };
        let at = usize::from(slot) * 8;
        self.dcbaa.write32(at, d.out.phys() as u32);
        self.dcbaa.write32(at + 4, (d.out.phys() >> 32) as u32);
        let ic = InputContext { csz: self.csz };
        let mps = x::default_ep0_packet(speed);
        for (off, v) in ic.address_device(route, speed, root_port, mps, d.ring.buf.phys()) {
            d.input.write32(off, v);
        }
        self.command(x::address_device(d.input.phys(), slot), "Address Device")?;
        let address = (d.out.read32(12) & 0xff) as u8;
        // EP0's real packet size from the first 8 bytes of the device descriptor.
        let head = self.control(&mut d, Setup::get_descriptor(usb::DT_DEVICE, 0, 0, 8))?;
        let raw = desc::max_packet0_prefix(&head).map_err(|e| format!("device descriptor: {e}"))?;
        let real = desc::ep0_max_packet(u16::from_le_bytes([head[2], head[3]]), raw).map_err(|e| format!("device descriptor: {e}"))?;
        if real != mps {
            for (off, v) in ic.evaluate_ep0(real) {
                d.input.write32(off, v);
            }
            self.command(x::evaluate_context(d.input.phys(), slot), "Evaluate Context")?;
        }
        Ok((d, address))
    }
}


/// The driver of one xHCI controller.
pub struct Xhci {
    pub(super) bdf: Bdf,
    pub(super) version: u16,
    pub(super) ports: u8,
    pub(super) slots: u32,
    pub(super) keyboards: usize,
    /// The controller, kept for the rest of the run (it keeps running and owning its DMA);
    /// the bottom half drains its event ring.
    pub(super) hc: IrqLock<Hc>,
    /// The registers again, for the top half (which must not wait for `hc`'s lock: a stick's
    /// read holds it for a whole transfer).
    regs: Arc<Mmio>,
    op: u64,
    /// Interrupter 0's registers.
    ir: u64,
    /// Interrupts the top half acknowledged, and bottom-half passes (`/dev/usb`).
    pub(super) irqs: AtomicU64,
    pub(super) passes: AtomicU64,
    /// Guest time of the oldest interrupt the bottom half has not started on (0: none), the
    /// longest such wait and the longest bottom-half pass, in ns (`/dev/usb`).
    irq_at: AtomicU64,
    pub(super) max_wait_ns: AtomicU64,
    pub(super) max_pass_ns: AtomicU64,
}

// SAFETY: every address this driver gives the controller (DCBAA, scratchpads, command and
// event rings, the event ring segment table, device and input contexts, EP0 rings, bounce
// buffers) is the `phys()` of a `hal::dma::DmaBuffer` allocated here, and every transfer
// length is at most that buffer's size (`Hc::control` checks); the register claim lives in
// the driver object.
#[allow(unsafe_code)]
unsafe impl crate::drivers::DmaDriver for Xhci {}

pub(super) fn bring_up(bdf: Bdf, regs: Arc<Mmio>) -> Result<(Hc, u16), DriverError> {
    let cap = regs.read32(0);
    let caplen = u64::from(cap & 0xff);
    let version = (cap >> 16) as u16;
    let hcs1 = regs.read32(4);
    let hcs2 = regs.read32(8);
    let hcc1 = regs.read32(0x10);
    if cap == u32::MAX || caplen < 0x20 {
        return Err(DriverError::Broken("capability registers"));
    }
    let op = caplen;
    let rt = u64::from(regs.read32(0x18) & !0x1f);
    let db = u64::from(regs.read32(0x14) & !0x3);
    let max_ports = (hcs1 >> 24) as u8;
    let slots = (hcs1 & 0xff).min(MAX_SLOTS);
    let scratch = ((hcs2 >> 21) & 0x1f) << 5 | (hcs2 >> 27);
    let ac64 = hcc1 & 1 != 0;
    let csz = if hcc1 & 4 != 0 { 64 } else { 32 };
    if slots == 0 || max_ports == 0 {
        return Err(DriverError::Broken("no device slots or no ports"));
    }
    if regs.read32(op + PAGESIZE) & 1 == 0 {
        return Err(DriverError::NotSupported("an xHCI without 4 KiB pages"));
    }
    // Halt, reset, wait until ready.
    let wait = |ns: u64, ok: &dyn Fn() -> bool| {
        let end = hal::time::now_ns() + ns;
        while !ok() {
            if hal::time::now_ns() > end {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    };
    let cmd = regs.read32(op + USBCMD);
    regs.write32(op + USBCMD, cmd & !CMD_RS);
    if !wait(RESET_NS, &|| regs.read32(op + USBSTS) & STS_HCH != 0) {
        return Err(DriverError::Broken("the controller does not halt"));
    }
    regs.write32(op + USBCMD, CMD_HCRST);
    if !wait(RESET_NS, &|| regs.read32(op + USBCMD) & CMD_HCRST == 0 && regs.read32(op + USBSTS) & STS_CNR == 0) {
        return Err(DriverError::Broken("the controller does not come out of reset"));
    }
    crate::drivers::enable_bus_master::<Xhci>(&regs);
    let dcbaa = dma(1, ac64)?;
    if scratch > 0 {
        if scratch > 512 {
            return Err(DriverError::NotSupported("more than 512 scratchpad buffers"));
        }
        let array = dma(1, ac64)?;
        let pages = dma(scratch as usize, ac64)?;
        for i in 0..scratch as usize {
            let p = pages.phys() + 4096 * i as u64;
            array.write32(8 * i, p as u32);
            array.write32(8 * i + 4, (p >> 32) as u32);
        }
        dcbaa.write32(0, array.phys() as u32);
        dcbaa.write32(4, (array.phys() >> 32) as u32);
    }
    let cmd_ring = Ring::new(ac64)?;
    let ev = dma(1, ac64)?;
    let erst = dma(1, ac64)?;
    erst.write32(0, ev.phys() as u32);
    erst.write32(4, (ev.phys() >> 32) as u32);
    erst.write32(8, RING_TRBS as u32);
    let hc = Hc {
        regs,
        op,
        rt,
        db,
        ac64,
        csz,
        max_ports,
        slots,
        dcbaa,
        cmd: cmd_ring,
        ev,
        evc: Consumer::new(RING_TRBS).ok_or(DriverError::Broken("ring size"))?,
        log: Vec::new(),
        kbds: Vec::new(),
        sticks: Vec::new(),
        serials: Vec::new(),
        devices: Vec::new(),
        pending_ports: Vec::new(),
        halts_recovered: 0,
    };
    hc.w32(op + CONFIG, slots);
    hc.w64(op + DCBAAP, hc.dcbaa.phys());
    hc.w64(op + CRCR, hc.cmd.buf.phys() | 1);
    let ir = rt + 0x20;
    hc.w32(ir + IMAN, IMAN_IP); // disabled (enabled by `start`), a stale pending bit cleared
    hc.w32(ir + IMOD, 0); // no moderation: Event Handler Busy coalesces (see `ack_events`)
    hc.w32(ir + ERSTSZ, 1);
    hc.w64(ir + ERDP, hc.ev.phys());
    hc.w64(ir + ERSTBA, erst.phys());
    hc.w32(op + USBCMD, CMD_RS);
    if !hc.wait(RESET_NS, |h| h.r32(op + USBSTS) & STS_HCH == 0) {
        return Err(DriverError::Broken("the controller does not run"));
    }
    let _ = bdf;
    Ok((hc, version))
}

impl Driver for Xhci {
    const NAME: &'static str = "xhci";
    /// 2 % of CPU 0 in 5 ms periods: the bottom half serves every interrupt. The period is the
    /// latency bound's main term (PIBS: after an activation that used `u`, the VCPU is eligible
    /// again `u / U` later, at most one period after that activation started).
    const IO_PARAMS: VcpuParams = VcpuParams::io(100, 5_000);

    fn probe(res: &Resource) -> Result<Self, DriverError> {
        let Resource::Pci { bus, device, function } = *res else { return Err(DriverError::NotMine) };
        let bdf = Bdf { bus, device, function };
        let f = crate::drivers::pci::function(bdf).ok_or(DriverError::NoDevice)?;
        if !f.header.is_some_and(|h| h.class == 0x0c && h.subclass == 0x03 && h.prog_if == 0x30) {
            return Err(DriverError::NotMine);
        }
        let regs = Arc::new(Mmio::claim(bdf, 0).map_err(DriverError::Broken)?);
        let (mut hc, version) = bring_up(bdf, regs.clone())?;
        hc.command(x::noop_command(), "No Op").map_err(|e| DriverError::LeftAlone(format!("command ring: {e}")))?;
        for port in 1..=hc.max_ports {
            let reg = hc.port_reg(port);
            if hc.r32(reg) & portsc::CCS == 0 {
                continue;
            }
            let v = hc.reset_root_port(port);
            if v & portsc::PED == 0 {
                hc.log.push(format!("usb: port {port}: not enabled after reset (PORTSC {v:#x})"));
                continue;
            }
            let mut devices = Vec::new();
            let r = hc.enumerate(port, 0, 0, portsc::speed(v), &mut devices);
            hc.devices.extend(devices);
            if let Err(e) = r {
                hc.log.push(format!("usb: port {port}: device refused: {e}"));
            }
        }
        for l in &hc.log {
            hal::println!("{l}");
        }
        let (op, ir) = (hc.op, hc.rt + 0x20);
        Ok(Xhci {
            bdf,
            version,
            ports: hc.max_ports,
            slots: hc.slots,
            keyboards: hc.kbds.len(),
            hc: IrqLock::new(hc),
            regs,
            op,
            ir,
            irqs: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            irq_at: AtomicU64::new(0),
            max_wait_ns: AtomicU64::new(0),
            max_pass_ns: AtomicU64::new(0),
        })
    }

    /// Acknowledges interrupter 0 (IMAN.IP and USBSTS.EINT, both write-1-to-clear) and wakes
    /// the bottom half; touches nothing else (the event ring is the bottom half's).
    fn top_half(&self) -> bool {
        self.interrupt().unwrap_or(false)
    }

    /// On a shared INTx line: `None` when interrupter 0 has nothing pending.
    fn interrupt(&self) -> Option<bool> {
        let iman = self.regs.read32(self.ir + IMAN);
        if iman & IMAN_IP == 0 || iman == u32::MAX {
            return None;
        }
        self.regs.write32(self.ir + IMAN, IMAN_IE | IMAN_IP);
        self.regs.write32(self.op + USBSTS, STS_EINT);
        self.irqs.fetch_add(1, Ordering::Relaxed);
        let _ = self.irq_at.compare_exchange(0, hal::time::now_ns(), Ordering::Relaxed, Ordering::Relaxed);
        Some(true)
    }

    /// Runs after each interrupt (and once at start): drains the event ring (keyboard
    /// reports, serial data, port status changes), clears Event Handler Busy, and handles the
    /// root ports whose connection changed (hot-plug: a new device is enumerated, an unplugged
    /// one torn down); file systems and device files follow outside the controller's lock.
    /// No polling: every event the controller writes raises interrupter 0 (Event Handler Busy
    /// clear) or finds it busy, and then `ack_events` at the end of this pass raises it again
    /// if the ring is not empty, so nothing waits for a timer.
    fn bottom_half(&self, _dev: &Device<Self>) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        let start = hal::time::now_ns();
        let at = self.irq_at.swap(0, Ordering::Relaxed);
        if at != 0 {
            self.max_wait_ns.fetch_max(start.saturating_sub(at), Ordering::Relaxed);
        }
        let changes = {
            let mut hc = self.hc.lock();
            hc.poll();
            hc.hotplug()
        };
        if let Some((added, removed)) = changes {
            super::hotplugged(self, &added, &removed);
        } else {
            // A pass that enumerated nothing: its length is the serving cost (hot-plug
            // enumeration takes its own time and is not what the bound is about).
            self.max_pass_ns.fetch_max(hal::time::now_ns().saturating_sub(start), Ordering::Relaxed);
        }
    }

    /// Interrupter 0 and the controller's interrupt enable on; Event Handler Busy cleared, so
    /// events queued since probe raise an interrupt at once.
    fn start(&self) {
        self.regs.write32(self.ir + IMAN, IMAN_IE | IMAN_IP);
        let cmd = self.regs.read32(self.op + USBCMD);
        self.regs.write32(self.op + USBCMD, cmd | CMD_INTE);
        self.hc.lock().ack_events();
    }
}

