//! Whole hash maps read with BPF_MAP_LOOKUP_BATCH (or its delete variant).
//!
//! libbpf-rs's own batch iterator (`MapCore::lookup_batch`, 0.27) is not
//! used: it returns each key and value as a fresh `Vec<u8>` (two
//! allocations per entry), ends at the first short batch, which hash maps
//! return in the middle of a map whenever the next bucket does not fit,
//! and an error ends it like the end of the map. Here entries go straight
//! into typed vectors reused across calls, only ENOENT ends a read, and
//! ENOSPC (a bucket larger than the batch) retries with a larger batch.

use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use crate::skel::Pod;

/// Reads a whole hash map with BPF_MAP_LOOKUP_BATCH (or its delete
/// variant), appending to `keys`/`vals`.
///
/// The kernel returns short batches in the middle of a map whenever the
/// next bucket does not fit; only ENOENT means the end.
pub(crate) fn read_batched<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    delete: bool,
    keys: &mut Vec<K>,
    vals: &mut Vec<V>,
) -> std::io::Result<()> {
    let mut chunk: u32 = 1024;
    // The batch token of hash maps is a u32 bucket index; u64 leaves room.
    let mut token_in: u64 = 0;
    let mut token_out: u64 = 0;
    let mut first = true;
    let batch_op = if delete {
        libbpf_rs::libbpf_sys::bpf_map_lookup_and_delete_batch
    } else {
        libbpf_rs::libbpf_sys::bpf_map_lookup_batch
    };
    let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
        sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    loop {
        keys.reserve(chunk as usize);
        vals.reserve(chunk as usize);
        let mut count = chunk;
        let in_ptr = if first {
            ptr::null_mut()
        } else {
            ptr::addr_of_mut!(token_in).cast()
        };
        let out_ptr = ptr::addr_of_mut!(token_out).cast();
        let key_ptr = keys.spare_capacity_mut().as_mut_ptr().cast();
        let val_ptr = vals.spare_capacity_mut().as_mut_ptr().cast();
        // SAFETY: `keys` and `vals` have room for `count` more elements, whose
        // sizes equal the map's key and value sizes (checked at load); the
        // tokens are 8 bytes, more than the 4 the kernel writes for hash maps.
        let ret = unsafe {
            batch_op(
                fd.as_raw_fd(),
                in_ptr,
                out_ptr,
                key_ptr,
                val_ptr,
                &mut count,
                &opts,
            )
        };
        let err = if ret < 0 { -ret } else { 0 };
        if err == 0 || err == libc::ENOENT {
            let n = count.min(chunk) as usize;
            // SAFETY: the kernel initialised `count` (<= chunk) elements of
            // plain-integer types in the spare capacity.
            unsafe {
                keys.set_len(keys.len() + n);
                vals.set_len(vals.len() + n);
            }
        }
        match err {
            0 => {}
            libc::ENOENT => return Ok(()),
            // One bucket holds more entries than `count`: retry, larger.
            libc::ENOSPC => {
                chunk = chunk.saturating_mul(2);
                continue;
            }
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
        token_in = token_out;
        first = false;
    }
}
