//! xHCI data layouts and ring arithmetic (xHCI 1.2): Transfer Request Blocks as four
//! little-endian dwords, the input context fields the driver fills, port status bits, and the
//! producer (command and transfer rings) and consumer (event ring) index and cycle logic.
use crate::Setup;

/// A TRB as the four dwords written to the ring (dword 3 carries the cycle bit).
pub type Trb = [u32; 4];

/// TRB types (table 6-91).
pub const TRB_NORMAL: u32 = 1;
pub const TRB_SETUP: u32 = 2;
pub const TRB_DATA: u32 = 3;
pub const TRB_STATUS: u32 = 4;
pub const TRB_LINK: u32 = 6;
pub const TRB_ENABLE_SLOT: u32 = 9;
pub const TRB_DISABLE_SLOT: u32 = 10;
pub const TRB_ADDRESS_DEVICE: u32 = 11;
pub const TRB_CONFIGURE_ENDPOINT: u32 = 12;
pub const TRB_EVALUATE_CONTEXT: u32 = 13;
pub const TRB_RESET_ENDPOINT: u32 = 14;
pub const TRB_SET_TR_DEQUEUE: u32 = 16;
pub const TRB_NOOP_COMMAND: u32 = 23;
pub const TRB_TRANSFER_EVENT: u32 = 32;
pub const TRB_COMMAND_COMPLETION: u32 = 33;
pub const TRB_PORT_STATUS_CHANGE: u32 = 34;

const CYCLE: u32 = 1;
const TOGGLE_CYCLE: u32 = 1 << 1;
const IOC: u32 = 1 << 5;
const IDT: u32 = 1 << 6;
const DIR_IN: u32 = 1 << 16;

fn control(kind: u32) -> u32 {
    kind << 10
}

fn lo(p: u64) -> u32 {
    p as u32
}
fn hi(p: u64) -> u32 {
    (p >> 32) as u32
}

/// The TRB type of `t`.
pub fn trb_type(t: &Trb) -> u32 {
    (t[3] >> 10) & 0x3f
}
/// The cycle bit of `t`.
pub fn trb_cycle(t: &Trb) -> bool {
    t[3] & CYCLE != 0
}
/// An event's completion code (status bits 24–31).
pub fn completion_code(t: &Trb) -> u8 {
    (t[2] >> 24) as u8
}
/// An event's slot id (control bits 24–31).
pub fn event_slot(t: &Trb) -> u8 {
    (t[3] >> 24) as u8
}
/// The TRB pointer an event carries (command or transfer TRB; port id for port events).
pub fn event_pointer(t: &Trb) -> u64 {
    u64::from(t[0]) | u64::from(t[1]) << 32
}
/// A transfer event's residual length (bytes not transferred).
pub fn transfer_residue(t: &Trb) -> u32 {
    t[2] & 0x00ff_ffff
}
/// A port status change event's port id (1-based).
pub fn event_port(t: &Trb) -> u8 {
    (t[0] >> 24) as u8
}

/// Completion codes (table 6-90).
pub const CC_SUCCESS: u8 = 1;
pub const CC_STALL: u8 = 6;
pub const CC_SHORT_PACKET: u8 = 13;

pub fn completion_name(cc: u8) -> &'static str {
    match cc {
        0 => "invalid",
        1 => "success",
        2 => "data buffer error",
        3 => "babble detected",
        4 => "USB transaction error",
        5 => "TRB error",
        6 => "stall",
        7 => "resource error",
        8 => "bandwidth error",
        9 => "no slots available",
        10 => "invalid stream type",
        11 => "slot not enabled",
        12 => "endpoint not enabled",
        13 => "short packet",
        17 => "parameter error",
        19 => "context state error",
        _ => "other error",
    }
}

