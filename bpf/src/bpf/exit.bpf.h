/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * What every way of attaching shares: process exit, exec and rename.
 * A thread's exit folds its counters into its process's entry; the exit
 * of the last thread moves the process's totals to `exited` (and into its
 * cgroup's), where user space collects them. exec and rename keep the
 * process's name; an exec by a thread other than the leader moves its
 * entry in the threads map to its new tid.
 *
 * User space: bpf/src/attach/mod.rs, among the programs every way uses.
 */
#ifndef NETATOP_EXIT_BPF_H
#define NETATOP_EXIT_BPF_H

/* An exited thread's counters, taken out of its entry, into its process. */
static __always_inline void fold_thread(struct proc_val *p, const struct counters *c)
{
	fold(&p->exited, c);
	__sync_fetch_and_sub(&p->nthreads, 1);
	/* Socket calls of exited threads; live ones are in their entries. */
	__sync_fetch_and_add(&stats.exited_events, c->tcpsndpacks + c->tcprcvpacks +
					     c->udpsndpacks + c->udprcvpacks);
}

/*
 * Runs for every exiting thread, after it has left signal->live. The
 * process is complete when no thread is live any more and every thread
 * entry has been folded; the exiting thread that then removes the
 * process's entry (one removal succeeds: the map is the arbiter, no
 * compare-and-swap, which Linux 5.10 lacks) publishes the final totals.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(netatop_exit, struct task_struct *task)
{
	__u32 tid = task->pid, tgid = task->tgid, uid;
	struct thread_val *t;
	struct proc_val *p;
	struct exit_key key = {};
	struct exit_val val = {};

	if (kprobes) {
		/* Calls of this thread whose return never came. */
		for (int fn = SEND; fn <= SPLICE; fn++) {
			struct call_key k = { .tid = tid, .fn = fn };

			bpf_map_delete_elem(&inflight, &k);
		}
	}
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	if (task_storage) {
		t = bpf_task_storage_get(&tstore, task, 0, 0);
		if (t && t->linked) {
			struct counters c = t->c;

			/* Unlinked and emptied first: should the delete fail
			 * (another task-storage operation on this CPU), what
			 * stays until the task is freed counts nothing. */
			t->linked = 0;
			__builtin_memset(&t->c, 0, sizeof(t->c));
			bpf_task_storage_delete(&tstore, task);
			fold_thread(p, &c);
		}
	} else {
		t = bpf_map_lookup_elem(&threads, &tid);
		if (t) {
			struct counters c;

			/* Disowned first: counting the wire, packets of the
			 * thread's sockets (which any CPU may be counting now)
			 * go to its process from here on, so that what is read
			 * next is all the entry gets, but for an add already
			 * past this check. */
			*(volatile __u32 *)&t->tgid = 0;
			c = t->c;
			bpf_map_delete_elem(&threads, &tid);
			fold_thread(p, &c);
		}
	}
	if (task->signal->live.counter != 0)
		return 0;
	if (*(volatile __s32 *)&p->nthreads != 0)
		return 0;

	key.tgid = tgid;
	key.start_ns = p->start_ns;
	val.c = p->exited;
	uid = p->uid;
	__builtin_memcpy(val.comm, p->comm, sizeof(val.comm));
	if (bpf_map_delete_elem(&procs, &tgid))
		return 0; /* another exiting thread published them */
	user_release(uid);
	val.exit_ns = bpf_ktime_get_boot_ns();
	if (bpf_map_update_elem(&exited, &key, &val, BPF_NOEXIST))
		stat_inc(exit_map_full);
	else
		stat_inc(exits);
	cgroup_add(bpf_get_current_cgroup_id(), &val.c);
	return 0;
}

/*
 * exec by a non-leader thread: it takes over the leader's pid, so its entry
 * in the threads map moves to the new tid (task storage stays with the
 * task). The process name follows the new program.
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
	if (old == tid || task_storage)
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

/* A process's name is its main thread's: a rename (prctl(PR_SET_NAME))
 * shows in the next snapshot and in the final record. */
SEC("tp_btf/task_rename")
int BPF_PROG(netatop_rename, struct task_struct *task, const char *comm)
{
	__u32 tgid = task->tgid;
	struct proc_val *p;

	if (task->pid != tgid)
		return 0;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (p)
		bpf_probe_read_kernel_str(p->comm, sizeof(p->comm), comm);
	return 0;
}

#endif /* NETATOP_EXIT_BPF_H */
