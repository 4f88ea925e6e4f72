//! USB serial adapters (FTDI FT232, QEMU's `usb-serial`) on xHCI as `/dev/ttyUSB<n>`:
//! 115200 8N1 without flow control set at enumeration; one bulk IN transfer always queued
//! (the adapter answers it only when it has data); its completion interrupts, and the bottom
//! half moves what arrived, without its per-packet status bytes (`usb::ftdi`), into the port's
//! receive buffer and wakes a waiting reader. A write is a bulk OUT transfer, waited for by
//! polling.
//!
//! Received bytes wait in a 64 KiB buffer per port: when a reader falls that far behind, the
//! adapter's transfer is not queued again (QEMU then holds the stream back: nothing is lost)
//! until the reader that makes room queues it. CDC-ACM adapters are not supported yet (QEMU has no CDC-ACM
//! device model to test one with).
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hal::dma::DmaBuffer;
use hal::sync::IrqLock;
use linux_raw_sys::errno::{EAGAIN, EIO};
use usb::xhci::{self as x, InputContext, Trb};
use usb::{Interface, Setup, ftdi};

use super::xhci::*;
use crate::drivers::DriverError;
use crate::signal::ERESTARTSYS;
use crate::syscall::Errno;

/// Bytes one bulk IN transfer asks for (8 packets of 64).
const IN_BYTES: usize = 512;
/// Receive buffer per port.
const RX_MAX: usize = 64 << 10;
/// Guest-time deadline of one bulk OUT transfer.
const OUT_NS: u64 = 1_000_000_000;

/// A port's receive side, shared with its readers (who never take the controller's lock).
pub struct Port {
    pub name: String,
    rx: IrqLock<VecDeque<u8>>,
    ready: crate::sync::Semaphore,
    /// Why the port is gone (set once; readers and writers then get EIO).
    failed: IrqLock<Option<String>>,
    pub received: AtomicU64,
    pub line_errors: AtomicU64,
    waiting: AtomicBool,
    /// The receive transfer was not queued again because the buffer was full: the reader
    /// that makes room queues it (else the stream would stop for good).
    starved: AtomicBool,
    /// When the bottom half last handed bytes to a waiting reader (0: none pending), and the
    /// longest time from that to the reader taking them, in ns (`/dev/usb`).
    handed_at: AtomicU64,
    pub max_delivery_ns: AtomicU64,
    number: usize,
    published: AtomicBool,
    /// The controller and the port's index there, for writes.
    ctrl: spin::Once<(&'static crate::drivers::Device<Xhci>, usize)>,
}

/// The controller's side of a port: endpoints, rings, DMA buffers.
pub(super) struct SerialDev {
    pub(super) port: Arc<Port>,
    slot: u8,
    dci_in: u8,
    dci_out: u8,
    max_packet: usize,
    ring_in: Ring,
    ring_out: Ring,
    /// IN data at 0, OUT data at 2048.
    buf: DmaBuffer,
    /// The queued IN transfer's TRB, if one is queued.
    in_trb: Option<u64>,
}

static PORTS: IrqLock<Vec<Arc<Port>>> = IrqLock::new(Vec::new());

impl Hc {
    /// Sets an FTDI adapter up on interface `itf` of configured device `d`.
    pub(super) fn serial(&mut self, d: &mut Dev, itf: &Interface) -> Result<usize, String> {
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
        let vendor = |request: u8, value: u16, index: u16| Setup { request_type: 0x40, request, value, index, length: 0 };
        let (baud, baud_index) = ftdi::baud_divisor(115_200).ok_or("baud rate")?;
        self.control(d, vendor(ftdi::REQ_RESET, 0, 0))?;
        self.control(d, vendor(ftdi::REQ_SET_BAUD, baud, baud_index))?;
        self.control(d, vendor(ftdi::REQ_SET_DATA, 8, 0))?; // 8 data bits, no parity, 1 stop bit
        self.control(d, vendor(ftdi::REQ_SET_FLOW_CTRL, 0, 0))?;
        self.control(d, vendor(ftdi::REQ_SET_MODEM_CTRL, 0x0303, 0))?; // DTR and RTS on
        let n = PORTS.lock().len();
        let port = Arc::new(Port {
            name: format!("ttyUSB{n}"),
            rx: IrqLock::new(VecDeque::new()),
            ready: crate::sync::Semaphore::new(0),
            failed: IrqLock::new(None),
            received: AtomicU64::new(0),
            line_errors: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            starved: AtomicBool::new(false),
            handed_at: AtomicU64::new(0),
            max_delivery_ns: AtomicU64::new(0),
            number: n,
            published: AtomicBool::new(false),
            ctrl: spin::Once::new(),
        });
        PORTS.lock().push(port.clone());
        let buf = dma(1, self.ac64).map_err(oom)?;
        let max_packet = usize::from(ein.max_packet & 0x7ff).max(8);
        self.serials.push(SerialDev { port, slot: d.slot, dci_in: ein.dci(), dci_out: eout.dci(), max_packet, ring_in, ring_out, buf, in_trb: None });
        let i = self.serials.len() - 1;
        self.queue_serial_in(i);
        Ok(i)
    }