pub fn enable_slot() -> Trb {
    [0, 0, 0, control(TRB_ENABLE_SLOT)]
}
/// Disable Slot for `slot` (its device was unplugged).
pub fn disable_slot(slot: u8) -> Trb {
    [0, 0, 0, control(TRB_DISABLE_SLOT) | u32::from(slot) << 24]
}
pub fn noop_command() -> Trb {
    [0, 0, 0, control(TRB_NOOP_COMMAND)]
}
/// Address Device with the input context at `input` (Block Set Address Request clear).
pub fn address_device(input: u64, slot: u8) -> Trb {
    [lo(input), hi(input), 0, control(TRB_ADDRESS_DEVICE) | u32::from(slot) << 24]
}
/// Evaluate Context (EP0's packet size after the first 8 bytes of the device descriptor).
pub fn evaluate_context(input: u64, slot: u8) -> Trb {
    [lo(input), hi(input), 0, control(TRB_EVALUATE_CONTEXT) | u32::from(slot) << 24]
}
/// Configure Endpoint with the input context at `input`.
pub fn configure_endpoint(input: u64, slot: u8) -> Trb {
    [lo(input), hi(input), 0, control(TRB_CONFIGURE_ENDPOINT) | u32::from(slot) << 24]
}
/// Reset Endpoint for endpoint `dci` of `slot` (Transfer State Preserve clear): a Halted
/// endpoint becomes Stopped.
pub fn reset_endpoint(slot: u8, dci: u8) -> Trb {
    [0, 0, 0, control(TRB_RESET_ENDPOINT) | u32::from(dci & 0x1f) << 16 | u32::from(slot) << 24]
}
/// Set TR Dequeue Pointer of endpoint `dci` of `slot` to the TRB at `ptr` (16-byte aligned)
/// with dequeue cycle state `cycle`.
pub fn set_tr_dequeue(ptr: u64, cycle: bool, slot: u8, dci: u8) -> Trb {
    [lo(ptr & !0xf) | u32::from(cycle), hi(ptr), 0, control(TRB_SET_TR_DEQUEUE) | u32::from(dci & 0x1f) << 16 | u32::from(slot) << 24]
}
/// A Normal TRB for `len` bytes at `buffer`, interrupting on completion and on a short packet.
pub fn normal(buffer: u64, len: u32) -> Trb {
    [lo(buffer), hi(buffer), len & 0x1_ffff, control(TRB_NORMAL) | IOC | 1 << 2]
}
/// A transfer event's endpoint (Device Context Index, control bits 16–20).
pub fn event_endpoint(t: &Trb) -> u8 {
    ((t[3] >> 16) & 0x1f) as u8
}

/// The endpoint context's Interval (a power of two of 125 µs) for an interrupt endpoint's
/// bInterval: frames (1 ms) at full and low speed, 2^(b-1) microframes from high speed on.
pub fn interrupt_interval(speed: u8, b_interval: u8) -> u8 {
    match speed {
        1 | 2 => {
            let frames = u32::from(b_interval.max(1)) * 8;
            (31 - frames.leading_zeros()).clamp(3, 10) as u8
        }
        _ => b_interval.clamp(1, 16) - 1,
    }
}

/// A Link TRB back to `target` that toggles the consumer's cycle state.
pub fn link(target: u64) -> Trb {
    [lo(target), hi(target), 0, control(TRB_LINK) | TOGGLE_CYCLE]
}

/// The TRBs of a control transfer: Setup (immediate data), Data (if `buffer` has length, in
/// the request's direction), Status (opposite direction, interrupt on completion).
pub fn control_transfer(setup: &Setup, buffer: u64) -> ([Trb; 3], usize) {
    let v = setup.to_u64();
    let trt = match (setup.length, setup.is_in()) {
        (0, _) => 0,
        (_, false) => 2,
        (_, true) => 3,
    };
    let s = [lo(v), hi(v), 8, control(TRB_SETUP) | IDT | trt << 16];
    if setup.length == 0 {
        // No data: the status stage is IN.
        return ([s, [0, 0, 0, control(TRB_STATUS) | IOC | DIR_IN], [0; 4]], 2);
    }
    let dir = if setup.is_in() { DIR_IN } else { 0 };
    let d = [lo(buffer), hi(buffer), u32::from(setup.length), control(TRB_DATA) | dir];
    let st = [0, 0, 0, control(TRB_STATUS) | IOC | (dir ^ DIR_IN)];
    ([s, d, st], 3)
}

