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
	BPF_MAP_TYPE_QUEUE = 22,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_F_NO_PREALLOC = 1,
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	int counter;
} atomic_t;

struct sock_common {
	unsigned short skc_family;
};

struct sock {
	struct sock_common __sk_common;
	/* Plain u16 fields since Linux 5.6 (bitfields before). */
	__u16 sk_type;
	__u16 sk_protocol;
};

struct socket {
	struct sock *sk;
};

struct pipe_inode_info;
struct msghdr;
struct page;

/* The registers a kprobe sees (x86_64), for bpf_tracing.h's PT_REGS_*. */
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

struct bpf_map;

struct signal_struct {
	atomic_t live;
};

struct task_struct {
	int pid;
	int tgid;
	__u64 start_boottime;
	char comm[TASK_COMM_LEN];
	struct task_struct *group_leader;
	struct signal_struct *signal;
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
