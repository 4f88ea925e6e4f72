//! The driver model: a driver is probed on a resource, its interrupt top half only
//! acknowledges the device and wakes its bottom half, which runs as a thread on the driver's
//! own IO VCPU (PIBS), and user space reaches the device through a device file.
//!
//! - [`Resource`]: what a driver is probed on: legacy ISA ports and an IRQ line, or a PCI
//!   function found by enumeration (`pci.rs`); a PCI device interrupts by MSI when it offers
//!   it, else through its (shared) INTx line.
//! - [`Driver`]: `probe` claims the device and returns the driver object (all its state lives
//!   there, not in statics); `top_half` runs in the interrupt with interrupts off and only
//!   quiets the device; `bottom_half` does the work on the IO VCPU; `start` enables the
//!   device's interrupts once everything is in place.
//! - [`register`] puts it together: probe, the IO VCPU, the bottom-half thread, the typed
//!   interrupt registration (`hal::trap::Handler::Object`: the [`Device`] itself is the
//!   handler) and the device table. The device object lives for the rest of the run.
//! - [`DeviceFile`]: what a descriptor on the device does (the console's descriptors 0–2 are
//!   the serial driver's device file).
//!
//! The serial driver (`serial.rs`) is the first user; docs/ARCHITECTURE.md has a copyable
//! example.
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use hal::sync::IrqLock;
use vcpu_sched::{VcpuId, VcpuParams};

use crate::sched::{self, SchedError, Tid};
use crate::syscall::Errno;

#[cfg(feature = "ktest")]
pub mod edu;
pub mod can;
pub mod pci;
pub mod serial;
pub mod usb;

/// What a driver is probed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Legacy ISA I/O ports `base..base + len` and interrupt line `irq` (0..15).
    Isa { base: u16, len: u16, irq: u8 },
    /// A PCI function (bus, device, function), as enumeration found it.
    Pci { bus: u8, device: u8, function: u8 },
}

impl core::fmt::Display for Resource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Resource::Isa { base, len, irq } => {
                write!(f, "ISA ports {base:#x}-{:#x}, IRQ {irq}", u32::from(base) + u32::from(len.max(1)) - 1)
            }
            Resource::Pci { bus, device, function } => write!(f, "PCI {bus:02x}:{device:02x}.{function}"),
        }
    }
}

/// Why a probe or a registration failed.
#[derive(Debug)]
pub enum DriverError {
    /// The resource is not a device this driver drives.
    NotMine,
    /// A resource or feature the model does not support yet (named).
    NotSupported(&'static str),
    /// No IO VCPU or thread for the bottom half.
    Sched(SchedError),
    /// No such device (a PCI function enumeration did not find).
    NoDevice,
    /// The device reported nonsense at enumeration and is left alone (why).
    LeftAlone(alloc::string::String),
    /// The device answered wrongly while being set up (what).
    Broken(&'static str),
}

impl core::fmt::Display for DriverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DriverError::NotMine => f.write_str("not a device of this driver"),
            DriverError::NotSupported(what) => write!(f, "{what}: not supported yet"),
            DriverError::Sched(e) => write!(f, "{e}"),
            DriverError::NoDevice => f.write_str("no such device"),
            DriverError::LeftAlone(why) => write!(f, "left alone: {why}"),
            DriverError::Broken(what) => write!(f, "device does not answer as expected: {what}"),
        }
    }
}

impl From<SchedError> for DriverError {
    fn from(e: SchedError) -> Self {
        DriverError::Sched(e)
    }
}

