//! Standard USB descriptors (USB 2.0 section 9.6, hub: 11.23.2.1), parsed from the bytes a
//! device returned. Every function here takes arbitrary bytes and returns a [`DescError`]
//! naming the problem rather than panicking or reading past the end.
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::{DT_CONFIGURATION, DT_DEVICE, DT_ENDPOINT, DT_HUB, DT_INTERFACE, DT_STRING};

/// Why a descriptor was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescError {
    /// Fewer bytes than the descriptor needs (what was being read).
    Short(&'static str),
    /// bDescriptorType is not the one asked for (expected, found).
    WrongType { expected: u8, found: u8 },
    /// bLength is smaller than the descriptor's fixed part, or runs past the data (what).
    BadLength(&'static str),
    /// A field holds a value the specification forbids (which).
    BadField(&'static str),
    /// More of something than the descriptor claims or the parser accepts (what).
    TooMany(&'static str),
}

impl fmt::Display for DescError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DescError::Short(what) => write!(f, "{what}: too short"),
            DescError::WrongType { expected, found } => write!(f, "descriptor type {found:#04x} where {expected:#04x} was expected"),
            DescError::BadLength(what) => write!(f, "{what}: bad bLength"),
            DescError::BadField(what) => write!(f, "bad {what}"),
            DescError::TooMany(what) => write!(f, "too many {what}"),
        }
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Checks a descriptor's header: at least `min` bytes of `kind`, bLength within `b`.
fn header(b: &[u8], kind: u8, min: usize, what: &'static str) -> Result<usize, DescError> {
    if b.len() < 2 {
        return Err(DescError::Short(what));
    }
    let len = usize::from(b[0]);
    if b[1] != kind {
        return Err(DescError::WrongType { expected: kind, found: b[1] });
    }
    if len < min {
        return Err(DescError::BadLength(what));
    }
    if len > b.len() {
        return Err(DescError::Short(what));
    }
    Ok(len)
}

/// The device descriptor (18 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceDescriptor {
    pub usb_version: u16,
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
    /// bMaxPacketSize0 as sent (for SuperSpeed an exponent: see [`DeviceDescriptor::ep0_max_packet`]).
    pub max_packet0: u8,
    pub vendor: u16,
    pub product: u16,
    pub device_version: u16,
    pub manufacturer_index: u8,
    pub product_index: u8,
    pub serial_index: u8,
    pub configurations: u8,
}

/// The other speed's EP0 packet size from a device qualifier (USB 2.0 9.6.2: 10 bytes).
pub fn qualifier_max_packet0(b: &[u8]) -> Result<u8, DescError> {
    header(b, crate::DT_DEVICE_QUALIFIER, 10, "device qualifier")?;
    match b[7] {
        m @ (8 | 16 | 32 | 64) => Ok(m),
        _ => Err(DescError::BadField("device qualifier bMaxPacketSize0")),
    }
}

/// bMaxPacketSize0 from the first 8 bytes of a device descriptor (what is read before the
/// endpoint's real packet size is known).
pub fn max_packet0_prefix(b: &[u8]) -> Result<u8, DescError> {
    if b.len() < 8 {
        return Err(DescError::Short("device descriptor prefix"));
    }
    if b[1] != DT_DEVICE {
        return Err(DescError::WrongType { expected: DT_DEVICE, found: b[1] });
    }
    if b[0] < 18 {
        return Err(DescError::BadLength("device descriptor"));
    }
    Ok(b[7])
}

impl DeviceDescriptor {
    pub fn parse(b: &[u8]) -> Result<DeviceDescriptor, DescError> {
        header(b, DT_DEVICE, 18, "device descriptor")?;
        let d = DeviceDescriptor {
            usb_version: le16(b, 2),
            class: b[4],
            subclass: b[5],
            protocol: b[6],
            max_packet0: b[7],
            vendor: le16(b, 8),
            product: le16(b, 10),
            device_version: le16(b, 12),
            manufacturer_index: b[14],
            product_index: b[15],
            serial_index: b[16],
            configurations: b[17],
        };
        d.ep0_max_packet()?;
        if d.configurations == 0 {
            return Err(DescError::BadField("bNumConfigurations (0)"));
        }
        Ok(d)
    }

    /// EP0's maximum packet size in bytes: 8, 16, 32 or 64 before USB 3, 2^n (n = 9) from it.
    pub fn ep0_max_packet(&self) -> Result<u16, DescError> {
        ep0_max_packet(self.usb_version, self.max_packet0)
    }
}

/// EP0's packet size from bcdUSB and bMaxPacketSize0.
pub fn ep0_max_packet(usb_version: u16, raw: u8) -> Result<u16, DescError> {
    if usb_version >= 0x0300 {
        return if raw == 9 { Ok(512) } else { Err(DescError::BadField("bMaxPacketSize0 (SuperSpeed needs 9)")) };
    }
    match raw {
        8 | 16 | 32 | 64 => Ok(u16::from(raw)),
        _ => Err(DescError::BadField("bMaxPacketSize0 (not 8, 16, 32 or 64)")),
    }
}

/// An endpoint descriptor (7 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// bEndpointAddress: number in bits 0–3, direction (1 = IN) in bit 7.
    pub address: u8,
    /// bmAttributes: transfer type in bits 0–1 (0 control, 1 isochronous, 2 bulk, 3 interrupt).
    pub attributes: u8,
    pub max_packet: u16,
    pub interval: u8,
}

