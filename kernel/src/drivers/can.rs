//! CAN: QEMU's (and Kvaser's) `kvaser_pci` card — an SJA1000 in PeliCAN mode behind an AMCC
//! S5920 PCI bridge — on the driver model, reached from user space as `/dev/canN` carrying
//! SocketCAN's `struct can_frame` (`quest_abi::can`).
//!
//! - BAR0 is the S5920 (its INTCSR at 0x38, bit 13, lets the SJA1000's interrupt through to
//!   INTA), BAR1 the SJA1000's 32 registers, both claimed as `hal::pci::IoPorts`.
//! - Top half (interrupt, shared INTx line): masks the SJA1000's interrupt enable register and
//!   then reads the interrupt register (which clears it), so the level line drops; saves the
//!   bits and the time. `None` when the register reads zero (another device on the line).
//! - Bottom half (thread on the driver's IO VCPU, PIBS: it runs at the priority of the reader
//!   waiting for frames): error and overrun bookkeeping, drains the receive FIFO, applies the
//!   software filter, queues frames for readers, unmasks — and drains again if a frame came in
//!   meanwhile (QEMU's model raises the line only on the next event, not on unmasking).
//! - Transmit: from the writer's thread, when the transmit buffer is free (status bit 2).
//! - Bit rate: `crates/can::bit_timing` (exact rates only, 16 MHz crystal). Filters: one
//!   SocketCAN filter, exact in software and, for a filter of one frame format, also in the
//!   SJA1000's acceptance registers (so non-matching frames never interrupt).
//! - Errors: the error interrupts update the state (active, warning, passive, bus-off) from the
//!   status register and the error counters; in bus-off transmission fails with `ENETDOWN`
//!   until a restart (automatic on the first write 100 ms after bus-off, or
//!   `QUEST_CAN_RESTART`), which leaves reset mode so the controller rejoins the bus after its
//!   128 × 11 recessive bits. QEMU's SJA1000 model has no error counters or bus-off, so on QEMU
//!   only host tests (`crates/can`) and `ktest canerr` (which feeds the state machine the
//!   status a real controller reports) exercise this.
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use hal::pci::{Bdf, IoPorts};
use hal::sync::IrqLock;
use linux_raw_sys::errno::{EAGAIN, EINTR, EINVAL, ENETDOWN};
use quest_abi::can::{CanFilter, CanFrame, CanState, CanStats};
use vcpu_sched::{VcpuId, VcpuParams};

use super::{Device, Driver, DriverError, Resource};
use crate::sched::{self, Tid};
use crate::syscall::Errno;

const MOD: u16 = 0;
const CMR: u16 = 1;
const SR: u16 = 2;
const IR: u16 = 3;
const IER: u16 = 4;
const BTR0: u16 = 6;
const BTR1: u16 = 7;
const OCR: u16 = 8;
const RXERR: u16 = 14;
const TXERR: u16 = 15;
const BUF: u16 = 16;
const CDR: u16 = 31;
const S5920_INTCSR: u16 = 0x38;

const MOD_RM: u8 = 0x01;
const MOD_AFM: u8 = 0x08;
const CMR_TR: u8 = 0x01;
const CMR_RRB: u8 = 0x04;
const CMR_CDO: u8 = 0x08;
const SR_RBS: u8 = 0x01;
const SR_TBS: u8 = 0x04;
const IR_RI: u8 = 0x01;
const IR_EI: u8 = 0x04;
const IR_DOI: u8 = 0x08;
const IR_EPI: u8 = 0x20;
const IR_BEI: u8 = 0x80;
/// Receive, error warning, data overrun, error passive.
const IER_WANTED: u8 = IR_RI | IR_EI | IR_DOI | IR_EPI;
/// Kvaser PCIcan: 16 MHz crystal; output control push-pull, normal mode.
const XTAL_HZ: u32 = 16_000_000;
const OCR_KVASER: u8 = 0xda;
/// PeliCAN, comparator bypass, clock output off.
const CDR_PELICAN: u8 = 0x80 | 0x40 | 0x08;
pub const DEFAULT_BITRATE: u32 = 500_000;
/// Frames queued for readers before new ones are dropped.
const QUEUE: usize = 1024;
const LATENCY_SAMPLES: usize = 4096;
/// Automatic restart this long after bus-off (on the next write).
const RESTART_NS: u64 = 100_000_000;

