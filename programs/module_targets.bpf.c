// SPDX-License-Identifier: GPL-2.0
/* Programs on functions of kernel MODULES: Debian builds ext4 as a module, so on a machine with
 * an ext4 file system ext4_file_read_iter is there to trace. compat loads the modules that define
 * the functions an object names before it checks the object, so both programs load and attach
 * on every kernel (the guest has no ext4 otherwise). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} reads SEC(".maps");

static void count(void)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&reads, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
}

SEC("fentry/ext4_file_read_iter")
int BPF_PROG(ext4_read_entry)
{
	count();
	return 0;
}

SEC("kprobe/ext4_file_read_iter")
int ext4_read_kprobe(void *ctx)
{
	count();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
