//! File descriptors: 0, 1 and 2 are the console; files of /boot open read-only; `/dev/canN`
//! opens a CAN controller.
use alloc::vec::Vec;

use linux_raw_sys::errno::*;

/// An open file.
#[derive(Clone)]
pub enum File {
    Console,
    Boot { data: &'static [u8], pos: usize },
    /// The /boot directory (getdents64), `pos` = entries returned so far.
    Dir { pos: usize },
    /// One end of a pipe.
    Pipe(alloc::sync::Arc<crate::pipe::End>),
    /// One side of a shmcomm channel.
    Shm(alloc::sync::Arc<crate::shmcomm::Side>),
    /// A CAN controller (`/dev/canN`): `struct can_frame` records.
    Can(&'static crate::drivers::can::CanDev),
}

/// A process's descriptor table (copied by fork).
#[derive(Clone)]
pub struct FdTable {
    fds: Vec<Option<File>>,
}

/// Most descriptors a process may hold.
const MAX_FDS: usize = 256;

impl FdTable {
    pub fn new() -> FdTable {
        FdTable { fds: alloc::vec![Some(File::Console), Some(File::Console), Some(File::Console)] }
    }

    /// No descriptors at all (a process that has ended).
    pub fn empty() -> FdTable {
        FdTable { fds: Vec::new() }
    }

    pub fn get(&mut self, fd: u64) -> Result<&mut File, u32> {
        self.fds.get_mut(fd as usize).and_then(|f| f.as_mut()).ok_or(EBADF)
    }

    /// Installs `f` at the lowest free descriptor (at least `min`).
    pub fn insert(&mut self, f: File, min: usize) -> Result<u64, u32> {
        for i in min..MAX_FDS {
            if i >= self.fds.len() {
                self.fds.resize(i + 1, None);
            }
            if self.fds[i].is_none() {
                self.fds[i] = Some(f);
                return Ok(i as u64);
            }
        }
        Err(EMFILE)
    }

    /// Installs both ends of a pipe (read end first) or neither.
    pub fn insert_pair(&mut self, a: File, b: File) -> Result<(u64, u64), u32> {
        let fa = self.insert(a, 0)?;
        match self.insert(b, 0) {
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
    pub fn dup_to(&mut self, old: u64, new: u64) -> Result<u64, u32> {
        let f = self.get(old)?.clone();
        let new = new as usize;
        if new >= MAX_FDS {
            return Err(EBADF);
        }
        if new >= self.fds.len() {
            self.fds.resize(new + 1, None);
        }
        self.fds[new] = Some(f);
        Ok(new as u64)
    }
}