struct State {
    rx: VecDeque<(CanFrame, u64)>,
    reader: Option<(Tid, VcpuId)>,
    filter: Option<CanFilter>,
    stats: CanStats,
    can_state: CanState,
    bus_off_at: u64,
    latency: Vec<u64>,
    latency_next: usize,
}

/// The driver of one kvaser_pci card (one SJA1000).
pub struct Kvaser {
    bdf: Bdf,
    plx: IoPorts,
    sja: IoPorts,
    pending: AtomicU8,
    irq_at: AtomicU64,
    st: IrqLock<State>,
    /// Serialises transmitters (the transmit buffer is one frame).
    tx: IrqLock<()>,
}

impl Kvaser {
    fn reset_mode(&self) -> Result<(), DriverError> {
        self.sja.write8(IER, 0);
        self.sja.write8(MOD, MOD_RM);
        if self.sja.read8(MOD) & MOD_RM == 0 {
            return Err(DriverError::Broken("the SJA1000 does not enter reset mode"));
        }
        Ok(())
    }

    /// Programs bit timing and acceptance registers in reset mode and goes back on the bus.
    fn configure(&self, bitrate: u32, filter: Option<&CanFilter>) -> Result<(), Errno> {
        let t = can::bit_timing(bitrate, XTAL_HZ).map_err(|_| EINVAL)?;
        let _tx = self.tx.lock();
        self.reset_mode().map_err(|_| linux_raw_sys::errno::EIO)?;
        self.sja.write8(CDR, CDR_PELICAN);
        self.sja.write8(BTR0, t.btr0);
        self.sja.write8(BTR1, t.btr1);
        self.sja.write8(OCR, OCR_KVASER);
        let acc = filter.map_or([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], can::acceptance);
        for (i, b) in acc.iter().enumerate() {
            self.sja.write8(BUF + i as u16, *b);
        }
        self.sja.write8(MOD, MOD_AFM);
        self.sja.write8(IER, IER_WANTED);
        let mut st = self.st.lock();
        st.stats.bitrate = bitrate;
        st.filter = filter.copied();
        st.can_state = CanState::ErrorActive;
        Ok(())
    }

    fn update_errors(&self, st: &mut State, ir: u8) {
        let sr = self.sja.read8(SR);
        let (tx, rx) = (self.sja.read8(TXERR), self.sja.read8(RXERR));
        if ir & IR_BEI != 0 {
            st.stats.bus_errors += 1;
        }
        st.stats.tx_errors = u32::from(tx);
        st.stats.rx_errors = u32::from(rx);
        self.set_state(st, can::error_state(sr, tx, rx));
    }

    fn set_state(&self, st: &mut State, new: CanState) {
        if new == st.can_state {
            return;
        }
        if new == CanState::BusOff {
            st.stats.bus_off += 1;
            st.bus_off_at = hal::time::now_ns();
        }
        hal::println!("can {}: {:?} -> {:?}", self.bdf, st.can_state, new);
        st.can_state = new;
    }

    /// Leaves bus-off: back to operating mode (the controller waits 128 × 11 recessive bits).
    fn restart(&self) {
        let _tx = self.tx.lock();
        self.sja.write8(MOD, MOD_AFM);
        self.sja.write8(IER, IER_WANTED);
        let mut st = self.st.lock();
        st.stats.restarts += 1;
        st.stats.tx_errors = 0;
        st.stats.rx_errors = 0;
        self.set_state(&mut st, CanState::ErrorActive);
    }

