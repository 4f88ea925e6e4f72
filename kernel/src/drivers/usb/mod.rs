//! USB host side: the xHCI host controller driver ([`xhci`], QEMU's `qemu-xhci`), device
//! enumeration through root ports and hubs ([`enumerate`]), the class drivers (boot keyboard
//! in [`enumerate`], mass storage in [`storage`]) and what `/dev/usb` lists.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use hal::pci::Bdf;
use hal::sync::IrqLock;
use usb::xhci as x;
use usb::{Configuration, DeviceDescriptor};

use crate::drivers::{Device, Resource};

pub mod ehci;
pub mod enumerate;
pub mod fs;
pub mod host;
pub mod serial;
pub mod storage;
pub mod xhci;

use xhci::Xhci;

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
    pub serial: Option<String>,
    /// The device qualifier's other-speed EP0 packet size (None: refused or USB 1.x).
    pub qualifier: Option<u8>,
    /// Hub ports, for a hub.
    pub hub_ports: Option<u8>,
    /// Its index among the controller's mass-storage sticks, for a working stick.
    pub stick: Option<usize>,
    /// Its xHCI device slot (0 on EHCI).
    pub slot: u8,
}

/// A host controller of either kind.
#[derive(Clone, Copy)]
pub enum Host {
    Xhci(&'static Device<Xhci>),
    Ehci(&'static Device<ehci::Ehci>),
}

impl Host {
    fn devices(&self) -> Vec<UsbDevice> {
        match self {
            Host::Xhci(d) => d.driver.hc.lock().devices.clone(),
            Host::Ehci(d) => d.driver.devices.lock().clone(),
        }
    }
    /// Reads blocks of the controller's stick `i`.
    fn read_blocks(&self, i: usize, lba: u64, out: &mut [u8]) -> Result<(), String> {
        match self {
            Host::Xhci(d) => d.driver.hc.lock().read_blocks(i, lba, out),
            Host::Ehci(d) => d.driver.read_blocks(i, lba, out),
        }
    }
    /// Looks at stick `i`'s protocol state.
    fn stick<T>(&self, i: usize, f: impl FnOnce(&storage::Msc) -> T) -> Option<T> {
        match self {
            Host::Xhci(d) => d.driver.hc.lock().sticks.get(i).map(|s| f(&s.msc)),
            Host::Ehci(d) => d.driver.stick(i, f),
        }
    }
    fn stick_count(&self) -> usize {
        match self {
            Host::Xhci(d) => d.driver.hc.lock().sticks.len(),
            Host::Ehci(d) => d.driver.stick_count(),
        }
    }
}

static CONTROLLERS: IrqLock<Vec<Host>> = IrqLock::new(Vec::new());

/// Registers a driver on every xHCI and EHCI controller PCI enumeration found (at boot),
/// enumerates their devices, makes the serial ports' device files and mounts the first
/// stick's FAT volume at `/usb`.
pub fn init() {
    let found: Vec<Bdf> = crate::drivers::pci::functions()
        .iter()
        .filter(|f| f.header.is_some_and(|h| h.class == 0x0c && h.subclass == 0x03 && h.prog_if == 0x30))
        .map(|f| f.bdf)
        .collect();
    for bdf in found {
        let res = Resource::Pci { bus: bdf.bus, device: bdf.device, function: bdf.function };
        match crate::drivers::register_dma_msi::<Xhci>(res) {
            Ok(d) => {
                let mut c = CONTROLLERS.lock();
                hal::println!(
                    "usb{}: xHCI at {bdf}: {} device(s) enumerated, {} keyboard(s) on the console",
                    c.len() + 1,
                    d.driver.hc.lock().devices.len(),
                    d.driver.keyboards
                );
                c.push(Host::Xhci(d));
                drop(c);
                serial::publish(d);
            }
            Err(e) => hal::println!("usb: xHCI at {bdf}: {e}"),
        }
    }
    for bdf in ehci::found() {
        let res = Resource::Pci { bus: bdf.bus, device: bdf.device, function: bdf.function };
        match crate::drivers::register_dma_msi::<ehci::Ehci>(res) {
            Ok(d) => {
                let mut c = CONTROLLERS.lock();
                hal::println!("usb{}: EHCI at {bdf}: {} device(s) enumerated", c.len() + 1, d.driver.devices.lock().len());
                c.push(Host::Ehci(d));
            }
            Err(e) => hal::println!("usb: EHCI at {bdf}: {e}"),
        }
    }
    let cs = CONTROLLERS.lock().clone();
    fs::mount_first(&cs);
}

/// After hot-plug on xHCI controller `x`: new serial ports get their device files, a removed
/// mounted stick is unmounted, an added stick is mounted if `/usb` is free.
fn hotplugged(x: &Xhci, added: &[usize], removed: &[usize]) {
    let cs = CONTROLLERS.lock().clone();
    let Some((bus, host)) = cs.iter().enumerate().find_map(|(i, h)| match h {
        Host::Xhci(d) if core::ptr::eq(&d.driver, x) => Some((i, *h)),
        _ => None,
    }) else {
        return;
    };
    if let Host::Xhci(d) = host {
        serial::publish(d);
    }
    fs::removed(bus, removed);
    fs::added(bus, host, added);
}

/// How a controller's interrupt arrives and how often it came (interrupts acknowledged, bottom
/// half passes).
fn irq_line<D: crate::drivers::Driver>(d: &Device<D>, irqs: u64, passes: u64) -> String {
    let how = crate::drivers::Registered::irq_how(d);
    if how.is_empty() {
        return String::from("no interrupt (polled)");
    }
    format!("interrupt {how}: {irqs} taken, {passes} bottom-half passes")
}

/// After hot-plug on EHCI controller `e`: a removed mounted stick is unmounted, an added
/// stick is mounted if `/usb` is free.
fn hotplugged_ehci(e: &ehci::Ehci, added: &[usize], removed: &[usize]) {
    let cs = CONTROLLERS.lock().clone();
    let Some((bus, host)) = cs.iter().enumerate().find_map(|(i, h)| match h {
        Host::Ehci(d) if core::ptr::eq(&d.driver, e) => Some((i, *h)),
        _ => None,
    }) else {
        return;
    };
    fs::removed(bus, removed);
    fs::added(bus, host, added);
}

/// What `/dev/usb` holds (and `lsusb` prints): every controller and its devices.
pub fn listing() -> String {
    let cs = CONTROLLERS.lock().clone();
    let mut s = String::new();
    if cs.is_empty() {
        let _ = writeln!(s, "usb: no USB host controller found (xHCI and EHCI; UHCI and OHCI are not supported yet)");
        return s;
    }
    for (i, c) in cs.iter().enumerate() {
        let bus = i + 1;
        match c {
            Host::Xhci(c) => {
                let x = &c.driver;
                let _ = writeln!(
                    s,
                    "Bus {bus:03}: xHCI {}.{} at PCI {}, {} ports, {} slots, {} device(s), {}",
                    x.version >> 8,
                    format_args!("{:x}", x.version & 0xff),
                    x.bdf,
                    x.ports,
                    x.slots,
                    x.hc.lock().devices.len(),
                    irq_line(*c, x.irqs.load(core::sync::atomic::Ordering::Relaxed), x.passes.load(core::sync::atomic::Ordering::Relaxed))
                );
                let _ = writeln!(
                    s,
                    "\tBottom half: IO VCPU C={} us T={} us, longest wait after an interrupt {} us, longest pass {} us; {} halted endpoint(s) restarted",
                    <Xhci as crate::drivers::Driver>::IO_PARAMS.c_us,
                    <Xhci as crate::drivers::Driver>::IO_PARAMS.t_us,
                    x.max_wait_ns.load(core::sync::atomic::Ordering::Relaxed) / 1000,
                    x.max_pass_ns.load(core::sync::atomic::Ordering::Relaxed) / 1000,
                    x.hc.lock().halts_recovered
                );
            }
            Host::Ehci(c) => {
                let e = &c.driver;
                let _ = writeln!(
                    s,
                    "Bus {bus:03}: EHCI at PCI {}, {} ports, {} device(s), {}, {} transfers waited for by interrupt",
                    e.bdf,
                    e.ports,
                    e.devices.lock().len(),
                    irq_line(*c, e.irqs.load(core::sync::atomic::Ordering::Relaxed), e.passes.load(core::sync::atomic::Ordering::Relaxed)),
                    e.blocked_transfers()
                );
            }
        }
        for d in &c.devices() {
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
            if let Some(sn) = &d.serial {
                let _ = writeln!(s, "\tSerial number: {sn}");
            }
            match d.qualifier {
                Some(m) => {
                    let _ = writeln!(s, "\tDevice qualifier: other speed, EP0 {m}B");
                }
                None if d.desc.usb_version >= 0x0200 => {
                    let _ = writeln!(s, "\tDevice qualifier: refused (stall; one speed only)");
                }
                None => {}
            }
            if let Some(line) = d.stick.and_then(|i| {
                c.stick(i, |st| {
                    format!(
                        "\tMass storage: {} {}, {} blocks of {} bytes{}",
                        st.vendor,
                        st.product,
                        st.blocks,
                        st.block_size,
                        st.failed.as_ref().map(|f| format!(" (failed: {f})")).unwrap_or_default()
                    )
                })
            }) {
                let _ = writeln!(s, "{line}");
            }
            if let Host::Xhci(x) = c {
                let ports: Vec<_> = x.driver.hc.lock().serials.iter().filter(|p| p.slot() == d.slot).map(|p| p.port.clone()).collect();
                for p in ports {
                    let _ = writeln!(
                        s,
                        "\tSerial: /dev/{}, {} bytes received, {} buffered, {} line errors, longest hand-over to a waiting reader {} us",
                        p.name,
                        p.received.load(core::sync::atomic::Ordering::Relaxed),
                        p.buffered(),
                        p.line_errors.load(core::sync::atomic::Ordering::Relaxed),
                        p.max_delivery_ns.load(core::sync::atomic::Ordering::Relaxed) / 1000
                    );
                }
            }
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
