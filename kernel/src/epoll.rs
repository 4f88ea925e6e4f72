//! epoll (issue 25): epoll_create/epoll_create1, epoll_ctl, epoll_wait, epoll_pwait and
//! epoll_pwait2 over every kind of descriptor `crate::poll` knows (pipes, the console, socket
//! pairs, shmcomm sides, CAN controllers, eventfd, timerfd, and other epoll sets).
//!
//! An interest list holds, per item, the descriptor number, a weak reference to the open file
//! (so an item goes away with the file's last descriptor, as on Linux, and never keeps a pipe
//! end open), the events asked for and the user's 64-bit data. Readiness is not pushed to the
//! set: `epoll_wait` asks each item's file (`crate::poll::file_events`) and blocks on the
//! kernel's one poll wait list, with the earliest timerfd expiry as a deadline. That costs a
//! look at every item per wake-up — fine for the tens of descriptors an event loop on Quest
//! has, and it keeps the file kinds free of epoll's bookkeeping.
//!
//! * Level-triggered items are reported while ready.
//! * `EPOLLET`: reported when ready and something changed since the last report: an eventfd's
//!   writes and a timerfd's expiries are counted per file; for the other kinds, any change
//!   `crate::poll::wake_all` announces counts (a spurious edge is possible when something else
//!   changed, a missed one is not; programs using EPOLLET read until EAGAIN anyway).
//! * `EPOLLONESHOT`: disabled after one report until `EPOLL_CTL_MOD`.
//! * `EPOLLEXCLUSIVE` is accepted (with ADD only, as on Linux): with one wait list and broadcast
//!   wake-ups there is no thundering herd to avoid.
//! * Nested sets are evaluated to a depth of [`MAX_NEST`]; a loop is refused with ELOOP.
//!   Regular files and directories are refused with EPERM, as on Linux.
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use hal::sync::IrqLock;
use linux_raw_sys::errno::*;
use linux_raw_sys::general::*;

use crate::fs::File;
use crate::syscall::{Cx, Errno, SysResult, UserPtr};

/// Linux's EP_MAX_NESTS.
const MAX_NEST: u32 = 4;

/// `struct epoll_event` (packed on x86-64): events, then the 64-bit data as two words.
pub type EpollEvent = [u32; 3];

/// A weak reference to an open file.
#[derive(Clone)]
enum WeakFile {
    Console,
    Node(Weak<crate::fs::OpenFile>),
    Pipe(Weak<crate::pipe::End>),
    Shm(Weak<crate::shmcomm::Side>),
    Sock(Weak<crate::socket::Sock>),
    Can(&'static crate::drivers::can::CanDev),
    Event(Weak<crate::eventfd::EventFd>),
    Timer(Weak<crate::timerfd::TimerFd>),
    Epoll(Weak<Epoll>),
}

impl WeakFile {
    fn of(f: &File) -> WeakFile {
        match f {
            File::Console => WeakFile::Console,
            File::Node(o) => WeakFile::Node(Arc::downgrade(o)),
            File::Pipe(e) => WeakFile::Pipe(Arc::downgrade(e)),
            File::Shm(s) => WeakFile::Shm(Arc::downgrade(s)),
            File::Sock(s) => WeakFile::Sock(Arc::downgrade(s)),
            File::Can(c) => WeakFile::Can(c),
            File::Event(e) => WeakFile::Event(Arc::downgrade(e)),
            File::Timer(t) => WeakFile::Timer(Arc::downgrade(t)),
            File::Epoll(e) => WeakFile::Epoll(Arc::downgrade(e)),
        }
    }