/// A device driver. The value is the driver's state; it is shared by the top half (an
/// interrupt), the bottom half (a thread) and the device file's users, so it is `Sync` and
/// guards its mutable parts with locks or atomics.
pub trait Driver: Sync + Send + Sized + 'static {
    /// The device's name (the bottom-half thread is called `NAME-bh`).
    const NAME: &'static str;
    /// Budget and period of the IO VCPU the bottom half runs on.
    const IO_PARAMS: VcpuParams;
    /// Claims the device at `res`; `Err(DriverError::NotMine)` if it is not this driver's.
    fn probe(res: &Resource) -> Result<Self, DriverError>;
    /// The interrupt's top half (interrupts off, the interrupt controller already
    /// acknowledged): only quiets the device (masks or acknowledges its interrupt). Returns
    /// whether the bottom half has work.
    fn top_half(&self) -> bool;
    /// The interrupt on a line other devices may share (PCI INTx): `None` if this device was
    /// not interrupting, else what `top_half` returns. The default suits unshared lines.
    fn interrupt(&self) -> Option<bool> {
        Some(self.top_half())
    }
    /// The bottom half, on the IO VCPU: runs once at start and after every top half that asked
    /// for it; re-enables the device's interrupt when it is done.
    fn bottom_half(&self, dev: &Device<Self>);
    /// Enables the device's interrupts (called once, after the interrupt is routed).
    fn start(&self);
}

/// A registered device: the driver, where it is, its IO VCPU and bottom-half thread.
pub struct Device<D: Driver> {
    pub driver: D,
    pub resource: Resource,
    /// The IO VCPU (on CPU 0) the bottom half runs on, and its system-wide id (`ps -v`).
    pub io_vcpu: VcpuId,
    pub vcpu_id: u32,
    bottom_half: AtomicU32,
    irqs: AtomicU32,
    /// How the interrupt is delivered ("MSI vector 0xb0", "INTx, IRQ 11"; empty for ISA).
    irq_how: IrqLock<alloc::string::String>,
}

impl<D: Driver> Device<D> {
    /// Interrupts taken so far.
    pub fn irqs(&self) -> u32 {
        self.irqs.load(Ordering::Relaxed)
    }
}

/// The device is its own interrupt handler: the top half, then a wake of the bottom half.
impl<D: Driver> hal::trap::InterruptHandler for Device<D> {
    fn handle(&self, _frame: &mut hal::trap::TrapFrame) {
        self.irqs.fetch_add(1, Ordering::Relaxed);
        if self.driver.top_half() {
            let _ = sched::wake(self.bottom_half.load(Ordering::Relaxed) as Tid);
        }
    }
}

/// A shared INTx line asks each device on it whether it interrupted.
impl<D: Driver> pci::IntxClient for Device<D> {
    fn intx(&self) -> bool {
        match self.driver.interrupt() {
            None => false,
            Some(wake) => {
                self.irqs.fetch_add(1, Ordering::Relaxed);
                if wake {
                    let _ = sched::wake(self.bottom_half.load(Ordering::Relaxed) as Tid);
                }
                true
            }
        }
    }
    fn describe(&self) -> alloc::string::String {
        alloc::format!("{} ({})", D::NAME, self.resource)
    }
}

/// A driver that never programs its device to start a DMA transfer. MSI needs bus mastering
/// (a device sends its message as a memory write), and with bus mastering on and no IOMMU a
/// device told to DMA could write any memory; so only such drivers get MSI
/// ([`register_msi`]), everyone else INTx.
///
/// # Safety
///
/// The implementing driver never writes the device registers that start a DMA transfer; its
/// register claims (`hal::pci::Mmio`, `hal::pci::IoPorts`) live in the driver object, so no
/// other code can.
#[allow(unsafe_code)]
pub unsafe trait DmaFree: Driver {}

/// A driver whose device does DMA, into DMA buffers only (`hal::dma::DmaBuffer`: memory never
/// freed, so a device writing it late corrupts nothing). Only such a driver reaches
/// [`enable_bus_master`].
///
/// # Safety
///
/// Every address the driver gives its device (rings, contexts, data buffers, anything the
/// device reads an address from) lies inside a `DmaBuffer` the driver allocated, with every
/// length the device may transfer inside it too; its register claims live in the driver
/// object, so no other code programs the device.
#[allow(unsafe_code)]
pub unsafe trait DmaDriver: Driver {}

/// Switches bus mastering on for the function `regs` claims, for a [`DmaDriver`] `D`.
pub fn enable_bus_master<D: DmaDriver>(regs: &hal::pci::Mmio) {
    // SAFETY: `D: DmaDriver` is the driver's promise that its device is only ever given
    // addresses inside DMA buffers; holding `regs` shows it drives this function.
    #[allow(unsafe_code)]
    unsafe {
        hal::pci::enable_bus_master(regs)
    }
}

