//! USB 3 host controller (xHCI; QEMU's `qemu-xhci`, `nec-usb-xhci`) on the driver model, first
//! slice: bring-up and enumeration by polling, the `/dev/usb` listing (what `lsusb` prints).
//!
//! - Probe (PCI class 0c/03, programming interface 0x30): claims BAR0 (`hal::pci::Mmio`),
//!   halts and resets the controller, waits for Controller Not Ready to clear, switches bus
//!   mastering on ([`super::enable_bus_master`]: this driver is a [`super::DmaDriver`]), sets
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
//!
//! Polling: the controller's interrupt is not enabled (USBCMD.INTE and IMAN.IE stay 0). At
//! boot, in `probe`, every command and transfer is waited for by polling the event ring with a
//! guest-time deadline; afterwards the bottom half, a thread on the driver's IO VCPU, polls it
//! every 10 ms for keyboard reports (so a key reaches the console within 10 ms plus the IO
//! VCPU's period under load).
//!
//! Not done yet (each says so where it would be needed): the other class drivers (mass
//! storage, serial), a halted keyboard endpoint's reset, interrupts, hot-plug
//! (devices present at boot only), EHCI/UHCI controllers, a high-speed hub's transaction
//! translator for full/low-speed devices behind it, S3 resume.
//!
//! Register and TRB layouts are hand-written in `crates/usb::xhci` (host-tested) rather than
//! taken from the `xhci` crate: see that crate's doc for why.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use hal::dma::DmaBuffer;
use hal::pci::{Bdf, Mmio};
use hal::sync::IrqLock;
use usb::desc;
use usb::xhci::{self as x, Consumer, InputContext, Producer, Trb, portsc};
use usb::{Configuration, DeviceDescriptor, Setup};
use vcpu_sched::VcpuParams;

use super::{Device, Driver, DriverError, Resource};

/// TRBs per ring (one 4 KiB frame).
const RING_TRBS: usize = 256;
/// Device slots used (of the controller's MaxSlots).
const MAX_SLOTS: u32 = 32;
/// Hub tiers followed below a root port (a route string has 5).
const MAX_HUB_DEPTH: u32 = 5;
/// Guest-time deadlines.
const RESET_NS: u64 = 500_000_000;
const COMMAND_NS: u64 = 200_000_000;
const PORT_RESET_NS: u64 = 200_000_000;

// Operational registers.
const USBCMD: u64 = 0;
const USBSTS: u64 = 4;
const PAGESIZE: u64 = 8;
const CRCR: u64 = 0x18;
const DCBAAP: u64 = 0x30;
const CONFIG: u64 = 0x38;
const CMD_RS: u32 = 1;
const CMD_HCRST: u32 = 2;
const STS_HCH: u32 = 1;
const STS_HSE: u32 = 1 << 2;
const STS_CNR: u32 = 1 << 11;
// Interrupter 0's registers (runtime base + 0x20).
const IMAN: u64 = 0;
const ERSTSZ: u64 = 8;
const ERSTBA: u64 = 0x10;
const ERDP: u64 = 0x18;
const ERDP_EHB: u32 = 1 << 3;

/// One enumerated device, as the listing shows it.
#[derive(Clone, Debug)]
pub struct UsbDevice {
    pub root_port: u8,
    /// Route string (hub ports below the root port, 4 bits per tier; 0 on a root port).
    pub route: u32,
    pub address: u8,
    pub speed: u8,
    pub desc: DeviceDescriptor,
    pub config: Configuration,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    /// Hub ports, for a hub.
    pub hub_ports: Option<u8>,
}

/// A ring the driver produces on (command ring, a transfer ring).
struct Ring {
    buf: DmaBuffer,
    p: Producer,
}

impl Ring {
    fn new(ac64: bool) -> Result<Ring, DriverError> {
        let buf = dma(1, ac64)?;
        let p = Producer::new(RING_TRBS).ok_or(DriverError::Broken("ring size"))?;
        let l = x::link(buf.phys());
        write_trb(&buf, p.link_index(), &Producer::stamp(l, false));
        Ok(Ring { buf, p })
    }

