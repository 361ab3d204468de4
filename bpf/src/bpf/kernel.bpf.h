/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * What the programs take from the kernel besides vmlinux.h's types: the
 * constants of its user interface (address families, socket types,
 * protocols, message flags, an errno, EtherTypes, TCP states), which BTF
 * does not carry, and the open-coded task iterator's kfuncs (Linux 6.7+;
 * weak, so that a kernel without them loads every program but
 * netatop_snapshot, which user space then does not load).
 */
#ifndef NETATOP_KERNEL_BPF_H
#define NETATOP_KERNEL_BPF_H

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_MPTCP 262
#define MSG_PEEK 2
#define MSG_ERRQUEUE 0x2000
#define EEXIST 17
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_FRAGMENT 44
#define TCP_SYN_SENT 2
#define TCP_TIME_WAIT 6
#define TCP_LISTEN 10
#define TCP_NEW_SYN_RECV 12

extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task,
			     unsigned int flags) __weak __ksym;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __weak __ksym;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __weak __ksym;

#endif /* NETATOP_KERNEL_BPF_H */
