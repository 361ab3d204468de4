// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * netatopd's programs: per-thread TCP/UDP traffic accounting, for Linux
 * >= 5.10 with BTF, in one object. User space (bpf/src/loader.rs) chooses
 * at start, by what the kernel takes, which of them it loads and attaches,
 * and sets the const volatile flags accordingly.
 *
 * What a thread's counters count is chosen at start too:
 * - Calls (the default): every TCP or UDP send and receive call that moved
 *   data adds one and its bytes to the calling thread's counters. The
 *   calls are hooked one of three ways: BTF raw tracepoints on
 *   sock_send_length/sock_recv_length (6.3+), fexit on inet{,6}_sendmsg
 *   and inet{,6}_recvmsg, or kprobes on the same functions. Every way ends
 *   in account() (account_core() for kprobes), so what is counted does not
 *   depend on how.
 * - The wire (`wire_mode`, 5.11+, tp_btf or fexit): the calls, connect and
 *   listen only make the calling thread the socket's owner; every IP
 *   packet an interface sends or receives, and every one a socket
 *   receives, adds one and its bytes (headers included) to its socket's
 *   owner, or to its network namespace, unattributed.
 *
 * tstore:  each thread's counters, in its task-local storage (Linux 5.13+:
 *          no capacity, freed with the task); single writer: the thread.
 * threads: tid -> counters, the same in a hash map where task storage is
 *          not available to tracing programs (chosen at start), and always
 *          when counting the wire (a packet reaches its owner by tid).
 * procs:   tgid -> start time, name, totals of its exited threads.
 * exited:  (tgid, start) -> final totals, until user space collects them.
 * cgroups: cgroup v2 id -> totals of its exited processes; a removed
 *          cgroup's go to its parent's and to `cgroups_gone`.
 *
 * A thread's exit folds its counters into its process (delete first, then
 * add, so a concurrent reader can miss a thread for one snapshot but never
 * count it twice). The exit of the last thread moves the process's totals
 * to `exited`, and into its cgroup's. Nothing stays behind in the maps
 * after a process is gone.
 *
 * A snapshot writes one record per counted process: its exited threads'
 * totals plus its live threads' counters, never lower than what the last
 * snapshot reported. With the open-coded task iterator (6.7+) one pass over
 * the tasks does it (netatop_snapshot); before, three passes over the maps
 * (netatop_walk_*) through the `walk` map.
 *
 * The parts, in the order included; each uses only those before it:
 *   kernel.bpf.h    kernel constants; the task iterator's kfuncs
 *   maps.bpf.h      every map and global
 *   counters.bpf.h  a socket's kind; adding counters up
 *   threads.bpf.h   a thread's counters and its process's entry
 *   owners.bpf.h    counting the wire: sockets' owners, listeners
 *   segments.bpf.h  a GSO/GRO packet's segments at a socket's hook
 *   packets.bpf.h   counting the wire: the packets' programs
 *   account.bpf.h   what a call counts: account(), count()
 *   tp_btf.bpf.h    the tp_btf way of attaching
 *   fexit.bpf.h     the fexit way
 *   kprobe.bpf.h    the kprobe way
 *   snapshot.bpf.h  snapshots (task iterator, map walk), thread records
 *   cgroups.bpf.h   per cgroup totals and records
 *   exit.bpf.h      process exit, exec and rename
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "netatop.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "kernel.bpf.h"
#include "maps.bpf.h"
#include "counters.bpf.h"
#include "threads.bpf.h"
#include "owners.bpf.h"
#include "segments.bpf.h"
#include "packets.bpf.h"
#include "account.bpf.h"
#include "tp_btf.bpf.h"
#include "fexit.bpf.h"
#include "kprobe.bpf.h"
#include "snapshot.bpf.h"
#include "cgroups.bpf.h"
#include "exit.bpf.h"