/// The producer side of a ring of `len` TRBs whose last is a Link TRB back to the start
/// (command ring, transfer rings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Producer {
    len: usize,
    next: usize,
    cycle: bool,
}

/// Where one TRB goes: ring index and the cycle bit to give it; `link_cycle` is `Some(c)`
/// when the Link TRB at the ring's end must be handed to the consumer with cycle `c` after
/// this TRB (the producer then wraps and toggles its cycle state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub index: usize,
    pub cycle: bool,
    pub link_cycle: Option<bool>,
}

impl Producer {
    /// A ring of `len` TRBs (at least 2: one usable and the Link); the cycle state starts at 1.
    pub fn new(len: usize) -> Option<Producer> {
        (len >= 2).then_some(Producer { len, next: 0, cycle: true })
    }
    /// The index of the Link TRB.
    pub fn link_index(&self) -> usize {
        self.len - 1
    }
    /// The current producer cycle state.
    pub fn cycle(&self) -> bool {
        self.cycle
    }
    /// The next enqueue position (for the controller's dequeue pointer at start).
    pub fn next_index(&self) -> usize {
        self.next
    }
    /// Takes the next position.
    pub fn push(&mut self) -> Slot {
        let s = Slot { index: self.next, cycle: self.cycle, link_cycle: None };
        self.next += 1;
        if self.next == self.link_index() {
            let c = self.cycle;
            self.next = 0;
            self.cycle = !self.cycle;
            return Slot { link_cycle: Some(c), ..s };
        }
        s
    }
    /// `t` with its cycle bit set to `cycle`.
    pub fn stamp(t: Trb, cycle: bool) -> Trb {
        [t[0], t[1], t[2], (t[3] & !CYCLE) | u32::from(cycle)]
    }
}

/// The consumer side of a one-segment event ring of `len` TRBs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consumer {
    len: usize,
    next: usize,
    cycle: bool,
}

impl Consumer {
    pub fn new(len: usize) -> Option<Consumer> {
        (len >= 1).then_some(Consumer { len, next: 0, cycle: true })
    }
    /// The index to look at next.
    pub fn index(&self) -> usize {
        self.next
    }
    /// Whether a TRB with cycle bit `c` at [`Consumer::index`] is a new event.
    pub fn is_new(&self, c: bool) -> bool {
        c == self.cycle
    }
    /// Consumes the event at the index; returns the index the dequeue pointer register gets.
    pub fn advance(&mut self) -> usize {
        self.next += 1;
        if self.next == self.len {
            self.next = 0;
            self.cycle = !self.cycle;
        }
        self.next
    }
}

/// PORTSC bits (5.4.8).
pub mod portsc {
    pub const CCS: u32 = 1 << 0;
    pub const PED: u32 = 1 << 1;
    pub const PR: u32 = 1 << 4;
    pub const PP: u32 = 1 << 9;
    pub const CSC: u32 = 1 << 17;
    pub const PEC: u32 = 1 << 18;
    pub const WRC: u32 = 1 << 19;
    pub const OCC: u32 = 1 << 20;
    pub const PRC: u32 = 1 << 21;
    pub const PLC: u32 = 1 << 22;
    pub const CEC: u32 = 1 << 23;
    /// Every write-1-to-clear change bit.
    pub const CHANGES: u32 = CSC | PEC | WRC | OCC | PRC | PLC | CEC;
    /// Bits a write must carry over unchanged (port power, indicator, wake enables); PED and
    /// the change bits are written as 0 so nothing is disabled or cleared by accident.
    pub const PRESERVE: u32 = PP | (3 << 14) | (7 << 25);

