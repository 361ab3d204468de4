// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Per-thread TCP/UDP send/receive accounting, for Linux >= 5.10 with BTF.
 *
 * tstore:  each thread's counters, in its task-local storage (Linux 5.13+:
 *          no capacity, freed with the task); single writer: the thread.
 * threads: tid -> counters, the same in a hash map where task storage is
 *          not available to tracing programs (chosen at start).
 * procs:   tgid -> start time, name, totals of its exited threads.
 * exited:  (tgid, start) -> final totals, until user space collects them.
 *
 * The send and receive calls are hooked one of three ways, chosen at start
 * by what the kernel loads (bpf/src/attach/): BTF raw tracepoints on
 * sock_send_length/sock_recv_length (6.3+), fexit on inet{,6}_sendmsg and
 * inet{,6}_recvmsg, or kprobes on the same functions. Every way ends in
 * count(), so what is counted does not depend on how.
 *
 * A snapshot writes one record per counted process: its exited threads'
 * totals plus its live threads' counters, never lower than what the last
 * snapshot reported. With the open-coded task iterator (6.7+) one pass over
 * the tasks does it (netatop_snapshot); before, three passes over the maps
 * (netatop_walk_*) through the `walk` map.
 *
 * A thread's exit folds its counters into its process (delete first, then
 * add, so a concurrent reader can miss a thread for one snapshot but never
 * count it twice). The exit of the last thread moves the process's totals
 * to `exited`. Nothing stays behind in the maps after a process is gone.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "netatop.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_MPTCP 262
#define MSG_PEEK 2
#define MSG_ERRQUEUE 0x2000
#define EEXIST 17
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_FRAGMENT 44
#define TCP_SYN_SENT 2
#define TCP_TIME_WAIT 6
#define TCP_LISTEN 10
#define TCP_NEW_SYN_RECV 12

char LICENSE[] SEC("license") = "Dual BSD/GPL";

extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task,
			     unsigned int flags) __weak __ksym;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __weak __ksym;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __weak __ksym;

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

/* Entries of processes gone removed at the end of a walk, at most (the
 * verifier follows each turn of the loop; the rest go at the next walks;
 * `walk` holds twice the processes, so they fit meanwhile). */
#define WALK_CLEANUP 1024

#define stat_inc(field) __sync_fetch_and_add(&stats.field, 1)

/*
 * The entry of the calling thread's process, created if needed. Out of
 * line (a BPF subprogram, verified once), like its callers: only a
 * thread's first counted call takes it, and every program's hot path
 * stays short. The current task is read with CO-RE reads:
 * bpf_get_current_task_btf() came only in Linux 5.11.
 */
static __noinline struct proc_val *proc_init(__u32 tgid)
{
	struct proc_val *p = bpf_map_lookup_elem(&procs, &tgid);
	long err;

	if (!p) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		struct task_struct *leader = BPF_CORE_READ(task, group_leader);
		struct proc_val pv = {};

		pv.start_ns = BPF_CORE_READ(leader, start_boottime);
		BPF_CORE_READ_STR_INTO(&pv.comm, leader, comm);
		err = bpf_map_update_elem(&procs, &tgid, &pv, BPF_NOEXIST);
		if (err && err != -EEXIST) {
			stat_inc(proc_map_full);
			return NULL;
		}
		p = bpf_map_lookup_elem(&procs, &tgid);
	}
	return p;
}

/* The calling thread's entry in the threads map, created (with its
 * process's) if needed. */
static __noinline struct thread_val *thread_init(__u32 tid, __u32 tgid)
{
	struct proc_val *p = proc_init(tgid);
	struct thread_val tv = { .tgid = tgid, .linked = 1 };
	long err;

	if (!p)
		return NULL;
	err = bpf_map_update_elem(&threads, &tid, &tv, BPF_NOEXIST);
	if (!err) {
		__sync_fetch_and_add(&p->nthreads, 1);
	} else if (err != -EEXIST) {
		stat_inc(thread_map_full);
		return NULL;
	}
	return bpf_map_lookup_elem(&threads, &tid);
}

/* The calling thread's task storage, created (with its process's entry)
 * if needed. Only the thread itself creates it, so `linked` tells whether
 * it is counted in its process already. */
static __noinline struct thread_val *storage_init(struct task_struct *task, __u32 tgid)
{
	struct proc_val *p = proc_init(tgid);
	struct thread_val tv = { .tgid = tgid };
	struct thread_val *t;

	if (!p)
		return NULL;
	t = bpf_task_storage_get(&tstore, task, &tv, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t) {
		stat_inc(thread_storage_failed);
		return NULL;
	}
	if (!t->linked) {
		t->linked = 1;
		__sync_fetch_and_add(&p->nthreads, 1);
	}
	return t;
}

/* The calling thread's counters, wherever they live. */
static __always_inline struct thread_val *current_thread(void)
{
	struct thread_val *t;
	__u64 id;
	__u32 tid;

	if (task_storage) {
		struct task_struct *task = bpf_get_current_task_btf();

		t = bpf_task_storage_get(&tstore, task, 0, 0);
		if (t && t->linked)
			return t;
		return storage_init(task, bpf_get_current_pid_tgid() >> 32);
	}
	id = bpf_get_current_pid_tgid();
	tid = (__u32)id;
	t = bpf_map_lookup_elem(&threads, &tid);
	if (t)
		return t;
	return thread_init(tid, id >> 32);
}


