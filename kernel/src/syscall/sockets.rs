//! Sockets (AF_UNIX only; the work is in `crate::socket`): socket, socketpair, bind, listen,
//! accept, accept4, connect, send/sendto/sendmsg, recv/recvfrom/recvmsg, shutdown,
//! getsockname, getpeername, getsockopt, setsockopt. Control messages: SCM_RIGHTS.
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use linux_raw_sys::errno::*;

use super::{Cx, Errno, SysResult, UserPtr, UserSlice, UserSliceMut};
use crate::fs::File;
use crate::socket::{Name, Sock, Type};

const AF_UNIX: u64 = 1;
const SOCK_NONBLOCK: u64 = 0o4000;
const SOCK_CLOEXEC: u64 = 0o2000000;
const MSG_DONTWAIT: u64 = 0x40;
const MSG_NOSIGNAL: u64 = 0x4000;
const MSG_TRUNC: u64 = 0x20;
const MSG_PEEK: u64 = 2;
const MSG_WAITALL: u64 = 0x100;
const IO_MAX: u64 = 1 << 20;
/// sizeof(struct sockaddr_un).
const SUN_LEN: usize = 110;

fn nonblocking(s: &Arc<Sock>) -> bool {
    s.nonblock.load(Ordering::Relaxed)
}

fn sock_type(ty: u64) -> Result<Type, Errno> {
    match ty & 0xf {
        1 => Ok(Type::Stream),
        2 => Ok(Type::Dgram),
        5 => Ok(Type::Seqpacket),
        _ => Err(EPROTONOSUPPORT),
    }
}

fn install(cx: &Cx, s: Arc<Sock>, flags: u64) -> SysResult {
    s.nonblock.store(flags & SOCK_NONBLOCK != 0, Ordering::Relaxed);
    cx.p().files.lock().insert_flags(File::Sock(s), 0, flags & SOCK_CLOEXEC != 0)
}

pub fn socket(cx: &Cx, domain: u64, ty: u64, proto: u64) -> SysResult {
    if domain != AF_UNIX {
        return Err(EAFNOSUPPORT);
    }
    if proto != 0 {
        return Err(EPROTONOSUPPORT);
    }
    install(cx, Sock::new(sock_type(ty)?), ty)
}

/// socketpair(AF_UNIX, SOCK_STREAM | SOCK_DGRAM | SOCK_SEQPACKET [| SOCK_CLOEXEC |
/// SOCK_NONBLOCK], 0, sv).
pub fn socketpair(cx: &Cx, domain: u64, ty: u64, proto: u64, sv: UserPtr<[i32; 2]>) -> SysResult {
    if domain != AF_UNIX {
        return Err(EAFNOSUPPORT);
    }
    if proto != 0 {
        return Err(EPROTONOSUPPORT);
    }
    let (a, b) = crate::socket::connected(sock_type(ty)?);
    a.nonblock.store(ty & SOCK_NONBLOCK != 0, Ordering::Relaxed);
    b.nonblock.store(ty & SOCK_NONBLOCK != 0, Ordering::Relaxed);
    let p = cx.p();
    let (fa, fb) = p.files.lock().insert_pair(File::Sock(a), File::Sock(b), ty & SOCK_CLOEXEC != 0)?;
    if let Err(e) = sv.write(p, &[fa as i32, fb as i32]) {
        let _ = p.files.lock().close(fa);
        let _ = p.files.lock().close(fb);
        return Err(e);
    }
    Ok(0)
}

fn sock(cx: &Cx, fd: u64) -> Result<Arc<Sock>, Errno> {
    match super::files::file(cx, fd)? {
        File::Sock(s) => Ok(s),
        _ => Err(ENOTSOCK),
    }
}

