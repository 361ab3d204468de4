// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The feature probe netatopd loads at start (bpf/src/probe.rs): a program
 * that does nothing, attached by hand to one kernel function at a time,
 * tells whether this kernel attaches kprobes there.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("kprobe")
int probe_kprobe(void *ctx)
{
	return 0;
}
