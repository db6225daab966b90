"""BPF C sources, and builders of objects from them, that tests of both tiers use (tests/unit reads
the objects on the host, tests/vm checks them in guests); conftest.py's fixtures build each once
per session. Each source says what it is for."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bpf_build import compile_command, find_clang

# -- objects whose line info names host files (issue 14: never print a byte of them) -------------
FILE_MARKER = "COMPATLEAKMARKERFILE"

# The whole program on line 1 (no #include: a preprocessor line would push it to a later line):
# /proc/self/environ has no newline, so line 1 is all of it. XDP reads the packet unchecked, so
# every kernel rejects it and compat looks its line up.
ONE_LINE = (
    "struct xdp_md { unsigned int data, data_end; }; "
    '__attribute__((section("xdp"), used)) int read_unchecked(struct xdp_md *ctx) '
    "{ void *data = (void *)(long)ctx->data; return *(volatile unsigned int *)data == 0 ? 1 : 2; } "
    'char LICENSE[] __attribute__((section("license"), used)) = "GPL";\n'
)
PROGRAM = """\
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
"""
FAILING_TEXT = "__u32 first_word = *(volatile __u32 *)data;"
SECRET = "".join(f"{FILE_MARKER} line {i}\n" for i in range(1, 40))


def _clang(cwd: Path, source: str, out: Path, *extra: str) -> Path:
    cmd = compile_command(find_clang(), Path(source), out)
    cmd[1:1] = list(extra)
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=300)
    return out


def build_hostile(base: Path) -> tuple[Path, dict[str, Path]]:
    """(project directory, {case: object}): the hostile objects and one honest one, in base/proj;
    base/outside holds files outside the project that the objects point at."""
    proj, outside = base / "proj", base / "outside"
    (proj / "sub").mkdir(parents=True)
    outside.mkdir()
    objs = {}
    # 1. a file named environ, its directory mapped to /proc/self: the object records
    #    /proc/self/environ, line 1; once without the source text in BTF, once with it.
    (proj / "environ").write_text(ONE_LINE)
    prefix = f"-fdebug-prefix-map={proj}=/proc/self"
    objs["environ"] = _clang(proj, "environ", proj / "environ.o", "-x", "c", prefix)
    objs["environ_embedded"] = _clang(
        proj, "environ", proj / "environ_embedded.o", "-x", "c", prefix, "-gdwarf-5", "-gembed-source"
    )
    # 2. a source that is a symlink out of the project once the object is built
    (proj / "link.bpf.c").write_text(PROGRAM)
    objs["link"] = _clang(proj, str(proj / "link.bpf.c"), proj / "link.o")
    (proj / "link.bpf.c").unlink()
    (outside / "secret.bpf.c").write_text(SECRET)
    (proj / "link.bpf.c").symlink_to(outside / "secret.bpf.c")
    # 3. a recorded path whose ".." leaves the project
    (outside / "dotdot.bpf.c").write_text(PROGRAM)
    objs["dotdot"] = _clang(proj, "sub/../../outside/dotdot.bpf.c", proj / "dotdot.o")
    (outside / "dotdot.bpf.c").write_text(SECRET)
    # 4. honest: a source under the project (test_source_under_the_root_is_read also strips its
    #    line info to DWARF, where the line's text can only come from the file)
    (proj / "good.bpf.c").write_text(PROGRAM)
    objs["good"] = _clang(proj, str(proj / "good.bpf.c"), proj / "good.o")
    return proj, objs


# -- a legacy-maps object (struct bpf_map_def in a maps section: libbpf 0.x, iproute2, gobpf) -----
LEGACY = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def {
	unsigned int type, key_size, value_size, max_entries, map_flags;
};

struct bpf_map_def SEC("maps") counts = {
	.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 4,
};
struct bpf_map_def SEC("maps/events") events = {
	.type = BPF_MAP_TYPE_PERF_EVENT_ARRAY, .key_size = 4, .value_size = 4,  /* sized by the loader */
};

static __attribute__((noinline)) int bump(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}

SEC("xdp") int count_packets(struct xdp_md *ctx)
{
	bump(0);
	return XDP_PASS;
}

SEC("xdp") int read_unchecked(struct xdp_md *ctx)
{
	return *(volatile __u32 *)(long)ctx->data ? XDP_PASS : XDP_DROP;
}

SEC("kprobe/do_nanosleep") int send_event(struct pt_regs *ctx)
{
	__u32 v = 1;

	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &v, sizeof(v));
	return 0;
}

SEC("kretprobe/compat_no_such_function") int gone(struct pt_regs *ctx) { return 0; }

SEC("tracepoint/syscalls/sys_enter_getpid") int on_getpid(void *ctx) { return bump(1); }

SEC("socket") int keep_all(struct __sk_buff *skb) { return skb->len; }

SEC("perf_event") int sample(void *ctx) { return bump(2); }

char _license[] SEC("license") = "GPL";
"""


# -- a program the loader's configuration (a const volatile global) makes safe or unsafe ---------
CONFIGURED = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile int unsafe_mode = 0;  /* set by the loader (a skeleton's rodata) */
int hits;

SEC("xdp") int read_first(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	hits++;
	if (unsafe_mode)
		return *(volatile __u32 *)data ? XDP_PASS : XDP_DROP;  /* no bounds check */
	if (data + 4 > data_end)
		return XDP_PASS;
	return *(__u32 *)data ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
"""


# -- programs whose section names a placeholder target that their loader replaces ----------------
PLACEHOLDERS = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("fentry/dummy_fn") int fe(unsigned long long *ctx) { return 0; }
SEC("kprobe/dummy_fn") int kp(void *ctx) { return 0; }
SEC("uprobe") int up(void *ctx) { return 0; }  /* the loader names binary and function */

char LICENSE[] SEC("license") = "GPL";
"""