/// A `struct sockaddr_un` from user memory: a path (joined to the working directory) or an
/// abstract name.
fn read_addr(cx: &Cx, addr: u64, len: u64) -> Result<Name, Errno> {
    if len < 2 || len as usize > SUN_LEN {
        return Err(EINVAL);
    }
    let b = UserSlice::new(addr, len).read_to_vec(cx.p())?;
    if u16::from_le_bytes([b[0], b[1]]) != AF_UNIX as u16 {
        return Err(EINVAL);
    }
    let path = &b[2..];
    if path.is_empty() {
        return Err(EINVAL);
    }
    if path[0] == 0 {
        return Ok(Name::Abstract(path[1..].to_vec()));
    }
    let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
    let full = super::files::path_at_bytes(cx, linux_raw_sys::general::AT_FDCWD as u32 as u64, &path[..end])?;
    Ok(Name::Path(full))
}

/// Writes `name` as a `struct sockaddr_un` to `addr` (at most `*len` bytes) and its full
/// length to `len`.
fn write_addr(cx: &Cx, addr: u64, len: UserPtr<u32>, name: Option<&Name>) -> Result<(), Errno> {
    if addr == 0 || len.is_null() {
        return Ok(());
    }
    let room = len.read(cx.p())? as usize;
    let mut b: Vec<u8> = (AF_UNIX as u16).to_le_bytes().to_vec();
    match name {
        Some(Name::Path(p)) => {
            b.extend_from_slice(p.as_bytes());
            b.push(0);
        }
        Some(Name::Abstract(n)) => {
            b.push(0);
            b.extend_from_slice(n);
        }
        None => {}
    }
    let n = b.len().min(room);
    UserSliceMut::new(addr, n as u64).write(cx.p(), &b[..n])?;
    len.write(cx.p(), &(b.len() as u32))
}

/// The socket named `name` (ECONNREFUSED if nobody listens there, ENOENT without the path).
fn lookup(name: &Name) -> Result<Arc<Sock>, Errno> {
    match name {
        Name::Abstract(n) => crate::socket::find_abstract(n),
        Name::Path(p) => {
            let (node, _) = crate::vfs::resolve(p, true)?;
            match &node.kind {
                crate::vfs::Kind::Sock(w) => w.upgrade().ok_or(ECONNREFUSED),
                _ => Err(ECONNREFUSED),
            }
        }
    }
}

pub fn bind(cx: &Cx, fd: u64, addr: u64, len: u64) -> SysResult {
    let s = sock(cx, fd)?;
    if s.name().is_some() {
        return Err(EINVAL);
    }
    match read_addr(cx, addr, len)? {
        Name::Abstract(n) => crate::socket::bind_abstract(&s, n)?,
        Name::Path(p) => {
            let (dir, leaf) = crate::vfs::parent(&p)?;
            let umask = cx.p().umask.load(Ordering::Relaxed);
            let node = crate::vfs::new_socket(&s, 0o777 & !umask);
            crate::vfs::link(&dir, &leaf, node).map_err(|e| if e == EEXIST { EADDRINUSE } else { e })?;
            s.set_name(Name::Path(p))?;
        }
    }
    Ok(0)
}

pub fn listen(cx: &Cx, fd: u64, backlog: u64) -> SysResult {
    let s = sock(cx, fd)?;
    if s.ty != Type::Dgram && s.name().is_none() {
        return Err(EINVAL); // Linux would autobind; an unnamed listener cannot be reached
    }
    s.listen(backlog as i32 as i64 as usize).map(|_| 0)
}

pub fn connect(cx: &Cx, fd: u64, addr: u64, len: u64) -> SysResult {
    let s = sock(cx, fd)?;
    let name = read_addr(cx, addr, len)?;
    let server = lookup(&name)?;
    s.connect(&server, name, nonblocking(&s)).map(|_| 0)
}

pub fn accept4(cx: &Cx, fd: u64, addr: u64, len: UserPtr<u32>, flags: u64) -> SysResult {
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(EINVAL);
    }
    let s = sock(cx, fd)?;
    if s.ty == Type::Dgram {
        return Err(EOPNOTSUPP);
    }
    let c = s.accept(nonblocking(&s))?;
    write_addr(cx, addr, len, c.peer_name().as_ref())?;
    install(cx, c, flags)
}

