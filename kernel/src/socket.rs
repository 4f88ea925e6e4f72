//! AF_UNIX sockets (issue 22 item 5): `SOCK_STREAM`, `SOCK_DGRAM` and `SOCK_SEQPACKET`, in
//! pairs (`socketpair`) or bound to names — paths of the file tree (a socket node, `vfs::Kind::
//! Sock`) or Linux's abstract names (a leading NUL byte) — with `listen`/`accept`/`connect`.
//!
//! - A connected stream socket reads from one pipe and writes to another (`crate::pipe`:
//!   blocking, end of file when the peer closes or shuts down writing, EPIPE and SIGPIPE when
//!   the peer is gone).
//! - Datagram and seqpacket sockets receive whole messages into their own inbox (at most
//!   [`INBOX_BYTES`] queued; a sender to a full inbox waits). A datagram socket sends to its
//!   connected peer or to the name given; a seqpacket socket to its peer, and reads end of file
//!   once the peer is gone.
//! - A listening socket queues the server ends of connections until `accept` takes them;
//!   `connect` succeeds at once while the backlog has room (as on Linux), else waits.
//!
//! - SCM_RIGHTS: descriptors sent with a message travel with it (datagram, seqpacket); on a
//!   stream they go on a queue beside the bytes and come with the next `recvmsg` after the
//!   bytes sent with them are there (Linux delivers them with those bytes exactly).
//!
//! Every change wakes the socket's waiters and the pollers (`crate::poll::wake_all`). Not
//! supported yet: other control messages (SCM_CREDENTIALS: EOPNOTSUPP), SO_PASSCRED, MSG_PEEK
//! and MSG_WAITALL (EOPNOTSUPP), out-of-band data.
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use hal::sync::IrqLock;
use linux_raw_sys::errno::*;

use crate::fs::File;
use crate::pipe::{End, WriteError};
use crate::sched::{self, Tid};
use crate::signal::ERESTARTSYS;
use crate::syscall::Errno;

/// Most bytes of messages queued in one datagram/seqpacket socket.
pub const INBOX_BYTES: usize = 64 * 1024;
/// Largest message.
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Type {
    Stream = 1,
    Dgram = 2,
    Seqpacket = 5,
}

/// A socket's name: a path of the tree, or an abstract name (without its leading NUL).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Name {
    Path(String),
    Abstract(Vec<u8>),
}

enum State {
    /// Made by socket(), not connected (a datagram socket may still send with an address).
    Unconnected,
    Listening { backlog: VecDeque<Arc<Sock>>, max: usize },
    /// A connected stream socket: its pipes and the SCM_RIGHTS queues beside them.
    Stream { rx: Arc<End>, tx: Option<Arc<End>>, rx_rights: Rights, tx_rights: Rights },
    /// A connected datagram/seqpacket socket: where its messages go.
    Packet { peer: Weak<Sock> },
}

/// Descriptors in flight on a stream, in the order sent.
type Rights = Arc<IrqLock<VecDeque<Vec<File>>>>;

struct Message {
    data: Vec<u8>,
    from: Option<Name>,
    fds: Vec<File>,
}

/// What `recv` got: the bytes, the sender's name, the message's full length, descriptors.
pub struct Received {
    pub data: Vec<u8>,
    pub from: Option<Name>,
    pub full: usize,
    pub fds: Vec<File>,
}

#[derive(Default)]
struct Inbox {
    msgs: VecDeque<Message>,
    bytes: usize,
    /// Seqpacket: the peer is gone (reads see end of file).
    peer_gone: bool,
}

pub struct Sock {
    pub ty: Type,
    /// O_NONBLOCK (SOCK_NONBLOCK, F_SETFL): on the socket, shared by its descriptors.
    pub nonblock: AtomicBool,
    state: IrqLock<State>,
    inbox: IrqLock<Inbox>,
    /// Threads waiting for anything of this socket (messages, room, connections).
    waiters: IrqLock<Vec<Tid>>,
    name: IrqLock<Option<Name>>,
    peer_name: IrqLock<Option<Name>>,
    read_shut: AtomicBool,
    write_shut: AtomicBool,
}

/// Abstract names (Linux's namespace without files).
static ABSTRACT: IrqLock<BTreeMap<Vec<u8>, Weak<Sock>>> = IrqLock::new(BTreeMap::new());

impl Sock {
    pub fn new(ty: Type) -> Arc<Sock> {
        Sock::with(ty, State::Unconnected)
    }