/* What a socket counts as: TCP is a stream socket of protocol TCP or MPTCP
 * (an MPTCP socket's data is counted once, on the socket the process uses:
 * its subflows' TCP sockets are driven by the kernel, not through these
 * hooks); UDP is a datagram socket of protocol UDP. Raw sockets of those
 * protocols, and everything else, count nothing. */
enum kind {
	NOT_COUNTED,
	TCP,
	UDP,
};

static __always_inline enum kind classify(__u16 family, __u16 type, __u16 proto)
{
	if (family != AF_INET && family != AF_INET6)
		return NOT_COUNTED;
	if (type == SOCK_STREAM && (proto == IPPROTO_TCP || proto == IPPROTO_MPTCP))
		return TCP;
	if (type == SOCK_DGRAM && proto == IPPROTO_UDP)
		return UDP;
	return NOT_COUNTED;
}

/* ---- wire counting: owners ------------------------------------------------- */

/* Adds `src` into `dst`, atomically. */
static __always_inline void fold(struct counters *dst, const struct counters *src)
{
	__sync_fetch_and_add(&dst->tcpsndpacks, src->tcpsndpacks);
	__sync_fetch_and_add(&dst->tcpsndbytes, src->tcpsndbytes);
	__sync_fetch_and_add(&dst->tcprcvpacks, src->tcprcvpacks);
	__sync_fetch_and_add(&dst->tcprcvbytes, src->tcprcvbytes);
	__sync_fetch_and_add(&dst->udpsndpacks, src->udpsndpacks);
	__sync_fetch_and_add(&dst->udpsndbytes, src->udpsndbytes);
	__sync_fetch_and_add(&dst->udprcvpacks, src->udprcvpacks);
	__sync_fetch_and_add(&dst->udprcvbytes, src->udprcvbytes);
}

/* One IP packet as the wire carries it, or a GSO/GRO packet as the packets
 * it stands for. */
struct packet {
	__u64 packets;
	__u64 bytes;
	bool tcp;
};

/* The first bytes of a packet from its IP header: room for the largest
 * IPv4 header (60 bytes) and TCP's data offset after it. */
#define HEADERS 80

/*
 * Reads the packet whose IP header is at `ip` (`len` bytes from there on,
 * `shinfo` its shared info) into `pkt`: TCP or UDP, and its packets and
 * bytes (a GSO/GRO packet of n segments is n packets, each with the
 * headers); its first bytes into `h`, in one read. Returns false for
 * anything else.
 */
static __always_inline bool read_packet(const unsigned char *ip, __u32 len, __be16 proto,
					const unsigned char *shinfo, struct packet *pkt,
					__u8 h[HEADERS])
{
	struct {
		__u16 gso_size;
		__u16 gso_segs;
	} gso = {};
	__u32 hdr;
	__u8 l4;

	if (bpf_probe_read_kernel(h, HEADERS, ip))
		return false;
	if (proto == bpf_htons(ETH_P_IP)) {
		hdr = (h[0] & 0xf) * 4;
		l4 = h[9];
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		hdr = 40;
		l4 = h[6];
		if (l4 == IPPROTO_FRAGMENT) {
			l4 = h[40];
			hdr += 8;
		}
	} else {
		return false;
	}
	if (l4 == IPPROTO_TCP) {
		pkt->tcp = true;
		hdr += (h[hdr + 12] >> 4) * 4;
	} else if (l4 == IPPROTO_UDP) {
		pkt->tcp = false;
		hdr += 8;
	} else {
		return false;
	}
	/* gso_size and gso_segs are neighbours: one read. */
	bpf_probe_read_kernel(&gso, sizeof(gso),
			      shinfo + bpf_core_field_offset(struct skb_shared_info, gso_size));
	pkt->packets = gso.gso_size && gso.gso_segs > 1 ? gso.gso_segs : 1;
	pkt->bytes = len + (pkt->packets - 1) * hdr;
	return true;
}

/*
 * Whether `dev` has devices beneath it (a bridge its ports, a VLAN or
 * macvlan its link, a bond its slaves): a packet it sends leaves again
 * through one of them, and one received through them and delivered up
 * to it (by a bridge) was received there first. A packet counts once,
 * where it crosses the lowest device, as the wire carries it.
 */
static __always_inline bool stacked(struct net_device *dev)
{
	__u64 lower = (__u64)dev + bpf_core_field_offset(struct net_device, adj_list.lower);

	return (__u64)BPF_CORE_READ(dev, adj_list.lower.next) != lower;
}

/* Adds a packet to counters, sent or received, atomically: every context
 * that sees a socket's packet may add to its owner's counters. */
static __always_inline void add_packet(struct counters *c, const struct packet *pkt, bool out)
{
	__u64 *p, *b;

	if (pkt->tcp) {
		p = out ? &c->tcpsndpacks : &c->tcprcvpacks;
		b = out ? &c->tcpsndbytes : &c->tcprcvbytes;
	} else {
		p = out ? &c->udpsndpacks : &c->udprcvpacks;
		b = out ? &c->udpsndbytes : &c->udprcvbytes;
	}
	__sync_fetch_and_add(p, pkt->packets);
	__sync_fetch_and_add(b, pkt->bytes);
}

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

