// SPDX-License-Identifier: GPL-2.0
/* Over the verifier's complexity limit everywhere: a bounded loop (allowed since 5.3) that the
 * verifier must simulate iteration by iteration, because the counter is a known constant and no
 * two iterations' states are equal. Each iteration is a long straight run of arithmetic on an
 * unknown value with no branch of unknown outcome, so the only limit hit is the 1M processed
 * instructions: E2BIG ("BPF program is too large"). The long body keeps the number of states the
 * verifier stores (one per iteration) and thus its memory small. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define ITERATIONS (1 << 16) /* × ~130 instructions: far beyond 1M */

SEC("xdp")
int hash_forever(struct xdp_md *ctx)
{
	__u64 hash = ctx->data_end - ctx->data; /* unknown to the verifier */

#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < ITERATIONS; i++) {
#pragma unroll
		for (__u32 k = 0; k < 32; k++)
			hash = (hash ^ (hash >> 7)) * 31 + k;
		hash += i;
	}
	return hash & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
