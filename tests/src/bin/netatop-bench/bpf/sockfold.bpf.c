// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * A candidate design of wire counting, for the benchmark's comparison
 * only (netatop-bench design): what its hot path costs. Each packet a local
 * socket sends or receives is counted where the socket's cgroup hooks see
 * it (cgroup_skb egress and ingress on the cgroup v2 root: one program per
 * packet and direction, the socket at hand, a GSO/GRO packet as the
 * packets it stands for) into counters kept on the socket (socket-local
 * storage). Each send and receive call (the tp_btf socket tracepoints)
 * folds what its socket counted since into the calling thread's counters
 * (task-local storage: no thread capacity), with one read of the socket's
 * storage and no atomic operation when nothing waits. No device program:
 * what no socket claims would be each namespace's interface counters less
 * what the sockets counted, read when a snapshot is taken.
 *
 * With `fold` off, the second candidate: each call only records the
 * socket's owner when it changes (one read of the socket's storage), and
 * the counters stay on the socket, to be summed per owner when a
 * snapshot is taken (a walk of the sockets' storage, not measured here).
 *
 * With `packed` on (and `fold` off), the third: each packet's count and
 * bytes go into one word of the socket's storage with one atomic add (the
 * packets in its top 24 bits), spilled into wide counters when a field
 * nears its limit. With `sockfold_xmit` loaded instead of the egress
 * program, the fourth: the packets sent counted where they leave the
 * lowest device (a BTF raw tracepoint) instead of at the egress hook.
 * With `owner_at_egress` on (and the send call's program not loaded), the
 * fifth: the third with no program on send calls, the packets sent in
 * their owner's call recording the owner.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "netatop.h"
#include "bench_kernel.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define ETH_P_IP 0x0800

#include "segments.bpf.h"

/* Set before load: calls fold the socket's counters into their thread
 * (else they only record the socket's owner). */
const volatile bool fold = true;

/* Set before load: one atomic add per packet (see packed_add()). */
const volatile bool packed = false;

/* Set before load (the fifth candidate, with `packed` on and `fold`
 * off): the packets a socket sends record its owner where they leave in
 * the owner's call (UDP: always; TCP: while the sending thread holds the
 * socket, lock_sock()), so that send calls need no program. */
const volatile bool owner_at_egress = false;

/* What a socket's packets added since the last call on it folded them
 * (with `fold` off: ever), and its owner (the thread that last called). */
struct sock_counts {
	__u64 out_packets;
	__u64 out_bytes;
	__u64 in_packets;
	__u64 in_bytes;
	__u32 owner;
	__u32 _pad;
	/* With `packed`: packets << PACK_SHIFT | bytes, per direction. */
	__u64 out_word;
	__u64 in_word;
};

#define PACK_SHIFT 40
#define PACK_BYTES ((1ULL << PACK_SHIFT) - 1)

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_counts);
} sock_counts SEC(".maps");

/* Each thread's counters. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct counters);
} thread_counts SEC(".maps");

/* `segs` packets of `len` bytes into `word` with one atomic add; when
 * the word's bytes pass 2^39 or its packets 2^23, what it holds moves
 * into the wide counters (`packets`, `bytes`), before either can wrap. */
static __always_inline void packed_add(__u64 *word, __u64 *packets, __u64 *bytes, __u32 segs,
				       __u64 len)
{
	__u64 old = __sync_fetch_and_add(word, ((__u64)segs << PACK_SHIFT) + len);

	if ((old & PACK_BYTES) >= (1ULL << 39) || old >= (1ULL << 63)) {
		__u64 v = *(volatile __u64 *)word;

		__sync_fetch_and_add(word, -v);
		__sync_fetch_and_add(packets, v >> PACK_SHIFT);
		__sync_fetch_and_add(bytes, v & PACK_BYTES);
	}
}

/* `segs` packets of `len` bytes into socket counters `c`. */
static __always_inline void add(struct sock_counts *c, __u32 segs, __u64 len, bool out)
{
	if (packed) {
		if (out)
			packed_add(&c->out_word, &c->out_packets, &c->out_bytes, segs, len);
		else
			packed_add(&c->in_word, &c->in_packets, &c->in_bytes, segs, len);
	} else if (out) {
		__sync_fetch_and_add(&c->out_packets, segs);
		__sync_fetch_and_add(&c->out_bytes, len);
	} else {
		__sync_fetch_and_add(&c->in_packets, segs);
		__sync_fetch_and_add(&c->in_bytes, len);
	}
}

/* Whether a packet socket `sk` sends leaves in the call of the thread
 * sending it: UDP's always do; TCP's do while a thread holds the socket
 * (its ACKs and what they clock out, sent in softirq or from timers,
 * leave while nobody holds it, or are deferred to the holder). */
