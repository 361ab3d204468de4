// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The floors of the benchmark's designs: programs that do nothing, on the
 * socket calls' tracepoints (the floor of any tp_btf program per call) and
 * on the cgroup_skb hooks (the floor of any per-packet program at the
 * socket). The loader picks which load (candidates.rs, `Floor`).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sock_send_length")
int BPF_PROG(floor_send, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(floor_recv, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("cgroup_skb/egress")
int floor_egress(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup_skb/ingress")
int floor_ingress(struct __sk_buff *skb)
{
	return 1;
}