/// Sends bytes on `s` (to `to`), with SIGPIPE for EPIPE unless `nosignal`.
pub(super) fn send_bytes(cx: &Cx, s: &Arc<Sock>, buf: UserSlice, to: Option<Name>, nosignal: bool, dontwait: bool) -> SysResult {
    let data = buf.prefix(IO_MAX).read_to_vec(cx.p())?;
    send_data(cx, s, &data, to, nosignal, dontwait, Vec::new())
}

fn send_data(cx: &Cx, s: &Arc<Sock>, data: &[u8], to: Option<Name>, nosignal: bool, dontwait: bool, fds: Vec<File>) -> SysResult {
    let target = match to {
        Some(n) => Some((lookup(&n)?, n)),
        None => None,
    };
    match s.send(data, target, dontwait || nonblocking(s), fds) {
        Ok(n) => Ok(n as u64),
        Err(EPIPE) => {
            if !nosignal {
                let _ = crate::signal::send(&cx.proc, Some(cx.tid), signals::SigInfo::kernel(signals::SIGPIPE));
            }
            Err(EPIPE)
        }
        Err(e) => Err(e),
    }
}

pub fn sendto(cx: &Cx, fd: u64, buf: UserSlice, flags: u64, addr: u64, len: u64) -> SysResult {
    let s = sock(cx, fd)?;
    let to = if addr != 0 { Some(read_addr(cx, addr, len)?) } else { None };
    send_bytes(cx, &s, buf, to, flags & MSG_NOSIGNAL != 0, flags & MSG_DONTWAIT != 0)
}

pub fn recvfrom(cx: &Cx, fd: u64, buf: UserSliceMut, flags: u64, addr: u64, len: UserPtr<u32>) -> SysResult {
    if flags & (MSG_PEEK | MSG_WAITALL) != 0 {
        return Err(EOPNOTSUPP);
    }
    let s = sock(cx, fd)?;
    let r = s.recv(buf.len().min(IO_MAX) as usize, flags & MSG_DONTWAIT != 0 || nonblocking(&s))?;
    buf.write(cx.p(), &r.data)?;
    write_addr(cx, addr, len, r.from.as_ref())?;
    Ok(if flags & MSG_TRUNC != 0 { r.full } else { r.data.len() } as u64)
}

/// `struct msghdr` (56 bytes): name, namelen, iov, iovlen, control, controllen, flags.
struct MsgHdr {
    name: u64,
    namelen: u32,
    iov: u64,
    iovlen: u64,
    control: u64,
    controllen: u64,
}

fn read_msghdr(cx: &Cx, msg: u64) -> Result<MsgHdr, Errno> {
    let w = UserPtr::<[u64; 7]>::new(msg).read(cx.p())?;
    Ok(MsgHdr { name: w[0], namelen: w[1] as u32, iov: w[2], iovlen: w[3], control: w[4], controllen: w[5] })
}

fn iovecs(cx: &Cx, h: &MsgHdr) -> Result<Vec<(u64, u64)>, Errno> {
    if h.iovlen > 1024 {
        return Err(EMSGSIZE);
    }
    (0..h.iovlen).map(|i| UserPtr::<[u64; 2]>::new(h.iov).at(i).and_then(|p| p.read(cx.p())).map(|v| (v[0], v[1]))).collect()
}

pub fn sendmsg(cx: &Cx, fd: u64, msg: u64, flags: u64) -> SysResult {
    let s = sock(cx, fd)?;
    let h = read_msghdr(cx, msg)?;
    let fds = rights_in(cx, &h)?;
    let mut data = Vec::new();
    for (base, len) in iovecs(cx, &h)? {
        if data.len() as u64 + len > IO_MAX {
            return Err(EMSGSIZE);
        }
        data.extend(UserSlice::new(base, len).read_to_vec(cx.p())?);
    }
    let to = if h.name != 0 { Some(read_addr(cx, h.name, u64::from(h.namelen))?) } else { None };
    send_data(cx, &s, &data, to, flags & MSG_NOSIGNAL != 0, flags & MSG_DONTWAIT != 0, fds)
}

