// SPDX-License-Identifier: GPL-2.0
/* Two programs in one object, one accepted and one rejected everywhere: libbpf stops the object
 * load at the first failing program, and the checker must still give each program its own
 * verdict. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int checked_read(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + sizeof(__u32) > data_end)
		return XDP_PASS;
	return *(__u32 *)data == 0 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int unchecked_read(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;

	return *(volatile __u32 *)data == 0 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
