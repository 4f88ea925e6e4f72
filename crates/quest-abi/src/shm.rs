//! `shmcomm` flags, the tuned-pipe (`tpipe`) and Boomerang records.
//!
//! C: `user/include/shmcomm_user.h` (flags, `shmcomm_open_send` …) and `user/include/tpipe.h`
//! (`struct tpipe_qos`, `struct tpipe_guarantee`) and `user/include/boomerang.h`, checked against this module by
//! `tests/c_header.rs`.

/// `shmcomm_open_*` flag: create the channel (a second creator of the key gets `EEXIST`).
pub const SHMCOMM_CREATE_CH: u32 = 0x1;
/// `shmcomm_open_*` flag: connect to an existing channel (a missing key gets `ENOENT`).
pub const SHMCOMM_CONNECT_CH: u32 = 0x2;
/// `shmcomm_open_*` flag: asynchronous channel (Simpson's four-slot: latest value wins,
/// never blocks). On connect it may be left out (the kind is read from the channel).
pub const SHMCOMM_ASYNC_CH: u32 = 0x4;
/// `shmcomm_open_*` flag: synchronous channel (bounded FIFO of `buffer_len` packets: a read
/// blocks while it is empty, a write while it is full).
pub const SHMCOMM_SYNC_CH: u32 = 0x8;
/// `shmcomm_open_*` flag (a Quest-RS extension of the seed's API): on this descriptor a
/// sync read of an empty channel or a write to a full one fails with `EAGAIN` instead of
/// waiting (Boomerang's periodic stages never block).
pub const SHMCOMM_NONBLOCK_CH: u32 = 0x10;
/// Every flag bit defined; others are `EINVAL`.
pub const SHMCOMM_FLAGS: u32 = SHMCOMM_CREATE_CH | SHMCOMM_CONNECT_CH | SHMCOMM_ASYNC_CH | SHMCOMM_SYNC_CH | SHMCOMM_NONBLOCK_CH;
/// Largest packet (slot) size in bytes.
pub const SHMCOMM_MAX_PACKET: u32 = 64 * 1024;
/// Most packets in a synchronous channel's buffer.
pub const SHMCOMM_MAX_BUFFER: u32 = 1024;
/// Most channels that may exist at once (`ENOSPC` beyond).
pub const SHMCOMM_MAX_CHANNELS: u32 = 64;

/// A tuned pipe's QoS request (`struct tpipe_qos`, 12 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TpipeQos {
    /// CPU time (µs) each endpoint task needs to produce (writer) or consume (reader) one
    /// half-buffer, `B / 2` bytes.
    pub c: u32,
    /// Throughput, bytes per second.
    pub lambda: u32,
    /// Buffer size in bytes (even, at least 2).
    pub b: u32,
}

/// What the kernel guarantees for a tuned pipe (`struct tpipe_guarantee`, 28 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TpipeGuarantee {
    /// Guaranteed throughput, bytes per second (at least the requested `lambda`).
    pub throughput: u32,
    /// Worst-case delay, µs, from a `write` starting to the byte being returned by `read`.
    pub delay_us: u32,
    /// Budget (µs) of both endpoint VCPUs.
    pub c: u32,
    /// Period (µs) of both endpoint VCPUs.
    pub t: u32,
    /// The writer's Main VCPU (bound to the first task that writes).
    pub writer_vcpu: u32,
    /// The reader's Main VCPU (bound to the first task that reads).
    pub reader_vcpu: u32,
    /// Buffer size in bytes.
    pub b: u32,
}

/// A Boomerang pipeline's QoS request (`struct boomerang_qos`, 20 bytes): see
/// `channels::boomerang` for the rate matching.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BoomerangQos {
    /// CPU time (µs) a stage's job needs to move one chunk.
    pub c: u32,
    /// Throughput, bytes per second.
    pub lambda: u32,
    /// Buffer of each hop between two stages, bytes (three chunks).
    pub b: u32,
    /// Packet size, bytes.
    pub packet: u32,
    /// Stages in the pipeline (2..=16).
    pub stages: u32,
}

/// What a Boomerang stage gets (`struct boomerang_plan`, 36 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BoomerangPlan {
    /// Budget of the stage's reservation, µs.
    pub c: u32,
    /// Period of every stage, µs.
    pub t: u32,
    /// Bytes a stage moves per job.
    pub chunk: u32,
    /// Packets a stage moves per job.
    pub packets: u32,
    /// Packets a hop holds: the sync channel's `buffer_len`.
    pub slots: u32,
    /// Guaranteed throughput, bytes/s.
    pub throughput: u32,
    /// Bound on one hop's delay, µs.
    pub hop_delay_us: u32,
    /// Bound on the end-to-end delay, µs.
    pub delay_us: u32,
    /// The stage's Main VCPU on Quest; -1 where the reservation is not a VCPU (Linux's
    /// `SCHED_DEADLINE`).
    pub vcpu: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_are_pinned() {
        assert_eq!(size_of::<TpipeQos>(), 12);
        assert_eq!(offset_of!(TpipeQos, b), 8);
        assert_eq!(size_of::<TpipeGuarantee>(), 28);
        assert_eq!(offset_of!(TpipeGuarantee, reader_vcpu), 20);
        assert_eq!(SHMCOMM_FLAGS, 0x1f);
        assert_eq!(size_of::<BoomerangQos>(), 20);
        assert_eq!(size_of::<BoomerangPlan>(), 36);
        assert_eq!(offset_of!(BoomerangPlan, vcpu), 32);
    }
}