    /// Reads every frame in the receive FIFO into the queue; returns how many were queued.
    fn drain(&self, t_irq: u64) -> usize {
        let mut queued = 0;
        let mut guard = 0;
        while self.sja.read8(SR) & SR_RBS != 0 && guard < 64 {
            guard += 1;
            let mut b = [0u8; 13];
            for (i, x) in b.iter_mut().enumerate() {
                *x = self.sja.read8(BUF + i as u16);
            }
            self.sja.write8(CMR, CMR_RRB);
            let f = can::decode(&b);
            let mut st = self.st.lock();
            st.stats.rx_frames += 1;
            if st.filter.is_some_and(|flt| !can::filter_matches(&flt, f.can_id)) {
                st.stats.rx_filtered += 1;
                continue;
            }
            if st.rx.len() >= QUEUE {
                st.stats.rx_dropped += 1;
                continue;
            }
            st.rx.push_back((f, t_irq));
            queued += 1;
        }
        queued
    }
}

impl Driver for Kvaser {
    const NAME: &'static str = "can";
    /// 8 % of CPU 0 (C = 0.8 ms per T = 10 ms): under PIBS a bottom half that ran for t may
    /// run again only t/U later, and the SJA1000's 64-byte FIFO holds only about five frames,
    /// so less (2 % was measured) overran the FIFO when frames came 1 ms apart under TCG; four
    /// controllers, the console and a 20 % user VCPU still pass admission.
    const IO_PARAMS: VcpuParams = VcpuParams::io(800, 10_000);

    fn probe(res: &Resource) -> Result<Self, DriverError> {
        let Resource::Pci { bus, device, function } = *res else { return Err(DriverError::NotMine) };
        let bdf = Bdf { bus, device, function };
        let f = super::pci::function(bdf).ok_or(DriverError::NoDevice)?;
        if !f.header.is_some_and(|h| h.vendor == 0x10e8 && h.device == 0x8406) {
            return Err(DriverError::NotMine);
        }
        let plx = IoPorts::claim(bdf, 0).map_err(DriverError::Broken)?;
        let sja = IoPorts::claim(bdf, 1).map_err(DriverError::Broken)?;
        let k = Kvaser {
            bdf,
            plx,
            sja,
            pending: AtomicU8::new(0),
            irq_at: AtomicU64::new(0),
            st: IrqLock::ranked(
                State {
                    rx: VecDeque::new(),
                    reader: None,
                    filter: None,
                    stats: CanStats::default(),
                    can_state: CanState::ErrorActive,
                    bus_off_at: 0,
                    latency: Vec::new(),
                    latency_next: 0,
                },
                crate::locks::CAN,
            ),
            tx: IrqLock::new(()),
        };
        k.reset_mode()?;
        k.sja.write8(CDR, CDR_PELICAN);
        if k.sja.read8(CDR) & 0x80 == 0 {
            return Err(DriverError::Broken("the SJA1000 does not switch to PeliCAN mode"));
        }
        k.configure(DEFAULT_BITRATE, None).map_err(|_| DriverError::Broken("configuration"))?;
        Ok(k)
    }

    fn top_half(&self) -> bool {
        self.interrupt().unwrap_or(false)
    }

    fn interrupt(&self) -> Option<bool> {
        // Mask first: reading IR re-evaluates the line against the enable register.
        self.sja.write8(IER, 0);
        let ir = self.sja.read8(IR);
        if ir == 0 {
            self.sja.write8(IER, IER_WANTED);
            return None;
        }
        self.pending.fetch_or(ir, Ordering::Relaxed);
        self.irq_at.store(hal::time::now_ns(), Ordering::Relaxed);
        Some(true)
    }

    fn bottom_half(&self, dev: &Device<Self>) {
        let mut queued = 0;
        loop {
            let ir = self.pending.swap(0, Ordering::Relaxed);
            if ir & (IR_EI | IR_EPI | IR_BEI) != 0 {
                self.update_errors(&mut self.st.lock(), ir);
            }
            if ir & IR_DOI != 0 {
                self.st.lock().stats.rx_overruns += 1;
                self.sja.write8(CMR, CMR_CDO);
            }
            queued += self.drain(self.irq_at.load(Ordering::Relaxed));
            self.sja.write8(IER, IER_WANTED);
            if self.sja.read8(SR) & SR_RBS == 0 {
                break;
            }
            self.sja.write8(IER, 0);
        }
        if queued > 0 {
            crate::poll::wake_all();
            let reader = self.st.lock().reader.take();
            if let Some((tid, vcpu)) = reader {
                sched::io_wait(0, dev.io_vcpu, vcpu, true);
                let _ = sched::wake(tid);
            }
        }
    }

