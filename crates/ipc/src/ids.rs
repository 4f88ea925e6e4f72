//! System V key → id tables (svipc(7)): `*get(key, flags)` finds or makes an object; ids are
//! `seq * SEQ + index`, so an id of a removed object is not mistaken for its slot's next user.
use alloc::collections::BTreeMap;

pub const IPC_PRIVATE: i32 = 0;
pub const IPC_CREAT: u32 = 0o1000;
pub const IPC_EXCL: u32 = 0o2000;
/// Ids per sequence number (Linux's IPCMNI).
pub const SEQ: u32 = 32768;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GetError {
    /// IPC_CREAT | IPC_EXCL and the key exists (EEXIST).
    Exists,
    /// No object with the key and no IPC_CREAT (ENOENT).
    NoEntry,
    /// The table is full (ENOSPC).
    Full,
}

/// Found or made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Got {
    Existing(i32),
    Created(i32),
}

/// Objects by id, at most `max` of them.
#[derive(Debug)]
pub struct Table<T> {
    objects: BTreeMap<u32, (i32, u32, T)>,
    max: u32,
    seq: u32,
}

impl<T> Table<T> {
    pub const fn new(max: u32) -> Table<T> {
        Table { objects: BTreeMap::new(), max, seq: 0 }
    }

    /// Finds the object with `key` or makes one with `make` (IPC_PRIVATE always makes one).
    pub fn get(&mut self, key: i32, flags: u32, make: impl FnOnce() -> T) -> Result<Got, GetError> {
        if key != IPC_PRIVATE {
            if let Some((&index, (_, seq, _))) = self.objects.iter().find(|(_, (k, _, _))| *k == key) {
                if flags & IPC_CREAT != 0 && flags & IPC_EXCL != 0 {
                    return Err(GetError::Exists);
                }
                return Ok(Got::Existing((seq * SEQ + index) as i32));
            }
            if flags & IPC_CREAT == 0 {
                return Err(GetError::NoEntry);
            }
        }
        let index = (0..self.max.min(SEQ)).find(|i| !self.objects.contains_key(i)).ok_or(GetError::Full)?;
        self.seq = (self.seq + 1) % (i32::MAX as u32 / SEQ);
        self.objects.insert(index, (key, self.seq, make()));
        Ok(Got::Created((self.seq * SEQ + index) as i32))
    }

    fn split(id: i32) -> Option<(u32, u32)> {
        let id = u32::try_from(id).ok()?;
        Some((id % SEQ, id / SEQ))
    }

    pub fn lookup(&self, id: i32) -> Option<&T> {
        let (index, seq) = Self::split(id)?;
        self.objects.get(&index).filter(|(_, s, _)| *s == seq).map(|(_, _, t)| t)
    }

    pub fn lookup_mut(&mut self, id: i32) -> Option<&mut T> {
        let (index, seq) = Self::split(id)?;
        self.objects.get_mut(&index).filter(|(_, s, _)| *s == seq).map(|(_, _, t)| t)
    }

    /// The key an object was made with.
    pub fn key(&self, id: i32) -> Option<i32> {
        let (index, seq) = Self::split(id)?;
        self.objects.get(&index).filter(|(_, s, _)| *s == seq).map(|(k, _, _)| *k)
    }

    /// Takes the object out (IPC_RMID): its key is free again at once.
    pub fn remove(&mut self, id: i32) -> Option<T> {
        let (index, seq) = Self::split(id)?;
        if self.objects.get(&index).is_some_and(|(_, s, _)| *s == seq) { self.objects.remove(&index).map(|(_, _, t)| t) } else { None }
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every (id, object).
    pub fn iter(&self) -> impl Iterator<Item = (i32, &T)> {
        self.objects.iter().map(|(i, (_, s, t))| ((s * SEQ + i) as i32, t))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (i32, &mut T)> {
        self.objects.iter_mut().map(|(i, (_, s, t))| ((*s * SEQ + *i) as i32, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_private_excl_and_removal() {
        let mut t: Table<u8> = Table::new(4);
        let Ok(Got::Created(a)) = t.get(77, IPC_CREAT, || 1) else { panic!() };
        assert_eq!(t.get(77, 0, || 2), Ok(Got::Existing(a)));
        assert_eq!(t.get(77, IPC_CREAT | IPC_EXCL, || 2), Err(GetError::Exists));
        assert_eq!(t.get(78, 0, || 2), Err(GetError::NoEntry));
        let Ok(Got::Created(p1)) = t.get(IPC_PRIVATE, 0, || 3) else { panic!() };
        let Ok(Got::Created(p2)) = t.get(IPC_PRIVATE, 0, || 4) else { panic!() };
        assert!(p1 != p2 && p1 != a);
        assert_eq!(t.lookup(p2), Some(&4));
        assert_eq!(t.remove(a), Some(1));
        assert_eq!(t.lookup(a), None);
        assert_eq!(t.get(77, 0, || 2), Err(GetError::NoEntry));
        // The slot is reused with another sequence number: the old id stays dead.
        let Ok(Got::Created(b)) = t.get(77, IPC_CREAT, || 5) else { panic!() };
        assert_ne!(a, b);
        assert_eq!(t.lookup(a), None);
        assert_eq!(t.get(IPC_PRIVATE, 0, || 6).map(|_| ()), Ok(()));
        assert_eq!(t.get(IPC_PRIVATE, 0, || 7), Err(GetError::Full));
        assert_eq!(t.lookup(-1), None);
    }
}
