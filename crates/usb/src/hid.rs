//! HID boot-protocol keyboards (HID 1.11 appendix B): the 8-byte input report (modifiers,
//! reserved, up to six usage ids of keys held) turned into the bytes a terminal would send
//! for each key newly pressed (US layout). Keys without a byte (function keys, arrows) are
//! dropped; the error roll-over report (all usage ids 1) changes nothing.
use alloc::vec::Vec;

const LEFT_CTRL: u8 = 0x01;
const LEFT_SHIFT: u8 = 0x02;
const RIGHT_CTRL: u8 = 0x10;
const RIGHT_SHIFT: u8 = 0x20;

/// The state between reports: the keys held in the last one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootKeyboard {
    held: [u8; 6],
}

impl BootKeyboard {
    pub fn new() -> BootKeyboard {
        BootKeyboard::default()
    }

    /// The bytes for the keys pressed in `report` that were not held in the previous one.
    /// A report shorter than 8 bytes is ignored (the state stays).
    pub fn report(&mut self, report: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let Some(r) = report.get(..8) else { return out };
        let keys = &r[2..8];
        if keys.iter().all(|&k| k == 1) {
            return out; // phantom state: too many keys
        }
        let shift = r[0] & (LEFT_SHIFT | RIGHT_SHIFT) != 0;
        let ctrl = r[0] & (LEFT_CTRL | RIGHT_CTRL) != 0;
        for &k in keys {
            if k < 4 || self.held.contains(&k) {
                continue;
            }
            if let Some(b) = byte(k, shift, ctrl) {
                out.push(b);
            }
        }
        self.held.copy_from_slice(keys);
        out
    }
}

/// The byte for usage id `k` (keyboard page), if it has one.
pub fn byte(k: u8, shift: bool, ctrl: bool) -> Option<u8> {
    let b = match k {
        0x04..=0x1d => {
            let c = b'a' + (k - 0x04);
            if ctrl {
                return Some(c - b'a' + 1);
            }
            if shift { c.to_ascii_uppercase() } else { c }
        }
        0x1e..=0x27 => {
            const PLAIN: &[u8; 10] = b"1234567890";
            const SHIFTED: &[u8; 10] = b"!@#$%^&*()";
            let i = usize::from(k - 0x1e);
            if shift { SHIFTED[i] } else { PLAIN[i] }
        }
        0x28 => b'\r',
        0x29 => 0x1b,
        0x2a => 0x7f,
        0x2b => b'\t',
        0x2c => b' ',
        0x2d..=0x38 => {
            const PLAIN: &[u8; 12] = b"-=[]\\\\;'`,./";
            const SHIFTED: &[u8; 12] = b"_+{}||:\"~<>?";
            let i = usize::from(k - 0x2d);
            if shift { SHIFTED[i] } else { PLAIN[i] }
        }
        _ => return None,
    };
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rep(m: u8, keys: &[u8]) -> [u8; 8] {
        let mut r = [0u8; 8];
        r[0] = m;
        r[2..2 + keys.len()].copy_from_slice(keys);
        r
    }

    #[test]
    fn typing_a_command() {
        let mut k = BootKeyboard::new();
        // h, release, e, e held with l (only l is new), release all, Enter.
        assert_eq!(k.report(&rep(0, &[0x0b])), b"h");
        assert_eq!(k.report(&rep(0, &[])), b"");
        assert_eq!(k.report(&rep(0, &[0x08])), b"e");
        assert_eq!(k.report(&rep(0, &[0x08, 0x0f])), b"l");
        assert_eq!(k.report(&rep(0, &[])), b"");
        assert_eq!(k.report(&rep(LEFT_SHIFT, &[0x2d])), b"_");
        assert_eq!(k.report(&rep(RIGHT_SHIFT, &[0x2d, 0x1e])), b"!");
        assert_eq!(k.report(&rep(0, &[0x28])), b"\r");
        assert_eq!(k.report(&rep(LEFT_CTRL, &[0x06])), [3]);
        // Roll-over error and short reports change nothing.
        assert_eq!(k.report(&rep(0, &[1, 1, 1, 1, 1, 1])), b"");
        assert_eq!(k.report(&[0, 0, 4]), b"");
        assert_eq!(k.report(&rep(0, &[0x06, 0x04])), b"a");
        assert_eq!(byte(0x3a, false, false), None); // F1
    }

    proptest! {
        /// Any report sequence: at most six bytes per report, never a panic.
        #[test]
        fn any_reports(reports in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..20)) {
            let mut k = BootKeyboard::new();
            for r in &reports {
                prop_assert!(k.report(r).len() <= 6);
            }
        }
    }
}
