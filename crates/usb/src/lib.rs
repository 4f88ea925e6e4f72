//! USB logic without hardware, for the kernel's USB drivers (`kernel/src/drivers/usb/`):
//!
//! - [`desc`]: the standard descriptors a device returns (device, configuration with its
//!   interfaces and endpoints, string, hub). A device is outside input: every parser returns
//!   an error naming the problem for malformed bytes and never panics (proptest here, and the
//!   `usb_descriptors` fuzz target in `crates/fuzz-targets`).
//! - [`hid`]: boot-protocol keyboard reports turned into the bytes a terminal sends.
//! - [`Setup`]: the 8-byte control request (GET_DESCRIPTOR, SET_CONFIGURATION, ...).
//! - [`ehci`]: EHCI queue heads, qTDs and their tokens, port status bits.
//! - [`ftdi`]: FTDI serial adapters: line set-up requests, the status bytes of bulk IN data.
//! - [`msc`]: mass storage, bulk-only transport and the SCSI commands a read-only stick needs.
//! - [`xhci`]: the xHCI Transfer Request Block layouts, input-context fields, port status bits
//!   and the producer/consumer arithmetic of the command, transfer and event rings.
//!
//! Written by hand, not with the `xhci` crate (rust-osdev): that crate's register types reach
//! the controller through raw pointers from a `Mapper`, which the kernel (no `unsafe`) cannot
//! use and which would bypass hal's bounds-checked `hal::pci::Mmio` claim; its TRB and context
//! types are sound data types, but the driver needs only about a dozen TRB and context fields,
//! and the ring arithmetic (the part worth testing) is not in the crate. Layouts follow the
//! xHCI specification 1.2 (sections 4.9, 6.2, 6.4, 5.4.8) and USB 2.0 chapter 9, and were
//! checked against QEMU's `qemu-xhci`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod desc;
pub mod ehci;
pub mod ftdi;
pub mod hid;
pub mod msc;
pub mod xhci;

pub use desc::{Configuration, DescError, DeviceDescriptor, Endpoint, HubDescriptor, Interface};

/// Descriptor types (USB 2.0 table 9-5, hub: 11-13).
pub const DT_DEVICE: u8 = 1;
pub const DT_CONFIGURATION: u8 = 2;
pub const DT_STRING: u8 = 3;
pub const DT_INTERFACE: u8 = 4;
pub const DT_ENDPOINT: u8 = 5;
pub const DT_DEVICE_QUALIFIER: u8 = 6;
pub const DT_HUB: u8 = 0x29;

/// Standard requests (USB 2.0 table 9-4).
pub const REQ_GET_STATUS: u8 = 0;
pub const REQ_CLEAR_FEATURE: u8 = 1;
pub const REQ_SET_FEATURE: u8 = 3;
pub const REQ_GET_DESCRIPTOR: u8 = 6;
pub const REQ_SET_CONFIGURATION: u8 = 9;

/// A control transfer's setup packet (USB 2.0 section 9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
}

impl Setup {
    /// GET_DESCRIPTOR of `kind` number `index` (language `lang` for strings), `length` bytes.
    pub fn get_descriptor(kind: u8, index: u8, lang: u16, length: u16) -> Setup {
        Setup { request_type: 0x80, request: REQ_GET_DESCRIPTOR, value: u16::from(kind) << 8 | u16::from(index), index: lang, length }
    }

    /// The hub class's GET_DESCRIPTOR (a class request to the device).
    pub fn get_hub_descriptor(length: u16) -> Setup {
        Setup { request_type: 0xa0, request: REQ_GET_DESCRIPTOR, value: u16::from(DT_HUB) << 8, index: 0, length }
    }

    /// SET_CONFIGURATION to `value` (bConfigurationValue).
    pub fn set_configuration(value: u8) -> Setup {
        Setup { request_type: 0, request: REQ_SET_CONFIGURATION, value: u16::from(value), index: 0, length: 0 }
    }

    /// A HID class request to interface `iface` (SET_IDLE 0x0a, SET_PROTOCOL 0x0b).
    pub fn hid(request: u8, value: u16, iface: u8) -> Setup {
        Setup { request_type: 0x21, request, value, index: u16::from(iface), length: 0 }
    }

    /// Whether data moves device-to-host.
    pub fn is_in(&self) -> bool {
        self.request_type & 0x80 != 0
    }

    /// The 8 bytes as the little-endian u64 an xHCI Setup Stage TRB carries immediately.
    pub fn to_u64(&self) -> u64 {
        u64::from(self.request_type)
            | u64::from(self.request) << 8
            | u64::from(self.value) << 16
            | u64::from(self.index) << 32
            | u64::from(self.length) << 48
    }
}

/// The name of a (base) class code (usb.org "Defined Class Codes").
pub fn class_name(class: u8) -> &'static str {
    match class {
        0x00 => "defined at interface level",
        0x01 => "Audio",
        0x02 => "Communications",
        0x03 => "Human Interface Device",
        0x05 => "Physical",
        0x06 => "Image",
        0x07 => "Printer",
        0x08 => "Mass Storage",
        0x09 => "Hub",
        0x0a => "CDC Data",
        0x0b => "Smart Card",
        0x0e => "Video",
        0xe0 => "Wireless",
        0xef => "Miscellaneous",
        0xfe => "Application Specific",
        0xff => "Vendor Specific",
        _ => "Unknown class",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_packets_encode_as_the_spec_says() {
        // GET_DESCRIPTOR(DEVICE) for 18 bytes: 80 06 00 01 00 00 12 00.
        let s = Setup::get_descriptor(DT_DEVICE, 0, 0, 18);
        assert_eq!(s.to_u64().to_le_bytes(), [0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00]);
        assert!(s.is_in());
        // String 2 in US English, 255 bytes: 80 06 02 03 09 04 ff 00.
        let s = Setup::get_descriptor(DT_STRING, 2, 0x0409, 255);
        assert_eq!(s.to_u64().to_le_bytes(), [0x80, 0x06, 0x02, 0x03, 0x09, 0x04, 0xff, 0x00]);
        let s = Setup::set_configuration(1);
        assert_eq!(s.to_u64().to_le_bytes(), [0x00, 0x09, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00]);
        assert!(!s.is_in());
        assert_eq!(Setup::get_hub_descriptor(9).to_u64().to_le_bytes(), [0xa0, 0x06, 0x00, 0x29, 0, 0, 9, 0]);
    }

    #[test]
    fn class_names() {
        assert_eq!(class_name(3), "Human Interface Device");
        assert_eq!(class_name(8), "Mass Storage");
        assert_eq!(class_name(0x42), "Unknown class");
    }
}
