//! CAN through a device file: `/dev/can0`, `/dev/can1`, … carry Linux SocketCAN's
//! `struct can_frame` (16 bytes) — `read` returns whole frames (at least one, blocking),
//! `write` sends whole frames — so frame-handling code ports from SocketCAN unchanged; what a
//! socket would set with `setsockopt`/netlink is an `ioctl` on the descriptor here.
//! (A socket layer — `socket(PF_CAN, SOCK_RAW, CAN_RAW)` — is not supported yet: Quest has
//! no sockets at all, and a device file gives the same frames with far less kernel.)

/// Extended frame format (29-bit identifier) flag in `can_id` (Linux's `CAN_EFF_FLAG`).
pub const CAN_EFF_FLAG: u32 = 0x8000_0000;
/// Remote transmission request (`CAN_RTR_FLAG`).
pub const CAN_RTR_FLAG: u32 = 0x4000_0000;
/// Error frame (`CAN_ERR_FLAG`): never sent; not supported on write.
pub const CAN_ERR_FLAG: u32 = 0x2000_0000;
/// Standard (11-bit) identifier bits.
pub const CAN_SFF_MASK: u32 = 0x0000_07ff;
/// Extended (29-bit) identifier bits.
pub const CAN_EFF_MASK: u32 = 0x1fff_ffff;

/// Linux's `struct can_frame` (classic CAN, 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CanFrame {
    /// Identifier (11 or 29 bits) and the EFF/RTR/ERR flags.
    pub can_id: u32,
    /// Payload length 0..=8 (`can_dlc`).
    pub len: u8,
    /// Padding and reserved bytes (zero).
    pub pad: u8,
    /// Reserved (zero).
    pub res0: u8,
    /// Linux's raw DLC 9..15 for 8-byte frames (zero here).
    pub len8_dlc: u8,
    /// The payload (`len` bytes used).
    pub data: [u8; 8],
}

/// Linux's `struct can_filter`: a frame passes when `(id & mask) == (can_id & mask)`; the EFF
/// and RTR flags in the mask make them part of the match.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CanFilter {
    /// Identifier (and flags) to match.
    pub can_id: u32,
    /// Bits of the identifier (and flags) that must match.
    pub can_mask: u32,
}

/// The controller's state and counters (`QUEST_CAN_GET_STATS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CanStats {
    /// Bits per second.
    pub bitrate: u32,
    /// 0 error-active, 1 error-warning, 2 error-passive, 3 bus-off ([`CanState`]).
    pub state: u32,
    /// Frames sent.
    pub tx_frames: u64,
    /// Frames the controller received (passed its acceptance filter).
    pub rx_frames: u64,
    /// Received but dropped by the software filters.
    pub rx_filtered: u64,
    /// Lost: the controller's FIFO overran, or the driver's queue was full.
    pub rx_overruns: u64,
    /// Frames dropped because no reader kept up (the driver's queue was full).
    pub rx_dropped: u64,
    /// Bus errors the controller reported.
    pub bus_errors: u64,
    /// Times the controller went bus-off.
    pub bus_off: u64,
    /// Recoveries from bus-off.
    pub restarts: u64,
    /// The transmit error counter.
    pub tx_errors: u32,
    /// The receive error counter.
    pub rx_errors: u32,
    /// Interrupt-to-reader latency of the last received frames (ns): median, max, samples.
    pub latency_median_ns: u64,
    /// See `latency_median_ns`.
    pub latency_max_ns: u64,
    /// See `latency_median_ns`.
    pub latency_samples: u64,
}

/// Error states of ISO 11898-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum CanState {
    /// Both error counters below 96.
    ErrorActive = 0,
    /// A counter at 96 or more.
    ErrorWarning = 1,
    /// A counter at 128 or more.
    ErrorPassive = 2,
    /// The transmit counter passed 255: off the bus.
    BusOff = 3,
}

/// `ioctl(fd, QUEST_CAN_SET_BITRATE, bitrate)`: bits per second (10 kbit/s .. 1 Mbit/s, timing
/// exact for the controller's clock); `EINVAL` otherwise. Resets the controller.
pub const QUEST_CAN_SET_BITRATE: u32 = 0x5143_0001;
/// `ioctl(fd, QUEST_CAN_SET_FILTER, &struct can_filter)`: one acceptance filter (also programmed
/// into the controller's acceptance registers); a null pointer accepts everything again.
pub const QUEST_CAN_SET_FILTER: u32 = 0x5143_0002;
/// `ioctl(fd, QUEST_CAN_GET_STATS, &struct quest_can_stats)`.
pub const QUEST_CAN_GET_STATS: u32 = 0x5143_0003;
/// `ioctl(fd, QUEST_CAN_RESTART, 0)`: leave bus-off now (else automatic after 100 ms).
pub const QUEST_CAN_RESTART: u32 = 0x5143_0004;
