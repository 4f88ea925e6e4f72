//! Serial console input on the driver model (see `drivers/mod.rs`), split the Quest way:
//! - the top half (COM1's IRQ 4) only acknowledges — it masks the UART's receive interrupt —
//!   and wakes the bottom-half thread;
//! - the bottom half is a thread on an IO VCPU (PIBS) of CPU 0: it drains the UART into the
//!   driver's ring buffer, hands the bytes to the waiting reader and unmasks the interrupt
//!   again. While a reader waits, the IO VCPU inherits the reader's Main VCPU period
//!   (priority).
//!
//! All state (ring, waiting reader) is in the [`Serial`] driver object; the one static is the
//! pointer to the registered device, for the kernel console and the console device file.
use alloc::vec::Vec;

use hal::sync::IrqLock;
use linux_raw_sys::errno::EINTR;
use vcpu_sched::{VcpuId, VcpuParams};

use super::{Device, DeviceFile, Driver, DriverError, Resource};
use crate::sched::{self, Tid};
use crate::syscall::Errno;

struct Ring {
    buf: [u8; 4096],
    head: usize,
    len: usize,
    dropped: u64,
}

impl Ring {
    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % self.buf.len();
        self.len -= 1;
        Some(b)
    }
}

impl Serial {
    /// One byte of console input (from the UART, or injected by queshe): ctrl-c ends the
    /// foreground task; anything else goes to the ring. Returns whether it was queued.
    fn take_byte(&self, b: u8) -> bool {
        if b == 0x03 {
            // ctrl-c: SIGINT to the foreground task (the one its parent is waiting for).
            let fg = crate::process::FOREGROUND.load(core::sync::atomic::Ordering::Relaxed);
            if fg != 0 {
                // Echo first: once killed, the task may end and the shell prompt again
                // before this thread runs on (the prompt must follow the ^C).
                hal::serial::write_raw(b"^C\n");
                let _ = crate::signal::send_kernel(fg, signals::SIGINT);
                return false;
            }
        }
        let mut rx = self.rx.lock();
        if rx.len == rx.buf.len() {
            rx.dropped += 1;
            return false;
        }
        let tail = (rx.head + rx.len) % rx.buf.len();
        rx.buf[tail] = b;
        rx.len += 1;
        true
    }

    /// Hands queued input to the thread waiting for it, if any.
    fn wake_reader(&self, dev: &Device<Self>) {
        crate::poll::wake_all();
        let reader = self.reader.lock().take();
        if let Some((tid, vcpu)) = reader {
            sched::io_wait(0, dev.io_vcpu, vcpu, true);
            let _ = sched::wake(tid);
        }
    }
}

/// The console UART's driver.
pub struct Serial {
    rx: IrqLock<Ring>,
    /// The thread waiting for input and its VCPU.
    reader: IrqLock<Option<(Tid, VcpuId)>>,
}

impl Driver for Serial {
    const NAME: &'static str = "serial";
    /// Utilization 10% (C = 1 ms per T = 10 ms).
    const IO_PARAMS: VcpuParams = VcpuParams::io(1000, 10_000);

    fn probe(res: &Resource) -> Result<Self, DriverError> {
        match *res {
            // hal owns the console UART (early output, fault reports): this driver serves that
            // one port.
            Resource::Isa { base, irq, .. } if base == hal::serial::port() && irq == hal::serial::irq() => {
                Ok(Serial {
                    rx: IrqLock::ranked(Ring { buf: [0; 4096], head: 0, len: 0, dropped: 0 }, crate::locks::SERIAL),
                    reader: IrqLock::ranked(None, crate::locks::SERIAL),
                })
            }
            Resource::Isa { base, .. } if hal::serial::COM_PORTS.contains(&base) => {
                Err(DriverError::NotSupported("a UART other than the console's"))
            }
            _ => Err(DriverError::NotMine),
        }
    }

    fn top_half(&self) -> bool {
        hal::serial::set_rx_interrupt(false);
        true
    }

    fn bottom_half(&self, dev: &Device<Self>) {
        let mut got = false;
        while let Some(b) = hal::serial::try_read() {
            got |= self.take_byte(b);
        }
        if got {
            self.wake_reader(dev);
        }
        hal::serial::set_rx_interrupt(true);
    }

    fn start(&self) {
        hal::serial::enable_rx_interrupt();
    }
}

