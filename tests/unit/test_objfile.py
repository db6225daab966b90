"""Host-side validation of untrusted object files: one line per problem, never a traceback."""

import subprocess
from pathlib import Path

import pytest
from bpf_build import embedding_binary

from compat.objects.objfile import BadObject, read_objects
from compat.run.checker import display_names, load_objects


def test_real_objects_list_their_programs(built_programs):
    [obj] = read_objects(built_programs["mixed_verdicts"])
    assert len(obj.programs) == 2 and len(obj.sha256) == 64 and obj.size > 0
    [counter] = read_objects(built_programs["counter"])
    assert [p.name for p in counter.programs] == ["count_getpid"]


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d, objs: d / "missing.o", "no such file"),
        (lambda d, objs: d, "is a directory"),
        (lambda d, objs: _write(d / "empty.o", b""), "empty file"),
        (lambda d, objs: _write(d / "text.o", b"hello world\n"), "not an ELF file"),
        (lambda d, objs: _write(d / "ls", Path("/bin/ls").read_bytes()), "not a BPF object"),
        (lambda d, objs: _write(d / "trunc.o", objs["counter"].read_bytes()[:700]), "truncated"),
        (lambda d, objs: _write(d / "hdr.o", objs["counter"].read_bytes()[:40]), "malformed or truncated ELF"),
    ],
)
def test_bad_objects(tmp_path, built_programs, make, words):
    path = make(tmp_path, built_programs)
    with pytest.raises(BadObject) as e:
        read_objects(path)
    msg = str(e.value)
    assert words in msg and str(path) in msg and "\n" not in msg


def _btf_only_object(tmp_path) -> bytes:
    src = tmp_path / "nothing.c"
    src.write_text("int data = 1;\n")
    subprocess.run(["clang", "-target", "bpf", "-O2", "-c", str(src), "-o", str(tmp_path / "nothing.o")], check=True)
    data = (tmp_path / "nothing.o").read_bytes()
    (tmp_path / "nothing.o").unlink()
    src.unlink()
    return data


def test_object_without_programs(tmp_path):
    (tmp_path / "nothing.o").write_bytes(_btf_only_object(tmp_path))
    with pytest.raises(BadObject, match="no BPF programs"):
        read_objects(tmp_path / "nothing.o")


def test_size_limit(tmp_path, built_programs):
    with pytest.raises(BadObject, match="limit"):
        read_objects(built_programs["counter"], max_bytes=100)


def _write(path, data):
    path.write_bytes(data)
    return path


def test_objects_of_the_same_file_name_keep_apart(tmp_path, built_programs):
    # Results are keyed by object name: a/k.o and b/k.o must not collapse into one row.
    data = built_programs["counter"].read_bytes()
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "k.o").write_bytes(data)
    paths = [str(tmp_path / "a" / "k.o"), str(tmp_path / "b" / "k.o"), str(built_programs["counter"])]
    objects, infos, errors = load_objects([*paths, paths[0]])  # the same file twice is checked once
    assert not errors
    assert [o.name for o in objects] == ["a/k.o", "b/k.o", "counter.o"]
    assert [i.object for i in infos] == ["a/k.o", "b/k.o", "counter.o"]
    assert display_names(["/x/k.o", "/y/x/k.o"]) == {"/x/k.o": "/x/k.o", "/y/x/k.o": "y/x/k.o"}


def test_a_binary_stands_for_the_objects_it_embeds(tmp_path, built_programs):
    counter, mixed = built_programs["counter"], built_programs["mixed_verdicts"]
    tool = embedding_binary(tmp_path / "tool", [counter, mixed, counter])  # one linked in twice
    found = read_objects(tool)
    assert [o.name for o in found] == ["tool:counter.o", "tool:mixed_verdicts.o"]
    assert found[0].data == counter.read_bytes() and found[1].data == mixed.read_bytes()
    assert all(o.path == tool for o in found) and [p.name for p in found[0].programs] == ["count_getpid"]
    objects, _, errors = load_objects([str(tool), str(counter)])
    assert not errors and [o.name for o in objects] == ["tool:counter.o", "tool:mixed_verdicts.o", "counter.o"]


