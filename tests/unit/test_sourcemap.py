"""Failing instruction → file:line, on objects built from programs/ with clang (no VM)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from bpf_build import PROGRAMS_DIR, build_programs, compile_command, find_clang

from compat.objects import sourcemap
from compat.objects.sourcemap import (
    MAX_SOURCE_LINE_BYTES,
    LineTable,
    SourceLocation,
    locate,
    log_location,
    read_line,
    source_file,
    source_roots,
)

BASELINE_DIR = PROGRAMS_DIR / "baseline"


def line_of(path: Path, needle: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


@pytest.fixture(scope="module")
def new_counter(tmp_path_factory) -> Path:
    return build_programs(tmp_path_factory.mktemp("new"), BASELINE_DIR / "new")["counter"]


def test_missing_helper_points_at_its_call(built_programs, new_counter):
    src = PROGRAMS_DIR / "bpf_loop.bpf.c"
    obj = built_programs["bpf_loop"]
    loc = locate(
        obj.read_bytes(),
        obj,
        "sum_with_loop",
        "tracepoint/syscalls/sys_enter_getpid",
        "number of funcs in func_info doesn't match number of subprogs\n",
        helpers=(181,),  # what the classification blamed
    )
    assert loc is not None and loc.how == "call"
    assert Path(loc.file) == src and loc.line == line_of(src, "bpf_loop(16")
    assert loc.text == "bpf_loop(16, add_index, &sum, 0);" and loc.path == str(src)
    src = BASELINE_DIR / "new" / "counter.bpf.c"
    loc = locate(
        new_counter.read_bytes(),
        new_counter,
        "count_getpid",
        None,
        "",
        helpers=(181,),
    )
    assert (Path(loc.file), loc.line) == (src, line_of(src, "bpf_loop(1, add_one"))


def test_missing_kfunc_points_at_its_call(built_programs):
    src = PROGRAMS_DIR / "iter_num_kfunc.bpf.c"
    obj = built_programs["iter_num_kfunc"]
    loc = locate(
        obj.read_bytes(),
        obj,
        "sum_with_iter",
        None,
        "",
        kfuncs=("bpf_iter_num_new",),
    )
    assert loc.how == "call" and loc.line == line_of(src, "bpf_iter_num_new(&it")


def test_the_call_is_found_from_what_the_classification_blamed_not_its_words(built_programs, tmp_path):
    # The checker passes the helper ids / kfunc names classify() blamed; no message is read for them.
    from compat.cache import Cache
    from compat.guest.fleet import Outcome
    from compat.kernels.matrix import KernelSpec
    from compat.objects.objfile import read_objects
    from compat.results.inventory import Inventory
    from compat.run.checker import Checker, CheckOptions, KernelWork, locate_sources

    src = PROGRAMS_DIR / "bpf_loop.bpf.c"
    [obj] = read_objects(built_programs["bpf_loop"])
    gp = {"program": "sum_with_loop", "prog_type": "tracepoint", "verdict": "rejected", "stage": "load", "errno": 22,
          "message": "number of funcs in func_info doesn't match number of subprogs", "log": "", "libbpf_log": "",
          "helpers": [14, 181], "kfuncs": [], "facts": []}  # fmt: skip
    inv = Inventory(prog_types={"tracepoint": True}, helpers={"tracepoint": [1, 14]})
    kw = KernelWork(inventory=inv, replies={obj.sha256: {"programs": [gp]}})
    checker = Checker(Cache(tmp_path), [], CheckOptions())
    judged = checker._judged(obj, Outcome(spec=KernelSpec(id="5.10", label="5.10")), kw, {181: "bpf_loop"})
    [(result, c)] = judged
    assert (c.reason, c.helpers, c.kfuncs) == ("missing_helper", (181,), ())
    locate_sources(obj, judged)
    assert result.source["how"] == "call" and result.source["line"] == line_of(src, "bpf_loop(16")
    # The same rejection without the blame: the message's words locate nothing (the program's first line).
    loc = locate(obj.data, obj.path, "sum_with_loop", None, "")
    assert loc.how == "program" and not hasattr(sourcemap, "missing_helpers")
    # A blamed helper the program does not call: the next evidence decides.
    assert locate(obj.data, obj.path, "sum_with_loop", None, "", helpers=(999,)).how == "program"


def test_log_instruction_through_btf_line_info(built_programs):
    # 5.10 and 6.1 print the source text without "@ file:line": the instruction number decides.
    src = PROGRAMS_DIR / "xdp_no_bounds_check.bpf.c"
    obj = built_programs["xdp_no_bounds_check"]
    log = (
        "0: R1=ctx(id=0,off=0,imm=0) R10=fp0\n; void *data = (void *)(long)ctx->data;\n"
        "0: (61) r1 = *(u32 *)(r1 +0)\n; __u32 first_word = *(volatile __u32 *)data;\n"
        "1: (61) r1 = *(u32 *)(r1 +0)\ninvalid access to packet, off=0 size=4, R1(id=0,off=0,r=0)\n"
        "R1 offset is outside of the packet\nprocessed 2 insns (limit 1000000)\n"
    )
    assert log_location(log) == (1, ("__u32 first_word = *(volatile __u32 *)data;", None, None))
    loc = locate(obj.read_bytes(), obj, "read_unchecked", "xdp", log)
    assert loc.how == "btf" and loc.insn == 1 and loc.line == line_of(src, "first_word = *(volatile")


def test_log_annotation_with_file_and_line(built_programs):
    src = PROGRAMS_DIR / "xdp_no_bounds_check.bpf.c"
    obj = built_programs["xdp_no_bounds_check"]
    line = line_of(src, "first_word = *(volatile")
    log = (
        f"; __u32 first_word = *(volatile __u32 *)data; @ xdp_no_bounds_check.bpf.c:{line}\n"
        "1: (61) r1 = *(u32 *)(r1 +0)\nR1 offset is outside of the packet\nverification time 5 usec\n"
    )
    loc = locate(obj.read_bytes(), obj, "read_unchecked", "xdp", log)
    assert (loc.how, Path(loc.file), loc.line, loc.insn) == ("log", src, line, 1)
    # without the object's line info, the log alone still gives file and line
    loc = locate(b"not an elf", None, "read_unchecked", "xdp", log)
    assert (loc.how, loc.file, loc.line, loc.text) == (
        "log",
        "xdp_no_bounds_check.bpf.c",
        line,
        "__u32 first_word = *(volatile __u32 *)data;",
    )


def test_instructions_of_appended_subprograms(built_programs):
    src = PROGRAMS_DIR / "bpf_loop.bpf.c"
    table = LineTable(built_programs["bpf_loop"].read_bytes())
    layout = table.layout("sum_with_loop")
    main = table.function("sum_with_loop")
    n_main = (main.end - main.start) // 8
    assert layout[n_main][0] == ".text"  # libbpf appends the callback after the program
    row = table.insn_line("sum_with_loop", None, n_main)
    assert row.line == line_of(src, "*sum += index;")


def test_core_relocation_instruction(built_programs):
    obj = built_programs["core_task_state_naive"]
    log = (
        "; if (value)\n10: (15) if r7 == 0x0 goto pc+9\n11: <invalid CO-RE relocation>\n"
        "failed to resolve CO-RE relocation <byte_off> [18] struct task_struct.__state (0:0 @ offset 0)\n"
        "processed 11 insns (limit 1000000)\n"
    )
    loc = locate(obj.read_bytes(), obj, "record_state_naive", None, log)
    assert loc.insn == 11 and loc.how == "btf"


def test_no_failing_instruction_gives_the_program_line(built_programs):
    src = PROGRAMS_DIR / "complexity_limit.bpf.c"
    obj = built_programs["complexity_limit"]
    loc = locate(obj.read_bytes(), obj, "hash_forever", None, "processed 1000001 insns\n")
    assert loc.how == "program" and Path(loc.file) == src and loc.insn is None


def test_untrusted_input_gives_no_location():
    assert locate(b"\x7fELF" + b"\xff" * 100, None, "p", None, "") is None
    assert SourceLocation.from_json({"file": "a.c", "line": "x"}) is None
    assert str(SourceLocation.from_json({"file": "a.c", "line": 3, "extra": 1})) == "a.c:3"


def _compile(tmp_path: Path, source: Path, cwd: Path, name: str) -> Path:
    out = tmp_path / f"{name}.o"
    cmd = compile_command(find_clang(), source, out)
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=120)
    return out


def test_source_found_next_to_the_object_else_text_from_btf(tmp_path):
    work, moved = tmp_path / "work", tmp_path / "moved"
    work.mkdir()
    moved.mkdir()
    shutil.copy(BASELINE_DIR / "new" / "counter.bpf.c", work / "counter.bpf.c")
    obj = _compile(work, work / "counter.bpf.c", work, "counter")
    for name in ("counter.bpf.c", "counter.o"):
        shutil.move(work / name, moved / name)
    obj = moved / "counter.o"
    roots = source_roots([moved])
    loc = locate(obj.read_bytes(), obj, "count_getpid", None, "", roots, helpers=(181,))
    assert loc.file == str(work / "counter.bpf.c")  # the path the object records
    assert loc.path == str(moved / "counter.bpf.c")  # found next to the object, under a source root
    assert loc.text == "bpf_loop(1, add_one, &step, 0);"
    # outside every source root (the default root is the current directory): not looked at
    loc = locate(obj.read_bytes(), obj, "count_getpid", None, "", helpers=(181,))
    assert loc.path is None and loc.text == "bpf_loop(1, add_one, &step, 0);"  # the BTF's copy of the line
    (moved / "counter.bpf.c").unlink()
    loc = locate(obj.read_bytes(), obj, "count_getpid", None, "", roots, helpers=(181,))
    assert loc.path is None and loc.text == "bpf_loop(1, add_one, &step, 0);"  # the BTF's copy of the line


def test_btf_text_is_preferred_to_the_file(tmp_path):
    # The object's own copy of the line wins over whatever the file on disk says now.
    shutil.copy(BASELINE_DIR / "new" / "counter.bpf.c", tmp_path / "counter.bpf.c")
    obj = _compile(tmp_path, tmp_path / "counter.bpf.c", tmp_path, "counter")
    (tmp_path / "counter.bpf.c").write_text("edited since the build\n" * 100)
    roots = source_roots([tmp_path])
    loc = locate(obj.read_bytes(), obj, "count_getpid", None, "", roots, helpers=(181,))
    assert loc.text == "bpf_loop(1, add_one, &step, 0);" and loc.path == str(tmp_path / "counter.bpf.c")


def test_gate_admits_only_source_files_under_a_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "prog.bpf.c").write_text("int x;\n")
    (root / "sub" / "inc.h").write_text("int y;\n")
    (root / "notes.txt").write_text("secret\n")
    (root / "noext").write_text("secret\n")
    (outside / "secret.c").write_text("secret\n")
    (root / "link_out.c").symlink_to(outside / "secret.c")
    (root / "link_in.c").symlink_to(root / "sub" / "inc.h")
    (root / "link_proc.c").symlink_to("/proc/self/environ")
    (root / "dir.c").mkdir()
    os.mkfifo(root / "fifo.c")
    roots = source_roots([root])
    assert source_file(root / "prog.bpf.c", roots) == root / "prog.bpf.c"
    assert source_file(root / "sub" / ".." / "sub" / "inc.h", roots) == root / "sub" / "inc.h"
    assert source_file(root / "link_in.c", roots) == root / "sub" / "inc.h"  # a link that stays inside
    refused = [
        root / "notes.txt",  # not a source suffix
        root / "noext",
        root / "link_out.c",  # a link that leaves the root
        root / "sub" / ".." / ".." / "outside" / "secret.c",  # ".." that leaves the root
        outside / "secret.c",
        root / "link_proc.c",
        root / "dir.c",  # not a regular file
        root / "fifo.c",  # a FIFO: refused, and compat does not hang on it
        root / "missing.c",
        "/proc/self/environ",
        "/proc/self/cwd/prog.bpf.c",
        "/dev/null",
        "/etc/shadow",
        "bad\0name.c",
    ]
    for path in refused:
        assert source_file(path, roots) is None, path

def test_gate_keeps_proc_sys_dev_closed_under_any_root(monkeypatch):
    # Each layer holds on its own: with every suffix admitted and "/" as a root, /proc, /sys and
    # /dev still stay closed.
    monkeypatch.setattr(sourcemap, "SOURCE_SUFFIXES", ("",))
    everything = source_roots(["/", "/proc"])
    for path in ("/proc/self/environ", "/proc/self/cmdline", "/dev/null", "/sys/kernel/notes"):
        assert source_file(path, everything) is None, path
    assert source_file("/etc/hostname", everything) == Path("/etc/hostname").resolve()


def test_read_line_is_bounded(tmp_path):
    src = tmp_path / "long.c"
    src.write_bytes(b"first\n" + b"x" * (MAX_SOURCE_LINE_BYTES * 3) + b"\nthird\nlast")
    assert read_line(src, 1) == "first"
    assert read_line(src, 2) == "x" * 300  # MAX_LINE_TEXT of the long line
    assert read_line(src, 3) == "third"  # the long line counts as one
    assert read_line(src, 4) == "last"  # a last line without newline
    assert read_line(src, 5) is None and read_line(src, 0) is None
    os.mkfifo(tmp_path / "fifo.c")
    assert read_line(tmp_path / "fifo.c", 1) is None  # no hang: O_NONBLOCK, then fstat refuses it


@pytest.mark.skipif(not shutil.which("llvm-objcopy"), reason="needs llvm-objcopy")
def test_dwarf_line_table_without_btf_ext(built_programs, tmp_path):
    src = PROGRAMS_DIR / "bpf_loop.bpf.c"
    stripped = tmp_path / "nobtfext.o"
    subprocess.run(
        [
            "llvm-objcopy",
            "--remove-section",
            ".BTF.ext",
            "--remove-section",
            ".rel.BTF.ext",
            str(built_programs["bpf_loop"]),
            str(stripped),
        ],
        check=True,
    )
    table = LineTable(stripped.read_bytes())
    assert table.source == "dwarf"
    loc = locate(stripped.read_bytes(), stripped, "sum_with_loop", None, "", helpers=(181,))
    assert Path(loc.file) == src and loc.line == line_of(src, "bpf_loop(16")
    # DWARF carries no text: it comes from the source file, under the current directory
    assert loc.text == "bpf_loop(16, add_index, &sum, 0);" and loc.path == str(src)
    assert table.insn_line("sum_with_loop", None, 20).line == line_of(src, "*sum += index;")
