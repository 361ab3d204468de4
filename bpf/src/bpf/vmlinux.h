/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The few kernel types the programs read, CO-RE relocated against the
 * running kernel's BTF (preserve_access_index): field offsets are resolved
 * at load time, so only the names used here have to exist in the kernel.
 */
#ifndef NETATOP_VMLINUX_H
#define NETATOP_VMLINUX_H
/* What libbpf's headers test for kernel types (pt_regs field names). */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
/* As the kernel defines them (include/linux/stddef.h). */
enum {
	false = 0,
	true = 1,
};

/* Length of a task's name, NUL included (include/linux/sched.h). */
#define TASK_COMM_LEN 16
typedef long long loff_t;
typedef long ssize_t;
typedef unsigned long size_t;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_QUEUE = 22,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_SK_STORAGE = 24,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_F_NO_PREALLOC = 1,
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
	BPF_SK_STORAGE_GET_F_CREATE = 1,
	/* A socket's storage is copied to the sockets cloned from it (a
	 * listener's to the connections it accepts). */
	BPF_F_CLONE = 1 << 9,
};

/* The context of a cgroup_skb program (include/uapi/linux/bpf.h): a
 * stable ABI, its offsets rewritten by the verifier, so no CO-RE. */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	union {
		struct bpf_flow_keys *flow_keys;
		__u64 :64;
	} __attribute__((aligned(8)));
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	union {
		struct bpf_sock *sk;
		__u64 :64;
	} __attribute__((aligned(8)));
	__u32 gso_size;
};

struct bpf_flow_keys;

/* A socket as a cgroup_skb program sees it (stable ABI). */
struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	int counter;
} atomic_t;

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	/* A request socket's listener (in a union with skc_flags). */
	struct sock *skc_listener;
};

struct sock {
	struct sock_common __sk_common;
	/* Plain u16 fields since Linux 5.6 (bitfields before). */
	__u16 sk_type;
	__u16 sk_protocol;
	/* A socket the kernel made for itself (tunnels, control sockets). */
	__u8 sk_kern_sock : 1;
};

struct socket {
	struct sock *sk;
};

struct list_head {
	struct list_head *next;
	struct list_head *prev;
};

struct net_device {
	int ifindex;
	possible_net_t nd_net;
	/* The devices stacked on this one, and those beneath it. */
	struct {
		struct list_head upper;
		struct list_head lower;
	} adj_list;
};

/* sk_buff_data_t is an offset from head on 64-bit kernels. */
struct sk_buff {
	struct sock *sk;
	struct net_device *dev;
	unsigned int len;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	unsigned char *head;
	unsigned char *data;
	unsigned int end;
};

struct skb_shared_info {
	unsigned short gso_size;
	unsigned short gso_segs;
};

struct pipe_inode_info;
struct msghdr;
struct page;

/* The registers a kprobe sees, for bpf_tracing.h's PT_REGS_* (which read
 * them at these fixed offsets, not relocated): the build's architecture's
 * (bpf/build.rs defines __TARGET_ARCH_x86 or __TARGET_ARCH_arm64). */
#if defined(__TARGET_ARCH_arm64)
/* arm64: the user-visible part first (arch/arm64/include/uapi/asm/ptrace.h),
 * which bpf_tracing.h casts the context to. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};

struct pt_regs {
	union {
		struct user_pt_regs user_regs;
		struct {
			__u64 regs[31];
			__u64 sp;
			__u64 pc;
			__u64 pstate;
		};
	};
	__u64 orig_x0;
};
#elif defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long r15;
	unsigned long r14;
	unsigned long r13;
	unsigned long r12;
	unsigned long bp;
	unsigned long bx;
	unsigned long r11;
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
	unsigned long cs;
	unsigned long flags;
	unsigned long sp;
	unsigned long ss;
};
#else
#error "build for __TARGET_ARCH_x86 or __TARGET_ARCH_arm64 (bpf/build.rs)"
#endif

struct bpf_map;

struct signal_struct {
	atomic_t live;
};

struct kernfs_node {
	__u64 id;
};

struct cgroup;

struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
};

struct cgroup {
	struct cgroup_subsys_state self;
	struct kernfs_node *kn;
};

struct css_set {
	struct cgroup *dfl_cgrp;
};

typedef struct {
	__u32 val;
} kuid_t;

/* A task's credentials: its real user id (in the initial namespace). */
struct cred {
	kuid_t uid;
};

struct task_struct {
	int pid;
	int tgid;
	struct css_set *cgroups;
	__u64 start_boottime;
	char comm[TASK_COMM_LEN];
	struct task_struct *group_leader;
	struct signal_struct *signal;
	const struct cred *real_cred;
};

struct linux_binprm;

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
};

/* Context of an iter/task program. */
struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
};

/* Context of an iter/bpf_map_elem program. */
struct bpf_iter__bpf_map_elem {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
	void *key;
	void *value;
};

#pragma clang attribute pop

/* Open-coded task iterator (Linux >= 6.7): its state, opaque. */
struct bpf_iter_task {
	__u64 __opaque[3];
} __attribute__((aligned(8)));

/* enum bpf_iter_task_type: the threads of one process. */
#define BPF_TASK_ITER_PROC_THREADS 2

#endif
