"""Which module functions an object names (compat/modsyms.py), host only."""

from compat.modsyms import scan, wanted_functions


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