    /// The port speed id (bits 10–13).
    pub fn speed(v: u32) -> u8 {
        ((v >> 10) & 0xf) as u8
    }
    /// The value that starts a port reset.
    pub fn reset(v: u32) -> u32 {
        (v & PRESERVE) | PR
    }
    /// The value that clears the change bits set in `v` (and only those).
    pub fn clear_changes(v: u32) -> u32 {
        (v & PRESERVE) | (v & CHANGES)
    }
}

/// Speed ids of the default protocol speed table (7.2.2.1.1).
pub fn speed_name(id: u8) -> &'static str {
    match id {
        1 => "full (12 Mbit/s)",
        2 => "low (1.5 Mbit/s)",
        3 => "high (480 Mbit/s)",
        4 => "super (5 Gbit/s)",
        5 => "super+ (10 Gbit/s)",
        _ => "unknown",
    }
}

/// EP0's packet size to start with before the device descriptor says (4.3).
pub fn default_ep0_packet(speed: u8) -> u16 {
    match speed {
        2 | 1 => 8,
        3 => 64,
        _ => 512,
    }
}

/// Input context dwords (6.2.5) for a context size of `csz` bytes (32 or 64): the offsets of
/// the Input Control, Slot and EP0 contexts, and their contents for Address Device.
pub struct InputContext {
    pub csz: usize,
}

impl InputContext {
    /// Byte offset of the Input Control Context (0), the Slot Context (1) and endpoint
    /// context DCI n (n + 1).
    pub fn offset(&self, entry: usize) -> usize {
        entry * self.csz
    }

    /// The dwords to write for Address Device: (byte offset, value) pairs (everything else 0).
    /// `route` is the route string (0 on a root port), `root_port` 1-based, `ring` EP0's
    /// transfer ring (16-byte aligned).
    pub fn address_device(&self, route: u32, speed: u8, root_port: u8, max_packet: u16, ring: u64) -> [(usize, u32); 8] {
        let slot = self.offset(1);
        let ep0 = self.offset(2);
        [
            (4, 0b11), // add flags: slot (A0) and EP0 (A1)
            (slot, (route & 0xf_ffff) | u32::from(speed) << 20 | 1 << 27), // context entries: 1
            (slot + 4, u32::from(root_port) << 16),
            // EP0: error count 3, type control (4), max packet size.
            (ep0 + 4, 3 << 1 | 4 << 3 | u32::from(max_packet) << 16),
            (ep0 + 8, lo(ring) & !0xf | 1), // dequeue pointer, DCS = 1
            (ep0 + 12, hi(ring)),
            (ep0 + 16, 8), // average TRB length
            (0, 0),        // drop flags
        ]
    }

    /// The dwords for Configure Endpoint adding interrupt IN endpoint `dci`: the slot
    /// context's first dwords (`slot`, as the output context holds them) with Context Entries
    /// raised to `dci`, and the endpoint context.
    pub fn configure_interrupt_in(&self, slot: [u32; 4], dci: u8, max_packet: u16, interval: u8, ring: u64) -> [(usize, u32); 11] {
        let s = self.offset(1);
        let ep = self.offset(usize::from(dci) + 1);
        let entries = ((slot[0] >> 27) & 0x1f).max(u32::from(dci));
        [
            (0, 0),
            (4, 1 | 1 << dci),
            (s, (slot[0] & !(0x1f << 27)) | entries << 27),
            (s + 4, slot[1]),
            (s + 8, slot[2]),
            (s + 12, 0), // device address and slot state: output only
            (ep, u32::from(interval) << 16),
            // Error count 3, type interrupt IN (7), max packet size.
            (ep + 4, 3 << 1 | 7 << 3 | u32::from(max_packet) << 16),
            (ep + 8, lo(ring) & !0xf | 1),
            (ep + 12, hi(ring)),
            (ep + 16, 8 | u32::from(max_packet) << 16), // average TRB length, max ESIT payload
        ]
    }

