//! System V message queues: which message `msgrcv` takes (msgrcv(2)).

/// Linux's default limits: bytes in one message (MSGMAX) and in one queue (MSGMNB).
pub const MSGMAX: usize = 8192;
pub const MSGMNB: usize = 16384;

/// The index of the message `msgrcv(msgtyp, except)` takes from `types` (the queue's message
/// types in arrival order): `msgtyp` 0 the first; > 0 the first of that type (with `except`,
/// the first of another type); < 0 the first of the lowest type not above `-msgtyp`.
pub fn select(types: impl Iterator<Item = i64>, msgtyp: i64, except: bool) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    for (i, t) in types.enumerate() {
        if msgtyp == 0 {
            return Some(i);
        }
        if msgtyp > 0 {
            if (t == msgtyp) != except {
                return Some(i);
            }
            continue;
        }
        let limit = msgtyp.checked_neg().unwrap_or(i64::MAX);
        if t <= limit && best.is_none_or(|(_, bt)| t < bt) {
            best = Some((i, t));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_follows_msgrcv() {
        let q = [3i64, 1, 2, 1];
        assert_eq!(select(q.iter().copied(), 0, false), Some(0));
        assert_eq!(select(q.iter().copied(), 2, false), Some(2));
        assert_eq!(select(q.iter().copied(), 3, true), Some(1));
        assert_eq!(select(q.iter().copied(), -2, false), Some(1));
        assert_eq!(select(q.iter().copied(), -3, false), Some(1));
        assert_eq!(select(q.iter().copied(), 5, false), None);
        assert_eq!(select([5i64].into_iter(), -4, false), None);
        assert_eq!(select([5i64].into_iter(), i64::MIN, false), Some(0));
    }
}
