//! USB mass storage, bulk-only transport (USB MSC BOT 1.0) with the SCSI commands a read-only
//! stick needs (SPC-4/SBC-3: TEST UNIT READY, REQUEST SENSE, INQUIRY, READ CAPACITY(10),
//! READ(10)). The kernel sends a 31-byte Command Block Wrapper on the bulk OUT endpoint, moves
//! the data on bulk IN, and reads the 13-byte Command Status Wrapper; everything the device
//! returns is checked here (a wrong signature or tag, a residue larger than asked, a capacity
//! that is not a sane block size) and refused with an error naming it.
use alloc::string::String;

/// Interface class, subclass (SCSI transparent) and protocol (bulk-only) of a BOT stick.
pub const CLASS: u8 = 8;
pub const SUBCLASS_SCSI: u8 = 6;
pub const PROTOCOL_BOT: u8 = 0x50;

/// Class requests: Get Max LUN, Bulk-Only Mass Storage Reset.
pub const REQ_GET_MAX_LUN: u8 = 0xfe;
pub const REQ_RESET: u8 = 0xff;

const CBW_SIGNATURE: u32 = 0x4342_5355;
const CSW_SIGNATURE: u32 = 0x5342_5355;

/// A malformed answer from the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MscError {
    /// The CSW is not 13 bytes, has the wrong signature or another command's tag.
    BadCsw(&'static str),
    /// The device says the command failed (CSW status 1); REQUEST SENSE tells why.
    Failed,
    /// The device reports a phase error (CSW status 2): it must be reset.
    PhaseError,
    /// A SCSI answer is malformed (what).
    BadData(&'static str),
}

impl core::fmt::Display for MscError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MscError::BadCsw(w) => write!(f, "bad command status: {w}"),
            MscError::Failed => f.write_str("command failed"),
            MscError::PhaseError => f.write_str("phase error"),
            MscError::BadData(w) => write!(f, "malformed answer: {w}"),
        }
    }
}

/// The Command Block Wrapper for `cdb` (1–16 bytes) moving `data_len` bytes (`dir_in`:
/// device to host).
pub fn cbw(tag: u32, data_len: u32, dir_in: bool, lun: u8, cdb: &[u8]) -> [u8; 31] {
    let mut b = [0u8; 31];
    b[0..4].copy_from_slice(&CBW_SIGNATURE.to_le_bytes());
    b[4..8].copy_from_slice(&tag.to_le_bytes());
    b[8..12].copy_from_slice(&data_len.to_le_bytes());
    b[12] = if dir_in { 0x80 } else { 0 };
    b[13] = lun & 0xf;
    let n = cdb.len().min(16);
    b[14] = n as u8;
    b[15..15 + n].copy_from_slice(&cdb[..n]);
    b
}

/// Checks the Command Status Wrapper of command `tag` that asked for `asked` bytes; returns the
/// residue (bytes not moved).
pub fn csw(b: &[u8], tag: u32, asked: u32) -> Result<u32, MscError> {
    if b.len() != 13 {
        return Err(MscError::BadCsw("not 13 bytes"));
    }
    if u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != CSW_SIGNATURE {
        return Err(MscError::BadCsw("wrong signature"));
    }
    if u32::from_le_bytes([b[4], b[5], b[6], b[7]]) != tag {
        return Err(MscError::BadCsw("another command's tag"));
    }
    let residue = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if residue > asked {
        return Err(MscError::BadCsw("residue larger than the transfer"));
    }
    match b[12] {
        0 => Ok(residue),
        1 => Err(MscError::Failed),
        2 => Err(MscError::PhaseError),
        _ => Err(MscError::BadCsw("unknown status")),
    }
}

/// SCSI command blocks.
pub fn test_unit_ready() -> [u8; 6] {
    [0; 6]
}
pub fn request_sense(len: u8) -> [u8; 6] {
    [0x03, 0, 0, 0, len, 0]
}
pub fn inquiry(len: u8) -> [u8; 6] {
    [0x12, 0, 0, 0, len, 0]
}
pub fn read_capacity10() -> [u8; 10] {
    [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}
pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let n = blocks.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, n[0], n[1], 0]
}

/// What INQUIRY says: peripheral device type (0: direct access), vendor and product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inquiry {
    pub device_type: u8,
    pub removable: bool,
    pub vendor: String,
    pub product: String,
}

fn text(b: &[u8]) -> String {
    let s: String = b.iter().map(|&c| if (0x20..0x7f).contains(&c) { c as char } else { '?' }).collect();
    String::from(s.trim())
}

/// Parses standard INQUIRY data (at least 36 bytes).
pub fn parse_inquiry(b: &[u8]) -> Result<Inquiry, MscError> {
    if b.len() < 36 {
        return Err(MscError::BadData("INQUIRY data shorter than 36 bytes"));
    }
    Ok(Inquiry { device_type: b[0] & 0x1f, removable: b[1] & 0x80 != 0, vendor: text(&b[8..16]), product: text(&b[16..32]) })
}