    fn with(ty: Type, st: State) -> Arc<Sock> {
        Arc::new(Sock {
            ty,
            nonblock: AtomicBool::new(false),
            state: IrqLock::new(st),
            inbox: IrqLock::new(Inbox::default()),
            waiters: IrqLock::new(Vec::new()),
            name: IrqLock::new(None),
            peer_name: IrqLock::new(None),
            read_shut: AtomicBool::new(false),
            write_shut: AtomicBool::new(false),
        })
    }

    fn wake(&self) {
        let w = core::mem::take(&mut *self.waiters.lock());
        for t in w {
            let _ = sched::wake(t);
        }
        crate::poll::wake_all();
    }

    /// Blocks until woken; ERESTARTSYS if a signal or a kill came.
    fn wait(&self) -> Result<(), Errno> {
        let me = sched::current();
        if sched::block_current() == sched::Wake::Interrupted {
            self.waiters.lock().retain(|&t| t != me);
            return Err(ERESTARTSYS);
        }
        Ok(())
    }

    fn enlist(&self) {
        let me = sched::current();
        let mut w = self.waiters.lock();
        if !w.contains(&me) {
            w.push(me);
        }
    }

    pub fn name(&self) -> Option<Name> {
        self.name.lock().clone()
    }

    pub fn peer_name(&self) -> Option<Name> {
        self.peer_name.lock().clone()
    }

    pub fn is_listening(&self) -> bool {
        matches!(*self.state.lock(), State::Listening { .. })
    }

    pub fn is_connected(&self) -> bool {
        matches!(*self.state.lock(), State::Stream { .. } | State::Packet { .. })
    }

    /// bind: gives the socket `name` (EINVAL if it has one; the caller made the node).
    pub fn set_name(&self, name: Name) -> Result<(), Errno> {
        let mut n = self.name.lock();
        if n.is_some() {
            return Err(EINVAL);
        }
        *n = Some(name);
        Ok(())
    }

    /// listen.
    pub fn listen(&self, backlog: usize) -> Result<(), Errno> {
        if self.ty == Type::Dgram {
            return Err(EOPNOTSUPP);
        }
        let mut st = self.state.lock();
        match &mut *st {
            State::Unconnected => {
                *st = State::Listening { backlog: VecDeque::new(), max: backlog.clamp(1, 4096) };
                Ok(())
            }
            State::Listening { max, .. } => {
                *max = backlog.clamp(1, 4096);
                Ok(())
            }
            _ => Err(EINVAL),
        }
    }

    /// connect to `server` (found by its name `to`).
    pub fn connect(self: &Arc<Sock>, server: &Arc<Sock>, to: Name, nonblock: bool) -> Result<(), Errno> {
        if server.ty != self.ty {
            return Err(EPROTOTYPE);
        }
        if self.ty == Type::Dgram {
            // Datagram: just the default destination.
            *self.state.lock() = State::Packet { peer: Arc::downgrade(server) };
            *self.peer_name.lock() = Some(to);
            return Ok(());
        }
        if self.is_connected() {
            return Err(EISCONN);
        }
        if self.is_listening() {
            return Err(EINVAL);
        }
        loop {
            {
                let mut st = server.state.lock();
                let State::Listening { backlog, max } = &mut *st else { return Err(ECONNREFUSED) };
                if backlog.len() < *max {
                    let (mine, theirs) = connected(self.ty);
                    *theirs.name.lock() = server.name();
                    *theirs.peer_name.lock() = self.name();
                    *self.peer_name.lock() = Some(to);
                    *self.state.lock() = core::mem::replace(&mut *mine.state.lock(), State::Unconnected);
                    // The server end's peer is this socket (for packets: its inbox).
                    match &mut *theirs.state.lock() {
                        State::Packet { peer } => *peer = Arc::downgrade(self),
                        _ => {}
                    }
                    if let State::Packet { peer } = &mut *self.state.lock() {
                        *peer = Arc::downgrade(&theirs);
                    }
                    backlog.push_back(theirs);
                    drop(st);
                    server.wake();
                    return Ok(());
                }
                if nonblock {
                    return Err(EAGAIN);
                }
                server.enlist();
            }
            server.wait()?;
        }
    }

    /// accept: the next connection's server end.
    pub fn accept(&self, nonblock: bool) -> Result<Arc<Sock>, Errno> {
        loop {
            {
                let mut st = self.state.lock();
                let State::Listening { backlog, .. } = &mut *st else { return Err(EINVAL) };
                if let Some(s) = backlog.pop_front() {
                    drop(st);
                    self.wake(); // room in the backlog for a waiting connect
                    return Ok(s);
                }
                if nonblock {
                    return Err(EAGAIN);
                }
                self.enlist();
            }
            self.wait()?;
        }
    }

