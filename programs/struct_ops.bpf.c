// SPDX-License-Identifier: GPL-2.0
/* struct_ops maps the kernels of the matrix take differently, in one object as third-party
 * TCP congestion controls and schedulers have them: a plain one whose callback calls a kfunc
 * (kfunc calls: 5.13), one attached as a BPF link (SEC(".struct_ops.link"): 6.4), one of a
 * struct_ops type no kernel has, and one that sets a member the kernel's struct lacks. Without
 * vmlinux.h: libbpf matches the structs below to the kernel's by name, member by member. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* Defined, not just declared: libbpf checks the kfunc's prototype against the kernel's, kind by kind. */
struct sock {
	int unused;
};

struct tcp_congestion_ops {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	char name[16];
};

/* The same kernel struct (libbpf drops the ___ suffix), with a member no kernel has. */
struct tcp_congestion_ops___future {
	void (*compat_future_op)(struct sock *sk);
};

struct compat_no_such_ops {
	void (*op)(struct sock *sk);
};

extern void tcp_reno_cong_avoid(struct sock *sk, __u32 ack, __u32 acked) __ksym;

SEC("struct_ops")
__u32 BPF_PROG(cc_ssthresh, struct sock *sk)
{
	return 2;
}

SEC("struct_ops")
void BPF_PROG(cc_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	tcp_reno_cong_avoid(sk, ack, acked);
}

SEC("struct_ops")
__u32 BPF_PROG(cc_undo_cwnd, struct sock *sk)
{
	return 10;
}

SEC("struct_ops")
void BPF_PROG(link_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC("struct_ops")
void BPF_PROG(future_op, struct sock *sk)
{
}

SEC("struct_ops")
void BPF_PROG(no_such_op, struct sock *sk)
{
}

SEC(".struct_ops")
struct tcp_congestion_ops compat_cc = {
	.ssthresh = (void *)cc_ssthresh,
	.cong_avoid = (void *)cc_cong_avoid,
	.undo_cwnd = (void *)cc_undo_cwnd,
	.name = "compat_cc",
};

SEC(".struct_ops.link")
struct tcp_congestion_ops compat_cc_link = {
	.ssthresh = (void *)cc_ssthresh,
	.cong_avoid = (void *)link_cong_avoid,
	.undo_cwnd = (void *)cc_undo_cwnd,
	.name = "compat_cc_link",
};

SEC(".struct_ops")
struct tcp_congestion_ops___future compat_cc_future = {
	.compat_future_op = (void *)future_op,
};

SEC(".struct_ops")
struct compat_no_such_ops compat_nothing = {
	.op = (void *)no_such_op,
};

char LICENSE[] SEC("license") = "GPL";