/// Parses READ CAPACITY(10) data: (number of blocks, block size). The block size must be a
/// power of two from 512 to 4096 and the capacity non-zero.
pub fn parse_capacity(b: &[u8]) -> Result<(u64, u32), MscError> {
    if b.len() < 8 {
        return Err(MscError::BadData("READ CAPACITY data shorter than 8 bytes"));
    }
    let last = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let size = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    if !size.is_power_of_two() || !(512..=4096).contains(&size) {
        return Err(MscError::BadData("block size not a power of two from 512 to 4096"));
    }
    if last == u32::MAX {
        return Err(MscError::BadData("more than 2^32 blocks (READ CAPACITY(16) is not supported yet)"));
    }
    Ok((u64::from(last) + 1, size))
}

/// Sense key, additional sense code and qualifier from fixed-format sense data.
pub fn parse_sense(b: &[u8]) -> Result<(u8, u8, u8), MscError> {
    if b.len() < 14 || b[0] & 0x7e != 0x70 {
        return Err(MscError::BadData("not fixed-format sense data"));
    }
    Ok((b[2] & 0xf, b[12], b[13]))
}

/// The READ(10) commands for `blocks` blocks from `lba`, at most `per` blocks each:
/// (lba, count) pairs. None if the range leaves the device's `capacity` (or READ(10)'s 32-bit
/// block numbers).
pub fn split_reads(lba: u64, blocks: u64, per: u16, capacity: u64) -> Option<impl Iterator<Item = (u32, u16)>> {
    let end = lba.checked_add(blocks)?;
    if end > capacity || end > 1 << 32 || per == 0 {
        return None;
    }
    let per = u64::from(per);
    Some((0..blocks.div_ceil(per)).map(move |i| {
        let at = lba + i * per;
        (at as u32, (end - at).min(per) as u16)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[test]
    fn cbw_layout() {
        let b = cbw(7, 512, true, 0, &read10(0x01020304, 1));
        assert_eq!(&b[0..4], b"USBC");
        assert_eq!(u32::from_le_bytes([b[4], b[5], b[6], b[7]]), 7);
        assert_eq!(u32::from_le_bytes([b[8], b[9], b[10], b[11]]), 512);
        assert_eq!((b[12], b[13], b[14]), (0x80, 0, 10));
        assert_eq!(&b[15..25], &[0x28, 0, 1, 2, 3, 4, 0, 0, 1, 0]);
        assert_eq!(&b[25..], &[0; 6]);
    }

    fn csw_bytes(tag: u32, residue: u32, status: u8) -> Vec<u8> {
        let mut b = Vec::from(*b"USBS");
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&residue.to_le_bytes());
        b.push(status);
        b
    }

    #[test]
    fn csw_checks() {
        assert_eq!(csw(&csw_bytes(9, 0, 0), 9, 512), Ok(0));
        assert_eq!(csw(&csw_bytes(9, 12, 0), 9, 512), Ok(12));
        assert_eq!(csw(&csw_bytes(9, 0, 1), 9, 512), Err(MscError::Failed));
        assert_eq!(csw(&csw_bytes(9, 0, 2), 9, 512), Err(MscError::PhaseError));
        assert_eq!(csw(&csw_bytes(8, 0, 0), 9, 512), Err(MscError::BadCsw("another command's tag")));
        assert_eq!(csw(&csw_bytes(9, 513, 0), 9, 512), Err(MscError::BadCsw("residue larger than the transfer")));
        assert_eq!(csw(&csw_bytes(9, 0, 0)[..12], 9, 512), Err(MscError::BadCsw("not 13 bytes")));
        let mut b = csw_bytes(9, 0, 0);
        b[0] = b'X';
        assert_eq!(csw(&b, 9, 0), Err(MscError::BadCsw("wrong signature")));
    }

    #[test]
    fn capacity_and_inquiry() {
        assert_eq!(parse_capacity(&[0, 0, 7, 0xff, 0, 0, 2, 0]), Ok((2048, 512)));
        assert!(parse_capacity(&[0, 0, 7, 0xff, 0, 0, 3, 0]).is_err());
        assert!(parse_capacity(&[0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0]).is_err());
        assert!(parse_capacity(&[0, 0, 0]).is_err());
        let mut q = [0x20u8; 36];
        q[0] = 0;
        q[1] = 0x80;
        q[8..12].copy_from_slice(b"QEMU");
        q[16..29].copy_from_slice(b"QEMU HARDDISK");
        let i = parse_inquiry(&q).unwrap();
        assert_eq!((i.device_type, i.removable, i.vendor.as_str(), i.product.as_str()), (0, true, "QEMU", "QEMU HARDDISK"));
        assert!(parse_inquiry(&q[..35]).is_err());
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = 5;
        s[12] = 0x24;
        assert_eq!(parse_sense(&s), Ok((5, 0x24, 0)));
    }

    #[test]
    fn reads_split_and_stay_on_the_device() {
        let v: Vec<_> = split_reads(10, 300, 128, 2048).unwrap().collect();
        assert_eq!(v, [(10, 128), (138, 128), (266, 44)]);
        assert!(split_reads(2000, 49, 128, 2048).is_none());
        assert!(split_reads(u64::MAX, 2, 128, u64::MAX).is_none());
        assert_eq!(split_reads(5, 0, 128, 2048).unwrap().count(), 0);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64), tag in any::<u32>(), asked in any::<u32>()) {
            let _ = csw(&b, tag, asked);
            let _ = parse_inquiry(&b);
            let _ = parse_capacity(&b);
            let _ = parse_sense(&b);
        }
    }
}
