//! CPU affinity: the calling thread kept on one CPU for a while (the
//! processes it starts meanwhile inherit it).

/// The calling thread kept on one CPU until this is dropped, when its
/// former affinity comes back (the processes it starts meanwhile inherit
/// it).
pub struct Affinity(libc::cpu_set_t);

impl Affinity {
    /// Keeps the calling thread on CPU `cpu` until the value is dropped.
    pub fn only(cpu: usize) -> Affinity {
        // SAFETY: an all-zero cpu_set_t is an empty set; sched_getaffinity
        // and sched_setaffinity get valid sets of the size passed.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_getaffinity(0, size, &mut old), 0);
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(libc::sched_setaffinity(0, size, &set), 0, "CPU {cpu}");
            Affinity(old)
        }
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        // SAFETY: restores the set sched_getaffinity returned, of its size.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
        assert_eq!(rc, 0, "restoring the CPU affinity");
    }
}
