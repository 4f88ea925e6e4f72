//! CAN logic without hardware for the SJA1000 (PeliCAN mode) driver: the frame buffer layout
//! at registers 16..28, bit timing (BTR0/BTR1) for a bit rate, the acceptance registers for a
//! filter (single-filter mode) and the software filter that makes the match exact, and the
//! error state from the status register and error counters.
//!
//! Written by hand: the register-level crates for the SJA1000 are tied to embedded HALs; the
//! layouts here follow the SJA1000 data sheet (PeliCAN mode, sections 6.4–6.5) and were
//! checked against QEMU's model (`hw/net/can/can_sja1000.c`).
#![no_std]
#![forbid(unsafe_code)]

pub use quest_abi::can::{
    CAN_EFF_FLAG, CAN_EFF_MASK, CAN_ERR_FLAG, CAN_RTR_FLAG, CAN_SFF_MASK, CanFilter, CanFrame, CanState,
};

/// Encodes `f` into the transmit buffer (frame information, identifier, data); returns the
/// bytes and how many are used. Error frames and lengths above 8 are refused.
pub fn encode(f: &CanFrame) -> Result<([u8; 13], usize), &'static str> {
    if f.can_id & CAN_ERR_FLAG != 0 {
        return Err("error frames cannot be sent");
    }
    if f.len > 8 {
        return Err("classic CAN carries at most 8 data bytes");
    }
    let rtr = f.can_id & CAN_RTR_FLAG != 0;
    let mut b = [0u8; 13];
    b[0] = f.len | if rtr { 0x40 } else { 0 };
    let n_data = if rtr { 0 } else { usize::from(f.len) };
    let head = if f.can_id & CAN_EFF_FLAG != 0 {
        let id = f.can_id & CAN_EFF_MASK;
        b[0] |= 0x80;
        b[1] = (id >> 21) as u8;
        b[2] = (id >> 13) as u8;
        b[3] = (id >> 5) as u8;
        b[4] = (id << 3) as u8;
        5
    } else {
        let id = f.can_id & CAN_SFF_MASK;
        b[1] = (id >> 3) as u8;
        b[2] = (id << 5) as u8;
        3
    };
    b[head..head + n_data].copy_from_slice(&f.data[..n_data]);
    Ok((b, head + n_data))
}

/// Decodes a received frame from the receive buffer (13 bytes read at registers 16..28). A
/// data length code above 8 means 8 bytes (ISO 11898-1).
pub fn decode(b: &[u8; 13]) -> CanFrame {
    let fi = b[0];
    let len = (fi & 0x0f).min(8);
    let rtr = fi & 0x40 != 0;
    let mut f = CanFrame { len, ..CanFrame::default() };
    let head = if fi & 0x80 != 0 {
        f.can_id = CAN_EFF_FLAG
            | (u32::from(b[1]) << 21)
            | (u32::from(b[2]) << 13)
            | (u32::from(b[3]) << 5)
            | (u32::from(b[4]) >> 3);
        5
    } else {
        f.can_id = (u32::from(b[1]) << 3) | (u32::from(b[2]) >> 5);
        3
    };
    if rtr {
        f.can_id |= CAN_RTR_FLAG;
    } else {
        let n = usize::from(len);
        f.data[..n].copy_from_slice(&b[head..head + n]);
    }
    f
}

/// Bus timing registers for a bit rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitTiming {
    pub btr0: u8,
    pub btr1: u8,
    /// Time quanta per bit and the sample point (per mille).
    pub quanta: u32,
    pub sample_point: u32,
}

/// The lowest and highest bit rates accepted.
pub const MIN_BITRATE: u32 = 10_000;
pub const MAX_BITRATE: u32 = 1_000_000;

/// BTR0/BTR1 for `bitrate` with crystal `xtal_hz` (the SJA1000 divides it by 2): an exact
/// division is required (no rate error), the sample point nearest 87.5 %, SJW 1. Rates outside
/// 10 kbit/s .. 1 Mbit/s or not reachable exactly are refused.
pub fn bit_timing(bitrate: u32, xtal_hz: u32) -> Result<BitTiming, &'static str> {
    if !(MIN_BITRATE..=MAX_BITRATE).contains(&bitrate) {
        return Err("bit rate outside 10 kbit/s .. 1 Mbit/s");
    }
    let mut best: Option<(u32, BitTiming)> = None;
    for brp in 0..64u32 {
        let tq_hz = xtal_hz / (2 * (brp + 1));
        if !xtal_hz.is_multiple_of(2 * (brp + 1)) || !tq_hz.is_multiple_of(bitrate) {
            continue;
        }
        let quanta = tq_hz / bitrate;
        if !(8..=25).contains(&quanta) {
            continue;
        }
        // tseg2 from the sample point 87.5 %: sample at (1 + tseg1) / quanta.
        let tseg2 = ((quanta * 125 + 500) / 1000).clamp(2, 8);
        let tseg1 = quanta - 1 - tseg2;
        if !(1..=16).contains(&tseg1) {
            continue;
        }
        let sp = (1 + tseg1) * 1000 / quanta;
        let t = BitTiming { btr0: brp as u8, btr1: (((tseg2 - 1) << 4) | (tseg1 - 1)) as u8, quanta, sample_point: sp };
        let score = sp.abs_diff(875) * 100 + (25 - quanta);
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, t));
        }
    }
    best.map(|(_, t)| t).ok_or("bit rate not reachable exactly with this controller's clock")
}

