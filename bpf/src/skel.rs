//! The generated skeletons, and the layout of the records shared with the
//! programs: a map's key and value sizes (`Layout`), a record read from
//! its bytes, a kernel `comm` array as bytes; the object a skeleton
//! borrows, and a program of the loaded object by name.
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
pub(crate) mod probe {
    include!(concat!(env!("OUT_DIR"), "/probe.skel.rs"));
}

use std::mem::{size_of, MaybeUninit};

use libbpf_rs::skel::Skel;
use libbpf_rs::OpenObject;

pub use netatop::types;
pub(crate) use netatop::{NetatopSkel, NetatopSkelBuilder, OpenNetatopSkel};

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
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::netatop_stats {}
// SAFETY: an integer.
unsafe impl Pod for u64 {}
// SAFETY: generated from netatop.h; integer fields only (counters).
unsafe impl Pod for types::wire_netns {}

/// The sizes of a map's key and value: those of the records the programs
/// and user space share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub key: usize,
    pub value: usize,
}

impl Layout {
    pub(crate) const fn of<K, V>() -> Self {
        Self {
            key: size_of::<K>(),
            value: size_of::<V>(),
        }
    }

    /// Panics when map `name`'s key and value sizes are not these.
    pub(crate) fn check(self, name: &str, key: u32, value: u32) {
        assert_eq!(
            (key as usize, value as usize),
            (self.key, self.value),
            "layout of map {name} differs from its generated type"
        );
    }
}

/// A record read from its bytes, which must be exactly its size.
pub(crate) fn from_bytes<T: Pod>(bytes: &[u8]) -> T {
    assert_eq!(bytes.len(), size_of::<T>(), "a whole record");
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

/// A NUL-terminated kernel string in an `i8` array, as bytes without the
/// NUL and what follows.
pub fn comm_like(s: &[i8]) -> Vec<u8> {
    s.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect()
}

/// A kernel `comm` array as bytes.
pub fn comm_bytes(comm: &[i8; 16]) -> [u8; 16] {
    comm.map(|c| c as u8)
}

/// A skeleton's object. The skeleton borrows its object for as long as it
/// lives; the daemon keeps one for its whole life, so the object is leaked
/// (a few hundred bytes) rather than made self-referential.
pub(crate) fn leaked_object() -> &'static mut MaybeUninit<OpenObject> {
    Box::leak(Box::new(MaybeUninit::uninit()))
}

/// A program of the loaded object, by name.
pub(crate) fn find_prog<'a>(
    skel: &'a NetatopSkel<'static>,
    name: &str,
) -> libbpf_rs::ProgramMut<'a> {
    skel.object()
        .progs_mut()
        .find(|p| p.name() == name)
        .unwrap_or_else(|| panic!("program {name} is not in the object"))
}