def test_a_binary_without_embedded_objects_is_one_line(tmp_path):
    tool = embedding_binary(tmp_path / "tool", [])
    with pytest.raises(
        BadObject, match=r": an ELF file for EM_X86_64, not a BPF object, and no BPF object is embedded"
    ):
        read_objects(tool)


def test_a_directory_stands_for_the_bpf_object_files_under_it(tmp_path, built_programs):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "counter.o").write_bytes(built_programs["counter"].read_bytes())
    (tmp_path / "mixed.bpf.o").write_bytes(built_programs["mixed_verdicts"].read_bytes())
    (tmp_path / "README").write_text("not an object")
    embedding_binary(tmp_path / "tool", [built_programs["counter"]])  # binaries are named, not searched
    (tmp_path / "link.o").symlink_to(tmp_path / "mixed.bpf.o")  # not followed: no object twice
    (tmp_path / "btf_only.o").write_bytes(_btf_only_object(tmp_path))  # left out, not an error
    # (it is an error when named: test_object_without_programs)
    objects, _, errors = load_objects([str(tmp_path)])
    assert not errors and [o.name for o in objects] == ["mixed.bpf.o", "counter.o"]
    (tmp_path / "empty").mkdir()
    _, _, errors = load_objects([str(tmp_path / "empty"), str(built_programs["counter"])])
    assert errors == [f"{tmp_path / 'empty'}: no BPF object file under this directory"]


def test_a_big_endian_object_is_one_line(tmp_path):
    from bpf_build import PROGRAMS_DIR, compile_command, find_clang

    obj = tmp_path / "counter_eb.o"
    subprocess.run([*compile_command(find_clang(), PROGRAMS_DIR / "counter.bpf.c", obj), "-target", "bpfeb"],
                   check=True, timeout=300)  # fmt: skip
    with pytest.raises(BadObject, match=r"a big-endian \(clang -target bpfeb\) BPF object; the kernels are little"):
        read_objects(obj)


def _many_programs(tmp_path, count: int) -> Path:
    src = tmp_path / f"p{count}.c"
    src.write_text('#define SEC(x) __attribute__((section(x), used))\n'
                   + "".join(f'SEC("xdp") int p{i}(void *ctx) {{ return 2; }}\n' for i in range(count))
                   + 'char LICENSE[] SEC("license") = "GPL";\n')  # fmt: skip
    return src


def test_the_program_limit_is_inclusive(tmp_path):
    """README: "programs per object | 4096"; an object of exactly 4096 was refused."""
    from compat.objects.objfile import MAX_PROGRAMS

    sources = [_many_programs(tmp_path, n) for n in (MAX_PROGRAMS, MAX_PROGRAMS + 1)]
    procs = [subprocess.Popen(["clang", "-O2", "-target", "bpf", "-c", str(s), "-o", str(s.with_suffix(".o"))])
             for s in sources]  # fmt: skip
    assert all(p.wait(timeout=300) == 0 for p in procs)
    [obj] = read_objects(sources[0].with_suffix(".o"))
    assert len(obj.programs) == MAX_PROGRAMS
    with pytest.raises(BadObject, match=f"more than {MAX_PROGRAMS} programs"):
        read_objects(sources[1].with_suffix(".o"))


@pytest.mark.parametrize(
    "section, known",
    [("tc", True), ("xdp", True), ("lwt_xmit", True), ("cgroup/connect4", True), ("kprobe", True),
     ("kprobe/do_unlinkat", True), ("fentry/vfs_read", True), ("sk_reuseport/migrate", True), ("socket", True),
     ("tcx/ingress", True), ("struct_ops.s/x", True), ("nosuchtype", False), ("tc_typo", False),
     ("kprobex", False), ("cgroup/", False), ("xdp/foo", False), ("", False), ("kprobe.multi", True)],
)  # fmt: skip
def test_libbpf_section_names(section, known):
    """--program-type's SECTION is checked against libbpf's own table, matched as libbpf does."""
    from compat.objects.objfile import libbpf_knows

    assert libbpf_knows(section) is known