impl Endpoint {
    pub fn number(&self) -> u8 {
        self.address & 0x0f
    }
    pub fn is_in(&self) -> bool {
        self.address & 0x80 != 0
    }
    pub fn kind(&self) -> &'static str {
        match self.attributes & 3 {
            0 => "control",
            1 => "isochronous",
            2 => "bulk",
            _ => "interrupt",
        }
    }
    /// xHCI Device Context Index of this endpoint (2 × number + direction; 1..=31).
    pub fn dci(&self) -> u8 {
        2 * self.number() + u8::from(self.is_in())
    }
}

/// An interface (one alternate setting) and its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub number: u8,
    pub alternate: u8,
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
    pub name_index: u8,
    pub endpoints: Vec<Endpoint>,
}

/// A configuration descriptor with everything `wTotalLength` covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configuration {
    pub total_length: u16,
    pub value: u8,
    pub name_index: u8,
    pub attributes: u8,
    /// bMaxPower in 2 mA units (8 mA for SuperSpeed).
    pub max_power: u8,
    pub interfaces: Vec<Interface>,
}

/// Interfaces and endpoints accepted in one configuration (more is refused as hostile).
pub const MAX_INTERFACES: usize = 32;

/// wTotalLength from a configuration descriptor's first 9 bytes.
pub fn config_total_length(b: &[u8]) -> Result<u16, DescError> {
    if b.len() < 9 {
        return Err(DescError::Short("configuration descriptor"));
    }
    if b[1] != DT_CONFIGURATION {
        return Err(DescError::WrongType { expected: DT_CONFIGURATION, found: b[1] });
    }
    if b[0] < 9 {
        return Err(DescError::BadLength("configuration descriptor"));
    }
    let total = le16(b, 2);
    if usize::from(total) < 9 {
        return Err(DescError::BadField("wTotalLength (below 9)"));
    }
    Ok(total)
}

