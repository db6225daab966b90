// SPDX-License-Identifier: GPL-2.0
/* CO-RE done right for a renamed field: task_struct->state became __state in 5.14.
 * Two local "flavours" of task_struct; bpf_core_field_exists() picks the one the running kernel
 * has, and the verifier never walks the branch whose relocation failed. Accepted everywhere. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	unsigned int __state;
} __attribute__((preserve_access_index));

/* Everything after ___ is ignored when libbpf matches the type against the kernel's BTF. */
struct task_struct___old {
	long state;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} states SEC(".maps");

static __always_inline __u64 task_state(struct task_struct *task)
{
	struct task_struct___old *old = (void *)task;

	if (bpf_core_field_exists(old->state))
		return BPF_CORE_READ(old, state);
	return BPF_CORE_READ(task, __state);
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int record_state(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u32 key = 0;
	__u64 *value;

	value = bpf_map_lookup_elem(&states, &key);
	if (value)
		*value = task_state(task);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