    /// The dwords for Configure Endpoint adding a bulk IN and a bulk OUT endpoint (DCIs
    /// `dci_in`, `dci_out`, rings `ring_in`, `ring_out`): the slot context (as in
    /// [`InputContext::configure_interrupt_in`]) with Context Entries raised to the larger DCI,
    /// and the two endpoint contexts (error count 3, types bulk IN 6 and bulk OUT 2, max burst 0).
    pub fn configure_bulk(&self, slot: [u32; 4], dci_in: u8, dci_out: u8, max_packet: u16, ring_in: u64, ring_out: u64) -> [(usize, u32); 16] {
        let s = self.offset(1);
        let top = u32::from(dci_in.max(dci_out));
        let entries = ((slot[0] >> 27) & 0x1f).max(top);
        let ep = |dci: u8, ty: u32, ring: u64| {
            let e = self.offset(usize::from(dci) + 1);
            [(e + 4, 3 << 1 | ty << 3 | u32::from(max_packet) << 16), (e + 8, lo(ring) & !0xf | 1), (e + 12, hi(ring)), (e + 16, 3072)]
        };
        let (i, o) = (ep(dci_in, 6, ring_in), ep(dci_out, 2, ring_out));
        [
            (0, 0),
            (4, 1 | 1 << dci_in | 1 << dci_out),
            (s, (slot[0] & !(0x1f << 27)) | entries << 27),
            (s + 4, slot[1]),
            (s + 8, slot[2]),
            (s + 12, 0),
            i[0],
            i[1],
            i[2],
            i[3],
            o[0],
            o[1],
            o[2],
            o[3],
            (self.offset(usize::from(dci_in) + 1), 0),
            (self.offset(usize::from(dci_out) + 1), 0),
        ]
    }