    /// Queues port `i`'s IN transfer if none is queued and its buffer has room.
    pub(super) fn queue_serial_in(&mut self, i: usize) {
        let s = &mut self.serials[i];
        if s.in_trb.is_some() || s.port.failed.lock().is_some() {
            return;
        }
        if s.port.rx.lock().len() + IN_BYTES > RX_MAX {
            s.port.starved.store(true, Ordering::Release);
            return;
        }
        s.in_trb = Some(s.ring_in.push(x::normal(s.buf.phys(), IN_BYTES as u32)));
        let (slot, dci) = (s.slot, s.dci_in);
        self.w32(self.db + 4 * u64::from(slot), u32::from(dci));
    }

    /// Serves event `e` if it completes a port's IN transfer; true if it did.
    pub(super) fn serial_event(&mut self, e: &Trb) -> bool {
        let (slot, dci) = (x::event_slot(e), x::event_endpoint(e));
        let Some(i) = self.serials.iter().position(|s| s.slot == slot && s.dci_in == dci && s.in_trb == Some(x::event_pointer(e))) else {
            return false;
        };
        let s = &mut self.serials[i];
        s.in_trb = None;
        match x::completion_code(e) {
            x::CC_SUCCESS | x::CC_SHORT_PACKET => {
                let n = IN_BYTES.saturating_sub(x::transfer_residue(e) as usize);
                let mut raw = alloc::vec![0u8; n];
                s.buf.read_bytes(0, &mut raw);
                let (data, errors) = ftdi::strip_status(&raw, s.max_packet);
                if errors {
                    s.port.line_errors.fetch_add(1, Ordering::Relaxed);
                }
                if !data.is_empty() {
                    s.port.received.fetch_add(data.len() as u64, Ordering::Relaxed);
                    s.port.rx.lock().extend(data);
                    if s.port.waiting.swap(false, Ordering::AcqRel) {
                        s.port.handed_at.store(hal::time::now_ns(), Ordering::Relaxed);
                        s.port.ready.up();
                    }
                }
                self.queue_serial_in(i);
            }
            cc => {
                // A halted endpoint is not reset yet: the port stops.
                let why = format!("receive endpoint: {}", x::completion_name(cc));
                hal::println!("usb: {}: {why}; the port stops", s.port.name);
                *s.port.failed.lock() = Some(why);
                s.port.ready.up();
            }
        }
        true
    }