    fn upgrade(&self) -> Option<File> {
        Some(match self {
            WeakFile::Console => File::Console,
            WeakFile::Node(w) => File::Node(w.upgrade()?),
            WeakFile::Pipe(w) => File::Pipe(w.upgrade()?),
            WeakFile::Shm(w) => File::Shm(w.upgrade()?),
            WeakFile::Sock(w) => File::Sock(w.upgrade()?),
            WeakFile::Can(c) => File::Can(c),
            WeakFile::Event(w) => File::Event(w.upgrade()?),
            WeakFile::Timer(w) => File::Timer(w.upgrade()?),
            WeakFile::Epoll(w) => File::Epoll(w.upgrade()?),
        })
    }
}

/// Which open file a descriptor refers to (its address; the console and each CAN controller
/// are one file each).
fn identity(f: &File) -> usize {
    match f {
        File::Console => 1,
        File::Node(o) => Arc::as_ptr(o) as usize,
        File::Pipe(e) => Arc::as_ptr(e) as usize,
        File::Shm(s) => Arc::as_ptr(s) as usize,
        File::Sock(s) => Arc::as_ptr(s) as usize,
        File::Can(c) => *c as *const _ as usize,
        File::Event(e) => Arc::as_ptr(e) as usize,
        File::Timer(t) => Arc::as_ptr(t) as usize,
        File::Epoll(e) => Arc::as_ptr(e) as usize,
    }
}

#[derive(Clone)]
struct Item {
    id: u64,
    fd: i32,
    ident: usize,
    file: WeakFile,
    events: u32,
    data: u64,
    /// The change count at the last report (EPOLLET).
    seen: u64,
    /// EPOLLONESHOT after its report.
    disabled: bool,
}

pub struct Epoll {
    items: IrqLock<Vec<Item>>,
}

static NEXT_ITEM: AtomicU64 = AtomicU64::new(1);

/// The change count of `f` for edge-triggered items.
fn generation(f: &File) -> u64 {
    match f {
        File::Event(e) => e.generation(),
        File::Timer(t) => t.generation(),
        _ => crate::poll::GENERATION.load(Ordering::Acquire),
    }
}

/// The poll(2) events of `f`, nested sets evaluated `depth` levels down.
fn events_of(f: &File, depth: u32) -> u16 {
    match f {
        File::Epoll(e) => {
            if depth < MAX_NEST && e.any_ready(depth + 1) {
                POLLIN as u16
            } else {
                0
            }
        }
        _ => crate::poll::file_events(f),
    }
}

impl Epoll {
    fn snapshot(&self) -> Vec<Item> {
        self.items.lock().clone()
    }

    /// poll(2) events of the set itself: readable while an item would be reported.
    pub fn poll(&self) -> u16 {
        if self.any_ready(1) { POLLIN as u16 } else { 0 }
    }

    fn any_ready(&self, depth: u32) -> bool {
        self.snapshot().iter().any(|it| !it.disabled && it.file.upgrade().is_some_and(|f| report(it, &f, depth).is_some()))
    }

    /// The earliest timerfd expiry among the items (nested sets included).
    pub fn next_expiry(&self, depth: u32) -> Option<u64> {
        self.snapshot()
            .iter()
            .filter(|it| !it.disabled)
            .filter_map(|it| match it.file.upgrade()? {
                File::Timer(t) => t.next_expiry(),
                File::Epoll(e) if depth < MAX_NEST => e.next_expiry(depth + 1),
                _ => None,
            })
            .min()
    }

    /// Whether `target` is this set or is reachable from it (ELOOP).
    fn reaches(&self, target: &Epoll, depth: u32) -> bool {
        if core::ptr::eq(self, target) {
            return true;
        }
        depth < MAX_NEST
            && self.snapshot().iter().any(|it| match it.file.upgrade() {
                Some(File::Epoll(e)) => e.reaches(target, depth + 1),
                _ => false,
            })
    }

    /// Up to `max` ready items as (events, data), marking what was reported (EPOLLET,
    /// EPOLLONESHOT) and moving reported items to the back (fairness when `max` is small).
    fn collect(&self, max: usize) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        let mut done: Vec<(u64, u64)> = Vec::new(); // (item id, generation seen)
        let mut dead = Vec::new();
        for it in self.snapshot() {
            if out.len() >= max {
                break;
            }
            if it.disabled {
                continue;
            }
            let Some(f) = it.file.upgrade() else {
                dead.push(it.id);
                continue;
            };
            if let Some((ev, g)) = report(&it, &f, 0) {
                out.push((ev, it.data));
                done.push((it.id, g));
            }
        }
        if !done.is_empty() || !dead.is_empty() {
            let mut items = self.items.lock();
            items.retain(|it| !dead.contains(&it.id));
            let mut moved = Vec::new();
            items.retain(|it| {
                let keep = !done.iter().any(|d| d.0 == it.id);
                if !keep {
                    moved.push(it.clone());
                }
                keep
            });
            for mut it in moved {
                if let Some(&(_, g)) = done.iter().find(|d| d.0 == it.id) {
                    it.seen = g;
                }
                if it.events & EPOLLONESHOT != 0 {
                    it.disabled = true;
                }
                items.push(it);
            }
        }
        out
    }
}

/// What `it` reports now (`evcore::report`, host-tested), with the change count it was judged
/// at: None when nothing.
fn report(it: &Item, f: &File, depth: u32) -> Option<(u32, u64)> {
    let g = generation(f); // before looking: a change after the look shows as a new count
    evcore::report(u32::from(events_of(f, depth)), it.events, g, it.seen).map(|ev| (ev, g))
}

/// epoll_create1(flags); epoll_create(size) checks its size and passes 0.
pub fn create(cx: &Cx, flags: u64) -> SysResult {
    if flags & !u64::from(EPOLL_CLOEXEC) != 0 {
        return Err(EINVAL);
    }
    let e = Epoll { items: IrqLock::new(Vec::new()) };
    cx.p().files.lock().insert_flags(File::Epoll(Arc::new(e)), 0, flags != 0)
}

