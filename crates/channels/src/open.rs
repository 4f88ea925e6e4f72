//! The argument checks of `shmcomm_open_send` / `shmcomm_open_receive`, shared by the two
//! implementations of shmcomm: Quest's kernel (kernel/src/shmcomm.rs) and the Quest-V Linux
//! sandbox's library (user/linux/shmcomm). One function, so that both sides of a channel
//! refuse exactly the same requests with the same error.
//!
//! Flags are `quest_abi::shm`'s (`SHMCOMM_CREATE_CH` …); every refusal is `EINVAL` to the
//! caller — [`OpenError`] only says which rule was broken, for logs and tests.

use quest_abi::shm::*;

use crate::{FourSlot, Fifo, Geometry, Kind};

/// A checked open request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenRequest {
    /// `SHMCOMM_CREATE_CH` (else `SHMCOMM_CONNECT_CH`).
    pub create: bool,
    /// The kind asked for; `None` on a connect that lets the channel say.
    pub kind: Option<Kind>,
    /// Packet (slot) size, bytes: `1..=SHMCOMM_MAX_PACKET`.
    pub packet: usize,
    /// Create: the slot count (4 for a four-slot, `buffer_len` for a FIFO). Connect: the
    /// `buffer_len` the caller expects, or 0 for "whatever the channel has".
    pub slots: usize,
    /// `SHMCOMM_NONBLOCK_CH`: a sync read of an empty channel or write to a full one fails
    /// with `EAGAIN` instead of waiting.
    pub nonblock: bool,
}

/// Why a request is refused (`EINVAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// An unknown flag bit, both or neither of create/connect, or both kinds.
    Flags,
    /// Create without a kind.
    NoKind,
    /// Packet size 0 or above `SHMCOMM_MAX_PACKET`.
    Packet,
    /// Create of a sync channel with `buffer_len` outside `1..=SHMCOMM_MAX_BUFFER`.
    BufferLen,
    /// The channel would not fit the layout's limits or the space given for it.
    TooBig,
    /// Connect: the existing channel has another kind, packet size or slot count.
    Mismatch,
}

impl OpenRequest {
    /// Checks `shmcomm_open_*(key, flags, …, packet_size, buffer_len)`'s arguments.
    pub fn parse(flags: u32, packet: u64, buffer_len: i64) -> Result<OpenRequest, OpenError> {
        if flags & !SHMCOMM_FLAGS != 0 {
            return Err(OpenError::Flags);
        }
        let create = flags & SHMCOMM_CREATE_CH != 0;
        if create == (flags & SHMCOMM_CONNECT_CH != 0) {
            return Err(OpenError::Flags);
        }
        let kind = match (flags & SHMCOMM_ASYNC_CH != 0, flags & SHMCOMM_SYNC_CH != 0) {
            (true, false) => Some(Kind::FourSlot),
            (false, true) => Some(Kind::Fifo),
            (false, false) => None,
            (true, true) => return Err(OpenError::Flags),
        };
        if packet == 0 || packet > u64::from(SHMCOMM_MAX_PACKET) {
            return Err(OpenError::Packet);
        }
        let slots = match (create, kind) {
            (true, None) => return Err(OpenError::NoKind),
            (true, Some(Kind::FourSlot)) => 4,
            (true, Some(Kind::Fifo)) if buffer_len < 1 || buffer_len > i64::from(SHMCOMM_MAX_BUFFER) => return Err(OpenError::BufferLen),
            (_, Some(Kind::Fifo)) | (false, _) => buffer_len.clamp(0, i64::from(SHMCOMM_MAX_BUFFER) + 1) as usize,
        };
        Ok(OpenRequest { create, kind, packet: packet as usize, slots, nonblock: flags & SHMCOMM_NONBLOCK_CH != 0 })
    }

    /// Create: the bytes the channel needs, at most `limit`.
    pub fn region_bytes(&self, limit: usize) -> Result<usize, OpenError> {
        let bytes = match self.kind {
            Some(Kind::FourSlot) => FourSlot::region_bytes(self.packet),
            _ => Fifo::region_bytes(self.packet, self.slots),
        }
        .map_err(|_| OpenError::TooBig)?;
        if bytes > limit {
            return Err(OpenError::TooBig);
        }
        Ok(bytes)
    }

