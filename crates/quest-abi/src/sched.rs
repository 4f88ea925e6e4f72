//! `struct sched_param`: the VCPU parameters of `vcpu_create` and `vcpu_getparams`.
//!
//! The C declaration (`user/include/vcpu.h`) is
//!
//! ```c
//! struct sched_param { int type; int C; int T; int io_class; int affinity; };
//! ```
//!
//! so the seed's `struct sched_param s_params = {.type = MAIN_VCPU, .C = 20, .T = 100};`
//! compiles as written; fields it leaves out are zero: `io_class = 0` (none) and
//! `affinity = 0` (PCPU 0, the boot CPU — the seed's sandboxes had one PCPU each).

/// `type` of a Main VCPU: a sporadic server with budget `C` every period `T`; tasks bind to it.
pub const MAIN_VCPU: i32 = 0;
/// `type` of an IO VCPU: a priority-inheritance bandwidth-preserving server (PIBS) for
/// interrupts and I/O; its budget derives from the Main VCPUs it serves.
pub const IO_VCPU: i32 = 1;
/// `affinity` value meaning "any PCPU: let the kernel choose".
pub const AFFINITY_ANY: i32 = -1;

/// The kind of a VCPU, the typed form of [`SchedParam::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VcpuType {
    /// [`MAIN_VCPU`].
    Main,
    /// [`IO_VCPU`].
    Io,
}

impl VcpuType {
    /// The C value ([`MAIN_VCPU`] or [`IO_VCPU`]).
    pub const fn raw(self) -> i32 {
        match self {
            VcpuType::Main => MAIN_VCPU,
            VcpuType::Io => IO_VCPU,
        }
    }

    /// The type for a C value, or `None` if it is neither (the kernel answers `EINVAL`).
    pub const fn from_raw(raw: i32) -> Option<VcpuType> {
        match raw {
            MAIN_VCPU => Some(VcpuType::Main),
            IO_VCPU => Some(VcpuType::Io),
            _ => None,
        }
    }

    /// As the seed's `ps -v` shows it: `"main"` or `"io"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            VcpuType::Main => "main",
            VcpuType::Io => "io",
        }
    }
}

/// Quest's `struct sched_param` (20 bytes, 4-aligned, no padding). Times are microseconds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SchedParam {
    /// C `type`: [`MAIN_VCPU`] or [`IO_VCPU`] (named `kind` here: `type` is a Rust keyword).
    pub kind: i32,
    /// C `C`: budget in microseconds (Main VCPU); for an IO VCPU, 0 lets the kernel derive it.
    pub c: i32,
    /// C `T`: period in microseconds.
    pub t: i32,
    /// C `io_class`: for an IO VCPU, the device class it serves; 0 = none. Ignored for Main
    /// VCPUs.
    pub io_class: i32,
    /// C `affinity`: the PCPU (0-based) to place the VCPU on, or [`AFFINITY_ANY`].
    pub affinity: i32,
}

impl SchedParam {
    /// A Main VCPU with budget `c_us` every `t_us` on PCPU `affinity` (or [`AFFINITY_ANY`]).
    pub const fn main(c_us: i32, t_us: i32, affinity: i32) -> SchedParam {
        SchedParam {
            kind: MAIN_VCPU,
            c: c_us,
            t: t_us,
            io_class: 0,
            affinity,
        }
    }

    /// The typed VCPU type, or `None` for an unknown `kind`.
    pub const fn vcpu_type(&self) -> Option<VcpuType> {
        VcpuType::from_raw(self.kind)
    }

    /// The kernel's check of `vcpu_create`'s argument, before admission control: a known type,
    /// `0 < T`, `0 < C <= T` for a Main VCPU (`0 <= C <= T` for an IO VCPU), and an affinity
    /// that is [`AFFINITY_ANY`] or a PCPU `< num_pcpus`. Returns `Err(EINVAL)` otherwise.
    pub const fn validate(&self, num_pcpus: u32) -> Result<VcpuType, crate::Errno> {
        let Some(kind) = self.vcpu_type() else {
            return Err(crate::Errno::EINVAL);
        };
        let min_c = match kind {
            VcpuType::Main => 1,
            VcpuType::Io => 0,
        };
        if self.t <= 0 || self.c < min_c || self.c > self.t {
            return Err(crate::Errno::EINVAL);
        }
        if self.affinity != AFFINITY_ANY && (self.affinity < 0 || self.affinity as u32 >= num_pcpus)
        {
            return Err(crate::Errno::EINVAL);
        }
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn layout() {
        assert_eq!(size_of::<SchedParam>(), 20);
        assert_eq!(align_of::<SchedParam>(), 4);
        assert_eq!(offset_of!(SchedParam, kind), 0);
        assert_eq!(offset_of!(SchedParam, c), 4);
        assert_eq!(offset_of!(SchedParam, t), 8);
        assert_eq!(offset_of!(SchedParam, io_class), 12);
        assert_eq!(offset_of!(SchedParam, affinity), 16);
    }

    #[test]
    fn seed_initialiser_is_valid() {
        // {.type = MAIN_VCPU, .C = 20, .T = 100}: the other fields are zero.
        let p = SchedParam {
            kind: MAIN_VCPU,
            c: 20,
            t: 100,
            ..Default::default()
        };
        assert_eq!(p, SchedParam::main(20, 100, 0));
        assert_eq!(p.validate(1), Ok(VcpuType::Main));
    }

    #[test]
    fn validate_rejects_bad_parameters() {
        use crate::Errno;
        let ok = SchedParam::main(20, 100, AFFINITY_ANY);
        assert_eq!(ok.validate(1), Ok(VcpuType::Main));
        let bad = [
            SchedParam { kind: 2, ..ok },
            SchedParam { kind: -1, ..ok },
            SchedParam { c: 0, ..ok },
            SchedParam { c: -5, ..ok },
            SchedParam { t: 0, ..ok },
            SchedParam { c: 101, ..ok },
            SchedParam { affinity: 1, ..ok },
            SchedParam { affinity: -2, ..ok },
        ];
        for p in bad {
            assert_eq!(p.validate(1), Err(Errno::EINVAL), "{p:?}");
        }
        assert_eq!(
            SchedParam { affinity: 3, ..ok }.validate(4),
            Ok(VcpuType::Main)
        );
        let io = SchedParam {
            kind: IO_VCPU,
            c: 0,
            t: 100,
            io_class: 1,
            affinity: 0,
        };
        assert_eq!(io.validate(1), Ok(VcpuType::Io));
    }

    #[test]
    fn vcpu_type_round_trips() {
        for t in [VcpuType::Main, VcpuType::Io] {
            assert_eq!(VcpuType::from_raw(t.raw()), Some(t));
        }
        assert_eq!(VcpuType::from_raw(7), None);
        assert_eq!(VcpuType::Main.as_str(), "main");
        assert_eq!(VcpuType::Io.as_str(), "io");
    }
}
