/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Threads' counters, wherever they live: in each thread's task-local
 * storage (`tstore`, where user space sets `task_storage`) or in the
 * `threads` hash map; and their process's entry in `procs`, made with its
 * first thread's. current_thread() is the way in for every program that
 * counts for the calling thread.
 */
#ifndef NETATOP_THREADS_BPF_H
#define NETATOP_THREADS_BPF_H

/*
 * Admits one more process of user `uid` (not root) to `procs`: false
 * when the user has `max_user_procs` there already, so that no one user
 * fills the map and leaves everyone else uncounted. Checked, then added:
 * processes starting at once on several CPUs can pass the limit by as
 * many. With `user_procs` full (it has the size of `procs`), no limit.
 */
static __always_inline bool user_admit(__u32 uid)
{
	__u64 limit = *(volatile __u64 *)&max_user_procs;
	__u64 zero = 0, *n;

	if (!uid || !limit)
		return true;
	n = bpf_map_lookup_elem(&user_procs, &uid);
	if (!n) {
		bpf_map_update_elem(&user_procs, &uid, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(&user_procs, &uid);
		if (!n)
			return true;
	}
	if (*(volatile __u64 *)n >= limit)
		return false;
	__sync_fetch_and_add(n, 1);
	return true;
}

/* A process of user `uid` admitted by user_admit() leaves `procs` (or
 * never entered it). The user's entry goes with its last process. */
static __always_inline void user_release(__u32 uid)
{
	__u64 *n;

	if (!uid)
		return;
	n = bpf_map_lookup_elem(&user_procs, &uid);
	if (!n)
		return;
	__sync_fetch_and_add(n, -1);
	/* A process admitted between the two steps loses its place in the
	 * count: the limit is then passed by one, never wrongly applied. */
	if (*(volatile __u64 *)n == 0)
		bpf_map_delete_elem(&user_procs, &uid);
}

/*
 * The entry of the calling thread's process, created if needed. Out of
 * line (a BPF subprogram, verified once), like its callers: only a
 * thread's first counted call takes it, and every program's hot path
 * stays short. The current task is read with CO-RE reads:
 * bpf_get_current_task_btf() came only in Linux 5.11.
 */
static __noinline struct proc_val *proc_init(__u32 tgid)
{
	struct proc_val *p = bpf_map_lookup_elem(&procs, &tgid);
	long err;

	if (!p) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		struct task_struct *leader = BPF_CORE_READ(task, group_leader);
		struct proc_val pv = {};

		pv.start_ns = BPF_CORE_READ(leader, start_boottime);
		pv.uid = BPF_CORE_READ(leader, real_cred, uid.val);
		BPF_CORE_READ_STR_INTO(&pv.comm, leader, comm);
		if (!user_admit(pv.uid)) {
			stat_inc(user_procs_capped);
			return NULL;
		}
		err = bpf_map_update_elem(&procs, &tgid, &pv, BPF_NOEXIST);
		if (err) {
			/* Not entered: full, or another thread's entry made
			 * first. */
			user_release(pv.uid);
			if (err != -EEXIST) {
				stat_inc(proc_map_full);
				return NULL;
			}
		}
		p = bpf_map_lookup_elem(&procs, &tgid);
	}
	return p;
}

/* The calling thread's entry in the threads map, created (with its
 * process's) if needed. */
static __noinline struct thread_val *thread_init(__u32 tid, __u32 tgid)
{
	struct proc_val *p = proc_init(tgid);
	struct thread_val tv = { .tgid = tgid, .linked = 1 };
	long err;

	if (!p)
		return NULL;
	err = bpf_map_update_elem(&threads, &tid, &tv, BPF_NOEXIST);
	if (!err) {
		__sync_fetch_and_add(&p->nthreads, 1);
	} else if (err != -EEXIST) {
		stat_inc(thread_map_full);
		return NULL;
	}
	return bpf_map_lookup_elem(&threads, &tid);
}

/* The calling thread's task storage, created (with its process's entry)
 * if needed. Only the thread itself creates it, so `linked` tells whether
 * it is counted in its process already. */
static __noinline struct thread_val *storage_init(struct task_struct *task, __u32 tgid)
{
	struct proc_val *p = proc_init(tgid);
	struct thread_val tv = { .tgid = tgid };
	struct thread_val *t;

	if (!p)
		return NULL;
	t = bpf_task_storage_get(&tstore, task, &tv, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t) {
		stat_inc(thread_storage_failed);
		return NULL;
	}
	if (!t->linked) {
		t->linked = 1;
		__sync_fetch_and_add(&p->nthreads, 1);
	}
	return t;
}

/* The calling thread's counters, wherever they live. */
static __always_inline struct thread_val *current_thread(void)
{
	struct thread_val *t;
	__u64 id;
	__u32 tid;

	if (task_storage) {
		struct task_struct *task = bpf_get_current_task_btf();

		t = bpf_task_storage_get(&tstore, task, 0, 0);
		if (t && t->linked)
			return t;
		return storage_init(task, bpf_get_current_pid_tgid() >> 32);
	}
	id = bpf_get_current_pid_tgid();
	tid = (__u32)id;
	t = bpf_map_lookup_elem(&threads, &tid);
	if (t)
		return t;
	return thread_init(tid, id >> 32);
}

#endif /* NETATOP_THREADS_BPF_H */
