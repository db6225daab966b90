"""Which module functions an object names (compat/kernels/modsyms.py), host only."""

from types import SimpleNamespace

from compat.kernels.modsyms import INDEX, ModuleIndex, scan, wanted_functions


def test_wanted_functions_of_sections_and_externs():
    sections = [
        "fentry/ext4_file_read_iter",
        "kprobe/xfs_file_read_iter+0x10",
        "kprobe.multi/tcp_*",  # a pattern names no one function
        "tp_btf/xfs_file_read",
        "tp/xfs/xfs_file_buffered_read",
        "xdp",
        "lsm/file_open",
    ]
    externs = [
        {"name": "bpf_xdp_flow_lookup", "kind": "kfunc", "weak": False},
        {"name": "LINUX_KERNEL_VERSION", "kind": "kconfig", "weak": False},
    ]
    assert wanted_functions(sections, externs) == {
        "ext4_file_read_iter",
        "xfs_file_read_iter",
        "__bpf_trace_xfs_file_read",
        "__bpf_trace_xfs_file_buffered_read",
        "bpf_xdp_flow_lookup",
    }


def test_scan_reads_function_symbols(built_programs):
    funcs, aliases = scan(built_programs["counter"].read_bytes())
    assert "count_getpid" in funcs and not aliases
    assert scan(b"not an ELF file") == (set(), set())


def test_a_damaged_index_means_no_modules_not_a_crash(tmp_path):
    # The cache checks sizes, not every byte of the index: damage in place must not end the run.
    (tmp_path / INDEX).write_bytes(b"not an sqlite database " * 100)
    cache = SimpleNamespace(ensure=lambda kind, key, build: SimpleNamespace(path=tmp_path))
    kernel = SimpleNamespace(modules=tmp_path, key="k", release="6.12.0-1-amd64")
    assert ModuleIndex(cache, kernel).modules_for({"ext4_file_read_iter"}) == ({}, [])