    /// Enqueues `t` (cycle bit last); returns its bus address.
    fn push(&mut self, t: Trb) -> u64 {
        let s = self.p.push();
        write_trb(&self.buf, s.index, &Producer::stamp(t, s.cycle));
        if let Some(c) = s.link_cycle {
            let l = x::link(self.buf.phys());
            write_trb(&self.buf, self.p.link_index(), &Producer::stamp(l, c));
        }
        self.buf.phys() + 16 * s.index as u64
    }
}

fn write_trb(b: &DmaBuffer, index: usize, t: &Trb) {
    let off = index * 16;
    b.write32(off, t[0]);
    b.write32(off + 4, t[1]);
    b.write32(off + 8, t[2]);
    // Release: the device sees the rest of the TRB before the cycle bit that hands it over.
    b.write32(off + 12, t[3]);
}

/// A DMA buffer the controller can address (below 4 GiB unless it does 64-bit addressing).
fn dma(frames: usize, ac64: bool) -> Result<DmaBuffer, DriverError> {
    let b = DmaBuffer::alloc(frames).ok_or(DriverError::Broken("no memory for DMA buffers"))?;
    if !ac64 && b.phys() + b.len() as u64 > 1 << 32 {
        return Err(DriverError::NotSupported("a 32-bit xHCI with DMA memory above 4 GiB"));
    }
    Ok(b)
}

/// The controller while it is being set up and enumerated (all polling, in `probe`).
struct Hc {
    regs: Mmio,
    op: u64,
    rt: u64,
    db: u64,
    ac64: bool,
    csz: usize,
    max_ports: u8,
    slots: u32,
    dcbaa: DmaBuffer,
    cmd: Ring,
    ev: DmaBuffer,
    evc: Consumer,
    log: Vec<String>,
    kbds: Vec<Kbd>,
}

/// A boot-protocol keyboard's interrupt IN endpoint: its ring, always holding [`KBD_TRBS`]
/// Normal TRBs, and the report buffer (16 bytes per ring index).
struct Kbd {
    slot: u8,
    dci: u8,
    ring: Ring,
    buf: DmaBuffer,
    state: usb::hid::BootKeyboard,
    reports: u64,
}

/// Reports queued per keyboard.
const KBD_TRBS: usize = 8;
/// How often the bottom half polls the event ring (keyboard latency is at most this plus the
/// IO VCPU's period).
const POLL_NS: u64 = 10_000_000;

/// A device's DMA structures: EP0's transfer ring, the output and input contexts, the bounce
/// buffer for control data.
struct Dev {
    slot: u8,
    ring: Ring,
    out: DmaBuffer,
    input: DmaBuffer,
    data: DmaBuffer,
}

impl Hc {
    fn r32(&self, off: u64) -> u32 {
        self.regs.read32(off)
    }
    fn w32(&self, off: u64, v: u32) {
        self.regs.write32(off, v)
    }
    fn w64(&self, off: u64, v: u64) {
        self.w32(off, v as u32);
        self.w32(off + 4, (v >> 32) as u32);
    }

    fn wait(&self, ns: u64, mut ok: impl FnMut(&Self) -> bool) -> bool {
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
    fn next_event(&mut self, ns: u64) -> Option<Trb> {
        let end = hal::time::now_ns().saturating_add(ns);
        loop {
            let off = self.evc.index() * 16;
            let d3 = self.ev.read32(off + 12);
            if self.evc.is_new(d3 & 1 != 0) {
                let t = [self.ev.read32(off), self.ev.read32(off + 4), self.ev.read32(off + 8), d3];
                let next = self.evc.advance();
                let erdp = self.ev.phys() + 16 * next as u64;
                self.w64(self.rt + 0x20 + ERDP, erdp | u64::from(ERDP_EHB));
                return Some(t);
            }
            if hal::time::now_ns() > end {
                return None;
            }
            core::hint::spin_loop();
        }
    }

    /// Waits for an event of `kind` (for `slot`, or the command at `pointer`); other events
    /// (port status changes) are passed over.
    fn wait_event(&mut self, kind: u32, pointer: Option<u64>, slot: Option<u8>) -> Result<Trb, String> {
        loop {
            let Some(e) = self.next_event(COMMAND_NS) else {
                let sts = self.r32(self.op + USBSTS);
                return Err(if sts & STS_HSE != 0 {
                    String::from("host system error (the controller halted)")
                } else {
                    String::from("no completion event (timed out)")
                });
            };
            if x::trb_type(&e) != kind {
                continue;
            }
            if pointer.is_some_and(|p| p != x::event_pointer(&e)) || slot.is_some_and(|s| s != x::event_slot(&e)) {
                continue;
            }
            return Ok(e);
        }
    }

    fn command(&mut self, t: Trb, what: &str) -> Result<Trb, String> {
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
    fn control(&mut self, d: &mut Dev, setup: Setup) -> Result<Vec<u8>, String> {
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
                cc => return Err(format!("control transfer {:#04x}/{:#04x}: {}", setup.request_type, setup.request, x::completion_name(cc))),
            }
        }
        let mut out = alloc::vec![0u8; len];
        d.data.read_bytes(0, &mut out);
        Ok(out)
    }

