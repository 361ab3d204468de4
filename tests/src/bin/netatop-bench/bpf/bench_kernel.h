/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The kernel types only the benchmark's programs read, beside the
 * product's vmlinux.h (CO-RE relocated the same way; a `___suffix` names
 * a second view of a type the product declares, which libbpf matches to
 * the kernel's type of the name before it).
 */
#ifndef NETATOP_BENCH_KERNEL_H
#define NETATOP_BENCH_KERNEL_H

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

/* The counters TCP keeps per socket (tcp_info), read by the other way of
 * counting the wire (tcpinfo.bpf.c). */
struct tcp_sock {
	__u16 tcp_header_len;
	__u32 segs_in;
	__u32 segs_out;
	__u64 bytes_sent;
	__u64 bytes_received;
};

/* Whether a thread holds the socket (lock_sock()): then packets the
 * socket sends leave in that thread's call. */
typedef struct {
	int owned;
} socket_lock_t;

struct sock___locked {
	socket_lock_t sk_lock;
};

#pragma clang attribute pop

#endif