static __always_inline bool sent_in_call(struct bpf_sock *sk)
{
	struct tcp_sock *tp;

	if (sk->protocol == IPPROTO_UDP)
		return true;
	tp = bpf_skc_to_tcp_sock(sk);
	return tp && ((struct sock___locked *)tp)->sk_lock.owned;
}

/* A packet of a TCP or UDP socket, as the packets it stands for, into its
 * socket's counters. */
static __always_inline int packet(struct __sk_buff *skb, bool out)
{
	struct bpf_sock *sk = skb->sk;
	struct sock_counts *c;
	__u32 segs, hdr;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || (sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_UDP))
		return 1;
	c = bpf_sk_storage_get(&sock_counts, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!c)
		return 1;
	if (out && owner_at_egress) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();

		if (c->owner != tid && sent_in_call(sk))
			c->owner = tid;
	}
	segs = skb->gso_segs ?: 1;
	hdr = 0;
	if (segs > 1 && !segment_headers(skb, sk->protocol == IPPROTO_TCP, &hdr))
		return 1;
	add(c, segs, skb->len + (__u64)(segs - 1) * hdr, out);
	return 1;
}

SEC("cgroup_skb/egress")
int sockfold_egress(struct __sk_buff *skb)
{
	return packet(skb, true);
}

SEC("cgroup_skb/ingress")
int sockfold_ingress(struct __sk_buff *skb)
{
	return packet(skb, false);
}

/* Whether `dev` has devices beneath it: its packets leave again through
 * them, and count there. */
static __always_inline bool stacked(struct net_device *dev)
{
	__u64 lower = (__u64)dev + bpf_core_field_offset(struct net_device, adj_list.lower);

	return (__u64)dev->adj_list.lower.next != lower;
}

/* The fourth candidate's egress: every packet a local socket sends, where
 * it leaves the lowest device (after segmentation and fragmentation: the
 * packets as they leave), into its socket's counters. */
SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(sockfold_xmit, struct sk_buff *skb, struct net_device *dev)
{
	struct sock *sk = skb->sk;
	struct sock_counts *c;
	__u16 segs[2] = {};
	__u32 len;
	__u8 state;

	if (!sk || stacked(dev))
		return 0;
	state = sk->__sk_common.skc_state;
	/* TIME_WAIT and request sockets carry no storage. */
	if (state == 6 || state == 12)
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP && sk->sk_protocol != IPPROTO_UDP)
		return 0;
	c = bpf_sk_storage_get(&sock_counts, sk, 0, 0);
	if (!c)
		return 0;
	len = skb->len - (skb->network_header - (__u32)((__u64)skb->data - (__u64)skb->head));
	bpf_probe_read_kernel(segs, sizeof(segs),
			      skb->head + skb->end +
				      bpf_core_field_offset(struct skb_shared_info, gso_size));
	/* A GSO packet's segments (their headers not added here: rare on the
	 * small exchanges measured). */
	add(c, segs[0] && segs[1] > 1 ? segs[1] : 1, len, true);
	return 0;
}

/* What `*f` holds, taken out of it (read, then subtracted). */
static __always_inline __u64 take(__u64 *f)
{
	__u64 v = *(volatile __u64 *)f;

	if (v)
		__sync_fetch_and_add(f, -v);
	return v;
}

/* A call on `sk`: what its packets added since, to the calling thread. */
static __always_inline int call(struct sock *sk)
{
	struct sock_counts *s;
	struct counters *t;
	bool tcp;

	if (!sk)
		return 0;
	if (sk->sk_type == SOCK_STREAM && sk->sk_protocol == IPPROTO_TCP)
		tcp = true;
	else if (sk->sk_type == SOCK_DGRAM && sk->sk_protocol == IPPROTO_UDP)
		tcp = false;
	else
		return 0;
	if (!fold) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();

		s = bpf_sk_storage_get(&sock_counts, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (s && s->owner != tid)
			s->owner = tid;
		return 0;
	}
	s = bpf_sk_storage_get(&sock_counts, sk, 0, 0);
	if (!s || !(s->out_packets | s->in_packets))
		return 0;
	t = bpf_task_storage_get(&thread_counts, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		return 0;
	/* Only this thread writes its counters: plain adds. */
	if (tcp) {
		t->tcpsndpacks += take(&s->out_packets);
		t->tcpsndbytes += take(&s->out_bytes);
		t->tcprcvpacks += take(&s->in_packets);
		t->tcprcvbytes += take(&s->in_bytes);
	} else {
		t->udpsndpacks += take(&s->out_packets);
		t->udpsndbytes += take(&s->out_bytes);
		t->udprcvpacks += take(&s->in_packets);
		t->udprcvbytes += take(&s->in_bytes);
	}
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sockfold_send, struct sock *sk, int ret, int flags)
{
	return call(sk);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sockfold_recv, struct sock *sk, int ret, int flags)
{
	return call(sk);
}
