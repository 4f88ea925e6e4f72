//! COM1..COM4 16550 UARTs (through the `uart_16550` crate) and the kernel console output.
//!
//! Output is polled (the console must work in a fault handler with interrupts off), with
//! interrupts off only while one piece of at most [`PIECE`] bytes goes out: [`write_raw`] of a
//! long buffer re-enables them between pieces, so a program printing 4 KiB no longer holds back
//! its CPU's timer (a Main VCPU's budget end, a sleeper's release) for the whole buffer
//! (`sched::console_output_does_not_delay_a_reservation`, under `-icount`: a SCHED_DEADLINE
//! thread beside 4 KiB console writes ran up to 239 us after its budget came back, 0.8 us
//! with pieces). Kernel messages (`println!`) still go out whole. Receive is
//! interrupt driven: [`enable_rx_interrupt`] turns on the UART's "data available" interrupt and
//! the kernel's IRQ handler drains bytes with [`try_read`].
use core::fmt::{self, Write};

use core::sync::atomic::{AtomicU16, Ordering};

use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::IER;
use uart_16550::{BaudRate, Config, Uart16550};

/// I/O base ports of the four PC serial ports.
pub const COM_PORTS: [u16; 4] = [0x3f8, 0x2f8, 0x3e8, 0x2e8];
/// Legacy IRQ lines of COM1..COM4.
pub const COM_IRQS: [u8; 4] = [4, 3, 4, 3];

struct Console {
    uart: Option<Uart16550<PioBackend>>,
}

static COM1: Mutex<Console> = Mutex::new(Console { uart: None });
/// The console UART's I/O base: COM1, or what the Quest-V monitor assigned this sandbox, or
/// what the monitor chose for itself ([`use_port`]).
static PORT: AtomicU16 = AtomicU16::new(COM_PORTS[0]);

/// The console UART's I/O base.
pub fn port() -> u16 {
    PORT.load(Ordering::Relaxed)
}

/// The console's ISA IRQ.
pub fn irq() -> u8 {
    if let Some(sb) = crate::questv::sandbox() {
        return sb.console_irq;
    }
    let i = COM_PORTS.iter().position(|&p| p == port()).unwrap_or(0);
    COM_IRQS[i]
}

/// Moves the console to the UART at `port` (one of [`COM_PORTS`]); output continues there.
pub fn use_port(port: u16) -> Result<(), &'static str> {
    if !COM_PORTS.contains(&port) {
        return Err("not a PC serial port");
    }
    crate::cpu::without_interrupts(|| {
        let mut c = COM1.lock();
        PORT.store(port, Ordering::Relaxed);
        c.uart = None;
        drop(c);
        init();
    });
    Ok(())
}

fn config() -> Config {
    Config { baud_rate: BaudRate::Baud115200, interrupts: IER::empty(), ..Config::DEFAULT }
}

/// Initialises the console UART for polled output (idempotent). Output before this is
/// dropped. In a Quest-V sandbox the console is the UART the monitor assigned (CPUID leaf).
pub(crate) fn init() {
    if let Some(sb) = crate::questv::sandbox() {
        if COM_PORTS.contains(&sb.console_port) {
            PORT.store(sb.console_port, Ordering::Relaxed);
        }
    }
    let mut c = COM1.lock();
    if c.uart.is_some() {
        return;
    }
    // SAFETY:
    // 1. PORT is one of the PC's four UARTs' 8-register blocks (checked where it is set); nothing
    //    else in this system drives it (this `Mutex` is the only owner of the device from here
    //    on; under Quest-V the monitor passes only this sandbox's UART through).
    // 2. The ports stay valid for the whole run of the machine.
    let mut uart = match unsafe { Uart16550::new_port(PORT.load(Ordering::Relaxed)) } {
        Ok(u) => u,
        Err(_) => return,
    };
    if uart.init(config()).is_ok() {
        c.uart = Some(uart);
    }
}