    fn port_reg(&self, port: u8) -> u64 {
        self.op + 0x400 + 0x10 * u64::from(port - 1)
    }

    /// Resets a USB2 root port if it is not enabled; returns its PORTSC afterwards.
    fn reset_root_port(&self, port: u8) -> u32 {
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
    fn address(&mut self, root_port: u8, route: u32, speed: u8) -> Result<(Dev, u8), String> {
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

    /// Addresses, describes and configures one device; a hub's devices follow it into `out`.
    fn enumerate(&mut self, root_port: u8, route: u32, depth: u32, speed: u8, out: &mut Vec<UsbDevice>) -> Result<(), String> {
        let (mut d, address) = self.address(root_port, route, speed)?;
        let b = self.control(&mut d, Setup::get_descriptor(usb::DT_DEVICE, 0, 0, 18))?;
        let dd = DeviceDescriptor::parse(&b).map_err(|e| format!("device descriptor: {e}"))?;
        let b = self.control(&mut d, Setup::get_descriptor(usb::DT_CONFIGURATION, 0, 0, 9))?;
        let total = desc::config_total_length(&b).map_err(|e| format!("configuration descriptor: {e}"))?;
        if usize::from(total) > d.data.len() {
            return Err(format!("configuration of {total} bytes: larger than 4 KiB is not supported yet"));
        }
        let b = self.control(&mut d, Setup::get_descriptor(usb::DT_CONFIGURATION, 0, 0, total))?;
        let config = Configuration::parse(&b).map_err(|e| format!("configuration descriptor: {e}"))?;
        let (mut manufacturer, mut product) = (None, None);
        if dd.manufacturer_index != 0 || dd.product_index != 0 {
            let b = self.control(&mut d, Setup::get_descriptor(usb::DT_STRING, 0, 0, 255))?;
            let lang = desc::lang_ids(&b).map_err(|e| format!("string descriptor 0: {e}"))?[0];
            let mut text = |hc: &mut Hc, i: u8| -> Result<Option<String>, String> {
                if i == 0 {
                    return Ok(None);
                }
                let b = hc.control(&mut d, Setup::get_descriptor(usb::DT_STRING, i, lang, 255))?;
                desc::string(&b).map(Some).map_err(|e| format!("string descriptor {i}: {e}"))
            };
            manufacturer = text(self, dd.manufacturer_index)?;
            product = text(self, dd.product_index)?;
        }
        self.control(&mut d, Setup::set_configuration(config.value))?;
        let kbd = config.interfaces.iter().find_map(|i| {
            let ep = i.endpoints.iter().find(|e| e.is_in() && e.attributes & 3 == 3)?;
            (i.class == 3 && i.subclass == 1 && i.protocol == 1 && i.alternate == 0).then_some((i.number, *ep))
        });
        if let Some((iface, ep)) = kbd {
            self.keyboard(&mut d, speed, iface, ep)?;
        }
        let is_hub = dd.class == 9;
        let mut dev = UsbDevice { root_port, route, address, speed, desc: dd, config, manufacturer, product, hub_ports: None };
        if !is_hub {
            out.push(dev);
            return Ok(());
        }
        let b = self.control(&mut d, Setup::get_hub_descriptor(64))?;
        let hub = usb::HubDescriptor::parse(&b).map_err(|e| format!("hub descriptor: {e}"))?;
        dev.hub_ports = Some(hub.ports);
        out.push(dev);
        if depth >= MAX_HUB_DEPTH {
            self.log.push(format!("usb: port {root_port} route {route:#x}: hub beyond 5 tiers left alone"));
            return Ok(());
        }
        self.hub_ports(&mut d, &hub, root_port, route, depth, out);
        Ok(())
    }

    /// Sets a boot keyboard up: boot protocol, no idle repeats, its interrupt IN endpoint
    /// configured and [`KBD_TRBS`] reports queued.
    fn keyboard(&mut self, d: &mut Dev, speed: u8, iface: u8, ep: usb::Endpoint) -> Result<(), String> {
        self.control(d, Setup::hid(0x0b, 0, iface))?; // SET_PROTOCOL: boot
        let _ = self.control(d, Setup::hid(0x0a, 0, iface)); // SET_IDLE: optional (may stall)
        let oom = |e: DriverError| format!("{e}");
        let mut ring = Ring::new(self.ac64).map_err(oom)?;
        let buf = dma(1, self.ac64).map_err(oom)?;
        let slot_ctx = [d.out.read32(0), d.out.read32(4), d.out.read32(8), d.out.read32(12)];
        let ic = InputContext { csz: self.csz };
        d.input.zero(0, d.input.len());
        let mps = ep.max_packet & 0x7ff;
        for (off, v) in ic.configure_interrupt_in(slot_ctx, ep.dci(), mps, x::interrupt_interval(speed, ep.interval), ring.buf.phys()) {
            d.input.write32(off, v);
        }
        self.command(x::configure_endpoint(d.input.phys(), d.slot), "Configure Endpoint")?;
        for _ in 0..KBD_TRBS {
            let at = buf.phys() + 16 * ring.p.next_index() as u64;
            ring.push(x::normal(at, 8));
        }
        self.w32(self.db + 4 * u64::from(d.slot), u32::from(ep.dci()));
        self.kbds.push(Kbd { slot: d.slot, dci: ep.dci(), ring, buf, state: usb::hid::BootKeyboard::new(), reports: 0 });
        Ok(())
    }

    /// Serves the keyboards: every completed report becomes console input and its TRB is
    /// queued again. Returns how many events were handled.
    fn poll(&mut self) -> usize {
        let mut n = 0;
        while let Some(e) = self.next_event(0) {
            n += 1;
            if x::trb_type(&e) != x::TRB_TRANSFER_EVENT {
                continue;
            }
            let (slot, dci) = (x::event_slot(&e), x::event_endpoint(&e));
            let Some(k) = self.kbds.iter_mut().find(|k| k.slot == slot && k.dci == dci) else { continue };
            let cc = x::completion_code(&e);
            let ring_phys = k.ring.buf.phys();
            let index = x::event_pointer(&e).wrapping_sub(ring_phys) / 16;
            if index < RING_TRBS as u64 && matches!(cc, x::CC_SUCCESS | x::CC_SHORT_PACKET) {
                let len = 8usize.saturating_sub(x::transfer_residue(&e) as usize);
                let mut r = [0u8; 8];
                k.buf.read_bytes(16 * index as usize, &mut r[..len]);
                k.reports += 1;
                let bytes = k.state.report(&r[..len]);
                if !bytes.is_empty() {
                    super::serial::inject(&bytes);
                }
            } else if !matches!(cc, x::CC_SUCCESS | x::CC_SHORT_PACKET) {
                // The endpoint halted: it is not restarted yet (a Reset Endpoint would).
                hal::println!("usb: keyboard in slot {slot}: {}; its input stops", x::completion_name(cc));
                continue;
            }
            let at = k.buf.phys() + 16 * k.ring.p.next_index() as u64;
            k.ring.push(x::normal(at, 8));
            let db = self.db + 4 * u64::from(slot);
            self.w32(db, u32::from(dci));
        }
        n
    }

    /// Powers, resets and enumerates a hub's ports through hub class requests.
    fn hub_ports(&mut self, d: &mut Dev, hub: &usb::HubDescriptor, root_port: u8, route: u32, depth: u32, out: &mut Vec<UsbDevice>) {
        const PORT_RESET: u16 = 4;
        const PORT_POWER: u16 = 8;
        const C_PORT_CONNECTION: u16 = 16;
        const C_PORT_RESET: u16 = 20;
        let feature = |set: bool, f: u16, port: u8| Setup {
            request_type: 0x23,
            request: if set { usb::REQ_SET_FEATURE } else { usb::REQ_CLEAR_FEATURE },
            value: f,
            index: u16::from(port),
            length: 0,
        };
        let status = |port: u8| Setup { request_type: 0xa3, request: usb::REQ_GET_STATUS, value: 0, index: u16::from(port), length: 4 };
        for p in 1..=hub.ports {
            if let Err(e) = self.control(d, feature(true, PORT_POWER, p)) {
                self.log.push(format!("usb: hub at port {root_port} route {route:#x}: port {p}: power: {e}"));
            }
        }
        hal::time::spin_ns(u64::from(hub.power_on_to_good) * 2_000_000);
        for p in 1..=hub.ports {
            let child = route | u32::from(p) << (4 * depth);
            let r: Result<(), String> = (|| {
                let s = self.control(d, status(p))?;
                if s[0] & 1 == 0 {
                    return Ok(()); // nothing connected
                }
                self.control(d, feature(true, PORT_RESET, p))?;
                let end = hal::time::now_ns() + PORT_RESET_NS;
                let s = loop {
                    let s = self.control(d, status(p))?;
                    if u16::from_le_bytes([s[2], s[3]]) & (1 << 4) != 0 || hal::time::now_ns() > end {
                        break s;
                    }
                };
                self.control(d, feature(false, C_PORT_RESET, p))?;
                self.control(d, feature(false, C_PORT_CONNECTION, p))?;
                let st = u16::from_le_bytes([s[0], s[1]]);
                if st & 2 == 0 {
                    return Err(String::from("not enabled after reset"));
                }
                let speed = if st & (1 << 9) != 0 {
                    2
                } else if st & (1 << 10) != 0 {
                    3
                } else {
                    1
                };
                self.enumerate(root_port, child, depth + 1, speed, out)
            })();
            if let Err(e) = r {
                self.log.push(format!("usb: port {root_port} route {child:#x}: device refused: {e}"));
            }
        }
    }
}

/// The driver of one xHCI controller.
pub struct Xhci {
    bdf: Bdf,
    version: u16,
    ports: u8,
    slots: u32,
    devices: Vec<UsbDevice>,
    keyboards: usize,
    /// The controller, kept for the rest of the run (it keeps running and owning its DMA);
    /// the bottom half polls its event ring.
    hc: IrqLock<Hc>,
}

// SAFETY: every address this driver gives the controller (DCBAA, scratchpads, command and
// event rings, the event ring segment table, device and input contexts, EP0 rings, bounce
// buffers) is the `phys()` of a `hal::dma::DmaBuffer` allocated here, and every transfer
// length is at most that buffer's size (`Hc::control` checks); the register claim lives in
// the driver object.
#[allow(unsafe_code)]
unsafe impl super::DmaDriver for Xhci {}

fn bring_up(bdf: Bdf, regs: Mmio) -> Result<(Hc, u16), DriverError> {
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
    super::enable_bus_master::<Xhci>(&regs);
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
    };
    hc.w32(op + CONFIG, slots);
    hc.w64(op + DCBAAP, hc.dcbaa.phys());
    hc.w64(op + CRCR, hc.cmd.buf.phys() | 1);
    let ir = rt + 0x20;
    hc.w32(ir + IMAN, 0);
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
    /// 1 % of CPU 0: the bottom half polls the event ring for keyboard reports.
    const IO_PARAMS: VcpuParams = VcpuParams::io(100, 10_000);

    fn probe(res: &Resource) -> Result<Self, DriverError> {
        let Resource::Pci { bus, device, function } = *res else { return Err(DriverError::NotMine) };
        let bdf = Bdf { bus, device, function };
        let f = super::pci::function(bdf).ok_or(DriverError::NoDevice)?;
        if !f.header.is_some_and(|h| h.class == 0x0c && h.subclass == 0x03 && h.prog_if == 0x30) {
            return Err(DriverError::NotMine);
        }
        let regs = Mmio::claim(bdf, 0).map_err(DriverError::Broken)?;
        let (mut hc, version) = bring_up(bdf, regs)?;
        hc.command(x::noop_command(), "No Op").map_err(|e| DriverError::LeftAlone(format!("command ring: {e}")))?;
        let mut devices = Vec::new();
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
            if let Err(e) = hc.enumerate(port, 0, 0, portsc::speed(v), &mut devices) {
                hc.log.push(format!("usb: port {port}: device refused: {e}"));
            }
        }
        for l in &hc.log {
            hal::println!("{l}");
        }
        Ok(Xhci { bdf, version, ports: hc.max_ports, slots: hc.slots, devices, keyboards: hc.kbds.len(), hc: IrqLock::new(hc) })
    }

