//! USB 2 host controller (EHCI; QEMU's `usb-ehci`, `ich9-usb-ehci1`) on the driver model:
//! bring-up, root-port reset, enumeration of high-speed devices through the shared
//! description code (`host::describe`), and mass storage through the shared protocol
//! (`storage::Msc`) over bulk transfers, so a stick on EHCI is listed and mounted at `/usb`
//! exactly as one on xHCI.
//!
//! - Probe (PCI class 0c/03, programming interface 0x20): claims BAR0, halts and resets the
//!   controller, bus mastering on (a [`crate::drivers::DmaDriver`]), CONFIGFLAG set (every
//!   port routed to EHCI), ports powered.
//! - Transfers use the asynchronous schedule only, one at a time: the schedule is stopped,
//!   one queue head (the device's endpoint, head of the reclamation list, linked to itself)
//!   is written with the transfer's qTDs (the last one interrupts on completion), the schedule
//!   is started and the caller waits for the qTDs' tokens with a guest-time deadline; bulk
//!   endpoints keep their data toggle between transfers. All structures are
//!   `hal::dma::DmaBuffer`s below 4 GiB.
//! - Completion by interrupt once the driver is started: the top half acknowledges USBSTS
//!   (USBINT, USBERRINT, port change, host system error; write-1-to-clear) and wakes the
//!   bottom half on the IO VCPU, which wakes the thread waiting for the transfer; that thread
//!   blocks (it holds no spinning lock: the controller's state is taken out of [`Gate`] for
//!   the transfer) instead of polling. During `probe`, before the interrupt is routed,
//!   transfers are polled. Interrupt threshold: one micro-frame. What still spins: switching
//!   the asynchronous schedule off after a transfer (USBSTS.ASS follows USBCMD.ASE within a
//!   frame; switching it on is not waited for).
//! - Layouts (qTD, QH, tokens, port bits) are `usb::ehci` (host-tested).
//!
//! - Hot-plug: a port change interrupt makes the bottom half look at every root port whose
//!   connection changed: what was there is torn down (its stick fails: readers get EIO, a
//!   mounted `/usb` is unmounted), a newly connected high-speed device is reset, enumerated
//!   and, if a stick, mounted when `/usb` is free. The bottom half's own transfers (this
//!   enumeration, the new stick's mount) are polled: it is the thread that would wake them.
//!
//! Not supported yet (said where met): full- and low-speed devices (they need a companion
//! UHCI controller: such a port is logged and left alone), hubs behind EHCI, the periodic
//! schedule (so no keyboards and no serial adapters here: their drivers run on xHCI).
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use hal::dma::DmaBuffer;
use hal::pci::{Bdf, Mmio};
use hal::sync::IrqLock;
use usb::ehci::{self as e, portsc};
use usb::{Interface, Setup};
use vcpu_sched::VcpuParams;

use super::UsbDevice;
use super::host::{Bulk, Control, Gate};
use super::storage::Msc;
use crate::drivers::{Device, Driver, DriverError, Resource};

const USBCMD: u64 = 0;
const USBSTS: u64 = 4;
const USBINTR: u64 = 8;
const CTRLDSSEGMENT: u64 = 0x10;
const ASYNCLISTADDR: u64 = 0x18;
const CONFIGFLAG: u64 = 0x40;
const PORTSC: u64 = 0x44;
const CMD_RS: u32 = 1;
const CMD_HCRESET: u32 = 2;
const CMD_ASE: u32 = 1 << 5;
const STS_HALTED: u32 = 1 << 12;
const STS_USBINT: u32 = 1;
const STS_ERRINT: u32 = 1 << 1;
const STS_PCD: u32 = 1 << 2;
const STS_HSE: u32 = 1 << 4;
/// The USBSTS bits the driver enables (USBINTR has the same layout) and acknowledges.
const STS_IRQS: u32 = STS_USBINT | STS_ERRINT | STS_PCD | STS_HSE;
const STS_ASS: u32 = 1 << 15;