    /// Writes `data` (at most 2048 bytes) to port `i`; returns the bytes sent.
    fn serial_write(&mut self, i: usize, data: &[u8]) -> Result<usize, String> {
        let s = self.serials.get_mut(i).ok_or("no such port")?;
        let data = &data[..data.len().min(2048)];
        let mut padded = data.to_vec();
        padded.resize(data.len().div_ceil(4) * 4, 0);
        for (k, c) in padded.chunks_exact(4).enumerate() {
            s.buf.write32(2048 + 4 * k, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        let trb = s.ring_out.push(x::normal(s.buf.phys() + 2048, data.len() as u32));
        let (slot, dci) = (s.slot, s.dci_out);
        self.w32(self.db + 4 * u64::from(slot), u32::from(dci));
        let e = self.wait_transfer(slot, dci, trb, OUT_NS)?;
        match x::completion_code(&e) {
            x::CC_SUCCESS | x::CC_SHORT_PACKET => Ok(data.len().saturating_sub(x::transfer_residue(&e) as usize)),
            cc => Err(format!("send endpoint: {}", x::completion_name(cc))),
        }
    }
}

impl SerialDev {
    pub(super) fn slot(&self) -> u8 {
        self.slot
    }
    /// The adapter was unplugged: the port fails; waiting readers wake and get EIO.
    pub(super) fn unplugged(&mut self) {
        self.in_trb = None;
        self.slot = 0; // the slot may be given to another device now
        *self.port.failed.lock() = Some(String::from("the adapter was unplugged"));
        self.port.ready.up();
        hal::println!("usb: /dev/{}: the adapter was unplugged (reads and writes fail with EIO)", self.port.name);
    }
}

impl Port {
    /// Binds the port to its controller (after registration, when the device is `'static`).
    pub(super) fn bind(&self, ctrl: &'static crate::drivers::Device<Xhci>, index: usize) {
        self.ctrl.call_once(|| (ctrl, index));
    }

    /// Waits until there is something to read (EAGAIN at once if `nonblock`; ERESTARTSYS on a
    /// signal; EIO once the port has failed and is drained).
    pub fn wait_readable(&self, nonblock: bool) -> Result<(), Errno> {
        loop {
            if !self.rx.lock().is_empty() {
                return Ok(());
            }
            if self.failed.lock().is_some() {
                return Err(EIO);
            }
            if nonblock {
                return Err(EAGAIN);
            }
            self.waiting.store(true, Ordering::Release);
            if !self.rx.lock().is_empty() {
                continue;
            }
            if self.ready.down_interruptible().is_err() {
                return Err(ERESTARTSYS);
            }
        }
    }

    /// Takes up to `max` received bytes.
    pub fn read(&self, max: usize) -> Result<Vec<u8>, Errno> {
        let out: Vec<u8> = {
            let mut rx = self.rx.lock();
            if rx.is_empty() && self.failed.lock().is_some() {
                return Err(EIO);
            }
            let n = max.min(rx.len());
            rx.drain(..n).collect()
        };
        let at = self.handed_at.swap(0, Ordering::Relaxed);
        if at != 0 {
            self.max_delivery_ns.fetch_max(hal::time::now_ns().saturating_sub(at), Ordering::Relaxed);
        }
        if !out.is_empty()
            && self.starved.swap(false, Ordering::AcqRel)
            && let Some(&(ctrl, i)) = self.ctrl.get()
        {
            ctrl.driver.hc.lock().queue_serial_in(i); // sets `starved` again if still full
        }
        Ok(out)
    }

    /// Bytes waiting in the receive buffer.
    pub fn buffered(&self) -> usize {
        self.rx.lock().len()
    }

    pub fn write(&self, data: &[u8]) -> Result<usize, Errno> {
        if self.failed.lock().is_some() {
            return Err(EIO);
        }
        let (ctrl, i) = *self.ctrl.get().ok_or(EIO)?;
        let r = ctrl.driver.hc.lock().serial_write(i, data);
        r.map_err(|e| {
            hal::println!("usb: {}: {e}", self.name);
            EIO
        })
    }
}

/// The `/dev` node of a port.
struct Node(Arc<Port>);

impl crate::vfs::External for Node {
    fn is_dir(&self) -> bool {
        false
    }
    fn size(&self) -> u64 {
        0
    }
    fn child(&self, _: &str) -> Result<Arc<crate::vfs::Inode>, Errno> {
        Err(linux_raw_sys::errno::ENOTDIR)
    }
    fn read_at(&self, _pos: u64, max: usize) -> Result<Vec<u8>, Errno> {
        self.0.read(max)
    }
    fn list(&self) -> Result<Vec<(u64, bool, String)>, Errno> {
        Err(linux_raw_sys::errno::ENOTDIR)
    }
    fn writable(&self) -> bool {
        true
    }
    fn write_at(&self, _pos: u64, data: &[u8]) -> Result<usize, Errno> {
        self.0.write(data)
    }
    fn wait_readable(&self, nonblock: bool) -> Result<(), Errno> {
        self.0.wait_readable(nonblock)
    }
}

/// Binds every port of `ctrl` not published yet and makes its `/dev/ttyUSB<n>`.
pub(super) fn publish(ctrl: &'static crate::drivers::Device<Xhci>) {
    let ports: Vec<Arc<Port>> = ctrl.driver.hc.lock().serials.iter().map(|s| s.port.clone()).collect();
    for (i, p) in ports.into_iter().enumerate() {
        if p.published.swap(true, Ordering::AcqRel) {
            continue;
        }
        p.bind(ctrl, i);
        let ino = 0x200_0000_0000 + p.number as u64;
        let node = crate::vfs::external(ino, alloc::boxed::Box::new(Node(p.clone())), linux_raw_sys::general::S_IFCHR | 0o666);
        match crate::vfs::add_dev(&p.name, node) {
            Ok(()) => hal::println!("usb: /dev/{}: FTDI serial adapter, 115200 8N1", p.name),
            Err(e) => hal::println!("usb: /dev/{}: not made (errno {e})", p.name),
        }
    }
}