    fn start(&self) {
        let v = self.plx.read32(S5920_INTCSR);
        self.plx.write32(S5920_INTCSR, v | 0x2000);
    }
}

/// A registered CAN controller.
pub type CanDev = Device<Kvaser>;

impl Device<Kvaser> {
    /// Whether a read would find a frame now (poll/select).
    pub fn readable(&self) -> bool {
        !self.driver.st.lock().rx.is_empty()
    }

    /// Up to `max` queued frames, blocking until there is one; `EINTR` once `stop()` holds.
    pub fn read_frames(&self, max: usize, stop: &dyn Fn() -> bool) -> Result<Vec<CanFrame>, Errno> {
        let s = &self.driver;
        loop {
            {
                let mut st = s.st.lock();
                if !st.rx.is_empty() {
                    let now = hal::time::now_ns();
                    let mut out = Vec::new();
                    while out.len() < max.max(1) {
                        let Some((f, t)) = st.rx.pop_front() else { break };
                        out.push(f);
                        let lat = now.saturating_sub(t);
                        let i = st.latency_next;
                        if st.latency.len() < LATENCY_SAMPLES {
                            st.latency.push(lat);
                        } else {
                            st.latency[i] = lat;
                        }
                        st.latency_next = (i + 1) % LATENCY_SAMPLES;
                    }
                    return Ok(out);
                }
            }
            let me = sched::current();
            let Some(vcpu) = sched::current_vcpu() else { return Err(EAGAIN) };
            if stop() {
                return Err(EINTR);
            }
            s.st.lock().reader = Some((me, vcpu));
            sched::io_wait(0, self.io_vcpu, vcpu, false);
            let unregister = || {
                let mut st = s.st.lock();
                if st.reader.is_some_and(|(t, _)| t == me) {
                    st.reader = None;
                    drop(st);
                    sched::io_wait(0, self.io_vcpu, vcpu, true);
                }
            };
            if !s.st.lock().rx.is_empty() {
                unregister();
                continue;
            }
            let why = sched::block_current();
            if why == sched::Wake::Interrupted || stop() {
                unregister();
                return Err(EINTR);
            }
        }
    }

    /// Sends one frame: `EINVAL` for a frame CAN cannot carry, `ENETDOWN` in bus-off (until
    /// the restart), `EAGAIN` if the transmit buffer stays busy for 10 ms.
    pub fn send(&self, f: &CanFrame) -> Result<(), Errno> {
        let s = &self.driver;
        let (b, n) = can::encode(f).map_err(|_| EINVAL)?;
        let (state, off_at) = {
            let st = s.st.lock();
            (st.can_state, st.bus_off_at)
        };
        if state == CanState::BusOff {
            if hal::time::now_ns().saturating_sub(off_at) < RESTART_NS {
                return Err(ENETDOWN);
            }
            s.restart();
        }
        let t0 = hal::time::now_ns();
        loop {
            {
                let _tx = s.tx.lock();
                if s.sja.read8(SR) & SR_TBS != 0 {
                    for (i, x) in b[..n].iter().enumerate() {
                        s.sja.write8(BUF + i as u16, *x);
                    }
                    s.sja.write8(CMR, CMR_TR);
                    break;
                }
            }
            if hal::time::now_ns() - t0 > 10_000_000 {
                return Err(EAGAIN);
            }
            let _ = sched::sleep_ns(20_000);
        }
        s.st.lock().stats.tx_frames += 1;
        Ok(())
    }

    pub fn set_bitrate(&self, bitrate: u32) -> Result<(), Errno> {
        let filter = self.driver.st.lock().filter;
        self.driver.configure(bitrate, filter.as_ref())
    }

    pub fn set_filter(&self, f: Option<CanFilter>) -> Result<(), Errno> {
        let rate = self.driver.st.lock().stats.bitrate;
        self.driver.configure(rate, f.as_ref())
    }

