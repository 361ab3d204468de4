/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * What user space reads of the live processes and threads, through
 * iterators: reading one runs its program over the tasks or a map's
 * elements, and netatopd's one thread does the reads (bpf/src/read.rs).
 * A snapshot is one record per counted process, never lower than the last
 * one reported (raise_record()): in one pass with the open-coded task
 * iterator (netatop_snapshot, Linux 6.7+), or in three passes over the
 * maps through `walk` (netatop_walk_*). With task storage, the per-thread
 * records come from an iterator too (netatop_threads); the threads map is
 * read directly otherwise.
 */
#ifndef NETATOP_SNAPSHOT_BPF_H
#define NETATOP_SNAPSHOT_BPF_H

/* Entries of processes gone removed at the end of a walk, at most (the
 * verifier follows each turn of the loop; the rest go at the next walks;
 * `walk` holds twice the processes, so they fit meanwhile). */
#define WALK_CLEANUP 1024

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
 * user space checks that record's layout like the others. Snapshots may be
 * streamed several at once, interleaved, but every run of a snapshot
 * program is a read() by netatopd's one thread, so no two run at the same
 * time: this read-modify-write does not race, and each record is at least
 * what any earlier one reported.
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
 * A snapshot in one pass (Linux 6.7+): one record per counted process, its
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
	/* The leader's name now. */
	bpf_probe_read_kernel_str(r.comm, sizeof(r.comm), task->comm);
	r.c = p->exited;
	bpf_for_each(task, pos, task, BPF_TASK_ITER_PROC_THREADS) {
		__u32 tid = pos->pid;
		struct thread_val *t;

		if (task_storage)
			t = bpf_task_storage_get(&tstore, pos, 0, 0);
		else
			t = bpf_map_lookup_elem(&threads, &tid);
		if (t)
			add(&r.c, &t->c);
	}
	raise_record(&r, &p->reported);
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

/*
 * A snapshot in three passes over the maps (before Linux 6.7), each a map
 * element iterator read to its end by user space in this order, one
 * snapshot at a time. Like the one-pass snapshot, a process's exited
 * totals are read before its live threads, so a thread that exits
 * meanwhile is missed once, never counted twice.
 *
 * Pass 1, over `procs`: a new generation, then each process's exited
 * threads' totals into `walk`.
 */
SEC("iter/bpf_map_elem")
int netatop_walk_procs(struct bpf_iter__bpf_map_elem *ctx)
{
	__u32 *key = ctx->key;
	struct proc_val *p = ctx->value;
	struct walk_val w = {};
	__u32 tgid;

	/* seq_num stays 0 while nothing is written: the session tells. */
	if (ctx->meta->session_id != walk_session) {
		walk_session = ctx->meta->session_id;
		walk_gen++;
	}
	if (!key || !p)
		return 0;
	tgid = *key;
	w.c = p->exited;
	w.gen = walk_gen;
	bpf_map_update_elem(&walk, &tgid, &w, BPF_ANY);
	return 0;
}

/* Pass 2: a live thread's counters added to its process's sum. */
static __always_inline void walk_add(__u32 tgid, const struct counters *c)
{
	struct walk_val *sum = bpf_map_lookup_elem(&walk, &tgid);

	if (sum && sum->gen == walk_gen) {
		add(&sum->c, c);
	} else {
		/* A process that came after pass 1 (or left an old entry). */
		struct walk_val w = { .c = *c, .gen = walk_gen };

		bpf_map_update_elem(&walk, &tgid, &w, BPF_ANY);
	}
}

/* Pass 2 over the threads map. */
SEC("iter/bpf_map_elem")
int netatop_walk_threads(struct bpf_iter__bpf_map_elem *ctx)
{
	struct thread_val *t = ctx->value;

	if (!ctx->key || !t)
		return 0;
	walk_add(t->tgid, &t->c);
	return 0;
}

/* Pass 2 over the tasks, with task storage (the classic task iterator,
 * Linux 5.8+, visits every thread). */
SEC("iter/task")
int netatop_walk_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct thread_val *t;

	if (!task)
		return 0;
	t = bpf_task_storage_get(&tstore, task, 0, 0);
	if (t && t->linked)
		walk_add(t->tgid, &t->c);
	return 0;
}

/* Pass 3, over `walk`: one record per process of this generation still
 * counted; the others are queued, and removed once the walk is over. */
SEC("iter/bpf_map_elem")
int netatop_walk_emit(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	__u32 *key = ctx->key;
	struct walk_val *sum = ctx->value;
	struct snapshot_rec r = {};
	struct proc_val *p;
	__u32 tgid;

	if (!key || !sum) {
		/* The end of the walk: remove what was queued. */
		for (int i = 0; i < WALK_CLEANUP; i++) {
			if (bpf_map_pop_elem(&walk_stale, &tgid))
				break;
			bpf_map_delete_elem(&walk, &tgid);
		}
		return 0;
	}
	tgid = *key;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p || sum->gen != walk_gen) {
		bpf_map_push_elem(&walk_stale, &tgid, BPF_ANY);
		return 0;
	}
	r.tgid = tgid;
	r.start_ns = p->start_ns;
	__builtin_memcpy(r.comm, p->comm, sizeof(r.comm));
	r.c = sum->c;
	raise_record(&r, &p->reported);
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

/* Out of line: its prototype puts struct thread_rec into the object's BTF,
 * so user space reads the record with its generated type. */
static __noinline void emit_thread(struct seq_file *seq, struct thread_rec *r)
{
	bpf_seq_write(seq, r, sizeof(*r));
}

/* Every live thread with counters (with task storage; the threads map is
 * read directly otherwise). */
SEC("iter/task")
int netatop_threads(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct thread_rec r = {};
	struct thread_val *t;

	if (!task)
		return 0;
	t = bpf_task_storage_get(&tstore, task, 0, 0);
	if (!t || !t->linked)
		return 0;
	r.tid = task->pid;
	r.tgid = task->tgid;
	bpf_probe_read_kernel_str(r.comm, sizeof(r.comm), task->comm);
	r.c = t->c;
	emit_thread(ctx->meta->seq, &r);
	return 0;
}

#endif /* NETATOP_SNAPSHOT_BPF_H */