const RESET_NS: u64 = 500_000_000;
const TRANSFER_NS: u64 = 2_000_000_000;
/// The data bounce buffer (16 KiB: a qTD takes 20 KiB from a page boundary).
const DATA_FRAMES: usize = 4;
/// qTDs per transfer at most (setup, data, status).
const MAX_TDS: usize = 3;

/// A device's endpoint as a queue head sees it.
#[derive(Clone, Copy)]
struct Endpoint {
    address: u8,
    number: u8,
    max_packet: u16,
}

/// The thread waiting for a transfer's completion, shared by the controller's state and the
/// bottom half.
#[derive(Default)]
struct Waiter {
    /// Set by `start`: completions interrupt (before, transfers are polled).
    live: AtomicBool,
    /// The waiting thread (0: none).
    tid: AtomicU32,
    /// The bottom half's thread: its own transfers (hot-plug enumeration, mounting a new
    /// stick) poll, since it is the thread that would wake them.
    bh: AtomicU32,
    /// Transfers whose thread blocked for the completion interrupt (`/dev/usb`).
    pub(super) blocked: AtomicU64,
}

struct Hc {
    regs: Arc<Mmio>,
    waiter: Arc<Waiter>,
    op: u64,
    /// The queue head (at 0) and qTDs (from 64, 32 bytes each).
    sched: DmaBuffer,
    data: DmaBuffer,
    next_address: u8,
    sticks: Vec<EhciStick>,
    log: Vec<String>,
}

struct EhciStick {
    msc: Msc,
    ep_in: Endpoint,
    ep_out: Endpoint,
    toggle_in: bool,
    toggle_out: bool,
}

fn dma32(frames: usize) -> Result<DmaBuffer, DriverError> {
    let b = DmaBuffer::alloc(frames).ok_or(DriverError::Broken("no memory for DMA buffers"))?;
    if b.phys() + b.len() as u64 > 1 << 32 {
        return Err(DriverError::NotSupported("EHCI with DMA memory above 4 GiB"));
    }
    Ok(b)
}

