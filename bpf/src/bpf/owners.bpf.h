/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Counting the wire: each socket's owner. A thread that sends, receives,
 * connects or listens on a socket becomes its owner (tag(), in `owners`);
 * the owner takes what the socket carried while it had none (claim(),
 * claim_late()). A packet of the socket counts to its owner thread's counters,
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

/* A namespace's first wire counters: zero, kept out of the programs'
 * stack (512 bytes for a program and the functions it calls). */
static const struct wire_netns no_wire;

/* The wire counters of network namespace `netns`, made if needed. */
static __always_inline struct wire_netns *netns_entry(__u32 netns)
{
	struct wire_netns *w = bpf_map_lookup_elem(&netns_wire, &netns);

	if (w)
		return w;
	bpf_map_update_elem(&netns_wire, &netns, &no_wire, BPF_NOEXIST);
	w = bpf_map_lookup_elem(&netns_wire, &netns);
	if (!w)
		stat_inc(wire_map_full);
	return w;
}

/* Whether socket `o` carried anything while it had no owner that no
 * owner has taken yet. */
static __always_inline bool pending_any(struct sock_owner *o)
{
	volatile struct counters *c = &o->pending;

	return c->tcpsndpacks | c->tcpsndbytes | c->tcprcvpacks | c->tcprcvbytes |
	       c->udpsndpacks | c->udpsndbytes | c->udprcvpacks | c->udprcvbytes |
	       *(volatile __u64 *)&o->unseen_packets | *(volatile __u64 *)&o->unseen_bytes;
}

/* What field `f` holds, taken out of it (read, then subtracted: what is
 * added meanwhile stays). */
static __always_inline __u64 take_field(__u64 *f)
{
	__u64 v = *(volatile __u64 *)f;

	if (v)
		__sync_fetch_and_add(f, -v);
	return v;
}

/* Takes what socket `o` carried without an owner out of `pending` into
 * the owner's counters `to`, and what it received into its namespace's
 * claims (what of that its receive program missed, into its received).
 * One taker at a time (claim()). `tcp`: the socket is TCP (else UDP). */
static __noinline void take_pending(struct sock_owner *o, struct counters *to, __u32 netns,
				    bool tcp)
{
	struct wire_netns *w = netns_entry(netns);
	__u64 v;

/* Field `f` of `pending` into `to`; `in`: and into what the namespace's
 * sockets claimed. */
#define TAKE(f, in)                                                            \
	do {                                                                   \
		v = take_field(&o->pending.f);                                 \
		if (v) {                                                       \
			__sync_fetch_and_add(&to->f, v);                       \
			if ((in) && w)                                         \
				__sync_fetch_and_add(&w->attributed_in.f, v);  \
		}                                                              \
	} while (0)
	TAKE(tcpsndpacks, false);
	TAKE(tcpsndbytes, false);
	TAKE(udpsndpacks, false);
	TAKE(udpsndbytes, false);
	TAKE(tcprcvpacks, true);
	TAKE(tcprcvbytes, true);
	TAKE(udprcvpacks, true);
	TAKE(udprcvbytes, true);
#undef TAKE
	v = take_field(&o->unseen_packets);
	if (v && w)
		__sync_fetch_and_add(tcp ? &w->received.tcprcvpacks : &w->received.udprcvpacks, v);
	v = take_field(&o->unseen_bytes);
	if (v && w)
		__sync_fetch_and_add(tcp ? &w->received.tcprcvbytes : &w->received.udprcvbytes, v);
}

/*
 * A full barrier for the claims below, on socket `o`: what was written
 * before is seen by other CPUs before what is read after. An atomic add
 * that returns the old value (BPF_FETCH) is fully ordered wherever the JIT
 * runs (x86-64: lock xadd; arm64: ldaddal, or an exclusive loop and dmb
 * ish); one that returns nothing is fully ordered on x86-64 only (lock
 * add), so there the atomic adds before are the barrier already and this
 * adds nothing. On arm64, whose BPF trampolines (and so wire counting)
 * are from Linux 6.0, after BPF_FETCH (5.12): adding 0 to `asked` changes
 * no claim (claim() compares it only with itself).
 */
static __always_inline void full_barrier(struct sock_owner *o)
{
#if defined(__TARGET_ARCH_arm64)
	__u32 old = __sync_fetch_and_add(&o->asked, 0);

	barrier_var(old);
#endif
}

/*
 * The owner of socket `o` takes what the socket carried while it had
 * none: into its counters `to`, its namespace `netns`'s figures (see
 * take_pending()). `tcp`: the socket is TCP.
 *
 * Who calls: the first owner, once published (tag()); and a packet that
 * found no owner and added to `pending`, if one was published meanwhile
 * (claim_late()). Each publishes or adds, then a full barrier (an atomic
 * add; see full_barrier()), then reads the other's: of the two, at least
 * one sees the other, so nothing added stays behind.
 *
 * One taker at a time, so that nothing is taken twice: the `claiming`
 * entry of the socket is the lock (the map is the arbiter: one insertion
 * succeeds; Linux 5.10's instructions have no exchange). A caller that
 * finds it taken counts itself in `asked` first; the holder, seeing
 * `asked` move while it held the lock, takes again: what the other added
 * before asking is then there to take.
 */
static __noinline void claim(struct sock_owner *o, struct counters *to, __u32 netns, bool tcp)
{
	__u64 key = (__u64)o;
	__u32 asked, one = 1;
	long err;

	if (!o || !to)
		return;
	for (int i = 0; i < 4; i++) {
		__sync_fetch_and_add(&o->asked, 1);
		full_barrier(o);
		if (!pending_any(o))
			return;
		err = bpf_map_update_elem(&claiming, &key, &one, BPF_NOEXIST);
		if (err == -EEXIST)
			return; /* its holder takes again */
		asked = *(volatile __u32 *)&o->asked;
		take_pending(o, to, netns, tcp);
		if (err) {
			/* No room for the lock (many sockets claimed at
			 * once): taken without it. */
			stat_inc(owner_failed);
			return;
		}
		bpf_map_delete_elem(&claiming, &key);
		if (*(volatile __u32 *)&o->asked == asked)
			return;
	}
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
	bool first;

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
	/* Packets wait in `pending` only while the socket has no owner: a
	 * later owner has nothing to take. */
	first = !o->tgid;
	o->tid = (__u32)id;
	o->start_ns = task->group_leader->start_boottime;
	o->netns = netns;
	/* Published last (a packet that sees it reads the rest); then what
	 * the socket carried without an owner is taken (see claim()). */
	__asm__ __volatile__("" ::: "memory");
	*(volatile __u32 *)&o->tgid = tgid;
	if (first)
		claim(o, t ? &t->c : &p->exited, netns, sk->sk_type == SOCK_STREAM);
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

/* After a packet of socket `o` found no owner and added to its
 * `pending` (with atomic adds, then a full barrier: full_barrier()): if an
 * owner was published meanwhile, on another CPU, after it took what was
 * pending, the packet is taken for it here (see claim()). `tcp`: the
 * packet is TCP. */
static __always_inline void claim_late(struct sock_owner *o, bool tcp)
{
	struct proc_val *p;

	full_barrier(o);
	if (!*(volatile __u32 *)&o->tgid)
		return;
	p = owner_proc(o);
	if (p)
		claim(o, owner_counters(o, p), o->netns, tcp);
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