impl Configuration {
    /// Parses the whole configuration (`b` holds at least wTotalLength bytes; more is ignored).
    /// Class-specific descriptors (HID, CDC functional, SuperSpeed companions) are skipped;
    /// every endpoint must follow an interface, and an interface holds exactly the number of
    /// endpoints its bNumEndpoints says.
    pub fn parse(b: &[u8]) -> Result<Configuration, DescError> {
        let total = config_total_length(b)?;
        let total_us = usize::from(total);
        if b.len() < total_us {
            return Err(DescError::Short("configuration (wTotalLength beyond the data)"));
        }
        let b = &b[..total_us];
        let head = header(b, DT_CONFIGURATION, 9, "configuration descriptor")?;
        let mut c = Configuration {
            total_length: total,
            value: b[5],
            name_index: b[6],
            attributes: b[7],
            max_power: b[8],
            interfaces: Vec::new(),
        };
        let declared = b[4];
        let mut expected_eps = 0usize;
        let mut at = head;
        while at < b.len() {
            let rest = &b[at..];
            if rest.len() < 2 {
                return Err(DescError::Short("descriptor header"));
            }
            let len = usize::from(rest[0]);
            if len < 2 || len > rest.len() {
                return Err(DescError::BadLength("descriptor inside the configuration"));
            }
            let d = &rest[..len];
            match d[1] {
                DT_INTERFACE => {
                    if expected_eps != 0 {
                        return Err(DescError::BadField("bNumEndpoints (fewer endpoint descriptors follow)"));
                    }
                    header(d, DT_INTERFACE, 9, "interface descriptor")?;
                    if c.interfaces.len() >= MAX_INTERFACES {
                        return Err(DescError::TooMany("interfaces"));
                    }
                    if d[4] > 30 {
                        return Err(DescError::BadField("bNumEndpoints (above 30)"));
                    }
                    expected_eps = usize::from(d[4]);
                    c.interfaces.push(Interface {
                        number: d[2],
                        alternate: d[3],
                        class: d[5],
                        subclass: d[6],
                        protocol: d[7],
                        name_index: d[8],
                        endpoints: Vec::new(),
                    });
                }
                DT_ENDPOINT => {
                    header(d, DT_ENDPOINT, 7, "endpoint descriptor")?;
                    let Some(iface) = c.interfaces.last_mut() else {
                        return Err(DescError::BadField("endpoint descriptor before any interface"));
                    };
                    if expected_eps == 0 {
                        return Err(DescError::TooMany("endpoint descriptors for bNumEndpoints"));
                    }
                    let ep = Endpoint { address: d[2], attributes: d[3], max_packet: le16(d, 4), interval: d[6] };
                    if ep.number() == 0 || ep.address & 0x70 != 0 {
                        return Err(DescError::BadField("bEndpointAddress"));
                    }
                    expected_eps -= 1;
                    iface.endpoints.push(ep);
                }
                DT_DEVICE | DT_CONFIGURATION => {
                    return Err(DescError::BadField("device or configuration descriptor inside a configuration"));
                }
                _ => {} // class-specific or companion: skipped
            }
            at += len;
        }
        if expected_eps != 0 {
            return Err(DescError::BadField("bNumEndpoints (fewer endpoint descriptors follow)"));
        }
        // bNumInterfaces counts interfaces, not alternate settings.
        let distinct = c.interfaces.iter().filter(|i| i.alternate == 0).count();
        if distinct != usize::from(declared) {
            return Err(DescError::BadField("bNumInterfaces (does not match the interface descriptors)"));
        }
        Ok(c)
    }
}

/// Language ids from string descriptor 0.
pub fn lang_ids(b: &[u8]) -> Result<Vec<u16>, DescError> {
    let len = header(b, DT_STRING, 2, "string descriptor 0")?;
    if len % 2 != 0 {
        return Err(DescError::BadLength("string descriptor 0 (odd)"));
    }
    let ids: Vec<u16> = b[2..len].chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])).collect();
    if ids.is_empty() {
        return Err(DescError::BadField("string descriptor 0 (no language)"));
    }
    Ok(ids)
}

/// A string descriptor's text (UTF-16LE; unpaired surrogates become U+FFFD, control
/// characters `?` so a device cannot drive a terminal through `lsusb`).
pub fn string(b: &[u8]) -> Result<String, DescError> {
    let len = header(b, DT_STRING, 2, "string descriptor")?;
    if len % 2 != 0 {
        return Err(DescError::BadLength("string descriptor (odd)"));
    }
    let units = b[2..len].chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]]));
    Ok(char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .map(|c| if c.is_control() { '?' } else { c })
        .collect())
}

/// The hub descriptor (USB 2.0 section 11.23.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubDescriptor {
    pub ports: u8,
    pub characteristics: u16,
    /// Time from power-on to power-good, in 2 ms units.
    pub power_on_to_good: u8,
}