impl Device<Serial> {
    /// Next received byte, or `None` once `stop()` holds (checked before blocking and after
    /// every wake-up: a task killed while it waits for input — ctrl-c, `kill -t` — must not
    /// sleep on).
    pub fn read_byte_or(&self, stop: &dyn Fn() -> bool) -> Option<u8> {
        let s = &self.driver;
        loop {
            if let Some(b) = s.rx.lock().pop() {
                return Some(b);
            }
            let me = sched::current();
            let Some(vcpu) = sched::current_vcpu() else {
                // Not a scheduled thread (early boot): poll.
                hal::cpu::wait_until(|| s.rx.lock().len > 0);
                continue;
            };
            // Stops waiting as the reader: gives the IO VCPU its normal priority back.
            let unregister = || {
                let mut r = s.reader.lock();
                if r.is_some_and(|(t, _)| t == me) {
                    *r = None;
                    drop(r);
                    sched::io_wait(0, self.io_vcpu, vcpu, true);
                }
            };
            if stop() {
                return None;
            }
            *s.reader.lock() = Some((me, vcpu));
            sched::io_wait(0, self.io_vcpu, vcpu, false);
            // Data may have arrived between the first check and registering. (Popped first: a
            // guard in the `if let` would still hold the ring while `unregister` takes the
            // reader lock, which the lock order forbids.)
            let late = s.rx.lock().pop();
            if let Some(b) = late {
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
}

/// The console device file: reads a line at a time, like a terminal in canonical mode (echo
/// included); writes go straight to the UART.
impl DeviceFile for Device<Serial> {
    fn readable(&self) -> bool {
        self.driver.rx.lock().len > 0
    }

    fn read(&self, max: usize, stop: &dyn Fn() -> bool) -> Result<Vec<u8>, Errno> {
        let mut line = Vec::new();
        while line.len() < max {
            let Some(b) = self.read_byte_or(stop) else {
                return Err(EINTR);
            };
            let b = if b == b'\r' { b'\n' } else { b };
            hal::serial::write_raw(&[b]);
            line.push(b);
            if b == b'\n' {
                break;
            }
        }
        Ok(line)
    }

    fn write(&self, data: &[u8]) -> Result<usize, Errno> {
        write_whole(data);
        Ok(data.len())
    }
}

/// Orders the console's writers: hal sends a write a few bytes at a time with interrupts on
/// between the pieces, and one writer's pieces must not mix with another's.
static WRITERS: crate::sync::Semaphore = crate::sync::Semaphore::new(1);

/// Writes `data` to the console UART in one piece as other writers see it (a thread blocks
/// while another's write goes out). Kernel messages may still come between two pieces. Only
/// from a thread (it may block).
pub fn write_whole(data: &[u8]) {
    WRITERS.down();
    hal::serial::write_raw(data);
    WRITERS.up();
}

static DEVICE: IrqLock<Option<&'static Device<Serial>>> = IrqLock::new(None);

fn device() -> Option<&'static Device<Serial>> {
    *DEVICE.lock()
}

/// Registers the driver on the console UART (its bottom half on an IO VCPU of CPU 0) and makes
/// it the console device file.
pub fn init() -> Result<(), DriverError> {
    let res = Resource::Isa { base: hal::serial::port(), len: 8, irq: hal::serial::irq() };
    let dev = super::register::<Serial>(res)?;
    *DEVICE.lock() = Some(dev);
    super::set_console(dev);
    Ok(())
}

/// Next received byte; blocks the calling thread until one arrives (the kernel console).
/// Without a registered driver (it failed to start), polls the UART.
pub fn read_byte() -> u8 {
    loop {
        match device() {
            Some(d) => {
                if let Some(b) = d.read_byte_or(&|| false) {
                    return b;
                }
            }
            None => {
                if let Some(b) = hal::serial::try_read() {
                    return b;
                }
                core::hint::spin_loop();
            }
        }
    }
}

/// Console input that did not come from the UART (queshe: a Linux user typing into this
/// sandbox's console): handled as if received, ctrl-c included. Returns `false` without a
/// registered console driver.
pub fn inject(bytes: &[u8]) -> bool {
    let Some(dev) = device() else { return false };
    let mut got = false;
    for &b in bytes {
        got |= dev.driver.take_byte(b);
    }
    if got {
        dev.driver.wake_reader(dev);
    }
    true
}

/// (bytes dropped because the buffer was full, receive interrupts taken).
pub fn stats() -> (u64, u32) {
    device().map_or((0, 0), |d| (d.driver.rx.lock().dropped, d.irqs()))
}