/* Takes what `from` holds now out of it (atomically: whatever is added
 * meanwhile stays there) and returns it. */
static __always_inline struct counters take_counters(struct counters *from)
{
	struct counters v = *from;

	__sync_fetch_and_add(&from->tcpsndpacks, -v.tcpsndpacks);
	__sync_fetch_and_add(&from->tcpsndbytes, -v.tcpsndbytes);
	__sync_fetch_and_add(&from->tcprcvpacks, -v.tcprcvpacks);
	__sync_fetch_and_add(&from->tcprcvbytes, -v.tcprcvbytes);
	__sync_fetch_and_add(&from->udpsndpacks, -v.udpsndpacks);
	__sync_fetch_and_add(&from->udpsndbytes, -v.udpsndbytes);
	__sync_fetch_and_add(&from->udprcvpacks, -v.udprcvpacks);
	__sync_fetch_and_add(&from->udprcvbytes, -v.udprcvbytes);
	return v;
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

/* ---- wire counting: packets ------------------------------------------------ */

/*
 * Every packet an interface sends (after segmentation and fragmentation:
 * the packets as they leave), counted to its socket's owner (see
 * owner_counters()). A packet of no process's socket is counted to its
 * namespace, unattributed.
 */
SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(netatop_xmit, struct sk_buff *skb, struct net_device *dev)
{
	unsigned char *head = skb->head;
	unsigned char *ip = head + skb->network_header;
	struct sock_owner *o = NULL;
	struct sock *sk = skb->sk;
	struct packet pkt = {};
	struct wire_netns *w;
	struct proc_val *p;
	__u8 h[HEADERS];

	if (stacked(dev))
		return 0;
	if (!read_packet(ip, skb->len - (__u32)(ip - skb->data), skb->protocol, head + skb->end,
			 &pkt, h))
		return 0;
	if (sk) {
		__u8 state = sk->__sk_common.skc_state;

		if (state == TCP_NEW_SYN_RECV) {
			/* A SYN-ACK: its listener's. */
			__u64 key = (__u64)BPF_CORE_READ(sk, __sk_common.skc_listener);

			o = bpf_map_lookup_elem(&listeners, &key);
		} else if (state != TCP_TIME_WAIT) {
			o = bpf_sk_storage_get(&owners, sk, 0, 0);
			if ((!o || !o->tgid) &&
			    !BPF_CORE_READ_BITFIELD_PROBED(sk, sk_kern_sock)) {
				/* A process's socket before its first call: kept
				 * for that call to claim. */
				if (!o)
					o = bpf_sk_storage_get(&owners, sk, 0,
							       BPF_SK_STORAGE_GET_F_CREATE);
				if (o) {
					add_packet(&o->pending, &pkt, true);
					return 0;
				}
			}
		}
	}
	if (o && o->tgid) {
		p = owner_proc(o);
		if (p) {
			add_packet(owner_counters(o, p), &pkt, true);
			return 0;
		}
	}
	w = netns_entry(dev->nd_net.net->ns.inum);
	if (w)
		add_packet(&w->unattributed_out, &pkt, true);
	return 0;
}

/* The key of an IPv4 UDP datagram's fragments, from its header `h`. */
static __always_inline void frag_key_of(struct frag_key *key, const __u8 *h)
{
	__builtin_memcpy(&key->id, h + 4, 2);
	__builtin_memcpy(&key->saddr, h + 12, 4);
	__builtin_memcpy(&key->daddr, h + 16, 4);
	key->proto = IPPROTO_UDP;
}

/* An IPv4 UDP fragment (its header in `h`), noted for its datagram's
 * socket to claim. */
static __always_inline void note_fragment(const __u8 h[HEADERS], const struct packet *pkt)
{
	struct frag_key key = {};
	struct frag_val one = {}, *v;

	/* More fragments, or an offset: a fragment. */
	if (!(h[6] & 0x3f) && !h[7])
		return;
	frag_key_of(&key, h);
	v = bpf_map_lookup_elem(&frags, &key);
	if (!v) {
		if (!bpf_map_update_elem(&frags, &key, &one, BPF_NOEXIST))
			__sync_fetch_and_add(&frags_waiting, 1);
		v = bpf_map_lookup_elem(&frags, &key);
		if (!v)
			return;
	}
	__sync_fetch_and_add(&v->packets, pkt->packets);
	__sync_fetch_and_add(&v->bytes, pkt->bytes);
}

/* Every packet an interface receives (after GRO), per namespace: what the
 * sockets do not claim is unattributed. */
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(netatop_rx, struct sk_buff *skb)
{
	struct rx_tally *tally;
	struct packet pkt = {};
	__u32 zero = 0;
	struct wire_netns *w;
	__u8 h[HEADERS];

	if (stacked(skb->dev))
		return 0;
	if (!read_packet(skb->data, skb->len, skb->protocol, skb->head + skb->end, &pkt, h))
		return 0;
	tally = bpf_map_lookup_elem(&rx_tally, &zero);
	if (tally)
		__sync_fetch_and_add(&tally->seen, pkt.packets);
	w = netns_entry(skb->dev->nd_net.net->ns.inum);
	if (w)
		add_packet(&w->received, &pkt, false);
	if (!pkt.tcp && skb->protocol == bpf_htons(ETH_P_IP))
		note_fragment(h, &pkt);
	return 0;
}

/* A reassembled IPv4 datagram is the fragments that arrived: their count
 * and bytes replace its own. */
static __always_inline void claim_fragments(struct __sk_buff *skb, struct packet *pkt)
{
	struct frag_key key = {};
	struct frag_val *v;
	__u8 h[20];

	if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)))
		return;
	frag_key_of(&key, h);
	v = bpf_map_lookup_elem(&frags, &key);
	if (!v)
		return;
	pkt->packets = v->packets;
	pkt->bytes = v->bytes;
	if (!bpf_map_delete_elem(&frags, &key))
		__sync_fetch_and_add(&frags_waiting, -1);
}

