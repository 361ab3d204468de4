// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Per-thread TCP/UDP send/receive accounting on the sock_send_length and
 * sock_recv_length tracepoints (Linux >= 6.3), as BTF raw tracepoints;
 * snapshots with an open-coded task iterator (Linux >= 6.7).
 *
 * threads: tid  -> counters of that thread (single writer: the thread).
 * procs:   tgid -> start time, name, totals of its exited threads.
 * exited:  (tgid, start) -> final totals, until user space collects them.
 *
 * netatop_snapshot (iter/task) writes one record per counted process: its
 * exited threads' totals plus its live threads' counters, never lower than
 * what the last snapshot reported.
 *
 * A thread's exit folds its counters into its process (delete first, then
 * add, so a concurrent reader can miss a thread for one snapshot but never
 * count it twice). The exit of the last thread moves the process's totals
 * to `exited`. Nothing stays behind in the maps after a process is gone.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "netatop.h"

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

char LICENSE[] SEC("license") = "Dual BSD/GPL";

extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task,
			     unsigned int flags) __weak __ksym;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __weak __ksym;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __weak __ksym;

/* Sizes are set by user space before load (netatopd --max-threads etc.). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct thread_val);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct proc_val);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 32768);
	__type(key, struct exit_key);
	__type(value, struct exit_val);
} exited SEC(".maps");

/* Written by user space only; see struct netatop_meta. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netatop_meta);
} meta SEC(".maps");

struct netatop_stats stats;

#define stat_inc(field) __sync_fetch_and_add(&stats.field, 1)

/*
 * Create the entries of the calling thread (and of its process if needed).
 * Out of line (a BPF subprogram, verified once): only a thread's first
 * counted call takes it, and every program's hot path stays short.
 */
static __noinline struct thread_val *thread_init(__u32 tid, __u32 tgid)
{
	struct proc_val *p = bpf_map_lookup_elem(&procs, &tgid);
	struct thread_val tv = { .tgid = tgid };
	long err;

	if (!p) {
		struct task_struct *leader = bpf_get_current_task_btf()->group_leader;
		struct proc_val pv = {};

		pv.start_ns = leader->start_boottime;
		bpf_probe_read_kernel_str(pv.comm, sizeof(pv.comm), leader->comm);
		err = bpf_map_update_elem(&procs, &tgid, &pv, BPF_NOEXIST);
		if (err && err != -EEXIST) {
			stat_inc(proc_map_full);
			return NULL;
		}
		p = bpf_map_lookup_elem(&procs, &tgid);
		if (!p)
			return NULL;
	}
	err = bpf_map_update_elem(&threads, &tid, &tv, BPF_NOEXIST);
	if (!err) {
		__sync_fetch_and_add(&p->nthreads, 1);
	} else if (err != -EEXIST) {
		stat_inc(thread_map_full);
		return NULL;
	}
	return bpf_map_lookup_elem(&threads, &tid);
}

/*
 * Counts one call that moved `ret` bytes (or failed: ret <= 0) on socket
 * `sk`. TCP is a stream socket of protocol TCP or MPTCP (an MPTCP socket's
 * data is counted once, on the socket the process uses: its subflows' TCP
 * sockets are driven by the kernel, not through these hooks); UDP is a
 * datagram socket of protocol UDP. Raw sockets of those protocols, and
 * everything else, count nothing.
 */