/// Turns on the receive interrupt of COM1 (the caller has routed its IRQ). Bytes already in
/// the receive FIFO are kept (they raise the interrupt at once).
pub fn enable_rx_interrupt() {
    set_rx_interrupt(true);
}

/// One received byte of COM1, if the UART holds one.
pub fn try_read() -> Option<u8> {
    crate::cpu::without_interrupts(|| COM1.lock().uart.as_mut()?.try_receive_byte().ok())
}

/// Where console output is copied too (the kernel's queshe bridge), if anywhere.
static MIRROR: spin::Once<fn(&[u8])> = spin::Once::new();

/// Copies all later console output to `f` as well, called with the console lock held (so `f`
/// must not print, and must not block: it may run in an interrupt handler). Once: a second
/// call returns `false` and changes nothing.
pub fn set_mirror(f: fn(&[u8])) -> bool {
    let mut set = false;
    MIRROR.call_once(|| {
        set = true;
        f
    });
    set
}

fn write_bytes(c: &mut Console, bytes: &[u8]) {
    if let Some(f) = MIRROR.get() {
        f(bytes);
    }
    let Some(u) = c.uart.as_mut() else { return };
    for &b in bytes {
        if b == b'\n' {
            u.send_bytes_exact(b"\r\n");
        } else {
            u.send_bytes_exact(&[b]);
        }
    }
}

struct Writer<'a>(&'a mut Console);

impl Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(self.0, s.as_bytes());
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    crate::cpu::without_interrupts(|| {
        let mut c = COM1.lock();
        let _ = Writer(&mut c).write_fmt(args);
    });
}

/// Prints even if the console lock is held (by the code that just faulted, say). Only for the
/// fatal paths: fault reports and panics, after which the machine stops.
pub fn _print_fatal(args: fmt::Arguments<'_>) {
    if COM1.is_locked() {
        // SAFETY: we are on the way to stopping the machine; whoever held the lock was
        // interrupted by this fault on this CPU and will never run again, and other CPUs are
        // not started by the foundation kernel. Interleaved output is the worst outcome.
        unsafe { COM1.force_unlock() };
    }
    let mut c = COM1.lock();
    if c.uart.is_none() {
        drop(c);
        init();
        c = COM1.lock();
    }
    let _ = Writer(&mut c).write_fmt(args);
}

/// The most bytes [`write_raw`] sends with interrupts off (half the 16550's FIFO).
pub const PIECE: usize = 8;

/// Writes raw bytes to the console (no newline translation beyond `\n` -> `\r\n`), [`PIECE`]
/// bytes at a time with interrupts off, enabled between pieces if they were on. Another
/// writer's output may come between two pieces: callers that need a whole write to stay
/// together order their writers themselves (the kernel's console device does).
pub fn write_raw(bytes: &[u8]) {
    for piece in bytes.chunks(PIECE) {
        crate::cpu::without_interrupts(|| write_bytes(&mut COM1.lock(), piece));
    }
}

/// `print!` to the kernel console (COM1).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::serial::_print(format_args!($($arg)*)));
}

/// `println!` to the kernel console (COM1).
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::serial::_print(format_args!("{}\n", format_args!($($arg)*))));
}

/// Printing on the fatal paths (see [`_print_fatal`]).
#[macro_export]
macro_rules! fatal_println {
    ($($arg:tt)*) => ($crate::serial::_print_fatal(format_args!("{}\n", format_args!($($arg)*))));
}

/// Turns COM1's receive interrupt on or off (the top half turns it off to acknowledge; the
/// bottom half turns it back on once it has drained the UART).
pub fn set_rx_interrupt(on: bool) {
    crate::cpu::without_interrupts(|| {
        if let Some(u) = COM1.lock().uart.as_mut() {
            if on {
                u.enable_interrupts(IER::DATA_READY);
            } else {
                u.disable_interrupts(IER::DATA_READY);
            }
        }
    })
}
