/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * A GSO/GRO packet at a socket's cgroup hook (its IP header first) as the
 * packets it stands for: each segment repeats the IP header and TCP's
 * (with its options) or UDP's. Included by netatop.bpf.c (netatop_sock_in)
 * and by the benchmark's candidates (tests/src/bin/netatop-bench/bpf/);
 * the includer defines ETH_P_IP.
 */
#ifndef NETATOP_SEGMENTS_BPF_H
#define NETATOP_SEGMENTS_BPF_H

/* The header bytes each segment of `skb` repeats, into `hdr`: IP, then
 * TCP's data offset (`tcp`) or UDP's 8. False when they cannot be read. */
static __always_inline bool segment_headers(struct __sk_buff *skb, bool tcp, __u32 *hdr)
{
	__u8 b[1];
	__u32 h;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 0, b, 1))
			return false;
		h = (b[0] & 0xf) * 4;
	} else {
		h = 40;
	}
	if (tcp) {
		if (bpf_skb_load_bytes(skb, h + 12, b, 1))
			return false;
		h += (b[0] >> 4) * 4;
	} else {
		h += 8;
	}
	*hdr = h;
	return true;
}

#endif /* NETATOP_SEGMENTS_BPF_H */
