//! Enumeration on an xHCI controller: a device addressed, described and configured; a hub's
//! ports powered, reset and enumerated; a boot keyboard set up and served.
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use usb::xhci::{self as x, InputContext, Trb, portsc};
use usb::Setup;

use super::UsbDevice;
use super::xhci::*;
use crate::drivers::DriverError;

/// A device's EP0 on this controller.
pub(super) struct Ep0<'a> {
    pub(super) hc: &'a mut Hc,
    pub(super) d: &'a mut Dev,
}

impl super::host::Control for Ep0<'_> {
    fn control(&mut self, setup: Setup) -> Result<Vec<u8>, String> {
        self.hc.control(self.d, setup)
    }
    fn max_data(&self) -> usize {
        self.d.data.len()
    }
}

impl Hc {
    /// Addresses, describes and configures one device; a hub's devices follow it into `out`.
    pub(super) fn enumerate(&mut self, root_port: u8, route: u32, depth: u32, speed: u8, out: &mut Vec<UsbDevice>) -> Result<(), String> {
        let (mut d, address) = self.address(root_port, route, speed)?;
        let super::host::Described { dd, config, manufacturer, product, serial, qualifier } = super::host::describe(&mut Ep0 { hc: self, d: &mut d })?;
        let kbd = config.interfaces.iter().find_map(|i| {
            let ep = i.endpoints.iter().find(|e| e.is_in() && e.attributes & 3 == 3)?;
            (i.class == 3 && i.subclass == 1 && i.protocol == 1 && i.alternate == 0).then_some((i.number, *ep))
        });
        if let Some((iface, ep)) = kbd {
            self.keyboard(&mut d, speed, iface, ep)?;
        }
        let msc = config.interfaces.iter().find(|i| i.class == usb::msc::CLASS && i.subclass == usb::msc::SUBCLASS_SCSI && i.protocol == usb::msc::PROTOCOL_BOT && i.alternate == 0);
        let ftdi_itf = (dd.vendor == usb::ftdi::VENDOR && dd.product == usb::ftdi::PRODUCT_FT232).then(|| config.interfaces.first()).flatten();
        if let Some(itf) = ftdi_itf
            && let Err(e) = self.serial(&mut d, itf)
        {
            self.log.push(format!("usb: port {root_port} route {route:#x}: serial adapter: {e}"));
        }
        let mut stick = None;
        if let Some(itf) = msc {
            match self.storage(&mut d, itf) {
                Ok(i) => stick = Some(i),
                Err(e) => self.log.push(format!("usb: port {root_port} route {route:#x}: mass storage: {e}")),
            }
        }
        let is_hub = dd.class == 9;
        let mut dev = UsbDevice { root_port, route, address, speed, desc: dd, config, manufacturer, product, serial, qualifier, hub_ports: None, stick, slot: d.slot };
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
    pub(super) fn keyboard(&mut self, d: &mut Dev, speed: u8, iface: u8, ep: usb::Endpoint) -> Result<(), String> {
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
    pub(super) fn poll(&mut self) -> usize {
        let mut n = 0;
        while let Some(e) = self.next_event(0) {
            n += 1;
            self.other_event(&e);
        }
        self.ack_events();
        n
    }

    /// An event nobody waits for: a transfer (keyboard, serial port) is served, a root port's
    /// status change is noted for [`Hc::hotplug`].
    pub(super) fn other_event(&mut self, e: &Trb) {
        match x::trb_type(e) {
            x::TRB_PORT_STATUS_CHANGE => {
                let p = x::event_port(e);
                if !self.pending_ports.contains(&p) {
                    self.pending_ports.push(p);
                }
            }
            x::TRB_TRANSFER_EVENT => self.serve_event(e),
            _ => {}
        }
    }

    /// Handles the root ports whose connection changed: a device connected is enumerated
    /// (with everything behind it, if a hub), one disconnected is torn down with everything
    /// that was behind it. Returns the indices of the sticks added and removed, or None if
    /// no device came or went.
    pub(super) fn hotplug(&mut self) -> Option<(Vec<usize>, Vec<usize>)> {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let mut changed = false;
        for p in core::mem::take(&mut self.pending_ports) {
            if p == 0 || p > self.max_ports {
                continue;
            }
            let reg = self.port_reg(p);
            let v = self.r32(reg);
            if v & portsc::CSC == 0 {
                continue; // not a connect or disconnect (a reset completing, ...)
            }
            self.w32(reg, portsc::clear_changes(v));
            changed = true;
            let present = self.devices.iter().any(|d| d.root_port == p);
            if present {
                // Disconnected (or replaced): tear down what was there first.
                let (gone, kept): (Vec<UsbDevice>, Vec<UsbDevice>) = core::mem::take(&mut self.devices).into_iter().partition(|d| d.root_port == p);
                self.devices = kept;
                for d in gone.iter().rev() {
                    removed.extend(self.teardown(d));
                    hal::println!("usb: port {p}: device removed: ID {:04x}:{:04x} {}", d.desc.vendor, d.desc.product, d.product.as_deref().unwrap_or(""));
                }
            }
            if v & portsc::CCS == 0 {
                continue;
            }
            let v = self.reset_root_port(p);
            if v & portsc::PED == 0 {
                hal::println!("usb: port {p}: device added but not enabled after reset (PORTSC {v:#x})");
                continue;
            }
            let mut out = Vec::new();
            let r = self.enumerate(p, 0, 0, portsc::speed(v), &mut out);
            for l in core::mem::take(&mut self.log) {
                hal::println!("{l}");
            }
            for d in &out {
                hal::println!("usb: port {p}: device added: ID {:04x}:{:04x} {}", d.desc.vendor, d.desc.product, d.product.as_deref().unwrap_or(""));
                added.extend(d.stick);
            }
            self.devices.extend(out);
            if let Err(e) = r {
                hal::println!("usb: port {p}: device refused: {e}");
            }
        }
        changed.then_some((added, removed))
    }

    /// Releases an unplugged device's slot; its stick fails, its serial port fails (readers
    /// wake with EIO), its keyboard is forgotten. Returns its stick's index, if any.
    fn teardown(&mut self, d: &UsbDevice) -> Option<usize> {
        let slot = d.slot;
        self.kbds.retain(|k| k.slot != slot);
        for s in self.serials.iter_mut().filter(|s| s.slot() == slot) {
            s.unplugged();
        }
        let stick = d.stick.filter(|&i| self.sticks.get(i).is_some_and(|s| s.slot == slot));
        if let Some(i) = stick {
            self.sticks[i].msc.failed = Some(String::from("the stick was unplugged"));
        }
        if slot != 0 {
            if let Err(e) = self.command(x::disable_slot(slot), "Disable Slot") {
                hal::println!("usb: slot {slot}: {e}");
            }
            let at = usize::from(slot) * 8;
            self.dcbaa.write32(at, 0);
            self.dcbaa.write32(at + 4, 0);
        }
        stick
    }

    /// Serves a keyboard's report or a serial port's received data (else nothing).
    pub(super) fn serve_event(&mut self, e: &Trb) {
        if x::trb_type(e) == x::TRB_TRANSFER_EVENT && !self.serial_event(e) {
            self.keyboard_event(e);
        }
    }

    /// Serves event `e` if it is a keyboard's report (else does nothing): the report becomes
    /// console input and its TRB is queued again.
    pub(super) fn keyboard_event(&mut self, e: &Trb) {
        if x::trb_type(e) != x::TRB_TRANSFER_EVENT {
            return;
        }
        let (slot, dci) = (x::event_slot(e), x::event_endpoint(e));
        let Some(k) = self.kbds.iter_mut().find(|k| k.slot == slot && k.dci == dci) else { return };
        let cc = x::completion_code(e);
        let ring_phys = k.ring.buf.phys();
        let index = x::event_pointer(e).wrapping_sub(ring_phys) / 16;
        if index < RING_TRBS as u64 && matches!(cc, x::CC_SUCCESS | x::CC_SHORT_PACKET) {
            let len = 8usize.saturating_sub(x::transfer_residue(e) as usize);
            let mut r = [0u8; 8];
            k.buf.read_bytes(16 * index as usize, &mut r[..len]);
            k.reports += 1;
            let bytes = k.state.report(&r[..len]);
            if !bytes.is_empty() {
                crate::drivers::serial::inject(&bytes);
            }
        } else if !matches!(cc, x::CC_SUCCESS | x::CC_SHORT_PACKET) {
            // The endpoint halted: it is not restarted yet (a Reset Endpoint would).
            hal::println!("usb: keyboard in slot {slot}: {}; its input stops", x::completion_name(cc));
            return;
        }
        let at = k.buf.phys() + 16 * k.ring.p.next_index() as u64;
        k.ring.push(x::normal(at, 8));
        let db = self.db + 4 * u64::from(slot);
        self.w32(db, u32::from(dci));
    }

    /// Powers, resets and enumerates a hub's ports through hub class requests.
    pub(super) fn hub_ports(&mut self, d: &mut Dev, hub: &usb::HubDescriptor, root_port: u8, route: u32, depth: u32, out: &mut Vec<UsbDevice>) {
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
