//! Error numbers: Linux's values (from `linux-raw-sys`), for Linux calls and Quest calls alike.
//!
//! A syscall fails by returning `-errno` in `rax`, i.e. a value in `-4095..=-1`
//! ([`Errno::from_ret`], [`Errno::to_ret`]). The C wrappers turn that into `errno = e;
//! return -1`. The Quest calls use only errno values that already exist in Linux, with their
//! usual meaning (see [`nr`](crate::nr) for which call returns which):
//!
//! | errno    | value | Quest meaning                                                   |
//! |----------|-------|-----------------------------------------------------------------|
//! | `EPERM`  | 1     | not allowed (destroy VCPU 0, kill a kernel task)                |
//! | `ESRCH`  | 3     | no such task / VCPU                                             |
//! | `EAGAIN` | 11    | try again                                                       |
//! | `ENOMEM` | 12    | out of kernel memory                                            |
//! | `EFAULT` | 14    | a pointer argument is not valid user memory                     |
//! | `EBUSY`  | 16    | admission control refused a VCPU; VCPU still has tasks bound    |
//! | `EINVAL` | 22    | bad argument (e.g. `C > T`, unknown VCPU type)                  |
//! | `ENOSPC` | 28    | VCPU table full                                                 |
//! | `ENOSYS` | 38    | not implemented (reserved numbers; any call on plain Linux)     |

use core::fmt;

use linux_raw_sys::errno as e;

/// A Linux error number, `1..=4095`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(u16);

/// Declares the associated constants and the name table together, so they cannot drift apart.
macro_rules! errnos {
    ($($name:ident: $doc:literal),* $(,)?) => {
        impl Errno {
            $(
                #[doc = $doc]
                pub const $name: Errno = Errno(e::$name as u16);
            )*

            /// Every errno with an associated constant here, in declaration order.
            pub const KNOWN: &'static [Errno] = &[$(Errno::$name),*];

            /// The symbolic name (`"EINVAL"`), if it is one of [`Errno::KNOWN`].
            pub const fn name(self) -> Option<&'static str> {
                $(
                    if self.0 == e::$name as u16 {
                        return Some(stringify!($name));
                    }
                )*
                None
            }
        }
    };
}

errnos! {
    EPERM: "Operation not permitted (1).",
    ENOENT: "No such file or directory (2).",
    ESRCH: "No such process (3); Quest: no such task or VCPU.",
    EINTR: "Interrupted system call (4).",
    EIO: "I/O error (5).",
    ENXIO: "No such device or address (6).",
    E2BIG: "Argument list too long (7).",
    ENOEXEC: "Exec format error (8).",
    EBADF: "Bad file number (9).",
    ECHILD: "No child processes (10).",
    EAGAIN: "Try again (11); the same value as `EWOULDBLOCK`.",
    ENOMEM: "Out of memory (12).",
    EACCES: "Permission denied (13).",
    EFAULT: "Bad address (14).",
    EBUSY: "Device or resource busy (16); Quest: admission control refused, or VCPU in use.",
    EEXIST: "File exists (17).",
    ENODEV: "No such device (19).",
    ENOTDIR: "Not a directory (20).",
    EISDIR: "Is a directory (21).",
    EINVAL: "Invalid argument (22).",
    ENFILE: "File table overflow (23).",
    EMFILE: "Too many open files (24).",
    ENOTTY: "Not a typewriter (25): the ioctl does not apply to this file.",
    EFBIG: "File too large (27).",
    ENOSPC: "No space left on device (28); Quest: VCPU table full.",
    ESPIPE: "Illegal seek (29).",
    EROFS: "Read-only file system (30).",
    EPIPE: "Broken pipe (32).",
    ERANGE: "Math result not representable (34).",
    EDEADLK: "Resource deadlock would occur (35).",
    ENAMETOOLONG: "File name too long (36).",
    ENOSYS: "Invalid system call number (38): not implemented.",
    ENOTEMPTY: "Directory not empty (39).",
    ETIMEDOUT: "Connection timed out (110); also futex wait timeouts.",
    EOPNOTSUPP: "Operation not supported (95); the same value as `ENOTSUP`.",
}

impl Errno {
    /// The largest errno: results in `-4095..=-1` are errors.
    pub const MAX: u16 = 4095;

    /// The errno with value `n`, if `1 <= n <= 4095`.
    pub const fn new(n: u16) -> Option<Errno> {
        if n >= 1 && n <= Self::MAX {
            Some(Errno(n))
        } else {
            None
        }
    }

    /// The positive value, as C's `errno` holds it.
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// The syscall return value for this error: `-errno`.
    pub const fn to_ret(self) -> isize {
        -(self.0 as isize)
    }

    /// Decodes a raw syscall return value (`rax`): `-4095..=-1` is an error, anything else a
    /// success value (which may be a large unsigned value, such as an `mmap` address).
    pub const fn from_ret(ret: isize) -> Result<usize, Errno> {
        if ret < 0 && ret >= -(Self::MAX as isize) {
            Err(Errno((-ret) as u16))
        } else {
            Ok(ret as usize)
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_values() {
        // The values the Quest calls document; they are Linux's (x86-64 and generic).
        assert_eq!(Errno::EPERM.raw(), 1);
        assert_eq!(Errno::ESRCH.raw(), 3);
        assert_eq!(Errno::EAGAIN.raw(), 11);
        assert_eq!(Errno::ENOMEM.raw(), 12);
        assert_eq!(Errno::EFAULT.raw(), 14);
        assert_eq!(Errno::EBUSY.raw(), 16);
        assert_eq!(Errno::EINVAL.raw(), 22);
        assert_eq!(Errno::ENOTTY.raw(), 25);
        assert_eq!(Errno::ENOSPC.raw(), 28);
        assert_eq!(Errno::ENOSYS.raw(), 38);
        assert_eq!(Errno::ETIMEDOUT.raw(), 110);
    }

    #[test]
    fn ret_round_trip() {
        for &e in Errno::KNOWN {
            assert_eq!(Errno::from_ret(e.to_ret()), Err(e));
            assert_eq!(Errno::new(e.raw()), Some(e));
        }
        assert_eq!(Errno::from_ret(0), Ok(0));
        assert_eq!(Errno::from_ret(7), Ok(7));
        assert_eq!(Errno::from_ret(-1), Err(Errno::EPERM));
        assert_eq!(Errno::from_ret(-4095).map_err(Errno::raw), Err(4095));
        // An mmap address in the upper half is a success, not an error.
        assert_eq!(Errno::from_ret(-4096), Ok((-4096isize) as usize));
        assert_eq!(Errno::from_ret(isize::MIN), Ok(isize::MIN as usize));
        assert_eq!(Errno::new(0), None);
        assert_eq!(Errno::new(4096), None);
    }

    #[test]
    fn names_are_unique_and_formatting() {
        for (i, a) in Errno::KNOWN.iter().enumerate() {
            for b in &Errno::KNOWN[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(Errno::EINVAL.name(), Some("EINVAL"));
        assert_eq!(Errno::new(200).unwrap().name(), None);
        extern crate std;
        use std::format;
        assert_eq!(format!("{:?}", Errno::EBUSY), "EBUSY");
        assert_eq!(format!("{}", Errno::EBUSY), "EBUSY (16)");
        assert_eq!(format!("{}", Errno::new(200).unwrap()), "errno 200");
        assert_eq!(format!("{:?}", Errno::new(200).unwrap()), "Errno(200)");
    }
}
