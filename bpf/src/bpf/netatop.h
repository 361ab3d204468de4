/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Every record that crosses the kernel/user boundary, defined once.
 * The Rust side uses the types the skeleton generator emits from this
 * object's BTF (netatopd_bpf::types), so the two layouts cannot drift.
 */
#ifndef NETATOP_H
#define NETATOP_H

/* Same order as the counters of atop's struct netpertask. */
struct counters {
	__u64 tcpsndpacks;
	__u64 tcpsndbytes;
	__u64 tcprcvpacks;
	__u64 tcprcvbytes;
	__u64 udpsndpacks;
	__u64 udpsndbytes;
	__u64 udprcvpacks;
	__u64 udprcvbytes;
};

/* A thread's counters: in its task-local storage (`tstore`), or in the
 * threads map (key = tid, __u32) where the kernel has no task storage for
 * tracing programs. Written only by the thread itself. */
struct thread_val {
	struct counters c;
	__u32 tgid;
	/* 1 once the entry is counted in its process's nthreads. */
	__u32 linked;
};

/* One live thread with counters (iter/task output, task storage only). */
struct thread_rec {
	__u32 tid;
	__u32 tgid;
	/* The thread's own name. */
	char comm[TASK_COMM_LEN];
	struct counters c;
};

/* procs map: key = tgid (__u32). */
struct proc_val {
	/* Totals of this process's threads that have already exited. */
	struct counters exited;
	/* Group leader's start_boottime (ns since boot, suspend included). */
	__u64 start_ns;
	/* Number of entries this process has in the threads map. */
	__s32 nthreads;
	/* Its real user id (in the initial user namespace) at its first
	 * counted call: the user it counts against in `user_procs`. */
	__u32 uid;
	/* Group leader's comm. */
	char comm[TASK_COMM_LEN];
	/* The totals the last snapshot reported (written by the snapshot
	 * iterator only): a snapshot never reports less, even when a thread
	 * exits while it is summed and is missed for that one walk. */
	struct counters reported;
};

/* One process of a snapshot (iter/task output), laid out like atop's
 * struct netpertask with the start time in place of btime. */
struct snapshot_rec {
	__s32 tgid;
	__u32 _pad;
	__u64 start_ns;
	char comm[TASK_COMM_LEN];
	struct counters c;
};

/* exited map: final totals of processes, until user space collects them. */
struct exit_key {
	__u32 tgid;
	__u32 _pad;
	__u64 start_ns;
};

struct exit_val {
	struct counters c;
	/* bpf_ktime_get_boot_ns() at the exit. */
	__u64 exit_ns;
	char comm[TASK_COMM_LEN];
};

/* owners map (socket-local storage, wire counting): the thread that last
 * sent or received on the socket, or created it (connect, listen), or
 * whose listener accepted it (the storage is cloned). */
struct sock_owner {
	__u32 tgid;
	__u32 tid;
	/* The process's start (its group leader's start_boottime): a later
	 * process with the same pid is not this one. */
	__u64 start_ns;
	/* The socket's network namespace (its inode number). */
	__u32 netns;
	/* Claims of `pending` tried (see claim() in owners.bpf.h). */
	__u32 asked;
	/* Packets of the socket while it had no owner (tgid 0): a UDP
	 * socket's first datagram leaves, and a server socket's first one
	 * arrives, before the call that returns it; a reply can arrive, on
	 * another CPU, while the call that sent the request returns. Its
	 * owner takes them (claim() in owners.bpf.h). */
	struct counters pending;
	/* Of the packets received in `pending`, those the namespace's
	 * receive program did not see (see struct rx_tally): its owner
	 * adds them to its namespace's received too. */
	__u64 unseen_packets;
	__u64 unseen_bytes;
};

/* rx_tally map (wire counting), per CPU: TCP and UDP packets the receive
 * program saw, and packets delivered to sockets. A packet passes the
 * receive program before it reaches its socket, on the same CPU; a CPU's
 * sockets receiving more than its receive program saw means the kernel
 * did not run the program for some (it skips tracing programs in some
 * contexts). Those are added to the namespace's received at delivery. */