fn epoll_of(cx: &Cx, epfd: u64) -> Result<Arc<Epoll>, Errno> {
    match cx.p().files.lock().get(epfd)? {
        File::Epoll(e) => Ok(e.clone()),
        _ => Err(EINVAL),
    }
}

/// The events an item may ask for (the rest is ignored, as Linux does).
const KNOWN: u32 = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDNORM | EPOLLRDBAND | EPOLLWRNORM | EPOLLWRBAND | EPOLLMSG | EPOLLRDHUP | EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET;

/// epoll_ctl(epfd, op, fd, event).
pub fn ctl(cx: &Cx, epfd: u64, op: u64, fd: u64, event: UserPtr<EpollEvent>) -> SysResult {
    let ep = epoll_of(cx, epfd)?;
    let f = cx.p().files.lock().get(fd)?.clone();
    if fd == epfd || identity(&f) == Arc::as_ptr(&ep) as usize {
        return Err(EINVAL); // the set itself, under any descriptor
    }
    if matches!(f, File::Node(_)) {
        return Err(EPERM); // regular files and directories cannot be waited for
    }
    let op = u32::try_from(op).map_err(|_| EINVAL)?;
    let (events, data) = if op == EPOLL_CTL_DEL {
        (0, 0)
    } else {
        let [ev, lo, hi] = event.read(cx.p())?;
        (ev & KNOWN, u64::from(lo) | u64::from(hi) << 32)
    };
    if events & EPOLLEXCLUSIVE != 0 && (op == EPOLL_CTL_MOD || events & EPOLLONESHOT != 0) {
        return Err(EINVAL);
    }
    let ident = identity(&f);
    if let File::Epoll(inner) = &f
        && op == EPOLL_CTL_ADD
        && inner.reaches(&ep, 0)
    {
        return Err(ELOOP);
    }
    let mut items = ep.items.lock();
    let pos = items.iter().position(|it| it.fd == fd as i32 && it.ident == ident);
    match (op, pos) {
        (EPOLL_CTL_ADD, Some(_)) => Err(EEXIST),
        (EPOLL_CTL_ADD, None) => {
            let id = NEXT_ITEM.fetch_add(1, Ordering::Relaxed);
            items.push(Item { id, fd: fd as i32, ident, file: WeakFile::of(&f), events, data, seen: u64::MAX, disabled: false });
            Ok(0)
        }
        (EPOLL_CTL_MOD, Some(i)) => {
            let it = &mut items[i];
            if it.events & EPOLLEXCLUSIVE != 0 {
                return Err(EINVAL);
            }
            it.events = events;
            it.data = data;
            it.seen = u64::MAX; // a MOD re-arms: ready now is reported
            it.disabled = false;
            Ok(0)
        }
        (EPOLL_CTL_DEL, Some(i)) => {
            items.remove(i);
            Ok(0)
        }
        (EPOLL_CTL_MOD | EPOLL_CTL_DEL, None) => Err(ENOENT),
        _ => Err(EINVAL),
    }
}

/// epoll_wait / epoll_pwait / epoll_pwait2: waits until an item is ready or `deadline`
/// passes; a signal ends the wait with EINTR (never restarted, as on Linux).
pub fn wait(cx: &Cx, epfd: u64, events: UserPtr<EpollEvent>, max: u64, deadline: Option<u64>) -> SysResult {
    let max = max as i32;
    if max <= 0 || max as usize > (i32::MAX as usize) / 12 {
        return Err(EINVAL);
    }
    let ep = epoll_of(cx, epfd)?;
    // The buffer must be writable before anything is taken from the set (an EFAULT after
    // would lose the reports of one-shot and edge-triggered items).
    events.at(max as u64 - 1)?;
    let first = events.read(cx.p())?;
    events.write(cx.p(), &first)?;
    let max = (max as usize).min(1024);
    loop {
        let timer = ep.next_expiry(0);
        let wake = match (deadline, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Ends early when a timerfd's expiry moved (a settime), so the deadline is redone.
        let got = crate::poll::wait_for(cx.tid, wake, || {
            let r = ep.collect(max);
            if !r.is_empty() {
                Some(Some(r))
            } else {
                (ep.next_expiry(0) != timer).then_some(None)
            }
        })?;
        match got {
            Some(Some(r)) => {
                for (i, (ev, data)) in r.iter().enumerate() {
                    events.at(i as u64)?.write(cx.p(), &[*ev, *data as u32, (*data >> 32) as u32])?;
                }
                return Ok(r.len() as u64);
            }
            Some(None) => continue,
            None if deadline.is_some_and(|d| d <= hal::time::now_ns()) => return Ok(0),
            None => continue, // a timerfd's expiry: look again
        }
    }
}

/// A timeout in milliseconds (negative: none) as a deadline.
pub fn deadline_ms(ms: u64) -> Option<u64> {
    let t = ms as i32;
    if t < 0 { None } else { Some(hal::time::now_ns().saturating_add(t as u64 * 1_000_000)) }
}