/// What a software filter (SocketCAN semantics) says of a frame.
pub fn filter_matches(f: &CanFilter, frame_id: u32) -> bool {
    (frame_id & f.can_mask) == (f.can_id & f.can_mask)
}

/// Acceptance code and mask registers (16..23 in reset mode, single-filter mode) that pass at
/// least every frame `f` passes: exact in hardware for a filter of one format (the EFF flag in
/// its mask), "accept all" for a filter matching both formats (then the software filter
/// decides alone). A mask bit of 1 in the SJA1000's AMR means "don't care".
pub fn acceptance(f: &CanFilter) -> [u8; 8] {
    let accept_all = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    if f.can_mask & CAN_EFF_FLAG == 0 {
        return accept_all;
    }
    let rtr_cares = f.can_mask & CAN_RTR_FLAG != 0;
    let rtr = f.can_id & CAN_RTR_FLAG != 0;
    if f.can_id & CAN_EFF_FLAG != 0 {
        let id = (f.can_id & CAN_EFF_MASK) << 3;
        let m = !((f.can_mask & CAN_EFF_MASK) << 3);
        let mut r = [
            (id >> 24) as u8,
            (id >> 16) as u8,
            (id >> 8) as u8,
            id as u8,
            (m >> 24) as u8,
            (m >> 16) as u8,
            (m >> 8) as u8,
            m as u8 | 0x07,
        ];
        if rtr_cares {
            r[7] &= !0x04;
            r[3] |= if rtr { 0x04 } else { 0 };
        }
        r
    } else {
        let id = (f.can_id & CAN_SFF_MASK) << 5;
        let m = !((f.can_mask & CAN_SFF_MASK) << 5) & 0xffe0;
        let mut r = [(id >> 8) as u8, id as u8, 0, 0, (m >> 8) as u8, m as u8 | 0x1f, 0xff, 0xff];
        if rtr_cares {
            r[5] &= !0x10;
            r[1] |= if rtr { 0x10 } else { 0 };
        }
        r
    }
}

/// The error state from the status register (bit 7 bus status, bit 6 error status) and the
/// transmit and receive error counters.
pub fn error_state(sr: u8, txerr: u8, rxerr: u8) -> CanState {
    if sr & 0x80 != 0 {
        CanState::BusOff
    } else if txerr >= 128 || rxerr >= 128 {
        CanState::ErrorPassive
    } else if sr & 0x40 != 0 || txerr >= 96 || rxerr >= 96 {
        CanState::ErrorWarning
    } else {
        CanState::ErrorActive
    }
}

