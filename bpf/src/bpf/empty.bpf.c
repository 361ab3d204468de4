// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Programs that do nothing, on the tracepoints netatopd uses: the floor of
 * what any tp_btf program costs per socket call (netatop-bench compares
 * netatopd against it).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sock_send_length")
int BPF_PROG(empty_send, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(empty_recv, struct sock *sk, int ret, int flags)
{
	return 0;
}

/* Attached by hand to one function at a time: tells whether this kernel
 * attaches kprobes there. */
SEC("kprobe")
int empty_kprobe(void *ctx)
{
	return 0;
}