    /// Sends `data` (to `to`, a datagram socket's explicit destination). EPIPE for a stream or
    /// seqpacket socket whose peer is gone (the caller raises SIGPIPE).
    pub fn send(&self, data: &[u8], to: Option<(Arc<Sock>, Name)>, nonblock: bool, fds: Vec<File>) -> Result<usize, Errno> {
        if self.write_shut.load(Ordering::Relaxed) {
            return Err(EPIPE);
        }
        if self.ty == Type::Stream {
            if to.is_some() {
                return Err(EISCONN);
            }
            let (tx, rights) = match &*self.state.lock() {
                State::Stream { tx, tx_rights, .. } => (tx.clone(), tx_rights.clone()),
                _ => return Err(ENOTCONN),
            };
            let Some(tx) = tx else { return Err(EPIPE) };
            if nonblock && tx.pipe.poll(true) & linux_raw_sys::general::POLLOUT as u16 == 0 {
                return Err(EAGAIN);
            }
            if !fds.is_empty() {
                rights.lock().push_back(fds);
            }
            return match tx.pipe.write(data) {
                Ok(n) => Ok(n),
                Err(WriteError::Broken) => Err(EPIPE),
                Err(WriteError::Interrupted) => Err(ERESTARTSYS),
            };
        }
        if data.len() > MAX_MESSAGE {
            return Err(EMSGSIZE);
        }
        let target = match (to, &*self.state.lock()) {
            (Some(_), State::Packet { .. }) if self.ty == Type::Seqpacket => return Err(EISCONN),
            (Some((t, _)), _) => t,
            (None, State::Packet { peer }) => match peer.upgrade() {
                Some(t) => t,
                None if self.ty == Type::Seqpacket => return Err(EPIPE),
                None => return Err(ECONNREFUSED),
            },
            (None, _) => return Err(if self.ty == Type::Dgram { EDESTADDRREQ } else { ENOTCONN }),
        };
        if target.ty != self.ty {
            return Err(EPROTOTYPE);
        }
        loop {
            {
                let mut ib = target.inbox.lock();
                if target.read_shut.load(Ordering::Relaxed) && self.ty == Type::Seqpacket {
                    return Err(EPIPE);
                }
                if ib.bytes + data.len() <= INBOX_BYTES || ib.msgs.is_empty() {
                    ib.bytes += data.len();
                    ib.msgs.push_back(Message { data: data.to_vec(), from: self.name(), fds });
                    drop(ib);
                    target.wake();
                    return Ok(data.len());
                }
                if nonblock {
                    return Err(EAGAIN);
                }
                target.enlist();
            }
            target.wait()?;
        }
    }

    /// Receives up to `max` bytes: for a stream what is there (empty: end of file); for a
    /// message socket one message, cut to `max` (then `trunc` is its full length). Returns
    /// (bytes, sender's name, full length).
    pub fn recv(&self, max: usize, nonblock: bool) -> Result<Received, Errno> {
        let nothing = || Received { data: Vec::new(), from: None, full: 0, fds: Vec::new() };
        if self.read_shut.load(Ordering::Relaxed) {
            return Ok(nothing());
        }
        if self.ty == Type::Stream {
            let (rx, rights) = match &*self.state.lock() {
                State::Stream { rx, rx_rights, .. } => (rx.clone(), rx_rights.clone()),
                _ => return Err(ENOTCONN),
            };
            if nonblock && rx.pipe.poll(false) == 0 {
                return Err(EAGAIN);
            }
            let d = rx.pipe.read(max).ok_or(ERESTARTSYS)?;
            let n = d.len();
            let fds = if n > 0 { rights.lock().pop_front().unwrap_or_default() } else { Vec::new() };
            return Ok(Received { data: d, from: None, full: n, fds });
        }
        if self.ty == Type::Seqpacket && !self.is_connected() {
            return Err(ENOTCONN);
        }
        loop {
            {
                let mut ib = self.inbox.lock();
                if let Some(m) = ib.msgs.pop_front() {
                    ib.bytes -= m.data.len();
                    drop(ib);
                    self.wake(); // room for waiting senders
                    let full = m.data.len();
                    let mut d = m.data;
                    d.truncate(max);
                    return Ok(Received { data: d, from: m.from, full, fds: m.fds });
                }
                if ib.peer_gone || self.read_shut.load(Ordering::Relaxed) {
                    return Ok(nothing());
                }
                if nonblock {
                    return Err(EAGAIN);
                }
                self.enlist();
            }
            self.wait()?;
        }
    }