    /// Create: formats `region` for this channel.
    pub fn format(&self, region: &[crate::sync::AtomicU64]) -> Result<(), OpenError> {
        match self.kind {
            Some(Kind::FourSlot) => FourSlot::format(region, self.packet),
            _ => Fifo::format(region, self.packet, self.slots),
        }
        .map_err(|_| OpenError::TooBig)
    }

    /// Connect: whether the channel `g` (validated by [`crate::probe`]) is what was asked for.
    pub fn accepts(&self, g: &Geometry) -> Result<(), OpenError> {
        if self.kind.is_some_and(|k| k != g.kind) || self.packet != g.slot_size {
            return Err(OpenError::Mismatch);
        }
        if g.kind == Kind::Fifo && self.slots > 0 && self.slots != g.slot_count {
            return Err(OpenError::Mismatch);
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn geometry(kind: Kind, slot_size: usize, slot_count: usize) -> Geometry {
        Geometry { kind, slot_size, slot_count, region_words: 0 }
    }

    #[test]
    fn the_seeds_requests() {
        let r = OpenRequest::parse(SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH, 4, -1).unwrap();
        assert_eq!(r, OpenRequest { create: true, kind: Some(Kind::FourSlot), packet: 4, slots: 4, nonblock: false });
        let r = OpenRequest::parse(SHMCOMM_CONNECT_CH, 4, -1).unwrap();
        assert_eq!(r, OpenRequest { create: false, kind: None, packet: 4, slots: 0, nonblock: false });
        assert_eq!(r.accepts(&geometry(Kind::FourSlot, 4, 4)), Ok(()));
        let r = OpenRequest::parse(SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH | SHMCOMM_NONBLOCK_CH, 64, 12).unwrap();
        assert_eq!((r.slots, r.nonblock), (12, true));
    }

    #[test]
    fn refusals() {
        use OpenError::*;
        let p = OpenRequest::parse;
        assert_eq!(p(0x100 | SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, 4, 1), Err(Flags));
        assert_eq!(p(SHMCOMM_CREATE_CH | SHMCOMM_CONNECT_CH | SHMCOMM_SYNC_CH, 4, 1), Err(Flags));
        assert_eq!(p(SHMCOMM_SYNC_CH, 4, 1), Err(Flags));
        assert_eq!(p(SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH | SHMCOMM_SYNC_CH, 4, 1), Err(Flags));
        assert_eq!(p(SHMCOMM_CREATE_CH, 4, 1), Err(NoKind));
        assert_eq!(p(SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, 0, 1), Err(Packet));
        assert_eq!(p(SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, u64::from(SHMCOMM_MAX_PACKET) + 1, 1), Err(Packet));
        assert_eq!(p(SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, 4, 0), Err(BufferLen));
        assert_eq!(p(SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, 4, i64::from(SHMCOMM_MAX_BUFFER) + 1), Err(BufferLen));
        let r = p(SHMCOMM_CREATE_CH | SHMCOMM_SYNC_CH, 4096, 64).unwrap();
        assert_eq!(r.region_bytes(4096), Err(TooBig));
        assert!(r.region_bytes(1 << 20).is_ok());
        let c = p(SHMCOMM_CONNECT_CH | SHMCOMM_SYNC_CH, 64, 8).unwrap();
        assert_eq!(c.accepts(&geometry(Kind::Fifo, 64, 8)), Ok(()));
        assert_eq!(c.accepts(&geometry(Kind::Fifo, 64, 16)), Err(Mismatch));
        assert_eq!(c.accepts(&geometry(Kind::Fifo, 32, 8)), Err(Mismatch));
        assert_eq!(c.accepts(&geometry(Kind::FourSlot, 64, 4)), Err(Mismatch));
        // A connect asking for an impossible slot count can never match a channel.
        let c = p(SHMCOMM_CONNECT_CH, 64, i64::MAX).unwrap();
        assert_eq!(c.accepts(&geometry(Kind::Fifo, 64, SHMCOMM_MAX_BUFFER as usize)), Err(Mismatch));
    }
}
