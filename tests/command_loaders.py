"""Loaders for compat run's tests, built in the test from the host's libbpf (libbpf-dev): a
libbpf-bootstrap-style C loader, linked statically (libbpf.a, -lelf -lz) or dynamically
(libbpf.so: compat brings its DT_NEEDED libraries into the guest), optionally embedding its BPF
object as a byte array the way a skeleton does; and a BPF object with one program that 5.10
rejects (bpf_loop arrived in 5.17) next to one every kernel accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bpf_build import PROGRAMS_DIR, build_source, find_clang

# Two programs: programs/bpf_loop.bpf.c's sum_with_loop, which 5.10 rejects (no bpf_loop), so the
# object's load fails there, and one that every kernel accepts, sharing its map.
_LICENSE = 'char LICENSE[] SEC("license") = "GPL";'
TWO_PROGRAMS = (PROGRAMS_DIR / "bpf_loop.bpf.c").read_text().replace(_LICENSE, r"""
SEC("tracepoint/syscalls/sys_enter_getppid")
int count_getppid(void *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&sums, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

""" + _LICENSE)

# argv: [--fallback PROG] [OBJECT]. Without OBJECT it opens the object it embeds (EMBEDDED). It
# loads the object as a skeleton does; when that fails and --fallback names a program, it opens the
# object again with that program switched off (a loader that handles an old kernel), then keeps
# what it loaded for a second (compat sees it) and says which programs it loaded.
LOADER = r"""
#include <bpf/libbpf.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef EMBEDDED
#include "embedded.h"
#endif

static struct bpf_object *open_it(const char *path)
{
#ifdef EMBEDDED
	if (!path)
		return bpf_object__open_mem(embedded_object, sizeof(embedded_object), NULL);
#endif
	return path ? bpf_object__open_file(path, NULL) : NULL;
}

int main(int argc, char **argv)
{
	const char *fallback = NULL, *path = NULL;
	struct bpf_program *prog;
	struct bpf_object *obj;
	int err;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--fallback") && i + 1 < argc)
			fallback = argv[++i];
		else
			path = argv[i];
	}
	obj = open_it(path);
	if (!obj) {
		fprintf(stderr, "loader: cannot open the object\n");
		return 2;
	}
	err = bpf_object__load(obj);
	if (err && fallback) {
		fprintf(stderr, "loader: load failed (%d), again without %s\n", err, fallback);
		bpf_object__close(obj);
		obj = open_it(path);
		prog = obj ? bpf_object__find_program_by_name(obj, fallback) : NULL;
		if (prog)
			bpf_program__set_autoload(prog, false);
		err = obj ? bpf_object__load(obj) : -1;
	}
	if (err) {
		fprintf(stderr, "loader: load failed: %d\n", err);
		return 1;
	}
	bpf_object__for_each_program(prog, obj)
		if (bpf_program__fd(prog) >= 0)
			printf("loaded %s\n", bpf_program__name(prog));
	fflush(stdout);
	sleep(1);
	bpf_object__close(obj);
	return 0;
}
"""


def bpf_object(directory: Path) -> Path:
    """The two-program object (two_programs.o)."""
    return build_source(TWO_PROGRAMS, directory, "two_programs")


def build_loader(directory: Path, name: str, static: bool = True, embed: Path | None = None) -> Path:
    """The C loader, linked statically (libbpf.a) or dynamically (libbpf.so), embedding `embed`."""
    directory.mkdir(parents=True, exist_ok=True)
    src = directory / f"{name}.c"
    src.write_text(LOADER)
    out = directory / name
    # clang, as for the BPF programs (.ci/run installs it; gcc is not needed)
    cmd = [find_clang(), "-O1", "-o", str(out), str(src), "-I", str(directory)]
    if embed is not None:
        data = embed.read_bytes()
        (directory / "embedded.h").write_text(
            "static const unsigned char embedded_object[] = {" + ",".join(str(b) for b in data) + "};\n"
        )
        cmd.append("-DEMBEDDED")
    cmd += ["-static", "-l:libbpf.a", "-lelf", "-lz"] if static else ["-lbpf"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return out
