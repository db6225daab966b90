// SPDX-License-Identifier: GPL-2.0
/* The helper bpf_loop (id 181) arrived in 5.17: rejected on 5.10, accepted on 6.1 and later.
 * On 5.10 the kernel's own words mislead ("number of funcs in func_info doesn't match number of
 * subprogs": it does not count the callback, referenced by a kind of ld_imm64 it does not know, as
 * a subprogram); the helper probe tells the cause. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sums SEC(".maps");

static long add_index(__u32 index, void *ctx)
{
	__u64 *sum = ctx;

	*sum += index;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int sum_with_loop(void *ctx)
{
	__u32 key = 0;
	__u64 sum = 0;
	__u64 *value;

	bpf_loop(16, add_index, &sum, 0);
	value = bpf_map_lookup_elem(&sums, &key);
	if (value)
		*value = sum;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