/// How a device's interrupt arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqMode {
    /// INTx (ISA devices: their IRQ).
    Intx,
    /// MSI if the PCI function offers it, else INTx.
    Msi,
}

/// [`register`] with MSI where the PCI function offers it (only for [`DmaFree`] drivers).
pub fn register_msi<D: DmaFree>(res: Resource) -> Result<&'static Device<D>, DriverError> {
    register_with::<D>(res, IrqMode::Msi)
}

/// [`register`] with MSI where the PCI function offers it, for a [`DmaDriver`]: its bus
/// mastering is on anyway, under the promise that it DMAs into `hal::dma::DmaBuffer`s only,
/// and the MSI message is hal's (aimed at the local APIC's window), so MSI adds no reach.
pub fn register_dma_msi<D: DmaDriver>(res: Resource) -> Result<&'static Device<D>, DriverError> {
    register_with::<D>(res, IrqMode::Msi)
}

/// Probes `D` on `res` and starts it: an IO VCPU on CPU 0, the bottom-half thread on it, the
/// interrupt routed to the device's top half. The device lives for the rest of the run.
pub fn register<D: Driver>(res: Resource) -> Result<&'static Device<D>, DriverError> {
    register_with::<D>(res, IrqMode::Intx)
}

fn register_with<D: Driver>(res: Resource, mode: IrqMode) -> Result<&'static Device<D>, DriverError> {
    let irq = match res {
        Resource::Isa { irq, .. } if irq < 16 => Some(irq),
        Resource::Isa { .. } => return Err(DriverError::NotSupported("ISA IRQs beyond 15")),
        Resource::Pci { bus, device, function } => {
            let bdf = hal::pci::Bdf::new(bus, device, function).ok_or(DriverError::NotMine)?;
            let f = pci::function(bdf).ok_or(DriverError::NoDevice)?;
            if let Some(why) = &f.left_alone {
                return Err(DriverError::LeftAlone(why.clone()));
            }
            None
        }
    };
    let driver = D::probe(&res)?;
    let io = sched::create_vcpu(0, D::IO_PARAMS)?;
    let vcpu_id = crate::vcpu::register(0, io);
    let dev: &'static Device<D> = Box::leak(Box::new(Device {
        driver,
        resource: res,
        io_vcpu: io,
        vcpu_id,
        bottom_half: AtomicU32::new(0),
        irqs: AtomicU32::new(0),
        irq_how: IrqLock::new(alloc::string::String::new()),
    }));
    let name = alloc::format!("{}-bh", D::NAME);
    let bh = sched::spawn(&name, 0, Some(io), move || loop {
        dev.driver.bottom_half(dev);
        let _ = sched::block_current(); // a kernel thread: never interrupted
    })?;
    dev.bottom_half.store(bh, Ordering::Relaxed);
    match (irq, res) {
        (Some(irq), _) => {
            if let Err(e) = hal::trap::route_isa_irq(irq, hal::trap::Handler::Object(dev)) {
                hal::println!("{}: cannot route IRQ {irq}: {e}; the device will not interrupt", D::NAME);
            }
        }
        (None, Resource::Pci { bus, device, function }) => {
            let bdf = hal::pci::Bdf { bus, device, function };
            let msi = mode == IrqMode::Msi && pci::function(bdf).is_some_and(|f| f.msi);
            let how = if msi {
                hal::trap::register_msi(hal::trap::Handler::Object(dev)).and_then(|v| {
                    // SAFETY: `mode` is `Msi` only through `register_msi`, whose `D: DmaFree`
                    // is the driver's promise that nothing starts a DMA transfer on this
                    // function, or `register_dma_msi`, whose `D: DmaDriver` is the promise
                    // that every DMA it starts stays inside its `DmaBuffer`s (the driver just
                    // claimed the function's registers in `probe`).
                    #[allow(unsafe_code)]
                    let r = unsafe { hal::pci::enable_msi(bdf, v) };
                    r.map(|()| alloc::format!("MSI vector {v:#x}"))
                })
            } else {
                pci::attach_intx(bdf, dev).map(|irq| alloc::format!("INTx, IRQ {irq}"))
            };
            match how {
                Ok(how) => *dev.irq_how.lock() = how,
                Err(e) => hal::println!("{}: {res}: no interrupt: {e}; the device will not interrupt", D::NAME),
            }
        }
        _ => {}
    }
    dev.driver.start();
    DEVICES.lock().push(dev);
    Ok(dev)
}

