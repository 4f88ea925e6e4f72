//! Serial console input: the COM1 receive interrupt (IRQ 4) drains the UART into a ring buffer
//! that the console reads from. (Output is polled, in `hal::serial`.)
use spin::Mutex;

/// Bytes the console has not read yet. When full, new bytes are dropped (and counted).
struct Ring {
    buf: [u8; 4096],
    head: usize,
    len: usize,
    dropped: u64,
}

static RX: Mutex<Ring> = Mutex::new(Ring { buf: [0; 4096], head: 0, len: 0, dropped: 0 });

fn on_irq(_frame: &mut hal::trap::TrapFrame) {
    let mut rx = RX.lock();
    while let Some(b) = hal::serial::try_read() {
        if rx.len == rx.buf.len() {
            rx.dropped += 1;
            continue;
        }
        let tail = (rx.head + rx.len) % rx.buf.len();
        rx.buf[tail] = b;
        rx.len += 1;
    }
}

/// Routes IRQ 4 to the receive handler and enables the UART's receive interrupt.
pub fn init() {
    let irq = hal::serial::COM_IRQS[0];
    hal::trap::set_handler(hal::trap::IRQ_BASE + irq, on_irq);
    hal::serial::enable_rx_interrupt();
    hal::pic::unmask(irq);
}

fn pop() -> Option<u8> {
    hal::cpu::without_interrupts(|| {
        let mut rx = RX.lock();
        if rx.len == 0 {
            return None;
        }
        let b = rx.buf[rx.head];
        rx.head = (rx.head + 1) % rx.buf.len();
        rx.len -= 1;
        Some(b)
    })
}

/// Next received byte; sleeps (halts) until one arrives.
pub fn read_byte() -> u8 {
    loop {
        if let Some(b) = pop() {
            return b;
        }
        hal::cpu::wait_until(|| RX.lock().len > 0);
    }
}

/// Bytes dropped because the buffer was full.
pub fn dropped() -> u64 {
    hal::cpu::without_interrupts(|| RX.lock().dropped)
}