const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
/// sizeof(struct cmsghdr): len (8), level (4), type (4).
const CMSG_HDR: u64 = 16;
/// Most descriptors in one message (Linux's SCM_MAX_FD).
const SCM_MAX_FD: u64 = 253;

/// The descriptors of a message's SCM_RIGHTS control messages (EBADF for a closed one,
/// EOPNOTSUPP for another kind of control message, EINVAL for a malformed one).
fn rights_in(cx: &Cx, h: &MsgHdr) -> Result<Vec<File>, Errno> {
    let mut out = Vec::new();
    if h.controllen == 0 {
        return Ok(out);
    }
    if h.controllen > 64 * 1024 {
        return Err(ENOBUFS);
    }
    let c = UserSlice::new(h.control, h.controllen).read_to_vec(cx.p())?;
    let mut at = 0usize;
    while at + CMSG_HDR as usize <= c.len() {
        let len = u64::from_le_bytes(c[at..at + 8].try_into().unwrap_or([0; 8])) as usize;
        let level = i32::from_le_bytes(c[at + 8..at + 12].try_into().unwrap_or([0; 4]));
        let ty = i32::from_le_bytes(c[at + 12..at + 16].try_into().unwrap_or([0; 4]));
        if len < CMSG_HDR as usize || at + len > c.len() {
            return Err(EINVAL);
        }
        if level != SOL_SOCKET || ty != SCM_RIGHTS {
            return Err(EOPNOTSUPP);
        }
        let n = (len - CMSG_HDR as usize) / 4;
        if (out.len() + n) as u64 > SCM_MAX_FD {
            return Err(EINVAL);
        }
        for i in 0..n {
            let o = at + CMSG_HDR as usize + 4 * i;
            let fd = i32::from_le_bytes(c[o..o + 4].try_into().unwrap_or([0; 4]));
            if fd < 0 {
                return Err(EBADF);
            }
            out.push(super::files::file(cx, fd as u64)?);
        }
        at += len.next_multiple_of(8);
    }
    Ok(out)
}

/// Installs received descriptors and writes their SCM_RIGHTS control message into the
/// caller's buffer; returns (bytes of control data, truncated). Descriptors that do not fit
/// are closed (MSG_CTRUNC), as on Linux.
fn rights_out(cx: &Cx, h: &MsgHdr, fds: Vec<File>, cloexec: bool) -> Result<(u64, bool), Errno> {
    if fds.is_empty() {
        return Ok((0, false));
    }
    let room = if h.controllen >= CMSG_HDR { (h.controllen - CMSG_HDR) / 4 } else { 0 };
    let take = (fds.len() as u64).min(room) as usize;
    let trunc = take < fds.len();
    if take == 0 {
        return Ok((0, trunc));
    }
    let mut nums: Vec<i32> = Vec::new();
    for f in fds.into_iter().take(take) {
        match cx.p().files.lock().insert_flags(f, 0, cloexec) {
            Ok(fd) => nums.push(fd as i32),
            Err(_) => break, // EMFILE: the rest are closed, as Linux does (MSG_CTRUNC)
        }
    }
    let len = CMSG_HDR + 4 * nums.len() as u64;
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&SOL_SOCKET.to_le_bytes());
    b.extend_from_slice(&SCM_RIGHTS.to_le_bytes());
    for n in &nums {
        b.extend_from_slice(&n.to_le_bytes());
    }
    UserSliceMut::new(h.control, len).write(cx.p(), &b)?;
    Ok((len, trunc || nums.len() < take))
}