    /// shutdown: SHUT_RD (0), SHUT_WR (1), SHUT_RDWR (2).
    pub fn shutdown(&self, how: u32) -> Result<(), Errno> {
        if how > 2 {
            return Err(EINVAL);
        }
        if !self.is_connected() {
            return Err(ENOTCONN);
        }
        if how != 1 {
            self.read_shut.store(true, Ordering::Relaxed);
        }
        if how != 0 {
            self.write_shut.store(true, Ordering::Relaxed);
            let mut st = self.state.lock();
            match &mut *st {
                State::Stream { tx, .. } => drop(tx.take()),
                State::Packet { peer } => {
                    if let Some(p) = peer.upgrade() {
                        p.inbox.lock().peer_gone = true;
                        drop(st);
                        p.wake();
                    }
                }
                _ => {}
            }
        }
        self.wake();
        Ok(())
    }

    /// poll(2) events.
    pub fn poll(&self) -> u16 {
        use linux_raw_sys::general::{POLLERR, POLLHUP, POLLIN, POLLOUT};
        let (pin, pout, phup) = (POLLIN as u16, POLLOUT as u16, POLLHUP as u16);
        let st = self.state.lock();
        match &*st {
            State::Listening { backlog, .. } => {
                if backlog.is_empty() {
                    0
                } else {
                    pin
                }
            }
            State::Stream { rx, tx, .. } => {
                let w = tx.as_ref().map_or(POLLERR as u16, |t| t.pipe.poll(true));
                rx.pipe.poll(false) | w
            }
            State::Packet { peer } => {
                let peer = peer.upgrade();
                drop(st);
                let ib = self.inbox.lock();
                let mut ev = if ib.msgs.is_empty() { 0 } else { pin };
                if ib.peer_gone || (self.ty == Type::Seqpacket && peer.is_none()) {
                    ev |= pin | phup;
                }
                drop(ib);
                match peer {
                    Some(p) if p.inbox.lock().bytes < INBOX_BYTES => ev | pout,
                    None if self.ty == Type::Dgram => ev | pout,
                    _ => ev,
                }
            }
            State::Unconnected => {
                drop(st);
                if self.ty == Type::Dgram {
                    let ib = self.inbox.lock();
                    pout | if ib.msgs.is_empty() { 0 } else { pin }
                } else {
                    pout | phup
                }
            }
        }
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        if let Some(Name::Abstract(n)) = self.name.lock().clone() {
            let mut a = ABSTRACT.lock();
            if a.get(&n).is_some_and(|w| w.strong_count() == 0) {
                a.remove(&n);
            }
        }
        if let State::Packet { peer } = &*self.state.lock()
            && let Some(p) = peer.upgrade()
            && self.ty == Type::Seqpacket
        {
            p.inbox.lock().peer_gone = true;
            p.wake();
        }
        crate::poll::wake_all();
    }
}

/// Two connected sockets of type `ty` (socketpair, and each accepted connection).
pub fn connected(ty: Type) -> (Arc<Sock>, Arc<Sock>) {
    if ty == Type::Stream {
        let (r1, w1) = crate::pipe::new();
        let (r2, w2) = crate::pipe::new();
        let (q1, q2): (Rights, Rights) = (Arc::new(IrqLock::new(VecDeque::new())), Arc::new(IrqLock::new(VecDeque::new())));
        return (
            Sock::with(ty, State::Stream { rx: r1, tx: Some(w2), rx_rights: q1.clone(), tx_rights: q2.clone() }),
            Sock::with(ty, State::Stream { rx: r2, tx: Some(w1), rx_rights: q2, tx_rights: q1 }),
        );
    }
    let a = Sock::with(ty, State::Packet { peer: Weak::new() });
    let b = Sock::with(ty, State::Packet { peer: Arc::downgrade(&a) });
    *a.state.lock() = State::Packet { peer: Arc::downgrade(&b) };
    (a, b)
}

/// Binds an abstract name (EADDRINUSE if a live socket has it).
pub fn bind_abstract(s: &Arc<Sock>, name: Vec<u8>) -> Result<(), Errno> {
    let mut a = ABSTRACT.lock();
    if a.get(&name).is_some_and(|w| w.strong_count() > 0) {
        return Err(EADDRINUSE);
    }
    s.set_name(Name::Abstract(name.clone()))?;
    a.insert(name, Arc::downgrade(s));
    Ok(())
}

/// The socket with abstract name `name` (ECONNREFUSED if none).
pub fn find_abstract(name: &[u8]) -> Result<Arc<Sock>, Errno> {
    ABSTRACT.lock().get(name).and_then(Weak::upgrade).ok_or(ECONNREFUSED)
}