impl HubDescriptor {
    pub fn parse(b: &[u8]) -> Result<HubDescriptor, DescError> {
        header(b, DT_HUB, 7, "hub descriptor")?;
        let ports = b[2];
        if ports == 0 || ports > 15 {
            // xHCI route strings carry ports 1..=15 per tier.
            return Err(DescError::BadField("bNbrPorts (not 1..=15)"));
        }
        // DeviceRemovable and PortPwrCtrlMask: one bit per port plus one, each rounded to bytes.
        let bitmap = (usize::from(ports) + 1).div_ceil(8);
        if usize::from(b[0]) < 7 + bitmap {
            return Err(DescError::BadLength("hub descriptor (port bitmaps)"));
        }
        Ok(HubDescriptor { ports, characteristics: le16(b, 3), power_on_to_good: b[5] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use proptest::prelude::*;

    /// QEMU's usb-kbd, as it answers (device and configuration descriptors).
    pub const KBD_DEVICE: [u8; 18] = [18, 1, 0x00, 0x02, 0, 0, 0, 8, 0x27, 0x06, 0x01, 0x00, 0x00, 0x00, 1, 4, 11, 1];
    pub const KBD_CONFIG: [u8; 34] = [
        9, 2, 34, 0, 1, 1, 7, 0xa0, 50, // configuration
        9, 4, 0, 0, 1, 3, 1, 1, 0, // interface: HID, boot, keyboard
        9, 0x21, 0x11, 0x01, 0, 1, 0x22, 63, 0, // HID descriptor (skipped)
        7, 5, 0x81, 3, 8, 0, 7, // endpoint 1 IN, interrupt, 8 bytes
    ];

    #[test]
    fn a_keyboard_parses() {
        let d = DeviceDescriptor::parse(&KBD_DEVICE).unwrap();
        assert_eq!((d.vendor, d.product, d.usb_version), (0x0627, 0x0001, 0x0200));
        assert_eq!(d.ep0_max_packet(), Ok(8));
        assert_eq!((d.product_index, d.configurations), (4, 1));
        assert_eq!(max_packet0_prefix(&KBD_DEVICE[..8]), Ok(8));
        assert_eq!(config_total_length(&KBD_CONFIG[..9]), Ok(34));
        let c = Configuration::parse(&KBD_CONFIG).unwrap();
        assert_eq!((c.value, c.max_power), (1, 50));
        assert_eq!(c.interfaces.len(), 1);
        let i = &c.interfaces[0];
        assert_eq!((i.class, i.subclass, i.protocol), (3, 1, 1));
        assert_eq!(i.endpoints, vec![Endpoint { address: 0x81, attributes: 3, max_packet: 8, interval: 7 }]);
        assert_eq!((i.endpoints[0].dci(), i.endpoints[0].kind()), (3, "interrupt"));
    }

    #[test]
    fn malformed_descriptors_are_refused_by_name() {
        let mut d = KBD_DEVICE;
        d[7] = 7;
        assert_eq!(DeviceDescriptor::parse(&d), Err(DescError::BadField("bMaxPacketSize0 (not 8, 16, 32 or 64)")));
        let mut d = KBD_DEVICE;
        d[1] = 2;
        assert_eq!(DeviceDescriptor::parse(&d), Err(DescError::WrongType { expected: 1, found: 2 }));
        assert_eq!(DeviceDescriptor::parse(&KBD_DEVICE[..17]), Err(DescError::Short("device descriptor")));
        let mut d = KBD_DEVICE;
        d[17] = 0;
        assert!(DeviceDescriptor::parse(&d).is_err());
        // SuperSpeed: bMaxPacketSize0 is an exponent.
        let mut d = KBD_DEVICE;
        d[3] = 3;
        d[7] = 9;
        assert_eq!(DeviceDescriptor::parse(&d).unwrap().ep0_max_packet(), Ok(512));

        // wTotalLength beyond the data, an endpoint missing, an extra endpoint, a zero length.
        assert!(matches!(Configuration::parse(&KBD_CONFIG[..33]), Err(DescError::Short(_))));
        let mut c = KBD_CONFIG;
        c[13] = 2;
        assert!(Configuration::parse(&c).unwrap_err().to_string().contains("bNumEndpoints"));
        let mut c = KBD_CONFIG;
        c[13] = 0;
        assert_eq!(Configuration::parse(&c), Err(DescError::TooMany("endpoint descriptors for bNumEndpoints")));
        let mut c = KBD_CONFIG;
        c[18] = 0;
        assert_eq!(Configuration::parse(&c), Err(DescError::BadLength("descriptor inside the configuration")));
        let mut c = KBD_CONFIG;
        c[4] = 2;
        assert!(Configuration::parse(&c).unwrap_err().to_string().contains("bNumInterfaces"));
        let mut c = KBD_CONFIG;
        c[29] = 0x80; // endpoint 0 IN
        assert_eq!(Configuration::parse(&c), Err(DescError::BadField("bEndpointAddress")));
    }

    #[test]
    fn strings_and_languages() {
        assert_eq!(lang_ids(&[4, 3, 0x09, 0x04]), Ok(vec![0x0409]));
        assert!(lang_ids(&[2, 3]).is_err());
        let s = [12, 3, b'Q', 0, b'E', 0, b'M', 0, b'U', 0, 0x1b, 0];
        assert_eq!(string(&s).unwrap(), "QEMU?");
        assert_eq!(string(&[6, 3, 0x00, 0xd8, b'x', 0]).unwrap(), "\u{fffd}x");
        assert_eq!(string(&[5, 3, b'a', 0, 0]), Err(DescError::BadLength("string descriptor (odd)")));
        assert_eq!(string(&[8, 3, b'a', 0]), Err(DescError::Short("string descriptor")));
    }

    #[test]
    fn device_qualifier() {
        // QEMU's usb-storage at full speed: its high-speed EP0 takes 64 bytes.
        assert_eq!(qualifier_max_packet0(&[10, 6, 0, 2, 0, 0, 0, 64, 1, 0]), Ok(64));
        assert_eq!(qualifier_max_packet0(&[10, 6, 0, 2, 0, 0, 0, 7, 1, 0]), Err(DescError::BadField("device qualifier bMaxPacketSize0")));
        assert_eq!(qualifier_max_packet0(&[9, 6, 0, 2, 0, 0, 0, 64, 1]), Err(DescError::BadLength("device qualifier")));
        assert_eq!(qualifier_max_packet0(&[10, 6, 0, 2]), Err(DescError::Short("device qualifier")));
        assert!(qualifier_max_packet0(&[10, 1, 0, 2, 0, 0, 0, 64, 1, 0]).is_err());
    }

    #[test]
    fn hub_descriptor() {
        // QEMU's usb-hub: 8 ports.
        let h = HubDescriptor::parse(&[9, 0x29, 8, 0x0a, 0, 1, 0, 0, 0xff]).unwrap();
        assert_eq!(h.ports, 8);
        assert!(HubDescriptor::parse(&[8, 0x29, 8, 0, 0, 1, 0, 0]).is_err());
        assert!(HubDescriptor::parse(&[9, 0x29, 0, 0, 0, 1, 0, 0, 0]).is_err());
        assert!(HubDescriptor::parse(&[9, 0x29, 16, 0, 0, 1, 0, 0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = DeviceDescriptor::parse(&b);
            let _ = max_packet0_prefix(&b);
            let _ = config_total_length(&b);
            if let Ok(c) = Configuration::parse(&b) {
                prop_assert!(c.interfaces.len() <= MAX_INTERFACES);
                prop_assert!(usize::from(c.total_length) <= b.len());
            }
            let _ = lang_ids(&b);
            let _ = string(&b);
            let _ = HubDescriptor::parse(&b);
            if let Ok(m) = qualifier_max_packet0(&b) {
                prop_assert!(matches!(m, 8 | 16 | 32 | 64));
            }
        }

        /// A valid configuration with any one byte changed either parses (to something whose
        /// endpoint counts match) or is refused; never a panic.
        #[test]
        fn mutated_configurations(at in 0usize..34, v in any::<u8>()) {
            let mut c = KBD_CONFIG;
            c[at] = v;
            if let Ok(p) = Configuration::parse(&c) {
                for i in &p.interfaces {
                    prop_assert!(i.endpoints.len() <= 30);
                    for e in &i.endpoints {
                        prop_assert!((2..=31).contains(&e.dci()));
                    }
                }
            }
        }
    }
}
