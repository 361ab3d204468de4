// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The other way of counting the wire, for the benchmarks' comparison only
 * (netatop-bench wire): no per-packet program. At each send and receive
 * call, the per-socket counters TCP keeps anyway (segs_out, segs_in,
 * bytes_sent, bytes_received, as tcp_info reports them) are read, and what
 * grew since the last call is counted to the calling process, headers
 * estimated from the socket's header length; at the socket's close, the
 * rest goes to its last caller. UDP is one packet per call, with its IP and
 * UDP headers.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "netatop.h"
#include "bench_kernel.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_CLOSE 7

/* What TCP had counted at the socket's last call, and that caller. */
struct seen {
	__u32 tgid;
	__u32 segs_in;
	__u32 segs_out;
	__u32 _pad;
	__u64 bytes_sent;
	__u64 bytes_received;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct seen);
} seen SEC(".maps");

/* Per process (tgid): what it is counted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct counters);
} totals SEC(".maps");

static __always_inline struct counters *totals_of(__u32 tgid)
{
	struct counters zero = {}, *c = bpf_map_lookup_elem(&totals, &tgid);

	if (c)
		return c;
	bpf_map_update_elem(&totals, &tgid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&totals, &tgid);
}

/* What TCP counted on `sk` since `s` was taken, to `tgid`. */
static __always_inline void flush(struct sock *sk, struct seen *s, __u32 tgid)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u32 segs_in, segs_out, hdr, d_in, d_out;
	__u64 sent, received;
	struct counters *c;

	if (!tp)
		return;
	segs_in = tp->segs_in;
	segs_out = tp->segs_out;
	sent = tp->bytes_sent;
	received = tp->bytes_received;
	hdr = (sk->__sk_common.skc_family == AF_INET6 ? 40 : 20) + tp->tcp_header_len;
	d_in = segs_in - s->segs_in;
	d_out = segs_out - s->segs_out;
	c = tgid ? totals_of(tgid) : NULL;
	if (c) {
		__sync_fetch_and_add(&c->tcpsndpacks, d_out);
		__sync_fetch_and_add(&c->tcpsndbytes, sent - s->bytes_sent + (__u64)d_out * hdr);
		__sync_fetch_and_add(&c->tcprcvpacks, d_in);
		__sync_fetch_and_add(&c->tcprcvbytes,
				     received - s->bytes_received + (__u64)d_in * hdr);
	}
	s->segs_in = segs_in;
	s->segs_out = segs_out;
	s->bytes_sent = sent;
	s->bytes_received = received;
}

static __always_inline int call(struct sock *sk, int ret, bool send)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct counters *c;
	struct seen *s;

	if (!sk)
		return 0;
	if (sk->sk_type == SOCK_STREAM && sk->sk_protocol == IPPROTO_TCP) {
		s = bpf_sk_storage_get(&seen, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (s) {
			flush(sk, s, tgid);
			s->tgid = tgid;
		}
	} else if (sk->sk_type == SOCK_DGRAM && sk->sk_protocol == IPPROTO_UDP && ret > 0) {
		__u64 hdr = (sk->__sk_common.skc_family == AF_INET6 ? 40 : 20) + 8;

		c = totals_of(tgid);
		if (!c)
			return 0;
		if (send) {
			__sync_fetch_and_add(&c->udpsndpacks, 1);
			__sync_fetch_and_add(&c->udpsndbytes, ret + hdr);
		} else {
			__sync_fetch_and_add(&c->udprcvpacks, 1);
			__sync_fetch_and_add(&c->udprcvbytes, ret + hdr);
		}
	}
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tcpinfo_send, struct sock *sk, int ret, int flags)
{
	return call(sk, ret, true);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tcpinfo_recv, struct sock *sk, int ret, int flags)
{
	return call(sk, ret, false);
}

/* A socket's close: the rest to its last caller. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcpinfo_state, struct sock *sk, int oldstate, int newstate)
{
	struct seen *s;

	if (newstate != TCP_CLOSE)
		return 0;
	s = bpf_sk_storage_get(&seen, sk, 0, 0);
	if (s)
		flush(sk, s, s->tgid);
	return 0;
}
