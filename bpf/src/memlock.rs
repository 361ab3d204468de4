//! Locked memory: before Linux 5.11 the kernel charges every BPF map (and
//! program) to the locked-memory limit (RLIMIT_MEMLOCK) of the user that
//! creates it; from 5.11 it charges the memory cgroup instead. Where maps
//! cannot be created for want of it, this says how much netatopd's maps
//! need at the sizes chosen, by the kernel's own rule, and what the limit
//! is.

use libbpf_rs::{MapType, OpenObject};

/// What the 5.10 kernel takes a hash map element for: `struct htab_elem`
/// (hash node, RCU or LRU node, hash, 48 bytes) before the key and value.
const HTAB_ELEM: u64 = 48;
/// A hash bucket: a list head and its spinlock.
const BUCKET: u64 = 16;
/// The kernel's map structures ahead of an array's or a queue's values
/// (`struct bpf_array`, `struct bpf_queue_stack`); they only change which
/// page a small map's charge ends in.
const MAP_HEADER: u64 = 320;
const PAGE: u64 = 4096;
/// libbpf's flag for the arrays of global variables it maps.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Whether this kernel charges BPF maps to RLIMIT_MEMLOCK: it has no
/// memory-cgroup accounting of them, which came in Linux 5.11 with the
/// helper bpf_ktime_get_coarse_ns() (libbpf's own test). A probe that
/// cannot load at all (as where the limit is too low) counts as charging.
pub(crate) fn kernel_charges() -> bool {
    use libbpf_rs::libbpf_sys as sys;
    // SAFETY: libbpf's probe takes no pointer but its null options.
    let ok = unsafe {
        sys::libbpf_probe_bpf_helper(
            sys::BPF_PROG_TYPE_SOCKET_FILTER,
            sys::BPF_FUNC_ktime_get_coarse_ns,
            std::ptr::null(),
        )
    };
    ok != 1
}

/// The soft locked-memory limit in bytes (None: unlimited).
pub(crate) fn limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return None;
    }
    (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// What the maps of `object` that are to be created would be charged,
/// in bytes, on a kernel that charges them (Linux 5.10's rule).
pub(crate) fn maps_need(object: &OpenObject) -> u64 {
    let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1) as u64;
    object
        .maps()
        .filter(|m| m.autocreate())
        .map(|m| {
            charge(
                m.map_type(),
                m.map_flags(),
                m.key_size().into(),
                m.value_size().into(),
                m.max_entries().into(),
                cpus,
            )
        })
        .sum()
}

fn round8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE) * PAGE
}

/// One map's charge: the kernel's cost formula of its type, in whole
/// pages. Types whose charge does not grow with their size (socket and
/// task storage) are taken as one page.
fn charge(ty: MapType, flags: u32, key: u64, value: u64, n: u64, cpus: u64) -> u64 {
    let buckets = BUCKET * n.next_power_of_two();
    match ty {
        MapType::Hash | MapType::LruHash => {
            let elem = HTAB_ELEM + round8(key) + round8(value);
            pages(buckets + elem * n + elem * cpus)
        }
        MapType::PercpuHash | MapType::LruPercpuHash => {
            let elem = HTAB_ELEM + round8(key) + 8;
            pages(buckets + elem * n + round8(value) * cpus * n)
        }
        MapType::Array if flags & BPF_F_MMAPABLE != 0 => {
            pages(MAP_HEADER) + pages(round8(value) * n)
        }
        MapType::Array => pages(MAP_HEADER + round8(value) * n),
        MapType::PercpuArray => pages(MAP_HEADER + 8 * n + round8(value) * n * cpus),
        MapType::Queue | MapType::Stack => pages(MAP_HEADER + value * (n + 1)),
        _ => PAGE,
    }
}

/// `bytes` for people: "8.0 MiB", "64 KiB".
pub(crate) fn human(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_map_is_charged_its_buckets_elements_and_spares() {
        // 65,536 entries of a 4-byte key and a 100-byte value, 2 CPUs:
        // 1 MiB of buckets, 160 bytes an element, two spare elements.
        let want = pages(16 * 65536 + 160 * 65536 + 160 * 2);
        assert_eq!(charge(MapType::Hash, 1, 4, 100, 65536, 2), want);
        // Not a power of two: the buckets are.
        assert_eq!(
            charge(MapType::Hash, 1, 4, 100, 40000, 2),
            pages(16 * 65536 + 160 * 40000 + 160 * 2)
        );
    }

    #[test]
    fn arrays_and_queues_are_charged_whole_pages() {
        assert_eq!(charge(MapType::Array, 0, 4, 24, 1, 2), PAGE);
        assert_eq!(
            charge(MapType::Array, BPF_F_MMAPABLE, 4, 5000, 1, 2),
            PAGE + 2 * PAGE
        );
        assert_eq!(
            charge(MapType::Queue, 0, 0, 4, 65536, 2),
            pages(MAP_HEADER + 4 * 65537)
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(64 * 1024), "64 KiB");
        assert_eq!(human(8 << 20), "8.0 MiB");
        assert_eq!(human(70_000_000), "66.8 MiB");
    }
}
