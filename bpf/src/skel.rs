//! The generated skeletons, and the layout of the records shared with the
//! programs.
//!
//! The Rust types of the shared records (`types::counters`,
//! `types::proc_val`, `types::snapshot_rec`, ...) are generated from the
//! object's BTF, which is compiled from `bpf/netatop.h`: there is no
//! hand-written mirror. Each map's key and value sizes are checked against
//! them at load; `snapshot_rec`, which user space reads as atop's record,
//! is checked against that record at compile time where it is read.

#[allow(clippy::all, clippy::pedantic)]
#[allow(non_camel_case_types, non_snake_case, dead_code, unused_imports)]
mod netatop {
    include!(concat!(env!("OUT_DIR"), "/netatop.skel.rs"));
}

#[allow(clippy::all, clippy::pedantic)]
#[allow(non_camel_case_types, non_snake_case, dead_code, unused_imports)]
pub(crate) mod empty {
    include!(concat!(env!("OUT_DIR"), "/empty.skel.rs"));
}

#[allow(clippy::all, clippy::pedantic)]
#[allow(non_camel_case_types, non_snake_case, dead_code, unused_imports)]
pub(crate) mod tcpinfo {
    include!(concat!(env!("OUT_DIR"), "/tcpinfo.skel.rs"));
}

pub use netatop::types;
pub(crate) use netatop::{NetatopSkel, NetatopSkelBuilder};

/// Plain integer records: every bit pattern is a valid value.
///
/// # Safety
/// Implementors must be `repr(C)` structs (or integers) made only of
/// integer fields and arrays of them.
pub(crate) unsafe trait Pod: Copy + Default {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::thread_val {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::proc_val {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::exit_key {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::exit_val {}
// SAFETY: an integer.
unsafe impl Pod for u32 {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::thread_rec {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::counters {}
// SAFETY: generated from netatop.h; integer fields and a char array.
unsafe impl Pod for types::cgroup_gone {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::cgroup_rec {}
// SAFETY: an integer.
unsafe impl Pod for u64 {}
// SAFETY: generated from netatop.h; integer fields only (counters).
unsafe impl Pod for types::wire_netns {}

/// A record read from its bytes, which must be exactly its size.
pub(crate) fn from_bytes<T: Pod>(bytes: &[u8]) -> T {
    assert_eq!(bytes.len(), std::mem::size_of::<T>(), "a whole record");
    let mut v = T::default();
    // SAFETY: `T` is Pod, so any bytes make a valid value, and `bytes`
    // holds exactly size_of::<T>() of them.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            std::ptr::addr_of_mut!(v).cast::<u8>(),
            bytes.len(),
        )
    };
    v
}