/* Whether the `packets` a socket receives now went unseen by netatop_rx
 * (see struct rx_tally): its CPU's sockets have now received more than
 * its receive program saw. Called once per packet delivered, in the
 * receive path's context (softirq), which does not nest on a CPU. */
static __always_inline bool unseen_by_rx(__u64 packets)
{
	struct rx_tally *t;
	__u32 zero = 0;

	t = bpf_map_lookup_elem(&rx_tally, &zero);
	if (!t)
		return false;
	t->delivered += packets;
	if (t->delivered - t->unseen <= *(volatile __u64 *)&t->seen)
		return false;
	t->unseen += packets;
	return true;
}

/*
 * Every packet a socket receives (cgroup_skb on the root cgroup: every
 * socket's), counted to its owner (see owner_counters()) and to what its
 * namespace's sockets claimed. Packets of TIME_WAIT sockets and of no socket never
 * get here. Always lets the packet through.
 */
SEC("cgroup_skb/ingress")
int netatop_sock_in(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct packet pkt = {};
	struct sock_owner *o;
	struct wire_netns *w;
	struct proc_val *p;
	__u32 segs, hdr = 0, owner;
	bool unseen;
	__u8 b[2];

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	if (sk->type == SOCK_STREAM && sk->protocol == IPPROTO_TCP)
		pkt.tcp = true;
	else if (sk->type != SOCK_DGRAM || sk->protocol != IPPROTO_UDP)
		return 1;
	o = bpf_sk_storage_get(&owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return 1;
	segs = skb->gso_segs;
	if (segs < 1)
		segs = 1;
	if (segs > 1) {
		/* Headers of each segment: IP, then TCP's data offset. */
		if (skb->protocol == bpf_htons(ETH_P_IP)) {
			if (bpf_skb_load_bytes(skb, 0, b, 1))
				return 1;
			hdr = (b[0] & 0xf) * 4;
		} else {
			hdr = 40;
		}
		if (pkt.tcp) {
			if (bpf_skb_load_bytes(skb, hdr + 12, b, 1))
				return 1;
			hdr += (b[0] >> 4) * 4;
		} else {
			hdr += 8;
		}
	}
	pkt.packets = segs;
	pkt.bytes = skb->len + (__u64)(segs - 1) * hdr;
	if (!pkt.tcp && segs == 1 && skb->protocol == bpf_htons(ETH_P_IP) &&
	    *(volatile __u64 *)&frags_waiting)
		claim_fragments(skb, &pkt);
	unseen = unseen_by_rx(pkt.packets);
	if (unseen)
		__sync_fetch_and_add(&stats.rx_unseen, pkt.packets);
	owner = *(volatile __u32 *)&o->tgid;
	if (!owner) {
		/* Before the socket's first call: kept for that call (its
		 * namespace is known then). */
		add_packet(&o->pending, &pkt, false);
		if (unseen) {
			__sync_fetch_and_add(&o->unseen_packets, pkt.packets);
			__sync_fetch_and_add(&o->unseen_bytes, pkt.bytes);
		}
		return 1;
	}
	w = netns_entry(o->netns);
	if (unseen && w)
		add_packet(&w->received, &pkt, false);
	p = owner_proc(o);
	if (!p)
		return 1; /* its owner has exited: unattributed */
	add_packet(owner_counters(o, p), &pkt, false);
	if (w)
		add_packet(&w->attributed_in, &pkt, false);
	return 1;
}

/* Whether a call that returned `ret` with `flags` moved traffic: failed and
 * empty calls moved nothing; peeked data is read again later; the error
 * queue holds no traffic (ICMP errors, transmit timestamps). */
static __always_inline bool moved(long ret, int flags, bool send)
{
	return ret > 0 && (send || !(flags & (MSG_PEEK | MSG_ERRQUEUE)));
}

/* Counts one call of the current thread that moved `ret` bytes. */
static __always_inline int count(enum kind kind, long ret, bool send)
{
	struct thread_val *t;

	if (kind == NOT_COUNTED)
		return 0;
	t = current_thread();
	if (!t)
		return 0;
	/* Only this thread writes its entry, so plain adds are exact. */
	if (kind == TCP) {
		if (send) {
			t->c.tcpsndpacks++;
			t->c.tcpsndbytes += ret;
		} else {
			t->c.tcprcvpacks++;
			t->c.tcprcvbytes += ret;
		}
	} else {
		if (send) {
			t->c.udpsndpacks++;
			t->c.udpsndbytes += ret;
		} else {
			t->c.udprcvpacks++;
			t->c.udprcvbytes += ret;
		}
	}
	return 0;
}

/* A call on a socket the program received as a BTF pointer (tp_btf and
 * fexit programs): its fields are read directly. */
static __always_inline int account(struct sock *sk, long ret, int flags, bool send)
{
	if (wire_mode) {
		if (sk && classify(sk->__sk_common.skc_family, sk->sk_type, sk->sk_protocol))
			tag(sk);
		return 0;
	}
	if (!moved(ret, flags, send) || !sk)
		return 0;
	return count(classify(sk->__sk_common.skc_family, sk->sk_type, sk->sk_protocol), ret,
		     send);
}

/* A call on a socket known only by its address (kprobes): CO-RE reads. */
static __always_inline int account_core(struct sock *sk, long ret, int flags, bool send)
{
	if (!moved(ret, flags, send) || !sk)
		return 0;
	return count(classify(BPF_CORE_READ(sk, __sk_common.skc_family), BPF_CORE_READ(sk, sk_type),
			      BPF_CORE_READ(sk, sk_protocol)),
		     ret, send);
}

/* ---- tier tp_btf: the socket tracepoints (Linux 6.3+) ---------------------- */

SEC("tp_btf/sock_send_length")
int BPF_PROG(netatop_send, struct sock *sk, int ret, int flags)
{
	return account(sk, ret, flags, true);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(netatop_recv, struct sock *sk, int ret, int flags)
{
	return account(sk, ret, flags, false);
}

/* ---- tier fexit: the inet socket operations every TCP/UDP call reaches ----- */

SEC("fexit/inet_sendmsg")
int BPF_PROG(netatop_fexit_send4, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	return account(sock->sk, ret, 0, true);
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(netatop_fexit_send6, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	return account(sock->sk, ret, 0, true);
}

SEC("fexit/inet_recvmsg")
int BPF_PROG(netatop_fexit_recv4, struct socket *sock, struct msghdr *msg, size_t size, int flags,
	     int ret)
{
	return account(sock->sk, ret, flags, false);
}

SEC("fexit/inet6_recvmsg")
int BPF_PROG(netatop_fexit_recv6, struct socket *sock, struct msghdr *msg, size_t size, int flags,
	     int ret)
{
	return account(sock->sk, ret, flags, false);
}

/*
 * Before Linux 6.5, sendfile() and splice() into a TCP or UDP socket reach
 * it through sendpage, not sendmsg (and so not the tracepoint either).
 */
SEC("fexit/inet_sendpage")
int BPF_PROG(netatop_fexit_sendpage, struct socket *sock, struct page *page, int offset,
	     size_t size, int flags, ssize_t ret)
{
	return account(sock->sk, ret, 0, true);
}

/*
 * TCP data received with splice() (socket to pipe) is moved by
 * tcp_splice_read, not through recvmsg: one call, its bytes.
 */
SEC("fexit/tcp_splice_read")
int BPF_PROG(netatop_fexit_splice, struct socket *sock, loff_t *ppos,
	     struct pipe_inode_info *pipe, size_t len, unsigned int flags, ssize_t ret)
{
	return account(sock->sk, ret, 0, false);
}

/* ---- tier kprobe: the same functions, entry paired with return ------------- */

enum hooked {
	SEND,
	RECV,
	SENDPAGE,
	SPLICE,
};

/* At a function's entry: remember the socket and flags of this call. A
 * call of this thread still recorded there lost its return (kretprobes
 * have a bounded number of calls in flight). */
static __always_inline int enter(enum hooked fn, struct socket *sock, int flags)
{
	struct call_key key = { .tid = (__u32)bpf_get_current_pid_tgid(), .fn = fn };
	struct call_val val = { .sk = (__u64)BPF_CORE_READ(sock, sk), .flags = flags };

	if (bpf_map_update_elem(&inflight, &key, &val, BPF_NOEXIST)) {
		stat_inc(kretprobe_missed);
		bpf_map_update_elem(&inflight, &key, &val, BPF_ANY);
	}
	return 0;
}

/* At its return: count the call with the socket and flags of its entry. */
static __always_inline int leave(enum hooked fn, long ret, bool send)
{
	struct call_key key = { .tid = (__u32)bpf_get_current_pid_tgid(), .fn = fn };
	struct call_val *c = bpf_map_lookup_elem(&inflight, &key);
	struct call_val val;

	if (!c)
		return 0;
	val = *c;
	bpf_map_delete_elem(&inflight, &key);
	return account_core((struct sock *)val.sk, ret, val.flags, send);
}

SEC("kprobe/inet_sendmsg")
int BPF_KPROBE(netatop_kp_send4, struct socket *sock)
{
	return enter(SEND, sock, 0);
}

SEC("kretprobe/inet_sendmsg")
int BPF_KRETPROBE(netatop_kr_send4, int ret)
{
	return leave(SEND, ret, true);
}

SEC("kprobe/inet6_sendmsg")
int BPF_KPROBE(netatop_kp_send6, struct socket *sock)
{
	return enter(SEND, sock, 0);
}

SEC("kretprobe/inet6_sendmsg")
int BPF_KRETPROBE(netatop_kr_send6, int ret)
{
	return leave(SEND, ret, true);
}

SEC("kprobe/inet_recvmsg")
int BPF_KPROBE(netatop_kp_recv4, struct socket *sock, struct msghdr *msg, size_t size, int flags)
{
	return enter(RECV, sock, flags);
}

SEC("kretprobe/inet_recvmsg")
int BPF_KRETPROBE(netatop_kr_recv4, int ret)
{
	return leave(RECV, ret, false);
}

SEC("kprobe/inet6_recvmsg")
int BPF_KPROBE(netatop_kp_recv6, struct socket *sock, struct msghdr *msg, size_t size, int flags)
{
	return enter(RECV, sock, flags);
}

SEC("kretprobe/inet6_recvmsg")
int BPF_KRETPROBE(netatop_kr_recv6, int ret)
{
	return leave(RECV, ret, false);
}

SEC("kprobe/inet_sendpage")
int BPF_KPROBE(netatop_kp_sendpage, struct socket *sock)
{
	return enter(SENDPAGE, sock, 0);
}

SEC("kretprobe/inet_sendpage")
int BPF_KRETPROBE(netatop_kr_sendpage, long ret)
{
	return leave(SENDPAGE, ret, true);
}

SEC("kprobe/tcp_splice_read")
int BPF_KPROBE(netatop_kp_splice, struct socket *sock)
{
	return enter(SPLICE, sock, 0);
}

SEC("kretprobe/tcp_splice_read")
int BPF_KRETPROBE(netatop_kr_splice, long ret)
{
	return leave(SPLICE, ret, false);
}

/* ---- every tier: process exit, exec and rename ----------------------------- */

/* An exited process's final totals into its cgroup's. */
static __always_inline void cgroup_add(__u64 id, const struct counters *c)
{
	struct counters zero = {}, *acc = bpf_map_lookup_elem(&cgroups, &id);

	if (!acc) {
		bpf_map_update_elem(&cgroups, &id, &zero, BPF_NOEXIST);
		acc = bpf_map_lookup_elem(&cgroups, &id);
		if (!acc) {
			stat_inc(cgroup_map_full);
			return;
		}
	}
	fold(acc, c);
}

/* An exited thread's counters, taken out of its entry, into its process. */
static __always_inline void fold_thread(struct proc_val *p, const struct counters *c)
{
	fold(&p->exited, c);
	__sync_fetch_and_sub(&p->nthreads, 1);
	/* Socket calls of exited threads; live ones are in their entries. */
	__sync_fetch_and_add(&stats.exited_events, c->tcpsndpacks + c->tcprcvpacks +
					     c->udpsndpacks + c->udprcvpacks);
}

/*
 * Runs for every exiting thread, after it has left signal->live. The
 * process is complete when no thread is live any more and every thread
 * entry has been folded; the exiting thread that then removes the
 * process's entry (one removal succeeds: the map is the arbiter, no
 * compare-and-swap, which Linux 5.10 lacks) publishes the final totals.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(netatop_exit, struct task_struct *task)
{
	__u32 tid = task->pid, tgid = task->tgid;
	struct thread_val *t;
	struct proc_val *p;
	struct exit_key key = {};
	struct exit_val val = {};

	if (kprobes) {
		/* Calls of this thread whose return never came. */
		for (int fn = SEND; fn <= SPLICE; fn++) {
			struct call_key k = { .tid = tid, .fn = fn };

			bpf_map_delete_elem(&inflight, &k);
		}
	}
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	if (task_storage) {
		t = bpf_task_storage_get(&tstore, task, 0, 0);
		if (t && t->linked) {
			struct counters c = t->c;

			/* Unlinked and emptied first: should the delete fail
			 * (another task-storage operation on this CPU), what
			 * stays until the task is freed counts nothing. */
			t->linked = 0;
			__builtin_memset(&t->c, 0, sizeof(t->c));
			bpf_task_storage_delete(&tstore, task);
			fold_thread(p, &c);
		}
	} else {
		t = bpf_map_lookup_elem(&threads, &tid);
		if (t) {
			struct counters c;

			/* Disowned first: counting the wire, packets of the
			 * thread's sockets (which any CPU may be counting now)
			 * go to its process from here on, so that what is read
			 * next is all the entry gets, but for an add already
			 * past this check. */
			*(volatile __u32 *)&t->tgid = 0;
			c = t->c;
			bpf_map_delete_elem(&threads, &tid);
			fold_thread(p, &c);
		}
	}
	if (task->signal->live.counter != 0)
		return 0;
	if (*(volatile __s32 *)&p->nthreads != 0)
		return 0;

	key.tgid = tgid;
	key.start_ns = p->start_ns;
	val.c = p->exited;
	__builtin_memcpy(val.comm, p->comm, sizeof(val.comm));
	if (bpf_map_delete_elem(&procs, &tgid))
		return 0; /* another exiting thread published them */
	val.exit_ns = bpf_ktime_get_boot_ns();
	if (bpf_map_update_elem(&exited, &key, &val, BPF_NOEXIST))
		stat_inc(exit_map_full);
	else
		stat_inc(exits);
	cgroup_add(bpf_get_current_cgroup_id(), &val.c);
	return 0;
}

/* A cgroup's removal (it has no process left): its final totals go to
 * `cgroups_gone`, once, and into its parent's total, so that a unit, a
 * container or a pod summed over its cgroups does not lose what a removed
 * child counted. Its entry is dropped. */
SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(netatop_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	__u64 id = cgrp->kn->id, parent;
	struct cgroup_subsys_state *up = cgrp->self.parent;
	struct counters *c = bpf_map_lookup_elem(&cgroups, &id);
	struct cgroup_gone *g;
	__u32 zero = 0;

	if (!c)
		return 0;
	g = bpf_map_lookup_elem(&gone_scratch, &zero);
	if (!g)
		return 0;
	g->c = *c;
	g->removed_ns = bpf_ktime_get_boot_ns();
	bpf_probe_read_kernel_str(g->path, sizeof(g->path), path);
	if (bpf_map_update_elem(&cgroups_gone, &id, g, BPF_ANY))
		stat_inc(cgroup_gone_full);
	if (up) {
		parent = BPF_CORE_READ(up, cgroup, kn, id);
		cgroup_add(parent, &g->c);
	}
	bpf_map_delete_elem(&cgroups, &id);
	/* Last: a reader of the accumulators that sees this change knows it
	 * may have read the child before and the parent after the move. */
	stat_inc(cgroups_removed);
	return 0;
}

/*
 * exec by a non-leader thread: it takes over the leader's pid, so its entry
 * in the threads map moves to the new tid (task storage stays with the
 * task). The process name follows the new program.
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(netatop_exec, struct task_struct *task, int old_pid)
{
	__u32 tid = task->pid, tgid = task->tgid, old = old_pid;
	struct thread_val *t;
	struct proc_val *p;

	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	bpf_probe_read_kernel_str(p->comm, sizeof(p->comm), task->comm);
	if (old == tid || task_storage)
		return 0;
	t = bpf_map_lookup_elem(&threads, &old);
	if (t) {
		struct thread_val moved = *t;

		bpf_map_delete_elem(&threads, &old);
		if (bpf_map_update_elem(&threads, &tid, &moved, BPF_ANY)) {
			fold(&p->exited, &moved.c);
			__sync_fetch_and_sub(&p->nthreads, 1);
		}
	}
	return 0;
}

/* A process's name is its main thread's: a rename (prctl(PR_SET_NAME))
 * shows in the next snapshot and in the final record. */
SEC("tp_btf/task_rename")
int BPF_PROG(netatop_rename, struct task_struct *task, const char *comm)
{
	__u32 tgid = task->tgid;
	struct proc_val *p;

	if (task->pid != tgid)
		return 0;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (p)
		bpf_probe_read_kernel_str(p->comm, sizeof(p->comm), comm);
	return 0;
}

/* ---- snapshots ------------------------------------------------------------- */

static __always_inline void add(struct counters *dst, const struct counters *src)
{
	dst->tcpsndpacks += src->tcpsndpacks;
	dst->tcpsndbytes += src->tcpsndbytes;
	dst->tcprcvpacks += src->tcprcvpacks;
	dst->tcprcvbytes += src->tcprcvbytes;
	dst->udpsndpacks += src->udpsndpacks;
	dst->udpsndbytes += src->udpsndbytes;
	dst->udprcvpacks += src->udprcvpacks;
	dst->udprcvbytes += src->udprcvbytes;
}

/* The value is at least the last one reported, which it becomes. */
static __always_inline void raise_to(__u64 *value, __u64 *reported)
{
	if (*value < *reported)
		*value = *reported;
	else
		*reported = *value;
}

/*
 * Raises each counter of a snapshot record to at least what the last
 * snapshot reported for its process, and makes that the new floor. Out of
 * line: its prototype puts struct snapshot_rec into the object's BTF, so
 * user space checks that record's layout like the others. Snapshots may be
 * streamed several at once, interleaved, but every run of a snapshot
 * program is a read() by netatopd's one thread, so no two run at the same
 * time: this read-modify-write does not race, and each record is at least
 * what any earlier one reported.
 */
static __noinline void raise_record(struct snapshot_rec *r, struct counters *reported)
{
	raise_to(&r->c.tcpsndpacks, &reported->tcpsndpacks);
	raise_to(&r->c.tcpsndbytes, &reported->tcpsndbytes);
	raise_to(&r->c.tcprcvpacks, &reported->tcprcvpacks);
	raise_to(&r->c.tcprcvbytes, &reported->tcprcvbytes);
	raise_to(&r->c.udpsndpacks, &reported->udpsndpacks);
	raise_to(&r->c.udpsndbytes, &reported->udpsndbytes);
	raise_to(&r->c.udprcvpacks, &reported->udprcvpacks);
	raise_to(&r->c.udprcvbytes, &reported->udprcvbytes);
}

/*
 * A snapshot in one pass (Linux 6.7+): one record per counted process, its
 * exited threads' totals plus each live thread's counters, summed here so
 * that user space reads one entry per process instead of every thread.
 */
SEC("iter/task")
int netatop_snapshot(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task, *pos;
	struct snapshot_rec r = {};
	struct proc_val *p;
	__u32 tgid;

	if (!task || task->pid != task->tgid)
		return 0;
	tgid = task->tgid;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	r.tgid = tgid;
	r.start_ns = p->start_ns;
	/* The leader's name now. */
	bpf_probe_read_kernel_str(r.comm, sizeof(r.comm), task->comm);
	r.c = p->exited;
	bpf_for_each(task, pos, task, BPF_TASK_ITER_PROC_THREADS) {
		__u32 tid = pos->pid;
		struct thread_val *t;

		if (task_storage)
			t = bpf_task_storage_get(&tstore, pos, 0, 0);
		else
			t = bpf_map_lookup_elem(&threads, &tid);
		if (t)
			add(&r.c, &t->c);
	}
	raise_record(&r, &p->reported);
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

/*
 * A snapshot in three passes over the maps (before Linux 6.7), each a map
 * element iterator read to its end by user space in this order, one
 * snapshot at a time. Like the one-pass snapshot, a process's exited
 * totals are read before its live threads, so a thread that exits
 * meanwhile is missed once, never counted twice.
 *
 * Pass 1, over `procs`: a new generation, then each process's exited
 * threads' totals into `walk`.
 */
SEC("iter/bpf_map_elem")
int netatop_walk_procs(struct bpf_iter__bpf_map_elem *ctx)
{
	__u32 *key = ctx->key;
	struct proc_val *p = ctx->value;
	struct walk_val w = {};
	__u32 tgid;

	/* seq_num stays 0 while nothing is written: the session tells. */
	if (ctx->meta->session_id != walk_session) {
		walk_session = ctx->meta->session_id;
		walk_gen++;
	}
	if (!key || !p)
		return 0;
	tgid = *key;
	w.c = p->exited;
	w.gen = walk_gen;
	bpf_map_update_elem(&walk, &tgid, &w, BPF_ANY);
	return 0;
}

/* Pass 2: a live thread's counters added to its process's sum. */
static __always_inline void walk_add(__u32 tgid, const struct counters *c)
{
	struct walk_val *sum = bpf_map_lookup_elem(&walk, &tgid);

	if (sum && sum->gen == walk_gen) {
		add(&sum->c, c);
	} else {
		/* A process that came after pass 1 (or left an old entry). */
		struct walk_val w = { .c = *c, .gen = walk_gen };

		bpf_map_update_elem(&walk, &tgid, &w, BPF_ANY);
	}
}

/* Pass 2 over the threads map. */
SEC("iter/bpf_map_elem")
int netatop_walk_threads(struct bpf_iter__bpf_map_elem *ctx)
{
	struct thread_val *t = ctx->value;

	if (!ctx->key || !t)
		return 0;
	walk_add(t->tgid, &t->c);
	return 0;
}

/* Pass 2 over the tasks, with task storage (the classic task iterator,
 * Linux 5.8+, visits every thread). */
SEC("iter/task")
int netatop_walk_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct thread_val *t;

	if (!task)
		return 0;
	t = bpf_task_storage_get(&tstore, task, 0, 0);
	if (t && t->linked)
		walk_add(t->tgid, &t->c);
	return 0;
}

/* Pass 3, over `walk`: one record per process of this generation still
 * counted; the others are queued, and removed once the walk is over. */
SEC("iter/bpf_map_elem")
int netatop_walk_emit(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	__u32 *key = ctx->key;
	struct walk_val *sum = ctx->value;
	struct snapshot_rec r = {};
	struct proc_val *p;
	__u32 tgid;

	if (!key || !sum) {
		/* The end of the walk: remove what was queued. */
		for (int i = 0; i < WALK_CLEANUP; i++) {
			if (bpf_map_pop_elem(&walk_stale, &tgid))
				break;
			bpf_map_delete_elem(&walk, &tgid);
		}
		return 0;
	}
	tgid = *key;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p || sum->gen != walk_gen) {
		bpf_map_push_elem(&walk_stale, &tgid, BPF_ANY);
		return 0;
	}
	r.tgid = tgid;
	r.start_ns = p->start_ns;
	__builtin_memcpy(r.comm, p->comm, sizeof(r.comm));
	r.c = sum->c;
	raise_record(&r, &p->reported);
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

/* ---- per-thread records ---------------------------------------------------- */

/* Out of line: its prototype puts struct thread_rec into the object's BTF,
 * so user space reads the record with its generated type. */
static __noinline void emit_thread(struct seq_file *seq, struct thread_rec *r)
{
	bpf_seq_write(seq, r, sizeof(*r));
}

/* Every live thread with counters (with task storage; the threads map is
 * read directly otherwise). */
SEC("iter/task")
int netatop_threads(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct thread_rec r = {};
	struct thread_val *t;

	if (!task)
		return 0;
	t = bpf_task_storage_get(&tstore, task, 0, 0);
	if (!t || !t->linked)
		return 0;
	r.tid = task->pid;
	r.tgid = task->tgid;
	bpf_probe_read_kernel_str(r.comm, sizeof(r.comm), task->comm);
	r.c = t->c;
	emit_thread(ctx->meta->seq, &r);
	return 0;
}

/* ---- per-cgroup records ---------------------------------------------------- */

/* Out of line: its prototype puts struct cgroup_rec into the object's BTF. */
static __noinline void emit_cgroup(struct seq_file *seq, struct cgroup_rec *r)
{
	bpf_seq_write(seq, r, sizeof(*r));
}

/* Each counted process and its cgroup v2 (its group leader's). */
SEC("iter/task")
int netatop_cgroup_of(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct cgroup_rec r = {};
	__u32 tgid;

	if (!task || task->pid != task->tgid)
		return 0;
	tgid = task->tgid;
	if (!bpf_map_lookup_elem(&procs, &tgid))
		return 0;
	r.tgid = tgid;
	r.cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	emit_cgroup(ctx->meta->seq, &r);
	return 0;
}