    fn top_half(&self) -> bool {
        false
    }

    fn interrupt(&self) -> Option<bool> {
        None // the controller's interrupt is never enabled (polling)
    }

    /// Polls the event ring every [`POLL_NS`] while there is a keyboard to serve.
    fn bottom_half(&self, _dev: &Device<Self>) {
        if self.keyboards == 0 {
            return;
        }
        loop {
            self.hc.lock().poll();
            let _ = crate::sched::sleep_ns(POLL_NS);
        }
    }

    fn start(&self) {}
}

static CONTROLLERS: IrqLock<Vec<&'static Device<Xhci>>> = IrqLock::new(Vec::new());

/// Registers a driver on every xHCI controller enumeration found (at boot) and enumerates its
/// devices.
pub fn init() {
    let found: Vec<Bdf> = super::pci::functions()
        .iter()
        .filter(|f| f.header.is_some_and(|h| h.class == 0x0c && h.subclass == 0x03 && h.prog_if == 0x30))
        .map(|f| f.bdf)
        .collect();
    for bdf in found {
        let res = Resource::Pci { bus: bdf.bus, device: bdf.device, function: bdf.function };
        match super::register::<Xhci>(res) {
            Ok(d) => {
                let mut c = CONTROLLERS.lock();
                hal::println!(
                    "usb{}: xHCI at {bdf}: {} device(s) enumerated, {} keyboard(s) on the console",
                    c.len() + 1,
                    d.driver.devices.len(),
                    d.driver.keyboards
                );
                c.push(d);
            }
            Err(e) => hal::println!("usb: xHCI at {bdf}: {e}"),
        }
    }
}

