// Five programs in one object, two of them rejected everywhere (a packet read without a bounds
// check): how many loads the agent needs for per-program verdicts (bench/agent.py).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int first_checked(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	if (data + 4 > end)
		return XDP_PASS;
	return *(volatile __u32 *)data ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int second_unchecked(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;

	return *(volatile __u32 *)data ? XDP_DROP : XDP_PASS;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int third_counts(void *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&counts, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

SEC("xdp")
int fourth_unchecked(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;

	return *(volatile __u16 *)(data + 2) ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int fifth_passes(struct xdp_md *ctx)
{
	return XDP_PASS;
}
