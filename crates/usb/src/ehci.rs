//! EHCI (USB 2.0 host controller, QEMU's `usb-ehci`, `ich9-usb-ehci1`) data structures: queue
//! heads and queue element transfer descriptors (EHCI 1.0 sections 3.5, 3.6), their tokens,
//! the port status bits (2.3.9), and a control transfer's qTD chain. The kernel writes these
//! dwords into DMA memory and reads the tokens back; everything is checked here on the host.

/// qTD token status bits.
pub const ACTIVE: u32 = 1 << 7;
pub const HALTED: u32 = 1 << 6;
pub const BUFFER_ERROR: u32 = 1 << 5;
pub const BABBLE: u32 = 1 << 4;
pub const XACT_ERROR: u32 = 1 << 3;
pub const MISSED_MICROFRAME: u32 = 1 << 2;

/// Token PID codes.
pub const PID_OUT: u32 = 0;
pub const PID_IN: u32 = 1;
pub const PID_SETUP: u32 = 2;

/// A link pointer's Terminate bit; the QH type in a horizontal link.
pub const TERMINATE: u32 = 1;
pub const TYPE_QH: u32 = 1 << 1;

/// Bytes one qTD can move (five 4 KiB pages, the first starting at a page boundary).
pub const QTD_MAX: usize = 5 * 4096;

/// A qTD's eight dwords: next (`next`: bus address or None), alternate next (terminated),
/// token, five buffer pointers for `len` bytes at `buf` (those past the buffer's last page 0). `toggle`: data toggle (when the QH
/// takes toggles from qTDs); `ioc`: interrupt on complete. None if the buffer does not fit
/// five pages or `len` exceeds 20 KiB.
pub fn qtd(next: Option<u32>, pid: u32, toggle: bool, len: usize, buf: u32, ioc: bool) -> Option<[u32; 8]> {
    let first_page = buf & !0xfff;
    let end = u64::from(buf) + len as u64;
    if len > 0x5000 || end.saturating_sub(u64::from(first_page)) > QTD_MAX as u64 || end > 1 << 32 {
        return None;
    }
    let mut d = [0u32; 8];
    d[0] = next.map_or(TERMINATE, |n| n & !0x1f);
    d[1] = TERMINATE;
    d[2] = u32::from(toggle) << 31 | (len as u32) << 16 | u32::from(ioc) << 15 | 3 << 10 | pid << 8 | ACTIVE;
    d[3] = buf;
    // Only the pages the buffer spans: the controller is given no address outside it.
    let pages = (end.saturating_sub(u64::from(first_page))).div_ceil(4096).max(1) as usize;
    for (i, slot) in d[4..8].iter_mut().enumerate().take(pages - 1) {
        *slot = first_page + 4096 * (i as u32 + 1);
    }
    Some(d)
}

/// The status of a token: None while active; Ok(bytes not moved) when done, or the error.
pub fn token_result(token: u32) -> Option<Result<usize, &'static str>> {
    if token & ACTIVE != 0 {
        return None;
    }
    let left = ((token >> 16) & 0x7fff) as usize;
    Some(if token & HALTED == 0 {
        Ok(left)
    } else if token & BABBLE != 0 {
        Err("babble detected")
    } else if token & BUFFER_ERROR != 0 {
        Err("data buffer error")
    } else if token & XACT_ERROR != 0 {
        Err("transaction error")
    } else if token & MISSED_MICROFRAME != 0 {
        Err("missed micro-frame")
    } else {
        Err("stall")
    })
}

/// Endpoint speed codes of a QH.
pub const EPS_FULL: u32 = 0;
pub const EPS_LOW: u32 = 1;
pub const EPS_HIGH: u32 = 2;

/// A queue head's first twelve dwords (link, characteristics, capabilities, current qTD,
/// overlay). `link`: the horizontal link (bus address of the next QH, or None to end);
/// `head`: head of the reclamation list; `control`: toggles taken from qTDs (DTC, for control
/// endpoints); `smask`: interrupt schedule mask (0 on the async schedule); `first`: the qTD to
/// start with; `toggle`: the data toggle the overlay starts with (bulk and interrupt
/// endpoints keep theirs across transfers).
#[allow(clippy::too_many_arguments)]
pub fn qh(link: Option<u32>, head: bool, address: u8, endpoint: u8, speed: u32, max_packet: u16, control: bool, smask: u8, first: u32, toggle: bool) -> [u32; 12] {
    let mut d = [0u32; 12];
    d[0] = link.map_or(TERMINATE, |l| (l & !0x1f) | TYPE_QH);
    d[1] = u32::from(address & 0x7f) | u32::from(endpoint & 0xf) << 8 | speed << 12 | u32::from(control) << 14 | u32::from(head) << 15 | u32::from(max_packet & 0x7ff) << 16;
    if control && speed != EPS_HIGH {
        d[1] |= 1 << 27; // control endpoint flag (full/low speed behind a TT)
    }
    d[2] = 1 << 30 | u32::from(smask); // one transaction per micro-frame
    d[3] = 0;
    d[4] = first & !0x1f; // overlay: next qTD
    d[5] = TERMINATE;
    d[6] = u32::from(toggle) << 31; // inactive: the controller fetches `first`
    d
}

