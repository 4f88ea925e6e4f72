//! FTDI FT232-style USB serial adapters (QEMU's `usb-serial`, vendor 0403 product 6001): the
//! vendor requests that set the line up, and the framing of the bulk IN data — every packet
//! the adapter sends (up to the endpoint's max packet size) starts with two status bytes
//! (modem status, line status) before its data bytes.
use alloc::vec::Vec;

pub const VENDOR: u16 = 0x0403;
pub const PRODUCT_FT232: u16 = 0x6001;

/// Vendor requests (host to device).
pub const REQ_RESET: u8 = 0;
pub const REQ_SET_MODEM_CTRL: u8 = 1;
pub const REQ_SET_FLOW_CTRL: u8 = 2;
pub const REQ_SET_BAUD: u8 = 3;
pub const REQ_SET_DATA: u8 = 4;

/// Line status bits of the second status byte: overrun, parity, framing error, break.
pub const LINE_ERRORS: u8 = 0x1e;

/// The baud-rate divisor encoding (value, index) for `baud` on the FT232's 3 MHz base clock
/// with eighths, or None if `baud` is out of range (183 – 3 000 000).
pub fn baud_divisor(baud: u32) -> Option<(u16, u16)> {
    if !(183..=3_000_000).contains(&baud) {
        return None;
    }
    // Divisor in eighths of the 3 MHz clock, rounded.
    let eighths = (24_000_000 + baud / 2) / baud;
    let (int, frac) = (eighths / 8, eighths % 8);
    // Fraction code for 0, 1/8, 2/8 .. 7/8 (FT232 application note AN232B-05).
    const CODE: [u32; 8] = [0, 3, 2, 4, 1, 5, 6, 7];
    // Divisors below 2 are special: 0 means 3 MBd, 1 means 2 MBd.
    let (int, code) = match (int, frac) {
        (0, _) | (1, 0..=1) => (0, 0),
        (1, _) => (1, 0),
        _ => (int, CODE[frac as usize]),
    };
    let v = int | (code & 3) << 14;
    Some((v as u16, (code >> 2) as u16))
}

/// The data bytes of a bulk IN transfer `raw`, made of packets of `max_packet` bytes (the last
/// may be short) each led by two status bytes; also whether any packet reported a line error.
/// A trailing fragment shorter than the header carries no data.
pub fn strip_status(raw: &[u8], max_packet: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(raw.len());
    let mut errors = false;
    if max_packet <= 2 {
        return (out, false);
    }
    for p in raw.chunks(max_packet) {
        if p.len() >= 2 {
            errors |= p[1] & LINE_ERRORS != 0;
            out.extend_from_slice(&p[2..]);
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn status_bytes_are_dropped_per_packet() {
        let mut raw = alloc::vec![0x31, 0x60];
        raw.extend(0..62u8);
        raw.extend([0x31, 0x60, 100, 101, 102]);
        let (d, e) = strip_status(&raw, 64);
        let mut want: Vec<u8> = (0..62).collect();
        want.extend([100, 101, 102]);
        assert_eq!(d, want);
        assert!(!e);
        assert_eq!(strip_status(&[0x31, 0x60], 64), (alloc::vec![], false));
        assert_eq!(strip_status(&[0x31, 0x02, 7], 64), (alloc::vec![7], true));
        assert_eq!(strip_status(&[0x31], 64).0.len(), 0);
    }

    #[test]
    fn baud_divisors() {
        // 115200: 3 MHz / 26.04 -> 26, fraction 0 (AN232B-05's example table).
        assert_eq!(baud_divisor(115_200), Some((26, 0)));
        assert_eq!(baud_divisor(9600), Some((0x4138, 0)));
        assert_eq!(baud_divisor(3_000_000), Some((0, 0)));
        assert_eq!(baud_divisor(2_000_000), Some((1, 0)));
        assert_eq!(baud_divisor(10), None);
    }

    proptest! {
        #[test]
        fn strip_never_grows(raw in proptest::collection::vec(any::<u8>(), 0..600), mp in 0usize..600) {
            let (d, _) = strip_status(&raw, mp);
            prop_assert!(d.len() <= raw.len());
        }
    }
}