/// Median and maximum of latency samples (sorted in place).
pub fn median_max(samples: &mut [u64]) -> (u64, u64) {
    if samples.is_empty() {
        return (0, 0);
    }
    samples.sort_unstable();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u32, data: &[u8]) -> CanFrame {
        let mut f = CanFrame { can_id: id, len: data.len() as u8, ..CanFrame::default() };
        f.data[..data.len()].copy_from_slice(data);
        f
    }

    #[test]
    fn frames_round_trip_in_the_sja1000_layout() {
        let f = frame(0x123, &[0xde, 0xad, 0xbe, 0xef]);
        let (b, n) = encode(&f).unwrap();
        assert_eq!(&b[..n], &[0x04, 0x24, 0x60, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(decode(&b), f);
        let e = frame(CAN_EFF_FLAG | 0x1234_5678, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let (b, n) = encode(&e).unwrap();
        assert_eq!(n, 13);
        assert_eq!(&b[..5], &[0x88, 0x91, 0xa2, 0xb3, 0xc0]);
        assert_eq!(decode(&b), e);
        let r = CanFrame { can_id: CAN_RTR_FLAG | 0x7ff, len: 2, ..CanFrame::default() };
        let (b, n) = encode(&r).unwrap();
        assert_eq!((n, b[0]), (3, 0x42));
        assert_eq!(decode(&b), r);
        assert!(encode(&CanFrame { len: 9, ..CanFrame::default() }).is_err());
        assert!(encode(&CanFrame { can_id: CAN_ERR_FLAG, ..CanFrame::default() }).is_err());
        // A DLC of 15 on the wire means 8 bytes.
        let mut b = [0u8; 13];
        b[0] = 0x0f;
        assert_eq!(decode(&b).len, 8);
    }

    #[test]
    fn standard_bit_rates_are_exact_and_bad_ones_refused() {
        // Kvaser PCIcan: 16 MHz crystal.
        for (rate, btr0, quanta) in [(1_000_000, 0, 8), (500_000, 0, 16), (250_000, 1, 16), (125_000, 3, 16), (10_000, 49, 16)] {
            let t = bit_timing(rate, 16_000_000).unwrap();
            assert_eq!((t.btr0, t.quanta), (btr0, quanta), "{rate}");
            assert_eq!(16_000_000 / (2 * (u32::from(t.btr0 & 0x3f) + 1) * t.quanta), rate);
            assert!((750..=900).contains(&t.sample_point), "{rate}: {t:?}");
        }
        // 1 Mbit/s: 1 + 6 + 1? No: tseg2 at least 2, so 1 + 5 + 2 quanta, sample point 75 %.
        assert_eq!(bit_timing(1_000_000, 16_000_000).unwrap().btr1, 0x14);
        assert!(bit_timing(0, 16_000_000).is_err());
        assert!(bit_timing(2_000_000, 16_000_000).is_err());
        assert!(bit_timing(123_457, 16_000_000).is_err());
        assert!(bit_timing(9_999, 16_000_000).is_err());
    }

    /// The acceptance registers, decoded the way the SJA1000 (and QEMU's model) applies them in
    /// single-filter mode, pass every frame the software filter passes.
    fn hw_accepts(r: &[u8; 8], id: u32) -> bool {
        if id & CAN_EFF_FLAG != 0 {
            let v = (id & CAN_EFF_MASK) << 3 | if id & CAN_RTR_FLAG != 0 { 4 } else { 0 };
            let acr = u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
            let amr = u32::from_be_bytes([r[4], r[5], r[6], r[7]]) | 3;
            (v ^ acr) & !amr == 0
        } else {
            let v = ((id & CAN_SFF_MASK) << 5 | if id & CAN_RTR_FLAG != 0 { 0x10 } else { 0 }) as u16;
            let acr = u16::from_be_bytes([r[0], r[1]]);
            let amr = u16::from_be_bytes([r[4], r[5]]) | 0x0f;
            (v ^ acr) & !amr == 0
        }
    }

    #[test]
    fn hardware_filters() {
        let std_f = CanFilter { can_id: 0x123, can_mask: CAN_EFF_FLAG | CAN_SFF_MASK };
        let r = acceptance(&std_f);
        assert!(hw_accepts(&r, 0x123) && !hw_accepts(&r, 0x124));
        let ext_f = CanFilter { can_id: CAN_EFF_FLAG | 0x1234_5600, can_mask: CAN_EFF_FLAG | 0x1fff_ff00 };
        let r = acceptance(&ext_f);
        assert!(hw_accepts(&r, CAN_EFF_FLAG | 0x1234_56ff) && !hw_accepts(&r, CAN_EFF_FLAG | 0x1234_57ff));
        assert_eq!(acceptance(&CanFilter { can_id: 0x123, can_mask: 0x7ff })[4..], [0xff; 4]);
    }

    #[test]
    fn error_states() {
        assert_eq!(error_state(0x0c, 0, 0), CanState::ErrorActive);
        assert_eq!(error_state(0x4c, 96, 0), CanState::ErrorWarning);
        assert_eq!(error_state(0x4c, 128, 0), CanState::ErrorPassive);
        assert_eq!(error_state(0xcc, 255, 0), CanState::BusOff);
        let mut s = [5, 1, 9, 3, 7];
        assert_eq!(median_max(&mut s), (5, 9));
        assert_eq!(median_max(&mut []), (0, 0));
    }

    proptest::proptest! {
        /// Any identifier and payload survive the buffer layout.
        #[test]
        fn any_frame_round_trips(eff: bool, rtr: bool, id: u32, len in 0u8..=8, data: [u8; 8]) {
            let mut f = CanFrame { len, ..CanFrame::default() };
            f.can_id = if eff { CAN_EFF_FLAG | (id & CAN_EFF_MASK) } else { id & CAN_SFF_MASK };
            if rtr { f.can_id |= CAN_RTR_FLAG } else { f.data[..usize::from(len)].copy_from_slice(&data[..usize::from(len)]) }
            let (b, _) = encode(&f).unwrap();
            proptest::prop_assert_eq!(decode(&b), f);
        }

        /// The hardware filter never drops a frame the software filter accepts.
        #[test]
        fn hardware_filter_passes_what_software_passes(eff: bool, rtr_care: bool, fid: u32, mask: u32, id: u32, rtr: bool) {
            let flag = if eff { CAN_EFF_FLAG } else { 0 };
            let fmask = if eff { CAN_EFF_MASK } else { CAN_SFF_MASK };
            let f = CanFilter { can_id: flag | (fid & fmask), can_mask: CAN_EFF_FLAG | (mask & fmask) | if rtr_care { CAN_RTR_FLAG } else { 0 } };
            let frame_id = flag | (id & fmask) | if rtr { CAN_RTR_FLAG } else { 0 };
            if filter_matches(&f, frame_id) {
                proptest::prop_assert!(hw_accepts(&acceptance(&f), frame_id));
            }
        }
    }
}
