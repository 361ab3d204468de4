/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Counting the wire: each socket's owner. A thread that sends, receives,
 * connects or listens on a socket becomes its owner (tag(), in `owners`);
 * the first owner takes what the socket carried before it had one
 * (claim()). A packet of the socket counts to its owner thread's counters,
 * or its process's (owner_proc(), owner_counters()). A listener's owner is
 * also kept by address, for its SYN-ACKs (netatop_state, `listeners`).
 * Also each network namespace's wire counters (netns_entry()).
 *
 * User space: bpf/src/wire.rs (netatop_state is one of the programs wire
 * counting adds, and what the kernel needs for them); the loader sets
 * `wire_mode`.
 */
#ifndef NETATOP_OWNERS_BPF_H
#define NETATOP_OWNERS_BPF_H

/* The wire counters of network namespace `netns`, made if needed. */
static __always_inline struct wire_netns *netns_entry(__u32 netns)
{
	struct wire_netns *w = bpf_map_lookup_elem(&netns_wire, &netns);
	struct wire_netns zero = {};

	if (w)
		return w;
	bpf_map_update_elem(&netns_wire, &netns, &zero, BPF_NOEXIST);
	w = bpf_map_lookup_elem(&netns_wire, &netns);
	if (!w)
		stat_inc(wire_map_full);
	return w;
}

/* The first owner of a socket takes what it carried before: into its
 * counters `to`, and what it received into its namespace's claims (and
 * what of that its receive program missed, into its received). */
static __noinline void claim(struct sock_owner *o, struct counters *to, __u32 netns)
{
	__u64 unseen, unseen_bytes;
	struct counters got;
	struct wire_netns *w;
	bool tcp;

	if (!o || !to)
		return;
	/* Read before the packets they are part of are taken. */
	unseen = o->unseen_packets;
	unseen_bytes = o->unseen_bytes;
	got = take_counters(&o->pending);
	/* A socket is TCP or UDP: the unseen are of the kind received. */
	tcp = got.tcprcvpacks != 0;
	__sync_fetch_and_add(&o->unseen_packets, -unseen);
	__sync_fetch_and_add(&o->unseen_bytes, -unseen_bytes);
	w = netns_entry(netns);
	if (w) {
		__sync_fetch_and_add(&w->attributed_in.tcprcvpacks, got.tcprcvpacks);
		__sync_fetch_and_add(&w->attributed_in.tcprcvbytes, got.tcprcvbytes);
		__sync_fetch_and_add(&w->attributed_in.udprcvpacks, got.udprcvpacks);
		__sync_fetch_and_add(&w->attributed_in.udprcvbytes, got.udprcvbytes);
		__sync_fetch_and_add(tcp ? &w->received.tcprcvpacks : &w->received.udprcvpacks,
				     unseen);
		__sync_fetch_and_add(tcp ? &w->received.tcprcvbytes : &w->received.udprcvbytes,
				     unseen_bytes);
	}
	fold(to, &got);
}

/*
 * Makes the calling thread the owner of socket `sk` (it sends, receives,
 * connects or listens on it): the packets the socket sends or receives
 * from now on are its own, in whatever context they pass. Its process's
 * and thread's entries are made here, in its own context, so that a
 * packet only ever adds to entries that exist.
 */
static __always_inline void tag(struct sock *sk)
{
	struct sock_owner *o;
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct thread_val *t;
	struct proc_val *p;
	__u32 netns, tgid;

	o = bpf_sk_storage_get(&owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o) {
		stat_inc(owner_failed);
		return;
	}
	if (o->tid == (__u32)id && o->tgid == id >> 32)
		return;
	/* The thread's entry, and its process's; with the threads map full,
	 * its packets count to its process. */
	t = current_thread();
	tgid = id >> 32;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return;
	task = bpf_get_current_task_btf();
	netns = sk->__sk_common.skc_net.net->ns.inum;
	if (!o->tgid)
		claim(o, t ? &t->c : &p->exited, netns);
	o->tgid = tgid;
	o->tid = (__u32)id;
	o->start_ns = task->group_leader->start_boottime;
	o->netns = netns;
}

/* The process entry of a socket's owner, if that process still runs (a
 * later process with the same pid is not it). */
static __always_inline struct proc_val *owner_proc(const struct sock_owner *o)
{
	__u32 tgid = o->tgid;
	struct proc_val *p = bpf_map_lookup_elem(&procs, &tgid);

	if (!p || p->start_ns != o->start_ns)
		return NULL;
	return p;
}

/*
 * Where a packet of a socket owned by `o` (of process `p`) counts: its
 * owner thread's counters, whatever context the packet passes in (the
 * threads' counters are in the threads hash map when counting the wire,
 * reachable by tid from anywhere), or its process's when the thread has
 * none (it exited, or the map was full when it made its first call).
 * Several contexts add to them: atomically.
 */
static __always_inline struct counters *owner_counters(const struct sock_owner *o,
							struct proc_val *p)
{
	__u32 tid = o->tid;
	struct thread_val *t = bpf_map_lookup_elem(&threads, &tid);

	if (t && t->tgid == o->tgid)
		return &t->c;
	return &p->exited;
}

/* connect() and listen() make their caller the owner before any packet
 * leaves (a SYN, or SYN-ACKs for the listener); a listener's owner is
 * also kept by address for its SYN-ACKs. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(netatop_state, struct sock *sk, int oldstate, int newstate)
{
	struct sock_owner *o;
	__u64 key = (__u64)sk;

	if (oldstate == TCP_LISTEN) {
		bpf_map_delete_elem(&listeners, &key);
		return 0;
	}
	if (newstate != TCP_SYN_SENT && newstate != TCP_LISTEN)
		return 0;
	if (!classify(sk->__sk_common.skc_family, sk->sk_type, sk->sk_protocol))
		return 0;
	tag(sk);
	if (newstate == TCP_LISTEN) {
		o = bpf_sk_storage_get(&owners, sk, 0, 0);
		if (o && bpf_map_update_elem(&listeners, &key, o, BPF_ANY))
			stat_inc(owner_failed);
	}
	return 0;
}

#endif /* NETATOP_OWNERS_BPF_H */
