//! The kernel memory the programs' state takes: what the kernel charges
//! each map, and an estimate of the threads' task storage, which it does
//! not report. (The locked-memory charge of kernels before 5.11 is
//! `memlock`'s.)

use std::fs;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::skel::Skel;
use libbpf_rs::MapCore;

use crate::kernel::Kernel;
use crate::maps;
use crate::skel::types;
use crate::tracer::Tracer;

impl Tracer {
    /// Kernel memory charged to the maps: the `memlock` of each map's
    /// /proc/self/fdinfo entry.
    pub fn map_memory(&self) -> std::io::Result<u64> {
        let mut total = 0;
        let ours = |m: &libbpf_rs::Map<'_>| m.autocreate() && maps::spec_of(m.name()).is_some();
        for map in self.skel.object().maps().filter(ours) {
            let fd = map.as_fd().as_raw_fd();
            let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
            total += info
                .lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Kernel memory of `threads` threads' task storage, which the kernel
    /// does not report: each thread's storage element (the kernel's
    /// `struct bpf_local_storage_elem` and the counters) and its storage
    /// (`struct bpf_local_storage`), each rounded up to the kernel's
    /// allocation size. 0 with a hash map, whose memory is in
    /// [`Tracer::map_memory`].
    pub fn thread_storage_memory(&self, threads: usize) -> u64 {
        self.storage_bytes * threads as u64
    }
}

/// Kernel memory one thread's task storage takes (see
/// [`Tracer::thread_storage_memory`]); sizes the kernel's BTF lacks are
/// taken as on Linux 6.1 (88 and 192 bytes).
pub(crate) fn storage_bytes(kernel: &Kernel) -> u64 {
    let elem = kernel.struct_size("bpf_local_storage_elem").unwrap_or(88);
    let storage = kernel.struct_size("bpf_local_storage").unwrap_or(192);
    let value = size_of::<types::thread_val>();
    (kmalloc_size(elem + value) + kmalloc_size(storage)) as u64
}

/// The size the kernel's allocator gives a request of `n` bytes (its
/// general caches: 8, 16, 32, 64, 96, 128, 192 bytes, then powers of two).
fn kmalloc_size(n: usize) -> usize {
    match n {
        0..=8 => 8,
        9..=16 => 16,
        17..=32 => 32,
        33..=64 => 64,
        65..=96 => 96,
        97..=128 => 128,
        129..=192 => 192,
        _ => n.next_power_of_two(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_up_to_the_allocators_caches() {
        let sizes: Vec<usize> = [1, 8, 9, 33, 65, 97, 129, 193, 300, 1024]
            .into_iter()
            .map(kmalloc_size)
            .collect();
        assert_eq!(sizes, [8, 8, 16, 64, 96, 128, 192, 256, 512, 1024]);
    }
}
