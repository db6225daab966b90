// SPDX-License-Identifier: GPL-2.0
/* Rejected everywhere: XDP reads the packet without first checking it against data_end.
 * The verifier says "invalid access to packet" (EACCES); 7.2 words it differently. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int read_unchecked(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	__u32 first_word = *(volatile __u32 *)data;

	return first_word == 0 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
