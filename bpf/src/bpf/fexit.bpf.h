/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The fexit way of attaching: fexit programs on the inet socket
 * operations every TCP and UDP send and receive reaches (inet_sendmsg,
 * inet6_sendmsg, inet_recvmsg, inet6_recvmsg), and the optional hooks
 * inet_sendpage and tcp_splice_read.
 *
 * User space: bpf/src/attach/fexit.rs (its programs, and whether the
 * kernel takes them); the optional hooks are bpf/src/attach/mod.rs's
 * Extras.
 */
#ifndef NETATOP_FEXIT_BPF_H
#define NETATOP_FEXIT_BPF_H

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

#endif /* NETATOP_FEXIT_BPF_H */