pub fn recvmsg(cx: &Cx, fd: u64, msg: u64, flags: u64) -> SysResult {
    if flags & (MSG_PEEK | MSG_WAITALL) != 0 {
        return Err(EOPNOTSUPP);
    }
    let s = sock(cx, fd)?;
    let h = read_msghdr(cx, msg)?;
    let iov = iovecs(cx, &h)?;
    let room: u64 = iov.iter().map(|v| v.1).sum::<u64>().min(IO_MAX);
    let r = s.recv(room as usize, flags & MSG_DONTWAIT != 0 || nonblocking(&s))?;
    let (data, from, full) = (r.data, r.from, r.full);
    const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;
    let (clen, ctrunc) = rights_out(cx, &h, r.fds, flags & MSG_CMSG_CLOEXEC != 0)?;
    let mut at = 0usize;
    for (base, len) in iov {
        let n = (len as usize).min(data.len() - at);
        UserSliceMut::new(base, n as u64).write(cx.p(), &data[at..at + n])?;
        at += n;
    }
    // msg_namelen (offset 8), msg_controllen (40), msg_flags (48).
    if h.name != 0 {
        let lenp = UserPtr::<u32>::new(msg + 8);
        write_addr(cx, h.name, lenp, from.as_ref())?;
    }
    UserPtr::<u64>::new(msg + 40).write(cx.p(), &clen)?;
    const MSG_CTRUNC: u32 = 8;
    let mflags: u32 = if full > data.len() { MSG_TRUNC as u32 } else { 0 } | if ctrunc { MSG_CTRUNC } else { 0 };
    UserPtr::<u32>::new(msg + 48).write(cx.p(), &mflags)?;
    Ok(if flags & MSG_TRUNC != 0 { full } else { data.len() } as u64)
}

pub fn shutdown(cx: &Cx, fd: u64, how: u64) -> SysResult {
    sock(cx, fd)?.shutdown(how as u32).map(|_| 0)
}

pub fn getsockname(cx: &Cx, fd: u64, addr: u64, len: UserPtr<u32>, peer: bool) -> SysResult {
    let s = sock(cx, fd)?;
    let name = if peer {
        if !s.is_connected() {
            return Err(ENOTCONN);
        }
        s.peer_name()
    } else {
        s.name()
    };
    write_addr(cx, addr, len, name.as_ref())?;
    Ok(0)
}

pub fn getsockopt(cx: &Cx, fd: u64, level: u64, opt: u64, val: u64, len: UserPtr<u32>) -> SysResult {
    const SOL_SOCKET: u64 = 1;
    let s = sock(cx, fd)?;
    if level != SOL_SOCKET {
        return Err(ENOPROTOOPT);
    }
    let v: i32 = match opt {
        3 => s.ty as i32,                           // SO_TYPE
        4 => 0,                                     // SO_ERROR
        7 | 8 => crate::socket::INBOX_BYTES as i32, // SO_SNDBUF, SO_RCVBUF
        30 => i32::from(s.is_listening()),          // SO_ACCEPTCONN
        39 => 1,                                    // SO_DOMAIN: AF_UNIX
        38 => 0,                                    // SO_PROTOCOL
        _ => return Err(ENOPROTOOPT),
    };
    let room = len.read(cx.p())?;
    let b = v.to_le_bytes();
    let n = (room as usize).min(4);
    UserSliceMut::new(val, n as u64).write(cx.p(), &b[..n])?;
    len.write(cx.p(), &4)?;
    Ok(0)
}

pub fn setsockopt(cx: &Cx, fd: u64, level: u64, opt: u64) -> SysResult {
    const SOL_SOCKET: u64 = 1;
    sock(cx, fd)?;
    // SO_REUSEADDR, SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, SO_LINGER: accepted, without effect
    // on local sockets.
    if level == SOL_SOCKET && matches!(opt, 2 | 7 | 8 | 9 | 13) { Ok(0) } else { Err(ENOPROTOOPT) }
}
