import io
import stat

from newc import read_newc

from compat.guest.cpio import CpioWriter


def test_cpio_round_trip_with_parents_first(tmp_path):
    (tmp_path / "a/b").mkdir(parents=True)
    (tmp_path / "a/b/f").write_bytes(b"hello")
    (tmp_path / "a/l").symlink_to("b/f")
    buf = io.BytesIO()
    w = CpioWriter(buf)
    w.tree(tmp_path, prefix="root")
    w.file("x/y/z", b"12345", mode=0o755)
    w.close()
    data = buf.getvalue()
    assert len(data) % 4 == 0
    entries = read_newc(data)
    assert entries["root/a/b/f"][1] == b"hello"
    assert stat.S_ISLNK(entries["root/a/l"][0]) and entries["root/a/l"][1] == b"b/f"
    assert stat.S_ISDIR(entries["x/y"][0]) and entries["x/y/z"] == (stat.S_IFREG | 0o755, b"12345")
    names = list(entries)
    assert names.index("x") < names.index("x/y") < names.index("x/y/z")


def test_cpio_is_deterministic(tmp_path):
    (tmp_path / "f").write_bytes(b"1")

    def make() -> bytes:
        buf = io.BytesIO()
        w = CpioWriter(buf)
        w.tree(tmp_path)
        w.close()
        return buf.getvalue()

    assert make() == make()
