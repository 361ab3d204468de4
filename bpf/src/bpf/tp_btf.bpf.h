/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The tp_btf way of attaching (Linux 6.3+): BTF raw tracepoints on
 * sock_send_length and sock_recv_length, which every socket's send and
 * receive reports, with its return value and flags.
 *
 * User space: bpf/src/attach/tp_btf.rs (its programs, and whether the
 * kernel takes them).
 */
#ifndef NETATOP_TP_BTF_BPF_H
#define NETATOP_TP_BTF_BPF_H

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

#endif /* NETATOP_TP_BTF_BPF_H */
