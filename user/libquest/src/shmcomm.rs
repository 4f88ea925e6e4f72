//! shmcomm channels and tuned pipes for Rust programs (the C API is `<shmcomm_user.h>` and
//! `<tpipe.h>`). Marshalling is the caller's business in Rust: `write` takes the packet bytes.
//!
//! ```no_run
//! use libquest::shmcomm::{Channel, Kind};
//! let tx = Channel::create_send(153, Kind::Async, 4)?;
//! tx.write(&10i32.to_le_bytes())?;
//! let rx = Channel::connect_receive(153, 4)?;
//! let mut b = [0u8; 4];
//! rx.read(&mut b)?;
//! # Ok::<(), libquest::Errno>(())
//! ```
use quest_abi::nr;
use quest_abi::shm::{SHMCOMM_ASYNC_CH, SHMCOMM_CONNECT_CH, SHMCOMM_CREATE_CH, SHMCOMM_SYNC_CH};
use quest_abi::{Errno, TpipeGuarantee, TpipeQos};

use crate::raw;

/// The kind of a channel to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Four-slot: the latest value wins; nothing blocks.
    Async,
    /// FIFO of this many packets: reads block while empty, writes while full.
    Sync(u32),
}

/// One open side of a channel (a descriptor); closed on drop.
#[derive(Debug)]
pub struct Channel {
    fd: i32,
}

fn open(send: bool, key: u32, flags: u32, packet: usize, buffer_len: i64) -> Result<Channel, Errno> {
    let n = if send { nr::SHMCOMM_OPEN_SEND } else { nr::SHMCOMM_OPEN_RECEIVE };
    // SAFETY: no pointer arguments.
    let r = unsafe { raw::syscall6(n, key as usize, flags as usize, packet, buffer_len as usize, 0, 0) };
    Errno::from_ret(r).map(|fd| Channel { fd: fd as i32 })
}

fn create_flags(kind: Kind) -> (u32, i64) {
    match kind {
        Kind::Async => (SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, -1),
        Kind::Sync(n) => (SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, i64::from(n)),
    }
}

impl Channel {
    /// Creates channel `key` and opens its sending side (`EEXIST` if it exists).
    pub fn create_send(key: u32, kind: Kind, packet_size: usize) -> Result<Channel, Errno> {
        let (f, b) = create_flags(kind);
        open(true, key, f, packet_size, b)
    }
    /// Creates channel `key` and opens its receiving side.
    pub fn create_receive(key: u32, kind: Kind, packet_size: usize) -> Result<Channel, Errno> {
        let (f, b) = create_flags(kind);
        open(false, key, f, packet_size, b)
    }
    /// Opens the sending side of the existing channel `key` (`ENOENT` if none; `EINVAL` if its
    /// packet size differs).
    pub fn connect_send(key: u32, packet_size: usize) -> Result<Channel, Errno> {
        open(true, key, SHMCOMM_CONNECT_CH, packet_size, -1)
    }
    /// Opens the receiving side of the existing channel `key`.
    pub fn connect_receive(key: u32, packet_size: usize) -> Result<Channel, Errno> {
        open(false, key, SHMCOMM_CONNECT_CH, packet_size, -1)
    }
    /// Sends one packet.
    pub fn write(&self, packet: &[u8]) -> Result<usize, Errno> {
        // SAFETY: the kernel reads at most `packet.len()` bytes from a live borrow.
        let r = unsafe { raw::syscall3(nr::SHMCOMM_WRITE, self.fd as usize, packet.as_ptr() as usize, packet.len()) };
        Errno::from_ret(r)
    }
    /// Receives one packet (`buf` at least the packet size); 0 = a sync channel's sender closed
    /// and everything was read.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        // SAFETY: the kernel writes at most `buf.len()` bytes into a live exclusive borrow.
        let r = unsafe { raw::syscall3(nr::SHMCOMM_READ, self.fd as usize, buf.as_mut_ptr() as usize, buf.len()) };
        Errno::from_ret(r)
    }
    /// The channel's key (`get_vshm_key`).
    pub fn key(&self) -> Result<u32, Errno> {
        // SAFETY: no pointer arguments.
        let r = unsafe { raw::syscall1(nr::SHMCOMM_GET_KEY, self.fd as usize) };
        Errno::from_ret(r).map(|k| k as u32)
    }
    /// The descriptor.
    pub fn fd(&self) -> i32 {
        self.fd
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // SAFETY: no pointer arguments; closes only this object's descriptor.
        let _ = unsafe { raw::syscall1(nr::SHMCOMM_CLOSE, self.fd as usize) };
    }
}

/// A tuned pipe: (read fd, write fd, the guarantee). The descriptors are plain pipe ends
/// (`std`'s `File::from_raw_fd` works on them); the pipe's VCPUs go when both are closed.
pub fn tpipe_open(qos: &TpipeQos) -> Result<(i32, i32, TpipeGuarantee), Errno> {
    let mut fds = [0i32; 2];
    let mut g = TpipeGuarantee::default();
    // SAFETY: the kernel reads a `#[repr(C)]` TpipeQos from a live borrow and writes two i32
    // and one all-integer `#[repr(C)]` TpipeGuarantee into live exclusive borrows.
    let r = unsafe {
        raw::syscall3(
            nr::TPIPE_OPEN,
            qos as *const TpipeQos as usize,
            fds.as_mut_ptr() as usize,
            &mut g as *mut TpipeGuarantee as usize,
        )
    };
    Errno::from_ret(r).map(|_| (fds[0], fds[1], g))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_fail_with_enosys_on_linux() {
        assert_eq!(Channel::create_send(1, Kind::Async, 4).map(|c| c.fd()), Err(Errno::ENOSYS));
        assert_eq!(Channel::connect_receive(1, 4).map(|c| c.fd()), Err(Errno::ENOSYS));
        assert_eq!(tpipe_open(&TpipeQos { c: 1, lambda: 1, b: 2 }).map(|x| x.0), Err(Errno::ENOSYS));
    }
}
