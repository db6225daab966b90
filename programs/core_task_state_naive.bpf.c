// SPDX-License-Identifier: GPL-2.0
/* CO-RE done naively: reads task_struct->__state (named so since 5.14) without a guard.
 * On 5.10 the field does not exist: libbpf cannot resolve the relocation and poisons the
 * instruction, so the program fails there; accepted on 6.1 and later. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	unsigned int __state;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} states SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getpid")
int record_state_naive(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u32 key = 0;
	__u64 *value;

	value = bpf_map_lookup_elem(&states, &key);
	if (value)
		*value = BPF_CORE_READ(task, __state);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