static __always_inline int account(struct sock *sk, long ret, int flags, bool send)
{
	__u16 family, type, proto;
	struct thread_val *t;
	bool tcp;
	__u64 id;
	__u32 tid;

	/* Failed and empty calls move nothing. */
	if (ret <= 0)
		return 0;
	/* Peeked data is read again later; the error queue holds no traffic
	 * (ICMP errors, transmit timestamps). */
	if (!send && (flags & (MSG_PEEK | MSG_ERRQUEUE)))
		return 0;
	family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	type = sk->sk_type;
	proto = sk->sk_protocol;
	if (type == SOCK_STREAM && (proto == IPPROTO_TCP || proto == IPPROTO_MPTCP))
		tcp = true;
	else if (type == SOCK_DGRAM && proto == IPPROTO_UDP)
		tcp = false;
	else
		return 0;

	id = bpf_get_current_pid_tgid();
	tid = (__u32)id;
	t = bpf_map_lookup_elem(&threads, &tid);
	if (!t) {
		t = thread_init(tid, id >> 32);
		if (!t)
			return 0;
	}
	/* Only this thread writes its entry, so plain adds are exact. */
	if (tcp) {
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

/*
 * TCP data received with splice() (socket to pipe) is moved by
 * tcp_splice_read, not through recvmsg: one call, its bytes. Splicing into
 * a socket goes through sendmsg and the tracepoint.
 */
SEC("fexit/tcp_splice_read")
int BPF_PROG(netatop_splice_read, struct socket *sock, loff_t *ppos,
	     struct pipe_inode_info *pipe, size_t len, unsigned int flags, ssize_t ret)
{
	return account(sock->sk, ret, 0, false);
}

static __always_inline void fold(struct counters *dst, const struct counters *src)
{
	__sync_fetch_and_add(&dst->tcpsndpacks, src->tcpsndpacks);
	__sync_fetch_and_add(&dst->tcpsndbytes, src->tcpsndbytes);
	__sync_fetch_and_add(&dst->tcprcvpacks, src->tcprcvpacks);
	__sync_fetch_and_add(&dst->tcprcvbytes, src->tcprcvbytes);
	__sync_fetch_and_add(&dst->udpsndpacks, src->udpsndpacks);
	__sync_fetch_and_add(&dst->udpsndbytes, src->udpsndbytes);
	__sync_fetch_and_add(&dst->udprcvpacks, src->udprcvpacks);
	__sync_fetch_and_add(&dst->udprcvbytes, src->udprcvbytes);
}

/*
 * Runs for every exiting thread, after it has left signal->live. The
 * process is complete when no thread is live any more and every thread
 * entry has been folded; exactly one exiting thread (compare-and-swap)
 * then publishes the final totals.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(netatop_exit, struct task_struct *task)
{
	__u32 tid = task->pid, tgid = task->tgid;
	struct thread_val *t;
	struct proc_val *p;
	struct exit_key key = {};
	struct exit_val val = {};

	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	/* The process's name is its leader's, as last set (prctl, exec). */
	if (tid == tgid)
		bpf_probe_read_kernel_str(p->comm, sizeof(p->comm), task->comm);
	t = bpf_map_lookup_elem(&threads, &tid);
	if (t) {
		struct counters c = t->c;

		bpf_map_delete_elem(&threads, &tid);
		fold(&p->exited, &c);
		__sync_fetch_and_sub(&p->nthreads, 1);
		/* Socket calls of exited threads; live ones are in `threads`. */
		__sync_fetch_and_add(&stats.exited_events, c.tcpsndpacks + c.tcprcvpacks +
						     c.udpsndpacks + c.udprcvpacks);
	}
	if (task->signal->live.counter != 0)
		return 0;
	if (__sync_fetch_and_add(&p->nthreads, 0) != 0)
		return 0;
	if (__sync_val_compare_and_swap(&p->finalized, 0, 1) != 0)
		return 0;

	key.tgid = tgid;
	key.start_ns = p->start_ns;
	val.c = p->exited;
	val.exit_ns = bpf_ktime_get_boot_ns();
	__builtin_memcpy(val.comm, p->comm, sizeof(val.comm));
	if (bpf_map_update_elem(&exited, &key, &val, BPF_NOEXIST))
		stat_inc(exit_map_full);
	else
		stat_inc(exits);
	bpf_map_delete_elem(&procs, &tgid);
	return 0;
}

/*
 * exec by a non-leader thread: it takes over the leader's pid, so its entry
 * moves to the new tid. The process name follows the new program.
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(netatop_exec, struct task_struct *task, int old_pid)
{
	__u32 tid = task->pid, tgid = task->tgid, old = old_pid;
	struct thread_val *t;
	struct proc_val *p;

	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	bpf_probe_read_kernel_str(p->comm, sizeof(p->comm), task->comm);
	if (old == tid)
		return 0;
	t = bpf_map_lookup_elem(&threads, &old);
	if (t) {
		struct thread_val moved = *t;

		bpf_map_delete_elem(&threads, &old);
		if (bpf_map_update_elem(&threads, &tid, &moved, BPF_ANY)) {
			fold(&p->exited, &moved.c);
			__sync_fetch_and_sub(&p->nthreads, 1);
		}
	}
	return 0;
}

static __always_inline void add(struct counters *dst, const struct counters *src)
{
	dst->tcpsndpacks += src->tcpsndpacks;
	dst->tcpsndbytes += src->tcpsndbytes;
	dst->tcprcvpacks += src->tcprcvpacks;
	dst->tcprcvbytes += src->tcprcvbytes;
	dst->udpsndpacks += src->udpsndpacks;
	dst->udpsndbytes += src->udpsndbytes;
	dst->udprcvpacks += src->udprcvpacks;
	dst->udprcvbytes += src->udprcvbytes;
}

/* The value is at least the last one reported, which it becomes. */
static __always_inline void raise_to(__u64 *value, __u64 *reported)
{
	if (*value < *reported)
		*value = *reported;
	else
		*reported = *value;
}

/*
 * Raises each counter of a snapshot record to at least what the last
 * snapshot reported for its process, and makes that the new floor. Out of
 * line: its prototype puts struct snapshot_rec into the object's BTF, so
 * user space checks that record's layout like the others.
 */
static __noinline void raise_record(struct snapshot_rec *r, struct counters *reported)
{
	raise_to(&r->c.tcpsndpacks, &reported->tcpsndpacks);
	raise_to(&r->c.tcpsndbytes, &reported->tcpsndbytes);
	raise_to(&r->c.tcprcvpacks, &reported->tcprcvpacks);
	raise_to(&r->c.tcprcvbytes, &reported->tcprcvbytes);
	raise_to(&r->c.udpsndpacks, &reported->udpsndpacks);
	raise_to(&r->c.udpsndbytes, &reported->udpsndbytes);
	raise_to(&r->c.udprcvpacks, &reported->udprcvpacks);
	raise_to(&r->c.udprcvbytes, &reported->udprcvbytes);
}

/*
 * A snapshot: one record per counted process (struct snapshot_rec), its
 * exited threads' totals plus each live thread's counters, summed here so
 * that user space reads one entry per process instead of every thread.
 */
SEC("iter/task")
int netatop_snapshot(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task, *pos;
	struct snapshot_rec r = {};
	struct proc_val *p;
	__u32 tgid;

	if (!task || task->pid != task->tgid)
		return 0;
	tgid = task->tgid;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	r.tgid = tgid;
	r.start_ns = p->start_ns;
	/* The leader's name now: a rename since the first traffic shows. */
	bpf_probe_read_kernel_str(r.comm, sizeof(r.comm), task->comm);
	r.c = p->exited;
	bpf_for_each(task, pos, task, BPF_TASK_ITER_PROC_THREADS) {
		__u32 tid = pos->pid;
		struct thread_val *t = bpf_map_lookup_elem(&threads, &tid);

		if (t)
			add(&r.c, &t->c);
	}
	/* Several snapshots may be streamed at once, interleaved, but every
	 * run of this program is a read() by netatopd's one thread, so no two
	 * run at the same time: this read-modify-write of `reported` does not
	 * race, and each record is at least what any earlier one reported. */
	raise_record(&r, &p->reported);
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}