/// A registered device as the device table (`devices` at the kernel console) shows it.
pub trait Registered: Sync {
    fn name(&self) -> &'static str;
    fn resource(&self) -> Resource;
    /// System-wide id of the bottom half's IO VCPU.
    fn vcpu_id(&self) -> u32;
    fn irqs(&self) -> u32;
    /// How its interrupt arrives (PCI: MSI or INTx).
    fn irq_how(&self) -> alloc::string::String;
}

impl<D: Driver> Registered for Device<D> {
    fn name(&self) -> &'static str {
        D::NAME
    }
    fn resource(&self) -> Resource {
        self.resource
    }
    fn vcpu_id(&self) -> u32 {
        self.vcpu_id
    }
    fn irqs(&self) -> u32 {
        self.irqs()
    }
    fn irq_how(&self) -> alloc::string::String {
        self.irq_how.lock().clone()
    }
}

static DEVICES: IrqLock<Vec<&'static dyn Registered>> = IrqLock::new(Vec::new());

/// The registered devices, in registration order.
pub fn devices() -> Vec<&'static dyn Registered> {
    DEVICES.lock().clone()
}

/// `ktest drivers`: what `register` refuses, without touching hardware (a PCI function, an
/// IRQ beyond the ISA lines, a UART that is not the console's, ports that are no UART).
#[cfg(feature = "ktest")]
pub fn ktest() {
    // A UART that is not the console's (the console is COM2 in some Quest-V sandboxes).
    let i = hal::serial::COM_PORTS.iter().position(|&p| p != hal::serial::port()).unwrap_or(1);
    let (other, other_irq) = (hal::serial::COM_PORTS[i], hal::serial::COM_IRQS[i]);
    let cases: [(Resource, &str); 4] = [
        (Resource::Pci { bus: 0, device: 31, function: 7 }, "no such device"),
        (Resource::Isa { base: 0x3f8, len: 8, irq: 20 }, "ISA IRQs beyond 15: not supported yet"),
        (Resource::Isa { base: other, len: 8, irq: other_irq }, "a UART other than the console's: not supported yet"),
        (Resource::Isa { base: 0x60, len: 5, irq: 1 }, "not a device of this driver"),
    ];
    let mut ok = true;
    for (res, want) in cases {
        let got = match register::<serial::Serial>(res) {
            Ok(_) => alloc::string::String::from("registered"),
            Err(e) => alloc::format!("{e}"),
        };
        let pass = got == want;
        ok &= pass;
        hal::println!("drivers: {res}: {got}{}", if pass { "" } else { " (WRONG)" });
    }
    hal::println!("drivers: {} registered device(s); probe checks {}", devices().len(), if ok { "passed" } else { "FAILED" });
}

/// What a descriptor on a device does.
pub trait DeviceFile: Sync {
    /// Reads at most `max` bytes, blocking until there are some; `Err(EINTR)` once `stop()`
    /// holds (checked before blocking and after every wake-up).
    fn read(&self, max: usize, stop: &dyn Fn() -> bool) -> Result<Vec<u8>, Errno>;
    /// Writes `data`; returns how much was written.
    fn write(&self, data: &[u8]) -> Result<usize, Errno>;
    /// Whether a read would find input now (poll/select).
    fn readable(&self) -> bool {
        true
    }
}

/// The device file behind the console's descriptors (set by the console's driver).
static CONSOLE: IrqLock<Option<&'static dyn DeviceFile>> = IrqLock::new(None);

/// Makes `dev` the console (descriptors 0, 1 and 2 of every process).
pub fn set_console(dev: &'static dyn DeviceFile) {
    *CONSOLE.lock() = Some(dev);
}

/// The console's device file, once a driver has registered one.
pub fn console() -> Option<&'static dyn DeviceFile> {
    *CONSOLE.lock()
}
