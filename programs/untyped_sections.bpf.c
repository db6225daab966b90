// SPDX-License-Identifier: GPL-2.0
/* Programs whose sections name no program type, as projects with their own loaders write them
 * (the loader calls bpf_program__set_type): compat loads each as the type its context argument
 * suggests (struct __sk_buff: tc, struct xdp_md: xdp), and --program-type names another. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("ingress_classifier")
int tc_mark(struct __sk_buff *skb)
{
	skb->mark = 1; /* writable for tc programs */
	return 0;
}

SEC("fast_path")
int xdp_first_byte(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + 1 > data_end)
		return XDP_PASS;
	return *(__u8 *)data ? XDP_PASS : XDP_DROP;
}

/* A light-weight tunnel encapsulation: bpf_lwt_push_encap is for lwt_in/lwt_xmit programs only,
 * so the guess is lwt_xmit, not tc. */
SEC("lwt_encap")
int lwt_push(struct __sk_buff *skb)
{
	__u8 hdr[20] = {0x45};

	return bpf_lwt_push_encap(skb, BPF_LWT_ENCAP_IP, hdr, sizeof(hdr)) ? BPF_DROP : BPF_OK;
}

/* bpf_sk_cgroup_id is for cgroup_skb programs only: the guess is cgroup_skb, not tc. */
SEC("egress_accounting")
int cgroup_only(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	return bpf_sk_cgroup_id(sk) ? 1 : 0;
}

/* No context type to guess from: only its loader (or --program-type) can say. */
SEC("untyped")
int no_context(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
