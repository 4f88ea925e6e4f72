//! The atomics the channels are built from, swappable for [loom]'s model-checked ones.
//!
//! Normal builds use `core::sync::atomic`. Built with `RUSTFLAGS="--cfg loom"` the same names
//! come from `loom::sync::atomic`, so `tests/loom.rs` can explore every interleaving (and the
//! weak-memory behaviours loom models) of the very code the kernel runs.
//!
//! The public API takes regions as `&[sync::AtomicU64]`; callers that want to stay
//! loom-compatible name the type through this module.
//!
//! [loom]: https://docs.rs/loom

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU64, Ordering, fence};

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicU64, Ordering, fence};
