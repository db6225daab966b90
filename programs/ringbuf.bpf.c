// SPDX-License-Identifier: GPL-2.0
/* A BPF_MAP_TYPE_RINGBUF user (map type and helpers since 5.8): accepted everywhere. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct event {
	__u32 pid;
	__u32 tgid;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getpid")
int report_getpid(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
