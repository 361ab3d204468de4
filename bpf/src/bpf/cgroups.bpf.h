/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Per cgroup v2: an exited process's final totals go to its cgroup's
 * entry in `cgroups` (cgroup_add(), from netatop_exit); a removed
 * cgroup's go to `cgroups_gone` and into its parent's entry
 * (netatop_cgroup_rmdir); and an iterator tells user space each live
 * counted process's cgroup (netatop_cgroup_of). A cgroup's total is its
 * entry plus its live processes' counters, which user space (netatopd's
 * server) adds.
 */
#ifndef NETATOP_CGROUPS_BPF_H
#define NETATOP_CGROUPS_BPF_H

/* Final totals into cgroup `id`'s: an exited process's, or a removed
 * child cgroup's. */
static __always_inline void cgroup_add(__u64 id, const struct counters *c)
{
	struct counters zero = {}, *acc = bpf_map_lookup_elem(&cgroups, &id);

	if (!acc) {
		bpf_map_update_elem(&cgroups, &id, &zero, BPF_NOEXIST);
		acc = bpf_map_lookup_elem(&cgroups, &id);
		if (!acc) {
			stat_inc(cgroup_map_full);
			return;
		}
	}
	fold(acc, c);
}

/* A cgroup's removal (it has no process left): its final totals go to
 * `cgroups_gone`, once, and into its parent's total, so that a unit, a
 * container or a pod summed over its cgroups does not lose what a removed
 * child counted. Its entry is dropped. */
SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(netatop_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	__u64 id = cgrp->kn->id, parent;
	struct cgroup_subsys_state *up = cgrp->self.parent;
	struct counters *c = bpf_map_lookup_elem(&cgroups, &id);
	struct cgroup_gone *g;
	__u32 zero = 0;

	if (!c)
		return 0;
	g = bpf_map_lookup_elem(&gone_scratch, &zero);
	if (!g)
		return 0;
	g->c = *c;
	g->removed_ns = bpf_ktime_get_boot_ns();
	bpf_probe_read_kernel_str(g->path, sizeof(g->path), path);
	if (bpf_map_update_elem(&cgroups_gone, &id, g, BPF_ANY))
		stat_inc(cgroup_gone_full);
	if (up) {
		parent = BPF_CORE_READ(up, cgroup, kn, id);
		cgroup_add(parent, &g->c);
	}
	bpf_map_delete_elem(&cgroups, &id);
	/* Last: a reader of the accumulators that sees this change knows it
	 * may have read the child before and the parent after the move. */
	stat_inc(cgroups_removed);
	return 0;
}

/* Out of line: its prototype puts struct cgroup_rec into the object's BTF. */
static __noinline void emit_cgroup(struct seq_file *seq, struct cgroup_rec *r)
{
	bpf_seq_write(seq, r, sizeof(*r));
}

/* Each counted process and its cgroup v2 (its group leader's). */
SEC("iter/task")
int netatop_cgroup_of(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct cgroup_rec r = {};
	__u32 tgid;

	if (!task || task->pid != task->tgid)
		return 0;
	tgid = task->tgid;
	if (!bpf_map_lookup_elem(&procs, &tgid))
		return 0;
	r.tgid = tgid;
	r.cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	emit_cgroup(ctx->meta->seq, &r);
	return 0;
}

#endif /* NETATOP_CGROUPS_BPF_H */
