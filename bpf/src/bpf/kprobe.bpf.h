/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The kprobe way of attaching, for kernels without BPF trampolines:
 * kprobes and kretprobes on the same functions as the fexit way, each
 * call's socket and flags kept in `inflight` from its entry (enter()) to
 * its return (leave()). Counting calls only (kprobe programs cannot use
 * socket-local storage); a thread's calls left in `inflight` are removed
 * at its exit (netatop_exit).
 *
 * User space: bpf/src/attach/kprobe.rs; the loader sets `kprobes`.
 */
#ifndef NETATOP_KPROBE_BPF_H
#define NETATOP_KPROBE_BPF_H

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

#endif /* NETATOP_KPROBE_BPF_H */