fn wait(ns: u64, mut ok: impl FnMut() -> bool) -> bool {
    let end = hal::time::now_ns().saturating_add(ns);
    while !ok() {
        if hal::time::now_ns() > end {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

impl Hc {
    fn r32(&self, off: u64) -> u32 {
        self.regs.read32(self.op + off)
    }
    fn w32(&self, off: u64, v: u32) {
        self.regs.write32(self.op + off, v)
    }

    fn async_schedule(&self, on: bool) -> Result<(), String> {
        let cmd = self.r32(USBCMD);
        self.w32(USBCMD, if on { cmd | CMD_ASE } else { cmd & !CMD_ASE });
        if wait(RESET_NS, || (self.r32(USBSTS) & STS_ASS != 0) == on) {
            Ok(())
        } else {
            Err(String::from("the asynchronous schedule does not switch"))
        }
    }

    /// Runs one transfer on `ep`: `tds` are (PID, data toggle, length, offset in the data
    /// buffer). `control`: toggles come from the qTDs. Returns the bytes each qTD moved and
    /// the endpoint's toggle afterwards.
    fn transfer(&mut self, ep: Endpoint, control: bool, toggle: bool, tds: &[(u32, bool, usize, usize)]) -> Result<(Vec<usize>, bool), String> {
        if tds.is_empty() || tds.len() > MAX_TDS {
            return Err(String::from("transfer shape"));
        }
        self.async_schedule(false)?;
        let base = self.sched.phys() as u32;
        let td_at = |k: usize| 64 + 32 * k;
        for (k, &(pid, t, len, off)) in tds.iter().enumerate() {
            if off + len > self.data.len() {
                return Err(String::from("transfer larger than the bounce buffer"));
            }
            let next = (k + 1 < tds.len()).then(|| base + td_at(k + 1) as u32);
            let d = e::qtd(next, pid, t, len, self.data.phys() as u32 + off as u32, k + 1 == tds.len()).ok_or("qTD buffer")?;
            for (w, v) in d.iter().enumerate() {
                self.sched.write32(td_at(k) + 4 * w, *v);
            }
        }
        let q = e::qh(Some(base), true, ep.address, ep.number, e::EPS_HIGH, ep.max_packet, control, 0, base + td_at(0) as u32, toggle);
        self.sched.zero(0, 64);
        for (w, v) in q.iter().enumerate() {
            self.sched.write32(4 * w, *v);
        }
        self.w32(ASYNCLISTADDR, base);
        // Started without waiting for USBSTS.ASS: the wait for the transfer covers it (the
        // controller may well finish within the frame the handshake would spin for).
        self.w32(USBCMD, self.r32(USBCMD) | CMD_ASE);
        let end = hal::time::now_ns().saturating_add(TRANSFER_NS);
        let mut moved = Vec::new();
        let live = self.waiter.live.load(Ordering::Acquire) && crate::sched::current() != self.waiter.bh.load(Ordering::Relaxed);
        let mut blocked = false;
        let result = loop {
            if live {
                // Before the tokens are read: a completion after the read wakes this thread
                // (a wake before it blocks is kept pending by the scheduler).
                self.waiter.tid.store(crate::sched::current(), Ordering::Release);
            }
            // Done when every qTD is inactive, or one halted.
            let tokens: Vec<u32> = (0..tds.len()).map(|k| self.sched.read32(td_at(k) + 8)).collect();
            if let Some(err) = tokens.iter().find_map(|t| e::token_result(*t).and_then(|r| r.err())) {
                break Err(String::from(err));
            }
            if tokens.iter().all(|t| t & e::ACTIVE == 0) {
                for (k, t) in tokens.iter().enumerate() {
                    let left = e::token_result(*t).and_then(|r| r.ok()).unwrap_or(0);
                    moved.push(tds[k].2.saturating_sub(left));
                }
                break Ok(());
            }
            // A short IN packet ends a bulk transfer's qTD chain early: its later qTDs stay
            // active. Single-qTD bulk transfers never meet this.
            if hal::time::now_ns() > end {
                break Err(String::from("no completion (timed out)"));
            }
            if live && hal::cpu::interrupts_enabled() {
                blocked = true;
                let _ = crate::sched::block(Some(end));
            } else {
                // Probe, the bottom half's own enumeration, or a caller holding a spinning
                // lock (interrupts off: it must not sleep): poll.
                core::hint::spin_loop();
            }
        };
        self.waiter.tid.store(0, Ordering::Release);
        if blocked && result.is_ok() {
            self.waiter.blocked.fetch_add(1, Ordering::Relaxed);
        }
        let after = e::overlay_toggle(self.sched.read32(24));
        // ASE may change only once ASS has followed it (EHCI 4.8.1): on, then off.
        self.async_schedule(true)?;
        self.async_schedule(false)?;
        result.map(|()| (moved, after))
    }

    /// A control transfer on `ep` (EP0 of a device).
    fn control(&mut self, ep: Endpoint, setup: Setup) -> Result<Vec<u8>, String> {
        let len = usize::from(setup.length);
        if len + 64 > self.data.len() {
            return Err(String::from("control transfer larger than the bounce buffer"));
        }
        let s = setup.to_u64().to_le_bytes();
        self.data.write32(0, u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
        self.data.write32(4, u32::from_le_bytes([s[4], s[5], s[6], s[7]]));
        self.data.zero(64, len);
        let dir_in = setup.request_type & 0x80 != 0;
        let mut tds = alloc::vec![(e::PID_SETUP, false, 8, 0)];
        if len > 0 {
            tds.push((if dir_in { e::PID_IN } else { e::PID_OUT }, true, len, 64));
        }
        tds.push((if dir_in && len > 0 { e::PID_OUT } else { e::PID_IN }, true, 0, 0));
        self.transfer(ep, true, false, &tds)
            .map_err(|err| format!("control transfer {:#04x}/{:#04x}: {err}", setup.request_type, setup.request))?;
        let mut out = alloc::vec![0u8; len];
        self.data.read_bytes(64, &mut out);
        Ok(out)
    }

    /// One bulk transfer of `data` (at most the bounce buffer) on stick `i`'s endpoint.
    fn bulk(&mut self, i: usize, dir_in: bool, data: &mut [u8]) -> Result<usize, String> {
        if data.len() > self.data.len() {
            return Err(String::from("transfer larger than the bounce buffer"));
        }
        if !dir_in {
            let mut padded = data.to_vec();
            padded.resize(data.len().div_ceil(4) * 4, 0);
            for (k, c) in padded.chunks_exact(4).enumerate() {
                self.data.write32(4 * k, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            }
        }
        let s = &self.sticks[i];
        let (ep, toggle) = if dir_in { (s.ep_in, s.toggle_in) } else { (s.ep_out, s.toggle_out) };
        let pid = if dir_in { e::PID_IN } else { e::PID_OUT };
        let (moved, after) = self.transfer(ep, false, toggle, &[(pid, false, data.len(), 0)]).map_err(|err| format!("endpoint {:#04x}: {err}", ep.number | if dir_in { 0x80 } else { 0 }))?;
        let s = &mut self.sticks[i];
        if dir_in {
            s.toggle_in = after;
        } else {
            s.toggle_out = after;
        }
        let n = moved[0];
        if dir_in {
            self.data.read_bytes(0, &mut data[..n]);
        }
        Ok(n)
    }

    /// Resets root port `p` (1-based); true if a high-speed device is enabled there.
    fn reset_port(&mut self, p: u8) -> bool {
        let reg = PORTSC + 4 * u64::from(p - 1);
        let v = self.r32(reg);
        if v & portsc::LINE == portsc::LINE_K {
            self.log.push(format!("usb: EHCI port {p}: a low-speed device needs a companion controller (not supported yet)"));
            return false;
        }
        self.w32(reg, portsc::with_reset(v, true));
        hal::time::spin_ns(50_000_000);
        self.w32(reg, portsc::with_reset(self.r32(reg), false));
        wait(RESET_NS, || self.r32(reg) & portsc::PR == 0);
        hal::time::spin_ns(2_000_000);
        let v = self.r32(reg);
        self.w32(reg, v | portsc::CHANGES); // clear the change bits (PE written as 1: unchanged)
        if v & portsc::PE == 0 {
            self.log.push(format!("usb: EHCI port {p}: a full-speed device needs a companion controller (not supported yet)"));
            return false;
        }
        true
    }

    /// Addresses, describes and configures the device on root port `p`.
    fn enumerate(&mut self, p: u8) -> Result<UsbDevice, String> {
        let ep0 = Endpoint { address: 0, number: 0, max_packet: 64 };
        let head = self.control(ep0, Setup::get_descriptor(usb::DT_DEVICE, 0, 0, 8))?;
        let raw = usb::desc::max_packet0_prefix(&head).map_err(|e| format!("device descriptor: {e}"))?;
        let mps = usb::desc::ep0_max_packet(u16::from_le_bytes([head[2], head[3]]), raw).map_err(|e| format!("device descriptor: {e}"))?;
        if self.next_address > 127 {
            return Err(String::from("no USB addresses left"));
        }
        let address = self.next_address;
        self.next_address += 1;
        self.control(ep0, Setup { request_type: 0, request: 5, value: u16::from(address), index: 0, length: 0 })?; // SET_ADDRESS
        hal::time::spin_ns(2_000_000);
        let ep0 = Endpoint { address, number: 0, max_packet: mps };
        let d = super::host::describe(&mut Ep0 { hc: self, ep: ep0 })?;
        let mut dev = UsbDevice { root_port: p, route: 0, address, speed: 3, desc: d.dd, config: d.config, manufacturer: d.manufacturer, product: d.product, serial: d.serial, qualifier: d.qualifier, hub_ports: None, stick: None, slot: 0 };
        if dev.desc.class == 9 {
            self.log.push(format!("usb: EHCI port {p}: hubs behind EHCI are not supported yet"));
        }
        let msc = dev.config.interfaces.iter().find(|i| i.class == usb::msc::CLASS && i.subclass == usb::msc::SUBCLASS_SCSI && i.protocol == usb::msc::PROTOCOL_BOT && i.alternate == 0).cloned();
        if let Some(itf) = msc {
            match self.storage(address, &itf) {
                Ok(i) => dev.stick = Some(i),
                Err(err) => self.log.push(format!("usb: EHCI port {p}: mass storage: {err}")),
            }
        } else if dev.config.interfaces.iter().any(|i| i.endpoints.iter().any(|e| e.attributes & 3 == 3)) {
            self.log.push(format!("usb: EHCI port {p}: interrupt endpoints (the periodic schedule) are not supported yet on EHCI"));
        }
        Ok(dev)
    }

    /// The root ports whose connection changed: what was there is torn down, a new device
    /// enumerated. Returns the sticks added and removed, or None if nothing came or went.
    fn hotplug(&mut self, ports: u8, devices: &IrqLock<Vec<UsbDevice>>) -> Option<(Vec<usize>, Vec<usize>)> {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let mut changed = false;
        for p in 1..=ports {
            let reg = PORTSC + 4 * u64::from(p - 1);
            let v = self.r32(reg);
            if v & portsc::CSC == 0 {
                continue;
            }
            self.w32(reg, v | portsc::CHANGES);
            changed = true;
            let gone: Vec<UsbDevice> = {
                let mut d = devices.lock();
                let (gone, kept) = core::mem::take(&mut *d).into_iter().partition(|d| d.root_port == p);
                *d = kept;
                gone
            };
            for d in &gone {
                if let Some(i) = d.stick
                    && let Some(s) = self.sticks.get_mut(i)
                {
                    s.msc.failed = Some(String::from("the stick was unplugged"));
                    removed.push(i);
                }
                hal::println!("usb: EHCI port {p}: device removed: ID {:04x}:{:04x} {}", d.desc.vendor, d.desc.product, d.product.as_deref().unwrap_or(""));
            }
            if v & portsc::CCS == 0 {
                continue;
            }
            hal::time::spin_ns(100_000_000); // USB 2.0 7.1.7.3: 100 ms for the connection to settle
            let ok = self.reset_port(p);
            for l in core::mem::take(&mut self.log) {
                hal::println!("{l}");
            }
            if !ok {
                continue;
            }
            match self.enumerate(p) {
                Ok(d) => {
                    hal::println!("usb: EHCI port {p}: device added: ID {:04x}:{:04x} {}", d.desc.vendor, d.desc.product, d.product.as_deref().unwrap_or(""));
                    added.extend(d.stick);
                    devices.lock().push(d);
                }
                Err(err) => hal::println!("usb: EHCI port {p}: device refused: {err}"),
            }
            for l in core::mem::take(&mut self.log) {
                hal::println!("{l}");
            }
        }
        changed.then_some((added, removed))
    }

    fn storage(&mut self, address: u8, itf: &Interface) -> Result<usize, String> {
        let bulk = |dir_in: bool| itf.endpoints.iter().find(|e| e.attributes & 3 == 2 && e.is_in() == dir_in).copied();
        let (Some(ein), Some(eout)) = (bulk(true), bulk(false)) else {
            return Err(String::from("no bulk IN and OUT endpoints"));
        };
        let ep = |e: usb::Endpoint| Endpoint { address, number: e.number(), max_packet: e.max_packet & 0x7ff };
        self.sticks.push(EhciStick { msc: Msc::default(), ep_in: ep(ein), ep_out: ep(eout), toggle_in: false, toggle_out: false });
        let i = self.sticks.len() - 1;
        let mut m = core::mem::take(&mut self.sticks[i].msc);
        let r = m.describe(&mut Pipes { hc: self, i });
        self.sticks[i].msc = m;
        r.map(|_| i)
    }

    fn read_blocks(&mut self, i: usize, lba: u64, out: &mut [u8]) -> Result<(), String> {
        if i >= self.sticks.len() {
            return Err(String::from("no such stick"));
        }
        let mut m = core::mem::take(&mut self.sticks[i].msc);
        let r = m.read_blocks(&mut Pipes { hc: self, i }, lba, out);
        self.sticks[i].msc = m;
        r
    }
}

struct Ep0<'a> {
    hc: &'a mut Hc,
    ep: Endpoint,
}

impl Control for Ep0<'_> {
    fn control(&mut self, setup: Setup) -> Result<Vec<u8>, String> {
        self.hc.control(self.ep, setup)
    }
    fn max_data(&self) -> usize {
        self.hc.data.len() - 64
    }
}

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

/// The driver of one EHCI controller.
pub struct Ehci {
    pub(super) bdf: Bdf,
    pub(super) ports: u8,
    pub(super) devices: IrqLock<Vec<UsbDevice>>,
    hc: Gate<Hc>,
    /// For the top half: the registers and USBSTS's offset.
    regs: Arc<Mmio>,
    op: u64,
    waiter: Arc<Waiter>,
    /// Interrupts acknowledged, bottom-half passes, transfers completed by interrupt.
    pub(super) irqs: AtomicU64,
    pub(super) passes: AtomicU64,
    /// Status bits the top half acknowledged, for the bottom half.
    pending: AtomicU32,
}

// SAFETY: every address this driver gives the controller (the asynchronous list's queue head,
// qTDs and their buffers) lies in one of its `hal::dma::DmaBuffer`s, and `e::qtd` refuses a
// buffer that would run past the 16 KiB bounce buffer (`Hc::transfer` checks offset + length
// against it); the register claim lives in the driver object.
#[allow(unsafe_code)]
unsafe impl crate::drivers::DmaDriver for Ehci {}

impl Ehci {
    /// Stick `i`'s protocol state, read under the controller's lock.
    pub(super) fn stick<T>(&self, i: usize, f: impl FnOnce(&Msc) -> T) -> Option<T> {
        self.hc.with(|hc| hc.sticks.get(i).map(|s| f(&s.msc))).flatten()
    }
    pub(super) fn read_blocks(&self, i: usize, lba: u64, out: &mut [u8]) -> Result<(), String> {
        self.hc.with(|hc| hc.read_blocks(i, lba, out)).unwrap_or_else(|| Err(String::from("controller state lost")))
    }
    /// Transfers whose thread blocked until the completion interrupt.
    pub(super) fn blocked_transfers(&self) -> u64 {
        self.waiter.blocked.load(Ordering::Relaxed)
    }
    pub(super) fn stick_count(&self) -> usize {
        self.hc.with(|hc| hc.sticks.len()).unwrap_or(0)
    }
}

fn is_ehci(f: &crate::drivers::pci::Function) -> bool {
    f.header.is_some_and(|h| h.class == 0x0c && h.subclass == 0x03 && h.prog_if == 0x20)
}

impl Driver for Ehci {
    const NAME: &'static str = "ehci";
    /// 1 % of CPU 0: the bottom half wakes the thread waiting for a transfer.
    const IO_PARAMS: VcpuParams = VcpuParams::io(100, 10_000);

    fn probe(res: &Resource) -> Result<Self, DriverError> {
        let Resource::Pci { bus, device, function } = *res else { return Err(DriverError::NotMine) };
        let bdf = Bdf { bus, device, function };
        let f = crate::drivers::pci::function(bdf).ok_or(DriverError::NoDevice)?;
        if !is_ehci(f) {
            return Err(DriverError::NotMine);
        }
        let regs = Arc::new(Mmio::claim(bdf, 0).map_err(DriverError::Broken)?);
        let cap = regs.read32(0);
        let op = u64::from(cap & 0xff);
        let hcs = regs.read32(4);
        let hcc = regs.read32(8);
        if cap == u32::MAX || op < 0x10 {
            return Err(DriverError::Broken("capability registers"));
        }
        let ports = (hcs & 0xf) as u8;
        let waiter = Arc::new(Waiter::default());
        let mut hc = Hc { regs: regs.clone(), waiter: waiter.clone(), op, sched: dma32(1)?, data: dma32(DATA_FRAMES)?, next_address: 1, sticks: Vec::new(), log: Vec::new() };
        hc.w32(USBCMD, hc.r32(USBCMD) & !CMD_RS);
        if !wait(RESET_NS, || hc.r32(USBSTS) & STS_HALTED != 0) {
            return Err(DriverError::Broken("the controller does not halt"));
        }
        hc.w32(USBCMD, CMD_HCRESET);
        if !wait(RESET_NS, || hc.r32(USBCMD) & CMD_HCRESET == 0) {
            return Err(DriverError::Broken("the controller does not come out of reset"));
        }
        crate::drivers::enable_bus_master::<Ehci>(&hc.regs);
        hc.w32(USBINTR, 0);
        if hcc & 1 != 0 {
            hc.w32(CTRLDSSEGMENT, 0);
        }
        hc.w32(USBCMD, CMD_RS | 1 << 16); // run; interrupt threshold one micro-frame
        if !wait(RESET_NS, || hc.r32(USBSTS) & STS_HALTED == 0) {
            return Err(DriverError::Broken("the controller does not run"));
        }
        hc.w32(CONFIGFLAG, 1);
        if hcs & (1 << 4) != 0 {
            for p in 1..=ports {
                let reg = PORTSC + 4 * u64::from(p - 1);
                hc.w32(reg, (hc.r32(reg) & !portsc::CHANGES & !portsc::PE) | portsc::PP);
            }
        }
        hal::time::spin_ns(20_000_000);
        let mut devices = Vec::new();
        for p in 1..=ports {
            if hc.r32(PORTSC + 4 * u64::from(p - 1)) & portsc::CCS == 0 || !hc.reset_port(p) {
                continue;
            }
            match hc.enumerate(p) {
                Ok(d) => devices.push(d),
                Err(err) => hc.log.push(format!("usb: EHCI port {p}: device refused: {err}")),
            }
        }
        for l in &hc.log {
            hal::println!("{l}");
        }
        Ok(Ehci {
            bdf,
            ports,
            devices: IrqLock::new(devices),
            hc: Gate::new(hc),
            regs,
            op,
            waiter,
            irqs: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            pending: AtomicU32::new(0),
        })
    }

    /// Acknowledges the status bits (write-1-to-clear) and wakes the bottom half.
    fn top_half(&self) -> bool {
        self.interrupt().unwrap_or(false)
    }

    /// On a shared INTx line: `None` when none of the enabled status bits is set.
    fn interrupt(&self) -> Option<bool> {
        let sts = self.regs.read32(self.op + USBSTS);
        if sts == u32::MAX || sts & STS_IRQS == 0 {
            return None;
        }
        self.regs.write32(self.op + USBSTS, sts & STS_IRQS);
        self.pending.fetch_or(sts & STS_IRQS, Ordering::Relaxed);
        self.irqs.fetch_add(1, Ordering::Relaxed);
        Some(true)
    }

    /// Wakes the thread waiting for a transfer (it reads the tokens itself); logs a host
    /// system error; after a port change, handles hot-plug (see the module doc).
    fn bottom_half(&self, _dev: &Device<Self>) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.waiter.bh.store(crate::sched::current(), Ordering::Relaxed);
        let bits = self.pending.swap(0, Ordering::Relaxed);
        if bits & STS_HSE != 0 {
            hal::println!("usb: EHCI at {}: host system error (the controller halted)", self.bdf);
        }
        let tid = self.waiter.tid.load(Ordering::Acquire);
        if tid != 0 {
            let _ = crate::sched::wake(tid);
        }
        if bits & STS_PCD != 0 {
            let changes = self.hc.with(|hc| hc.hotplug(self.ports, &self.devices));
            if let Some(Some((added, removed))) = changes {
                super::hotplugged_ehci(self, &added, &removed);
            }
        }
    }

    /// Completions interrupt from now on: USBINTR set, transfers block instead of polling.
    fn start(&self) {
        self.regs.write32(self.op + USBSTS, STS_IRQS); // stale status from probe
        self.regs.write32(self.op + USBINTR, STS_IRQS);
        self.waiter.live.store(true, Ordering::Release);
    }
}

/// Every EHCI function PCI enumeration found.
pub(super) fn found() -> Vec<Bdf> {
    crate::drivers::pci::functions().iter().filter(|f| is_ehci(f)).map(|f| f.bdf).collect()
}