/// The data toggle an overlay token holds.
pub fn overlay_toggle(token: u32) -> bool {
    token >> 31 != 0
}

/// Port status and control bits (PORTSC).
pub mod portsc {
    pub const CCS: u32 = 1 << 0;
    pub const CSC: u32 = 1 << 1;
    pub const PE: u32 = 1 << 2;
    pub const PEC: u32 = 1 << 3;
    pub const OCC: u32 = 1 << 5;
    pub const PR: u32 = 1 << 8;
    pub const LINE: u32 = 3 << 10;
    pub const PP: u32 = 1 << 12;
    pub const OWNER: u32 = 1 << 13;
    /// Write-one-to-clear bits, kept 0 when writing other bits.
    pub const CHANGES: u32 = CSC | PEC | OCC;
    /// Line status K (a low-speed device: for a companion controller).
    pub const LINE_K: u32 = 1 << 10;
    /// `v` with the port reset bit set (or cleared) and no change bit cleared by accident.
    pub fn with_reset(v: u32, on: bool) -> u32 {
        let v = v & !CHANGES & !PE;
        if on { v | PR } else { v & !PR }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qtd_layout() {
        let d = qtd(Some(0x1000_0040), PID_IN, true, 18, 0x2000_0010, true).unwrap();
        assert_eq!(d[0], 0x1000_0040);
        assert_eq!(d[1], TERMINATE);
        assert_eq!(d[2], 1 << 31 | 18 << 16 | 1 << 15 | 3 << 10 | 1 << 8 | 0x80);
        assert_eq!(d[3], 0x2000_0010);
        assert_eq!(&d[4..], &[0; 4], "18 bytes span one page");
        let d = qtd(None, PID_IN, false, 0x2000, 0x2000_0800, false).unwrap();
        assert_eq!(&d[4..], &[0x2000_1000, 0x2000_2000, 0, 0]);
        let d = qtd(None, PID_IN, false, 0x5000, 0x3000, false).unwrap();
        assert_eq!(&d[4..], &[0x4000, 0x5000, 0x6000, 0x7000]);
        assert_eq!(qtd(None, PID_SETUP, false, 8, 0x3000, false).unwrap()[0], TERMINATE);
        assert!(qtd(None, PID_IN, false, 0x5000, 0x3000, false).is_some());
        assert!(qtd(None, PID_IN, false, 0x5000, 0x3010, false).is_none(), "crosses a sixth page");
        assert!(qtd(None, PID_IN, false, 0x5001, 0x3000, false).is_none());
    }

    #[test]
    fn tokens() {
        assert_eq!(token_result(ACTIVE | 5 << 16), None);
        assert_eq!(token_result(5 << 16), Some(Ok(5)));
        assert_eq!(token_result(HALTED), Some(Err("stall")));
        assert_eq!(token_result(HALTED | XACT_ERROR), Some(Err("transaction error")));
        assert_eq!(token_result(HALTED | BABBLE | XACT_ERROR), Some(Err("babble detected")));
    }

    #[test]
    fn qh_layout() {
        let d = qh(Some(0x5000), true, 3, 0, EPS_HIGH, 64, true, 0, 0x6000, false);
        assert_eq!(d[0], 0x5000 | TYPE_QH);
        assert_eq!(d[1], 3 | EPS_HIGH << 12 | 1 << 14 | 1 << 15 | 64 << 16);
        assert_eq!(d[2], 1 << 30);
        assert_eq!((d[4], d[5], d[6]), (0x6000, TERMINATE, 0));
        let d = qh(None, false, 5, 1, EPS_FULL, 8, true, 1, 0x6000, true);
        assert_eq!(d[0], TERMINATE);
        assert_ne!(d[1] & 1 << 27, 0);
        assert_eq!(d[2] & 0xff, 1);
        assert!(overlay_toggle(d[6]));
    }

    #[test]
    fn port_reset_keeps_change_bits() {
        let v = portsc::CCS | portsc::CSC | portsc::PP | portsc::PE;
        assert_eq!(portsc::with_reset(v, true), portsc::CCS | portsc::PP | portsc::PR);
        assert_eq!(portsc::with_reset(v | portsc::PR, false), portsc::CCS | portsc::PP);
    }
}
