/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * What counts, and how counters add up: the kind of a socket (TCP, UDP or
 * not counted: classify()), and one struct counters added into another,
 * atomically where other contexts add to it too (fold()) or plainly into
 * a sum being built (add()), or taken out of one (take_counters()).
 */
#ifndef NETATOP_COUNTERS_BPF_H
#define NETATOP_COUNTERS_BPF_H

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

/* Adds `src` into `dst`, plainly: into a sum no other context writes. */
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

#endif /* NETATOP_COUNTERS_BPF_H */
