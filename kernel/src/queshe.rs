//! queshe: this Quest-V sandbox's console, reachable from a Linux sandbox (`/dev/qSB<n>`).
//!
//! Two channel windows of the partition configuration carry it, by key convention
//! (`quest_abi::questv::queshe_keys`): key 5000 + 2n is sandbox n's console *input* (Linux
//! produces, Quest consumes), 5001 + 2n its *output* (Quest produces). At boot this kernel
//! formats both as `crates/channels` FIFOs (input: 64-byte packets, output: 256-byte packets,
//! as many slots as the windows hold) and starts a thread that every [`POLL_MS`] ms
//!
//! * hands input packets to the console driver as if they came from the UART
//!   (`drivers::serial::inject`): the shell reads them, and ctrl-c (0x03) ends the foreground
//!   task, as the seed's `echo $'\cc' > /dev/qSB<n>` expects;
//! * moves console output — a copy of everything written to the UART, taken by
//!   `hal::serial::set_mirror` into a bounded buffer ([`OUT_CAP`] bytes; the oldest bytes are
//!   dropped when Linux does not read, and bytes printed while the bridge holds the buffer are
//!   lost rather than waited for) — into output packets.
//!
//! The sandbox's own UART console keeps working unchanged. Linux's side is `qshd` (a daemon the
//! initramfs starts: a pseudo-terminal per Quest sandbox, `/dev/qSB<n>` a link to it) and
//! `queshe` (an interactive session on it); both in `user/linux/`.
//!
//! Linux may write anything into these windows: the crate validates and clamps every index, so
//! garbage arrives as garbage console input or an error the bridge skips, never a fault. No wake-up
//! crosses sandboxes without an exit, hence the polling (the same 1–2 ms granularity as a
//! shmcomm window's blocked side); its cost is one short best-effort wake-up per period.
use alloc::collections::VecDeque;

use channels::{Error as ChError, Fifo, FifoConsumer, FifoProducer};
use hal::sync::IrqLock;

use crate::sched;

/// How often the bridge looks at the windows.
pub const POLL_MS: u64 = 2;
/// Console output kept for Linux while it does not read (bytes).
pub const OUT_CAP: usize = 16 * 1024;
const IN_PACKET: usize = 64;
const OUT_PACKET: usize = 256;

/// Unranked on purpose: the mirror takes it (with `try_lock`, never waiting) from whatever
/// prints, whatever ranked locks that code holds; the bridge holds it only to copy bytes.
static OUT: IrqLock<VecDeque<u8>> = IrqLock::new(VecDeque::new());

/// The console mirror: called with the UART's lock held, possibly in an interrupt handler, so
/// it never waits (a contended buffer loses these bytes).
fn mirror(bytes: &[u8]) {
    let Some(mut q) = OUT.try_lock() else {
        return;
    };
    if q.capacity() == 0 {
        // Never allocate here (an allocation could print): `start` reserved the room.
        return;
    }
    for &b in bytes {
        if q.len() >= OUT_CAP {
            q.pop_front();
        }
        q.push_back(b);
    }
}

/// Most slots of `packet`-byte packets a window of `words` words holds (at most 1024).
fn slots_for(words: usize, packet: usize) -> usize {
    (1..=1024).rev().find(|&n| Fifo::region_words(packet, n).is_ok_and(|w| w <= words)).unwrap_or(0)
}

fn window(key: u32) -> Option<&'static [core::sync::atomic::AtomicU64]> {
    let n = hal::questv::sandbox()?.channels;
    (0..n).find(|&i| hal::questv::channel(i).is_some_and(|w| w.key == key)).and_then(hal::questv::channel_words)
}

/// Starts the bridge if the configuration gives this sandbox its queshe windows. Returns the
/// input key it serves, or `None` (not under Quest-V, or no windows).
pub fn start() -> Result<Option<u32>, &'static str> {
    let Some(sb) = hal::questv::sandbox() else { return Ok(None) };
    let (in_key, out_key) = quest_abi::questv::queshe_keys(sb.id);
    let (Some(inw), Some(outw)) = (window(in_key), window(out_key)) else { return Ok(None) };
    let (in_slots, out_slots) = (slots_for(inw.len(), IN_PACKET), slots_for(outw.len(), OUT_PACKET));
    if in_slots == 0 || out_slots == 0 {
        return Err("its windows are too small (input: 64-byte packets, output: 256-byte packets)");
    }
    Fifo::format(inw, IN_PACKET, in_slots).map_err(|_| "cannot format the input window")?;
    Fifo::format(outw, OUT_PACKET, out_slots).map_err(|_| "cannot format the output window")?;
    OUT.lock().reserve_exact(OUT_CAP + 1);
    if !hal::serial::set_mirror(mirror) {
        return Err("the console output is already mirrored");
    }
    sched::spawn("queshe", 0, None, move || bridge(inw, outw)).map_err(|_| "cannot start its thread")?;
    Ok(Some(in_key))
}

fn bridge(inw: &'static [core::sync::atomic::AtomicU64], outw: &'static [core::sync::atomic::AtomicU64]) {
    let mut input = [0u8; IN_PACKET];
    let mut packet = [0u8; OUT_PACKET];
    loop {
        // Input: every packet Linux queued.
        if let Ok(mut c) = FifoConsumer::attach(inw) {
            loop {
                match c.try_pop(&mut input) {
                    Ok(n) if n > 0 => {
                        crate::drivers::serial::inject(&input[..n.min(IN_PACKET)]);
                    }
                    Ok(_) | Err(ChError::Empty) | Err(ChError::Closed) => break,
                    Err(_) => break, // a scribbled window: try again next period
                }
            }
        }
        // Output: as many packets as fit.
        if let Ok(mut p) = FifoProducer::attach(outw) {
            loop {
                let n = {
                    let q = OUT.lock();
                    let n = q.len().min(OUT_PACKET);
                    for (d, s) in packet.iter_mut().zip(q.iter()) {
                        *d = *s;
                    }
                    n
                };
                if n == 0 {
                    break;
                }
                match p.try_push(&packet[..n]) {
                    Ok(()) => {
                        OUT.lock().drain(..n);
                    }
                    Err(ChError::Closed) => {
                        // Nobody reads on Linux's side: keep only the newest output.
                        break;
                    }
                    Err(ChError::Full) => break,
                    Err(_) => break, // a scribbled window: try again next period
                }
            }
        }
        let _ = sched::sleep_ns(POLL_MS * 1_000_000);
    }
}
