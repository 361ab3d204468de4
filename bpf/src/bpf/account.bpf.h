/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The one accounting path: what a send or receive call counts. Every way
 * of attaching ends here, in account() (a socket the program has as a BTF
 * pointer: tp_btf and fexit) or account_core() (a socket known only by
 * its address: kprobes), so what is counted does not depend on how.
 * Counting calls, count() adds the call and its bytes to the calling
 * thread's counters; counting the wire, a call only makes its thread the
 * socket's owner (tag()).
 */
#ifndef NETATOP_ACCOUNT_BPF_H
#define NETATOP_ACCOUNT_BPF_H

/* Whether a call that returned `ret` with `flags` moved traffic: failed and
 * empty calls moved nothing; peeked data is read again later; the error
 * queue holds no traffic (ICMP errors, transmit timestamps). */
static __always_inline bool moved(long ret, int flags, bool send)
{
	return ret > 0 && (send || !(flags & (MSG_PEEK | MSG_ERRQUEUE)));
}

/* Counts one call of the current thread that moved `ret` bytes. */
static __always_inline int count(enum kind kind, long ret, bool send)
{
	struct thread_val *t;

	if (kind == NOT_COUNTED)
		return 0;
	t = current_thread();
	if (!t)
		return 0;
	/* Only this thread writes its entry, so plain adds are exact. */
	if (kind == TCP) {
		if (send) {
			t->c.tcpsndpacks++;
			t->c.tcpsndbytes += ret;
		} else {
			t->c.tcprcvpacks++;
			t->c.tcprcvbytes += ret;
		}
	} else {
		if (send) {
			t->c.udpsndpacks++;
			t->c.udpsndbytes += ret;
		} else {
			t->c.udprcvpacks++;
			t->c.udprcvbytes += ret;
		}
	}
	return 0;
}

/* A call on a socket the program received as a BTF pointer (tp_btf and
 * fexit programs): its fields are read directly. */
static __always_inline int account(struct sock *sk, long ret, int flags, bool send)
{
	if (wire_mode) {
		if (sk && classify(sk->__sk_common.skc_family, sk->sk_type, sk->sk_protocol))
			tag(sk);
		return 0;
	}
	if (!moved(ret, flags, send) || !sk)
		return 0;
	return count(classify(sk->__sk_common.skc_family, sk->sk_type, sk->sk_protocol), ret,
		     send);
}

/* A call on a socket known only by its address (kprobes): CO-RE reads. */
static __always_inline int account_core(struct sock *sk, long ret, int flags, bool send)
{
	if (!moved(ret, flags, send) || !sk)
		return 0;
	return count(classify(BPF_CORE_READ(sk, __sk_common.skc_family), BPF_CORE_READ(sk, sk_type),
			      BPF_CORE_READ(sk, sk_protocol)),
		     ret, send);
}

#endif /* NETATOP_ACCOUNT_BPF_H */
