"""The command line: output and exit statuses, bad input as one line on stderr (no traceback)."""


import pytest
from conftest import run_compat


def one_line_error(proc, status, words):
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compat: error:") and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.network
def test_kernels_available_and_list():
    proc = run_compat("kernels", "available", "6.1")
    assert proc.returncode == 0, proc.stderr
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("6.1.")]
    assert len(rows) >= 3 and "linux-image-6.1.0-" in rows[0]
    one_line_error(run_compat("kernels", "available", "2.4"), 2, "no amd64 kernel of series 2.4")
    proc = run_compat("kernels", "list")
    assert proc.returncode == 0 and "sid" in proc.stdout


@pytest.mark.network
def test_local_image_that_is_not_a_kernel(tmp_path):
    fake = tmp_path / "bzImage"
    fake.write_bytes(b"MZ" + b"\0" * 8000)
    one_line_error(run_compat("kernels", "fetch", "--kernel", str(fake)), 2, "is not a Linux kernel image")


@pytest.mark.vm
@pytest.mark.network
def test_smoke_boots_a_local_kernel_image(real_cache, default_specs):
    from compat.kernels.sources import KernelStore

    vmlinuz = KernelStore(real_cache).fetch(default_specs[3]).vmlinuz
    proc = run_compat("vm", "smoke", "--kernel", str(vmlinuz))
    assert proc.returncode == 0, proc.stderr
    assert "vmlinuz" in proc.stdout and "yes" in proc.stdout
