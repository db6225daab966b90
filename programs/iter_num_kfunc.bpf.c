// SPDX-License-Identifier: GPL-2.0
/* The open-coded number iterator kfuncs bpf_iter_num_new/next/destroy arrived in 6.4.
 * Declared as strong __ksym externs, libbpf must resolve them against the kernel's BTF for the
 * whole object before any program is loaded: on 5.10 and 6.1 the object fails ("object error",
 * no verifier log); on 6.12 and 7.2 it is accepted. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The kernel's struct bpf_iter_num (uapi <linux/bpf.h> only has it since 6.4, so it is declared
 * here under another name to build with old and new headers alike). libbpf compares a kfunc's
 * prototype with the kernel's structurally, and the verifier uses the kernel's own BTF. */
struct compat_iter_num {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

extern int bpf_iter_num_new(struct compat_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct compat_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct compat_iter_num *it) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sums SEC(".maps");

SEC("raw_tp/sys_enter")
int sum_with_iter(void *ctx)
{
	struct compat_iter_num it;
	__u32 key = 0;
	__u64 sum = 0;
	__u64 *value;
	int *n;

	bpf_iter_num_new(&it, 0, 16);
	while ((n = bpf_iter_num_next(&it)))
		sum += *n;
	bpf_iter_num_destroy(&it);

	value = bpf_map_lookup_elem(&sums, &key);
	if (value)
		*value = sum;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