    pub fn restart(&self) {
        self.driver.restart();
    }

    pub fn stats(&self) -> CanStats {
        let st = self.driver.st.lock();
        let mut s = st.stats;
        s.state = st.can_state as u32;
        let mut lat = st.latency.clone();
        drop(st);
        let (m, x) = can::median_max(&mut lat);
        s.latency_median_ns = m;
        s.latency_max_ns = x;
        s.latency_samples = lat.len() as u64;
        s
    }

    /// Handles the status a controller reports with an error interrupt (the error counters
    /// and status register values given), as the bottom half does: `ktest canerr` feeds it
    /// what a real SJA1000 reports on the way to bus-off, which QEMU's model never does.
    pub fn error_event(&self, sr: u8, txerr: u8, rxerr: u8) {
        let mut st = self.driver.st.lock();
        st.stats.tx_errors = u32::from(txerr);
        st.stats.rx_errors = u32::from(rxerr);
        self.driver.set_state(&mut st, can::error_state(sr, txerr, rxerr));
        if st.can_state == CanState::BusOff {
            drop(st);
            // What the controller does itself at bus-off: reset mode.
            let _tx = self.driver.tx.lock();
            self.driver.sja.write8(MOD, MOD_RM | MOD_AFM);
        }
    }
}

static CANS: IrqLock<Vec<&'static CanDev>> = IrqLock::new(Vec::new());

/// Controller `n` (`/dev/can<n>`), in enumeration order.
pub fn controller(n: usize) -> Option<&'static CanDev> {
    CANS.lock().get(n).copied()
}

/// Registers a driver on every kvaser_pci card enumeration found (at boot).
pub fn init() {
    let cards: Vec<Bdf> = super::pci::find(0x10e8, 0x8406).map(|f| f.bdf).collect();
    for bdf in cards {
        let res = Resource::Pci { bus: bdf.bus, device: bdf.device, function: bdf.function };
        match super::register::<Kvaser>(res) {
            Ok(d) => {
                let mut cans = CANS.lock();
                hal::println!(
                    "can{}: kvaser_pci at {bdf} (SJA1000, PeliCAN), {} kbit/s, {}",
                    cans.len(),
                    DEFAULT_BITRATE / 1000,
                    super::Registered::irq_how(d)
                );
                cans.push(d);
            }
            Err(e) => hal::println!("can: kvaser_pci at {bdf}: {e}"),
        }
    }
}

/// `ktest canerr`: the error states and bus-off recovery on can0, with the status a real
/// SJA1000 reports fed to the driver (QEMU's model has no error counters), then a frame sent
/// after the restart must arrive on can1 over the emulated bus.
#[cfg(feature = "ktest")]
pub fn ktest_errors() {
    let (Some(a), Some(b)) = (controller(0), controller(1)) else {
        return hal::println!("canerr: needs two controllers");
    };
    let frame = CanFrame { can_id: 0x321, len: 2, data: [0xca, 0xfe, 0, 0, 0, 0, 0, 0], ..CanFrame::default() };
    let state = |d: &CanDev| d.stats().state;
    a.error_event(0x4c, 100, 3);
    hal::println!("canerr: tx errors 100: state {}", state(a));
    a.error_event(0x4c, 130, 3);
    hal::println!("canerr: tx errors 130: state {}", state(a));
    a.error_event(0xcc, 255, 3);
    let s = a.stats();
    hal::println!("canerr: bus-off: state {}, bus-off count {}", s.state, s.bus_off);
    hal::println!("canerr: send in bus-off: {:?}", a.send(&frame).map_err(|e| e as i32));
    a.restart();
    let s = a.stats();
    hal::println!("canerr: after restart: state {}, restarts {}, tx errors {}", s.state, s.restarts, s.tx_errors);
    let sent = a.send(&frame);
    let got = b.read_frames(1, &|| false);
    hal::println!(
        "canerr: send after restart: {:?}; can1 received {}",
        sent.map_err(|e| e as i32),
        match got {
            Ok(f) if f.first() == Some(&frame) => "the frame intact",
            Ok(_) => "a different frame",
            Err(_) => "nothing",
        }
    );
}
