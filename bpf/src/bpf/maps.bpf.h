/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Every map and global of the object, in one place. User space sets the
 * const volatile flags and the maps' sizes before load, creates, pins and
 * reads the maps by these names (bpf/src/maps.rs: the table of maps and
 * their pin names), and reads `stats` from .bss. The records they hold are
 * netatop.h's. A map used only in some modes says so.
 *
 * Also stat_inc(), which counts a rare event in `stats`.
 */
#ifndef NETATOP_MAPS_BPF_H
#define NETATOP_MAPS_BPF_H

/* Set by user space before load: the kprobe tier pairs each call's entry
 * with its return through `inflight`. */
const volatile bool kprobes = false;
/* Set by user space before load: threads' counters live in `tstore`, not
 * in `threads`. The verifier drops the other branch, so the helpers of
 * task storage are never seen by a kernel that lacks them. */
const volatile bool task_storage = false;
/* Set by user space before load: count what the wire carries (IP packets
 * and their bytes, per socket owner) instead of socket calls. */
const volatile bool wire_mode = false;

/* Each thread's counters (task storage; not created where unused). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_val);
} tstore SEC(".maps");

/* Sizes are set by user space before load (netatopd --max-threads etc.). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct thread_val);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct proc_val);
} procs SEC(".maps");

/* Per user (real uid, not root): its processes in `procs`; an entry goes
 * with the user's last. Sized like `procs` by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, __u64);
} user_procs SEC(".maps");

/* Set by user space at every start (in .bss, so that an adopted state's
 * programs take it too): the most processes a user other than root has
 * in `procs`; 0: no limit. */
__u64 max_user_procs;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 32768);
	__type(key, struct exit_key);
	__type(value, struct exit_val);
} exited SEC(".maps");

/* Written by user space only; see struct netatop_meta. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netatop_meta);
} meta SEC(".maps");

/* kprobe tier: the socket of each call in progress, from its entry to its
 * return (sized like `threads`; used only by that tier). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct call_key);
	__type(value, struct call_val);
} inflight SEC(".maps");

/* Snapshots without the task iterator: each process's sum, built by the
 * walk passes, and the processes gone since, to remove at the end of a
 * snapshot (removing elements while their map is walked would skip
 * others). Sized by user space; one entry each where unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct walk_val);
} walk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 32768);
	__type(value, __u32);
} walk_stale SEC(".maps");

/* Wire counting: each socket's owner. This map and the wire's others are
 * created only when counting the wire. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_owner);
} owners SEC(".maps");

/* Wire counting: the sockets whose owner is taking what they carried
 * without one (key: the address of its `owners` entry): a lock, one
 * taker at a time (see claim() in owners.bpf.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} claiming SEC(".maps");

/* Wire counting: the owner of each listening socket, by its address: a
 * SYN-ACK leaves on a request socket, whose listener only a plain read
 * reaches (no socket storage through it). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct sock_owner);
} listeners SEC(".maps");

/* Wire counting: per network namespace; see struct wire_netns. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct wire_netns);
} netns_wire SEC(".maps");

/* Wire counting: IPv4 fragments awaiting their reassembled datagram's
 * socket (an LRU map: the fragments of datagrams never delivered age
 * out, and stay unattributed). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct frag_key);
	__type(value, struct frag_val);
} frags SEC(".maps");

/* Entries ever put in `frags` less those claimed: while 0, sockets need
 * not look for their datagram's fragments. */
__u64 frags_waiting;

/* Wire counting: see struct rx_tally. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rx_tally);
} rx_tally SEC(".maps");

/* Per cgroup v2 (key: its id, the kernfs id of its directory): the final
 * totals of its processes that have exited. A cgroup's total is this and
 * its live processes'. Sized by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct counters);
} cgroups SEC(".maps");

/* A removed cgroup's record being built (too large for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cgroup_gone);
} gone_scratch SEC(".maps");

/* Removed cgroups' final totals, until user space collects them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct cgroup_gone);
} cgroups_gone SEC(".maps");

struct netatop_stats stats;

/* The generation of the snapshot being walked: a new one for each
 * session (read) of pass 1. */
__u64 walk_gen;
__u64 walk_session;

#define stat_inc(field) __sync_fetch_and_add(&stats.field, 1)

#endif /* NETATOP_MAPS_BPF_H */
