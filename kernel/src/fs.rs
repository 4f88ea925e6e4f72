//! File descriptors: 0, 1 and 2 are the console; files of the tree (`crate::vfs`: the
//! in-memory file system, /boot, /dev, /proc), pipes, shmcomm channels, socket pairs and CAN
//! controllers (`/dev/canN`), eventfd counters, timerfds and epoll sets.
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::AtomicU32;

use linux_raw_sys::errno::*;

/// An open file of the tree: what `open` made, shared by the descriptors `dup` and `fork`
/// copy (one offset and one set of status flags, as POSIX's open file description).
pub struct OpenFile {
    pub node: Arc<crate::vfs::Inode>,
    /// Its path when opened (the `*at` calls resolve relative to a directory's).
    pub path: String,
    /// Its offset (a sleeping lock: reads and writes move it while they copy).
    pub pos: crate::sync::Position,
    /// `O_ACCMODE`, `O_APPEND`, `O_NONBLOCK` as given to open or F_SETFL.
    pub flags: AtomicU32,
    /// A /proc file's text, made when it was opened.
    pub snapshot: Option<Vec<u8>>,
    id: u64,
}

static NEXT_OPEN: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

impl OpenFile {
    /// Its identity (flock holders).
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn new(node: Arc<crate::vfs::Inode>, path: String, flags: u32, snapshot: Option<Vec<u8>>) -> OpenFile {
        OpenFile {
            node,
            path,
            pos: crate::sync::Position::new(),
            flags: AtomicU32::new(flags),
            snapshot,
            id: NEXT_OPEN.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl Drop for OpenFile {
    /// The last descriptor of an open file closed: its flock lock and its OFD record locks go
    /// (as on Linux).
    fn drop(&mut self) {
        crate::ipc::rlock::ofd_closed(&self.node, self.id);
        let woken = self.node.flock.lock().unlock(self.id);
        for t in woken {
            let _ = crate::sched::wake(t);
        }
    }
}

/// An open file.
#[derive(Clone)]
pub enum File {
    Console,
    /// A file or directory of the tree.
    Node(Arc<OpenFile>),
    /// One end of a pipe.
    Pipe(alloc::sync::Arc<crate::pipe::End>),
    /// One side of a shmcomm channel.
    Shm(alloc::sync::Arc<crate::shmcomm::Side>),
    /// One end of a socketpair.
    Sock(Arc<crate::socket::Sock>),
    /// A CAN controller (`/dev/canN`): `struct can_frame` records.
    Can(&'static crate::drivers::can::CanDev),
    /// An eventfd counter (`crate::eventfd`).
    Event(Arc<crate::eventfd::EventFd>),
    /// A timerfd (`crate::timerfd`).
    Timer(Arc<crate::timerfd::TimerFd>),
    /// An epoll set (`crate::epoll`).
    Epoll(Arc<crate::epoll::Epoll>),
}

impl File {
    /// The `O_NONBLOCK` flag of the kinds that have one besides files of the tree (pipes,
    /// sockets, eventfd, timerfd; F_SETFL, pipe2, socketpair).
    pub fn nonblock(&self) -> Option<&core::sync::atomic::AtomicBool> {
        match self {
            File::Pipe(e) => Some(&e.nonblock),
            File::Sock(s) => Some(&s.nonblock),
            File::Event(e) => Some(&e.nonblock),
            File::Timer(t) => Some(&t.nonblock),
            _ => None,
        }
    }
}

/// A process's descriptor table (copied by fork).
#[derive(Clone)]
pub struct FdTable {
    fds: Vec<Option<File>>,
    /// Close-on-exec, per descriptor.
    cloexec: Vec<bool>,
    /// Most descriptors (RLIMIT_NOFILE's soft limit).
    pub limit: usize,
    /// RLIMIT_NOFILE's hard limit (at most [`MAX_FDS`]).
    pub hard: usize,
}

/// Most descriptors a process may hold (the hard RLIMIT_NOFILE).
pub const MAX_FDS: usize = 1024;
/// The default soft limit.
pub const DEFAULT_FDS: usize = 256;

impl FdTable {
    pub fn new() -> FdTable {
        FdTable { fds: alloc::vec![Some(File::Console), Some(File::Console), Some(File::Console)], cloexec: alloc::vec![false; 3], limit: DEFAULT_FDS, hard: MAX_FDS }
    }

    /// No descriptors at all (a process that has ended).
    pub fn empty() -> FdTable {
        FdTable { fds: Vec::new(), cloexec: Vec::new(), limit: 0, hard: 0 }
    }

    pub fn get(&mut self, fd: u64) -> Result<&mut File, u32> {
        self.fds.get_mut(fd as usize).and_then(|f| f.as_mut()).ok_or(EBADF)
    }

    /// Installs `f` at the lowest free descriptor (at least `min`).
    pub fn insert(&mut self, f: File, min: usize) -> Result<u64, u32> {
        self.insert_flags(f, min, false)
    }

    /// [`insert`](Self::insert) with the close-on-exec flag.
    pub fn insert_flags(&mut self, f: File, min: usize, cloexec: bool) -> Result<u64, u32> {
        for i in min..self.limit {
            if i >= self.fds.len() {
                self.fds.resize(i + 1, None);
                self.cloexec.resize(i + 1, false);
            }
            if self.fds[i].is_none() {
                self.fds[i] = Some(f);
                self.cloexec[i] = cloexec;
                return Ok(i as u64);
            }
        }
        Err(if min >= self.limit { EINVAL } else { EMFILE })
    }

    /// Installs both ends of a pipe (read end first) or neither.
    pub fn insert_pair(&mut self, a: File, b: File, cloexec: bool) -> Result<(u64, u64), u32> {
        let fa = self.insert_flags(a, 0, cloexec)?;
        match self.insert_flags(b, 0, cloexec) {
            Ok(fb) => Ok((fa, fb)),
            Err(e) => {
                let _ = self.close(fa);
                Err(e)
            }
        }
    }

    pub fn close(&mut self, fd: u64) -> Result<(), u32> {
        let slot = self.fds.get_mut(fd as usize).ok_or(EBADF)?;
        slot.take().map(|_| ()).ok_or(EBADF)
    }

    /// dup2/dup3: makes `new` refer to `old`'s file.
    pub fn dup_to(&mut self, old: u64, new: u64, cloexec: bool) -> Result<u64, u32> {
        let f = self.get(old)?.clone();
        let new = new as usize;
        if new >= self.limit {
            return Err(EBADF);
        }
        if new >= self.fds.len() {
            self.fds.resize(new + 1, None);
            self.cloexec.resize(new + 1, false);
        }
        self.fds[new] = Some(f);
        self.cloexec[new] = cloexec;
        Ok(new as u64)
    }

    pub fn cloexec(&self, fd: u64) -> Result<bool, u32> {
        match self.fds.get(fd as usize) {
            Some(Some(_)) => Ok(self.cloexec[fd as usize]),
            _ => Err(EBADF),
        }
    }

    pub fn set_cloexec(&mut self, fd: u64, on: bool) -> Result<(), u32> {
        self.get(fd)?;
        self.cloexec[fd as usize] = on;
        Ok(())
    }

    /// execve: closes the close-on-exec descriptors.
    pub fn exec(&mut self) {
        for (f, c) in self.fds.iter_mut().zip(self.cloexec.iter_mut()) {
            if *c {
                *f = None;
                *c = false;
            }
        }
    }
}
