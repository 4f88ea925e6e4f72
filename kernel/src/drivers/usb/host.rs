//! What the host controller drivers (xHCI, EHCI) share: a device's default control pipe as a
//! trait ([`Control`]), the description and configuration of a newly addressed device through
//! it ([`describe`]), and the bulk pipe pair the mass-storage protocol runs over
//! ([`Bulk`], used by `storage::Msc`).
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hal::sync::IrqLock;
use usb::desc;
use usb::{Configuration, DeviceDescriptor, Setup};

/// A value for one user at a time, who may block while using it (a transfer waiting for its
/// interrupt): a semaphore admits the user, who takes the value out of its slot and puts it
/// back when done, so no spinning lock (interrupts off) is held across the wait.
pub(super) struct Gate<T> {
    turn: crate::sync::Semaphore,
    slot: IrqLock<Option<T>>,
}

impl<T> Gate<T> {
    pub(super) fn new(v: T) -> Gate<T> {
        Gate { turn: crate::sync::Semaphore::new(1), slot: IrqLock::new(Some(v)) }
    }
    /// Runs `f` on the value (None only if an earlier user never put it back, which `with`
    /// itself always does).
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.turn.down();
        let taken = self.slot.lock().take();
        let r = taken.map(|mut v| {
            let r = f(&mut v);
            *self.slot.lock() = Some(v);
            r
        });
        self.turn.up();
        r
    }
}

/// A device's EP0 on some controller.
pub(super) trait Control {
    /// A control transfer; returns the data stage's `setup.length` bytes (what the device did
    /// not send reads as zero).
    fn control(&mut self, setup: Setup) -> Result<Vec<u8>, String>;
    /// Largest data stage the controller's bounce buffer takes.
    fn max_data(&self) -> usize;
}

/// A device's bulk IN and OUT endpoints on some controller.
pub(super) trait Bulk {
    /// Moves `data.len()` bytes out (`dir_in` false) or in; returns the bytes moved (a short
    /// packet ends an IN transfer early).
    fn bulk(&mut self, dir_in: bool, data: &mut [u8]) -> Result<usize, String>;
    /// Largest transfer one call takes.
    fn max_transfer(&self) -> usize;
}

/// What a device says about itself.
pub(super) struct Described {
    pub dd: DeviceDescriptor,
    pub config: Configuration,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub serial: Option<String>,
    /// The device qualifier (USB 2.0 9.6.2): the other speed's packet size for EP0, or None
    /// if the device refused it (a full-speed-only device must, with a STALL).
    pub qualifier: Option<u8>,
}

/// Reads the device descriptor, the first configuration (all of it), the language ids and the
/// manufacturer, product and serial-number strings, and sets the configuration. Every answer is parsed by
/// `crates/usb` (fuzzed); a malformed one is refused with its name.
pub(super) fn describe(c: &mut dyn Control) -> Result<Described, String> {
    let b = c.control(Setup::get_descriptor(usb::DT_DEVICE, 0, 0, 18))?;
    let dd = DeviceDescriptor::parse(&b).map_err(|e| format!("device descriptor: {e}"))?;
    // USB 2.0 devices answer for their other speed, or (full-speed only) refuse with a STALL,
    // which the controller's driver recovers from; a malformed answer refuses the device.
    let qualifier = if dd.usb_version >= 0x0200 {
        match c.control(Setup::get_descriptor(usb::DT_DEVICE_QUALIFIER, 0, 0, 10)) {
            Ok(b) => Some(desc::qualifier_max_packet0(&b).map_err(|e| format!("device qualifier: {e}"))?),
            Err(e) if e.contains(": stall") => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let b = c.control(Setup::get_descriptor(usb::DT_CONFIGURATION, 0, 0, 9))?;
    let total = desc::config_total_length(&b).map_err(|e| format!("configuration descriptor: {e}"))?;
    if usize::from(total) > c.max_data() {
        return Err(format!("configuration of {total} bytes: larger than {} bytes is not supported yet", c.max_data()));
    }
    let b = c.control(Setup::get_descriptor(usb::DT_CONFIGURATION, 0, 0, total))?;
    let config = Configuration::parse(&b).map_err(|e| format!("configuration descriptor: {e}"))?;
    let (mut manufacturer, mut product, mut serial) = (None, None, None);
    if dd.manufacturer_index != 0 || dd.product_index != 0 || dd.serial_index != 0 {
        let b = c.control(Setup::get_descriptor(usb::DT_STRING, 0, 0, 255))?;
        let lang = desc::lang_ids(&b).map_err(|e| format!("string descriptor 0: {e}"))?[0];
        let mut text = |i: u8| -> Result<Option<String>, String> {
            if i == 0 {
                return Ok(None);
            }
            let b = c.control(Setup::get_descriptor(usb::DT_STRING, i, lang, 255))?;
            desc::string(&b).map(Some).map_err(|e| format!("string descriptor {i}: {e}"))
        };
        manufacturer = text(dd.manufacturer_index)?;
        product = text(dd.product_index)?;
        serial = text(dd.serial_index)?;
    }
    c.control(Setup::set_configuration(config.value))?;
    Ok(Described { dd, config, manufacturer, product, serial, qualifier })
}