/// What `/dev/usb` holds (and `lsusb` prints): every controller and its devices.
pub fn listing() -> String {
    let cs = CONTROLLERS.lock().clone();
    let mut s = String::new();
    if cs.is_empty() {
        let _ = writeln!(s, "usb: no USB host controller found (xHCI only; EHCI and UHCI are not supported yet)");
        return s;
    }
    for (i, c) in cs.iter().enumerate() {
        let x = &c.driver;
        let bus = i + 1;
        let _ = writeln!(
            s,
            "Bus {bus:03}: xHCI {}.{} at PCI {}, {} ports, {} slots, {} device(s)",
            x.version >> 8,
            format_args!("{:x}", x.version & 0xff),
            x.bdf,
            x.ports,
            x.slots,
            x.devices.len()
        );
        for d in &x.devices {
            let mut port = format!("{}", d.root_port);
            let mut r = d.route;
            while r != 0 {
                let _ = write!(port, ".{}", r & 0xf);
                r >>= 4;
            }
            let _ = writeln!(
                s,
                "Bus {bus:03} Port {port} Device {:03}: ID {:04x}:{:04x} {}{}{}",
                d.address,
                d.desc.vendor,
                d.desc.product,
                d.manufacturer.as_deref().unwrap_or(""),
                if d.manufacturer.is_some() && d.product.is_some() { " " } else { "" },
                d.product.as_deref().unwrap_or("")
            );
            let _ = writeln!(
                s,
                "\tUSB {:x}.{:02x}, speed {}, class {:02x} ({}), configuration {} of {}{}",
                d.desc.usb_version >> 8,
                d.desc.usb_version & 0xff,
                x::speed_name(d.speed),
                d.desc.class,
                usb::class_name(d.desc.class),
                d.config.value,
                d.desc.configurations,
                d.hub_ports.map(|n| format!(", hub with {n} ports")).unwrap_or_default()
            );
            for itf in &d.config.interfaces {
                let _ = write!(
                    s,
                    "\tInterface {}.{}: class {:02x} ({}) subclass {:02x} protocol {:02x}",
                    itf.number,
                    itf.alternate,
                    itf.class,
                    usb::class_name(itf.class),
                    itf.subclass,
                    itf.protocol
                );
                for e in &itf.endpoints {
                    let _ = write!(s, "; EP {:#04x} {} {} {}B", e.address, e.kind(), if e.is_in() { "IN" } else { "OUT" }, e.max_packet);
                }
                let _ = writeln!(s);
            }
        }
    }
    s
}