    /// Normal TRBs for `len` bytes at bus address `buffer`, split where the buffer crosses a
    /// 64 KiB boundary (a TRB's buffer must not, xHCI 4.11.7.1): (buffer, length) of each
    /// transfer, each its own TD (Normal TRB with IOC and ISP).
    pub fn split_64k(buffer: u64, len: usize) -> impl Iterator<Item = (u64, u32)> {
        let end = buffer + len as u64;
        let mut at = buffer;
        core::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let n = (end - at).min(0x1_0000 - (at & 0xffff));
            let r = (at, n as u32);
            at += n;
            Some(r)
        })
    }

    /// The dwords for Evaluate Context changing EP0's packet size (the rest of EP0's context
    /// stays as Address Device left it in the same input context).
    pub fn evaluate_ep0(&self, max_packet: u16) -> [(usize, u32); 2] {
        [(4, 0b10), (self.offset(2) + 4, 3 << 1 | 4 << 3 | u32::from(max_packet) << 16)]
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn halt_recovery_commands() {
        let r = reset_endpoint(3, 5);
        assert_eq!((trb_type(&r), r[3] >> 24, (r[3] >> 16) & 0x1f, r[3] & (1 << 9)), (TRB_RESET_ENDPOINT, 3, 5, 0));
        let d = set_tr_dequeue(0x1234_5670, true, 7, 1);
        assert_eq!((trb_type(&d), d[3] >> 24, (d[3] >> 16) & 0x1f), (TRB_SET_TR_DEQUEUE, 7, 1));
        assert_eq!((d[0], d[1]), (0x1234_5671, 0));
        assert_eq!(set_tr_dequeue(0x1_0000_0018, false, 1, 1)[..2], [0x10, 1]);
    }
    use super::*;

    #[test]
    fn bulk_contexts_and_64k_split() {
        let ic = InputContext { csz: 32 };
        let v = ic.configure_bulk([1 << 27 | 4 << 20, 2 << 16, 0, 0x1234], 3, 4, 512, 0x1000, 0x2000);
        let get = |off: usize| v.iter().rev().find(|(o, _)| *o == off).map(|(_, x)| *x);
        assert_eq!(get(4), Some(0b11001));
        assert_eq!(get(32), Some(4 << 27 | 4 << 20));
        assert_eq!(get(32 * 4 + 4), Some(3 << 1 | 6 << 3 | 512 << 16));
        assert_eq!(get(32 * 4 + 8), Some(0x1001));
        assert_eq!(get(32 * 5 + 4), Some(3 << 1 | 2 << 3 | 512 << 16));
        assert_eq!(get(32 * 5 + 8), Some(0x2001));
        let parts: alloc::vec::Vec<_> = InputContext::split_64k(0x1_f000, 0x2_0000).collect();
        assert_eq!(parts, [(0x1_f000, 0x1000), (0x2_0000, 0x1_0000), (0x3_0000, 0xf000)]);
        assert_eq!(InputContext::split_64k(0x5000, 0).count(), 0);
    }
    use crate::DT_DEVICE;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn control_transfer_trbs() {
        let s = Setup::get_descriptor(DT_DEVICE, 0, 0, 18);
        let (t, n) = control_transfer(&s, 0x1234_5000);
        assert_eq!(n, 3);
        assert_eq!(trb_type(&t[0]), TRB_SETUP);
        assert_eq!(t[0][2], 8);
        assert_eq!(t[0][3] >> 16 & 3, 3, "IN data stage");
        assert!(t[0][3] & IDT != 0);
        assert_eq!((trb_type(&t[1]), t[1][0], t[1][2]), (TRB_DATA, 0x1234_5000, 18));
        assert!(t[1][3] & DIR_IN != 0);
        assert_eq!(trb_type(&t[2]), TRB_STATUS);
        assert!(t[2][3] & DIR_IN == 0 && t[2][3] & IOC != 0, "status OUT after IN data");
        let (t, n) = control_transfer(&Setup::set_configuration(1), 0);
        assert_eq!(n, 2);
        assert_eq!(t[0][3] >> 16 & 3, 0);
        assert!(t[1][3] & DIR_IN != 0, "status IN without data");
    }

    #[test]
    fn command_trbs() {
        let t = address_device(0x1_2345_6780, 3);
        assert_eq!(t, [0x2345_6780, 1, 0, 11 << 10 | 3 << 24]);
        assert_eq!(trb_type(&enable_slot()), TRB_ENABLE_SLOT);
        let l = link(0x8000);
        assert_eq!(trb_type(&l), TRB_LINK);
        assert!(l[3] & TOGGLE_CYCLE != 0);
        assert_eq!(Producer::stamp(l, true)[3] & 1, 1);
        assert_eq!(Producer::stamp(Producer::stamp(l, true), false), l);
    }

    #[test]
    fn events_decode() {
        let e: Trb = [0x1000, 0, 1 << 24 | 5, 33 << 10 | 7 << 24 | 1];
        assert_eq!((trb_type(&e), completion_code(&e), event_slot(&e), event_pointer(&e)), (33, 1, 7, 0x1000));
        assert!(trb_cycle(&e));
        assert_eq!(transfer_residue(&e), 5);
        assert_eq!(event_port(&[5 << 24, 0, 0, 34 << 10]), 5);
    }

    #[test]
    fn producer_wraps_through_the_link_and_toggles() {
        let mut p = Producer::new(4).unwrap();
        let a: Vec<Slot> = (0..7).map(|_| p.push()).collect();
        assert_eq!(a[0], Slot { index: 0, cycle: true, link_cycle: None });
        assert_eq!(a[2], Slot { index: 2, cycle: true, link_cycle: Some(true) });
        assert_eq!(a[3], Slot { index: 0, cycle: false, link_cycle: None });
        assert_eq!(a[5], Slot { index: 2, cycle: false, link_cycle: Some(false) });
        assert_eq!(a[6], Slot { index: 0, cycle: true, link_cycle: None });
        assert!(Producer::new(1).is_none());
    }

    #[test]
    fn consumer_wraps_and_toggles() {
        let mut c = Consumer::new(3).unwrap();
        assert!(c.is_new(true) && !c.is_new(false));
        assert_eq!(c.advance(), 1);
        assert_eq!(c.advance(), 2);
        assert_eq!(c.advance(), 0);
        assert!(c.is_new(false));
    }

    #[test]
    fn port_writes_never_disable_or_clear_by_accident() {
        use portsc::*;
        let v = CCS | PED | PP | CSC | PRC | 3 << 10;
        assert_eq!(speed(v), 3);
        assert_eq!(reset(v), PP | PR);
        assert_eq!(clear_changes(v), PP | CSC | PRC);
    }

    #[test]
    fn input_context_for_address_device() {
        let ic = InputContext { csz: 32 };
        let w = ic.address_device(0, 1, 5, 8, 0x7000);
        assert!(w.contains(&(4, 3)));
        assert!(w.contains(&(32, 1 << 20 | 1 << 27)));
        assert!(w.contains(&(36, 5 << 16)));
        assert!(w.contains(&(68, 3 << 1 | 4 << 3 | 8 << 16)));
        assert!(w.contains(&(72, 0x7001)));
        let ic = InputContext { csz: 64 };
        assert_eq!(ic.offset(2), 128);
        assert_eq!(ic.evaluate_ep0(64)[1], (132, 3 << 1 | 4 << 3 | 64 << 16));
    }

    #[test]
    fn interrupt_endpoints() {
        assert_eq!(interrupt_interval(1, 10), 6); // 10 ms -> 8 ms (2^6 x 125 us)
        assert_eq!(interrupt_interval(2, 1), 3);
        assert_eq!(interrupt_interval(1, 255), 10);
        assert_eq!(interrupt_interval(3, 4), 3);
        assert_eq!(interrupt_interval(3, 0), 0);
        let t = normal(0x9000, 8);
        assert_eq!((trb_type(&t), t[0], t[2]), (TRB_NORMAL, 0x9000, 8));
        assert!(t[3] & IOC != 0);
        assert_eq!(trb_type(&configure_endpoint(0x5000, 2)), TRB_CONFIGURE_ENDPOINT);
        assert_eq!(event_endpoint(&[0, 0, 0, 3 << 16 | 32 << 10]), 3);
        let ic = InputContext { csz: 32 };
        let w = ic.configure_interrupt_in([1 << 20 | 1 << 27, 5 << 16, 0, 0x0200_0001], 3, 8, 6, 0xa000);
        assert!(w.contains(&(4, 0b1001)));
        assert!(w.contains(&(32, 1 << 20 | 3 << 27)));
        assert!(w.contains(&(44, 0)));
        assert!(w.contains(&(128, 6 << 16)));
        assert!(w.contains(&(132, 3 << 1 | 7 << 3 | 8 << 16)));
        assert!(w.contains(&(136, 0xa001)));
    }

    proptest! {
        /// Over any number of pushes the producer's cycle flips exactly at each wrap, never
        /// hands out the Link's index, and the consumer of the same ring agrees on cycles.
        #[test]
        fn producer_matches_a_model(len in 2usize..40, pushes in 0usize..500) {
            let mut p = Producer::new(len).unwrap();
            let usable = len - 1;
            for k in 0..pushes {
                let s = p.push();
                prop_assert!(s.index < usable);
                prop_assert_eq!(s.index, k % usable);
                prop_assert_eq!(s.cycle, (k / usable) % 2 == 0);
                prop_assert_eq!(s.link_cycle.is_some(), s.index == usable - 1);
            }
            let mut c = Consumer::new(len).unwrap();
            for k in 0..pushes {
                prop_assert!(c.is_new((k / len) % 2 == 0));
                c.advance();
            }
        }
    }
}
