// SPDX-License-Identifier: GPL-2.0
/* The "new version" of the regression example: the same program as old/counter.bpf.c, now
 * counting in steps through bpf_loop (helper 181, Linux 5.17). Accepted on 6.1 and later,
 * rejected on 5.10: the regression compat check --baseline-object old/counter.o must report,
 * on the bpf_loop line below. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static long add_one(__u32 index, void *ctx)
{
	__u64 *step = ctx;

	*step += 1;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int count_getpid(void *ctx)
{
	__u32 key = 0;
	__u64 step = 0;
	__u64 *value;

	bpf_loop(1, add_one, &step, 0);
	value = bpf_map_lookup_elem(&counts, &key);
	if (value)
		__sync_fetch_and_add(value, step);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
