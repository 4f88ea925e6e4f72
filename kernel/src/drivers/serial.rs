//! Serial console input, split the Quest way:
//! - the top half (COM1's IRQ 4) only acknowledges — it masks the UART's receive interrupt —
//!   and wakes the bottom-half thread;
//! - the bottom half is a thread on an IO VCPU (PIBS) of CPU 0: it drains the UART into a ring
//!   buffer, hands the bytes to the waiting reader and unmasks the interrupt again. While a
//!   reader waits, the IO VCPU inherits the reader's Main VCPU period (priority).
use core::sync::atomic::{AtomicU32, Ordering};

use hal::sync::IrqLock;
use vcpu_sched::{VcpuId, VcpuParams};

use crate::sched::{self, Tid};

/// IO VCPU of the serial bottom half: utilization 10% (C = 1 ms per T = 10 ms).
pub const IO_PARAMS: VcpuParams = VcpuParams::io(1000, 10_000);

struct Ring {
    buf: [u8; 4096],
    head: usize,
    len: usize,
    dropped: u64,
}

static RX: IrqLock<Ring> = IrqLock::ranked(Ring { buf: [0; 4096], head: 0, len: 0, dropped: 0 }, crate::locks::SERIAL);
static BOTTOM_HALF: AtomicU32 = AtomicU32::new(0);
/// The thread waiting for input and its VCPU.
static READER: IrqLock<Option<(Tid, VcpuId)>> = IrqLock::ranked(None, crate::locks::SERIAL);
static IO_VCPU: IrqLock<Option<VcpuId>> = IrqLock::ranked(None, crate::locks::SERIAL);
/// Interrupts taken and bottom-half runs (for `mem`/tests).
static IRQS: AtomicU32 = AtomicU32::new(0);

fn top_half(_frame: &mut hal::trap::TrapFrame) {
    IRQS.fetch_add(1, Ordering::Relaxed);
    hal::serial::set_rx_interrupt(false);
    let _ = sched::wake(BOTTOM_HALF.load(Ordering::Relaxed));
}

fn bottom_half() {
    loop {
        let mut got = false;
        while let Some(b) = hal::serial::try_read() {
            if b == 0x03 {
                // ctrl-c: ends the foreground task (the one its parent is waiting for).
                let fg = crate::process::FOREGROUND.load(core::sync::atomic::Ordering::Relaxed);
                if fg != 0 {
                    // Echo first: once killed, the task may end and the shell prompt again
                    // before this thread runs on (the prompt must follow the ^C).
                    hal::serial::write_raw(b"^C\n");
                    let _ = crate::process::kill(fg, 128 + 2);
                    continue;
                }
            }
            got = true;
            let mut rx = RX.lock();
            if rx.len == rx.buf.len() {
                rx.dropped += 1;
                continue;
            }
            let tail = (rx.head + rx.len) % rx.buf.len();
            rx.buf[tail] = b;
            rx.len += 1;
        }
        if got {
            let reader = READER.lock().take();
            if let Some((tid, vcpu)) = reader {
                if let Some(io) = *IO_VCPU.lock() {
                    sched::io_wait(0, io, vcpu, true);
                }
                let _ = sched::wake(tid);
            }
        }
        hal::serial::set_rx_interrupt(true);
        let _ = sched::block_current(); // a kernel thread: never interrupted
    }
}

/// Starts the bottom half on an IO VCPU of CPU 0 and routes IRQ 4 to the top half.
pub fn init() -> Result<(), sched::SchedError> {
    let io = sched::create_vcpu(0, IO_PARAMS)?;
    crate::vcpu::register(0, io);
    *IO_VCPU.lock() = Some(io);
    let bh = sched::spawn("serial-bh", 0, Some(io), bottom_half)?;
    BOTTOM_HALF.store(bh, Ordering::Relaxed);
    let irq = hal::serial::irq();
    if let Err(e) = hal::trap::route_isa_irq(irq, top_half) {
        hal::println!("serial: cannot route IRQ {irq}: {e}; console input will not work");
    }
    hal::serial::enable_rx_interrupt();
    Ok(())
}

fn pop() -> Option<u8> {
    let mut rx = RX.lock();
    if rx.len == 0 {
        return None;
    }
    let b = rx.buf[rx.head];
    rx.head = (rx.head + 1) % rx.buf.len();
    rx.len -= 1;
    Some(b)
}

/// Next received byte; blocks the calling thread until one arrives.
pub fn read_byte() -> u8 {
    loop {
        if let Some(b) = read_byte_or(|| false) {
            return b;
        }
    }
}

/// Next received byte, or `None` once `stop()` holds (checked before blocking and after every
/// wake-up: a task killed while it waits for input — ctrl-c, `kill -t` — must not sleep on).
pub fn read_byte_or(stop: impl Fn() -> bool) -> Option<u8> {
    loop {
        if let Some(b) = pop() {
            return Some(b);
        }
        let me = sched::current();
        let Some(vcpu) = sched::current_vcpu() else {
            // Not a scheduled thread (early boot): poll.
            hal::cpu::wait_until(|| RX.lock().len > 0);
            continue;
        };
        let io = *IO_VCPU.lock();
        // Stops waiting as the reader: gives the IO VCPU its normal priority back.
        let unregister = || {
            let mut r = READER.lock();
            if r.is_some_and(|(t, _)| t == me) {
                *r = None;
                drop(r);
                if let Some(io) = io {
                    sched::io_wait(0, io, vcpu, true);
                }
            }
        };
        if stop() {
            return None;
        }
        *READER.lock() = Some((me, vcpu));
        if let Some(io) = io {
            sched::io_wait(0, io, vcpu, false);
        }
        // Data may have arrived between the first check and registering.
        if let Some(b) = pop() {
            unregister();
            return Some(b);
        }
        let why = sched::block_current();
        if why == sched::Wake::Interrupted || stop() {
            unregister();
            return None;
        }
    }
}

/// (bytes dropped because the buffer was full, receive interrupts taken).
pub fn stats() -> (u64, u32) {
    (RX.lock().dropped, IRQS.load(Ordering::Relaxed))
}
