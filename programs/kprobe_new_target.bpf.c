// SPDX-License-Identifier: GPL-2.0
/* A kprobe on a function only newer kernels have: __x64_sys_cachestat, the entry of the
 * cachestat(2) syscall added in 6.5. The program itself is plain and loads everywhere; attaching
 * fails on 5.10 and 6.1 (no such symbol) and works on 6.12 and 7.2. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

SEC("kprobe/__x64_sys_cachestat")
int count_cachestat(void *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&calls, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
