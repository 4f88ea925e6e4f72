//! `/dev/canN` (issue 17): read and write whole `struct can_frame` records, the controller's
//! ioctls, and the path that names a controller (moved out of `files.rs`, which had grown past
//! 1,000 lines).
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use linux_raw_sys::errno::*;
use quest_abi::can::CanFrame;

use super::{Cx, Errno, SysResult, UserPtr, UserSlice, UserSliceMut};
use crate::signal::ERESTARTSYS;

const FRAME: usize = core::mem::size_of::<CanFrame>();

/// `read` on `/dev/canN`: whole `struct can_frame`s, at least one (blocking).
pub(super) fn can_read(cx: &Cx, c: &'static crate::drivers::can::CanDev, buf: UserSliceMut) -> SysResult {
    let p = cx.p();
    let max = usize::try_from(buf.len()).unwrap_or(usize::MAX) / FRAME;
    if max == 0 {
        return Err(EINVAL);
    }
    let frames = c
        .read_frames(max.min(256), &|| p.terminal.load(Ordering::Relaxed) || crate::sched::must_act_before_user())
        .map_err(|e| if e == EINTR { ERESTARTSYS } else { e })?;
    let mut bytes = Vec::with_capacity(frames.len() * FRAME);
    for f in &frames {
        bytes.extend_from_slice(hal::user::pod_bytes(f));
    }
    buf.write(p, &bytes)?;
    Ok(bytes.len() as u64)
}

/// `write` on `/dev/canN`: whole `struct can_frame`s, sent in order; a partial frame is
/// `EINVAL`, as is a frame CAN cannot carry.
pub(super) fn can_write(cx: &Cx, c: &'static crate::drivers::can::CanDev, buf: UserSlice) -> SysResult {
    let p = cx.p();
    let data = buf.prefix(256 * FRAME as u64).read_to_vec(p)?;
    if data.is_empty() || data.len() % FRAME != 0 {
        return Err(EINVAL);
    }
    let mut sent = 0;
    for chunk in data.chunks(FRAME) {
        let f: CanFrame = hal::user::pod_read(chunk).ok_or(EINVAL)?;
        if let Err(e) = c.send(&f) {
            return if sent == 0 { Err(e) } else { Ok(sent as u64) };
        }
        sent += FRAME;
    }
    Ok(sent as u64)
}

/// The CAN controller a path names (`/dev/can0`, …): `ENODEV` when there is no such controller.
pub(super) fn can_path(name: &[u8]) -> Option<Result<&'static crate::drivers::can::CanDev, Errno>> {
    let n = name.strip_prefix(b"/dev/can")?;
    let s = core::str::from_utf8(n).ok()?;
    let i: usize = s.parse().ok()?;
    Some(crate::drivers::can::controller(i).ok_or(ENODEV))
}

pub(super) fn can_ioctl(cx: &Cx, c: &'static crate::drivers::can::CanDev, req: u32, arg: u64) -> SysResult {
    use quest_abi::can::*;
    match req {
        QUEST_CAN_SET_BITRATE => c.set_bitrate(u32::try_from(arg).map_err(|_| EINVAL)?).map(|()| 0),
        QUEST_CAN_SET_FILTER => {
            let ptr = UserPtr::<CanFilter>::new(arg);
            let f = if ptr.is_null() { None } else { Some(ptr.read(cx.p())?) };
            c.set_filter(f).map(|()| 0)
        }
        QUEST_CAN_GET_STATS => UserPtr::<CanStats>::new(arg).write(cx.p(), &c.stats()).map(|_| 0),
        QUEST_CAN_RESTART => {
            c.restart();
            Ok(0)
        }
        _ => Err(ENOTTY),
    }
}
