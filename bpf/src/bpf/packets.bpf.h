/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Counting the wire: the packets, read as the wire carries them (a GSO/GRO
 * packet as the packets it stands for), where they cross the lowest
 * device. Each packet an interface sends counts to its socket's owner, or
 * to its network namespace, unattributed (netatop_xmit); each one an
 * interface receives counts to its namespace (netatop_rx), and to its
 * socket's owner when a socket receives it (netatop_sock_in, cgroup_skb
 * on the root cgroup): what no socket claims is unattributed. IPv4
 * fragments wait in `frags` for their reassembled datagram's socket;
 * `rx_tally` finds the packets the kernel did not run netatop_rx for.
 *
 * User space: bpf/src/wire.rs (the programs wire counting adds to the
 * chosen way's; netatop_sock_in goes on the cgroup v2 root).
 */
#ifndef NETATOP_PACKETS_BPF_H
#define NETATOP_PACKETS_BPF_H

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
				 * for its owner to claim. */
				if (!o)
					o = bpf_sk_storage_get(&owners, sk, 0,
							       BPF_SK_STORAGE_GET_F_CREATE);
				if (o) {
					add_packet(&o->pending, &pkt, true);
					claim_late(o, pkt.tcp);
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
	if (segs > 1 && !segment_headers(skb, pkt.tcp, &hdr))
		return 1;
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
		/* Before the socket's first call: kept for its owner (its
		 * namespace is known then). */
		add_packet(&o->pending, &pkt, false);
		if (unseen) {
			__sync_fetch_and_add(&o->unseen_packets, pkt.packets);
			__sync_fetch_and_add(&o->unseen_bytes, pkt.bytes);
		}
		claim_late(o, pkt.tcp);
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

#endif /* NETATOP_PACKETS_BPF_H */