struct rx_tally {
	__u64 seen;
	__u64 delivered;
	/* Of those delivered, the ones found unseen. */
	__u64 unseen;
};

/* wire map (wire counting): per network namespace (key: its inode
 * number, __u32), IP packets and bytes of TCP and UDP, in the send (out)
 * and receive (in) fields of struct counters. */
struct wire_netns {
	/* Sent by no process's socket (kernel control sockets: resets,
	 * TIME_WAIT ACKs; forwarded packets; sockets of exited processes). */
	struct counters unattributed_out;
	/* Received by the namespace's interfaces. */
	struct counters received;
	/* Of those, delivered to a process's socket and counted to it. */
	struct counters attributed_in;
};

/* frags map (wire counting): the IPv4 fragments of one datagram as they
 * arrived, until the datagram, reassembled, reaches its socket. */
struct frag_key {
	__u32 saddr;
	__u32 daddr;
	__u16 id;
	__u8 proto;
	__u8 _pad;
};

struct frag_val {
	__u64 packets;
	__u64 bytes;
};

/* cgroups_gone map: a removed cgroup's final totals (key: its id), until
 * user space collects them. */
struct cgroup_gone {
	struct counters c;
	/* bpf_ktime_get_boot_ns() at the removal. */
	__u64 removed_ns;
	/* Its path, as the removal reported it (cut at 255 bytes). */
	char path[256];
};

/* One live counted process's cgroup (iter/task output). */
struct cgroup_rec {
	__u32 tgid;
	__u32 _pad;
	__u64 cgroup_id;
};

/* Rare-path event counters, a global in .bss that user space reads. */
struct netatop_stats {
	/* Events not counted because the threads or procs map was full. */
	__u64 thread_map_full;
	__u64 proc_map_full;
	/* Events not counted because their process's user (not root) had
	 * `max_user_procs` processes counted already. */
	__u64 user_procs_capped;
	/* Events not counted because the thread's task-local storage could
	 * not be had (another task-storage operation in progress on that CPU,
	 * or no memory). */
	__u64 thread_storage_failed;
	/* Final totals of exited processes lost because `exited` was full. */
	__u64 exit_map_full;
	/* Exited processes whose final totals were published. */
	__u64 exits;
	/* Socket calls counted for threads that have exited. */
	__u64 exited_events;
	/* Wire counting: sockets whose owner could not be recorded (no
	 * memory for its storage, or the listeners map full). */
	__u64 owner_failed;
	/* Wire counting: packets not counted per namespace because the wire
	 * map was full (they are still counted to their process). */
	__u64 wire_map_full;
	/* Wire counting: packets delivered to sockets that the receive
	 * program did not see (see struct rx_tally); counted as received
	 * at delivery instead. */
	__u64 rx_unseen;
	/* Exited processes whose totals no cgroup's total got because the
	 * cgroups map was full, and removed cgroups whose final totals were
	 * lost because cgroups_gone was full. */
	__u64 cgroup_map_full;
	__u64 cgroup_gone_full;
	/* Removed cgroups whose totals moved to their parent. */
	__u64 cgroups_removed;
	/* kprobe tier: calls whose return was never seen (a kretprobe has a
	 * bounded number of calls in flight); they are not counted. */
	__u64 kretprobe_missed;
};

/* walk map (snapshots without the task iterator): a process's sum, valid
 * in the snapshot of generation `gen`. */
struct walk_val {
	struct counters c;
	__u64 gen;
};

/* inflight map (kprobe tier): a call of thread `tid` to hooked function
 * `fn`, between its entry and its return. */
struct call_key {
	__u32 tid;
	__u32 fn;
};

struct call_val {
	/* The struct sock * of the call. */
	__u64 sk;
	__s32 flags;
	__u32 _pad;
};

/*
 * meta map (one entry): what made the pinned state. A netatopd adopts
 * pinned maps only when `layout` equals its own (a fingerprint of this
 * file); it keeps the pinned programs only when `build` equals its own
 * (a fingerprint of the compiled object).
 */
struct netatop_meta {
	__u64 layout;
	__u64 build;
	/* bpf_ktime_get_boot_ns() when counting started. */
	__u64 created_ns;
};

#endif
