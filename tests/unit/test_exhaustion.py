"""Resource exhaustion is not a verdict (issue 14, deliverable 6).

An object with thousands of maps needs more file descriptors than a process gets by default
(libbpf takes one per map at open already), and a map can need more memory than a guest has.
Before, both were reported as rejections of the user's programs (an object error: "Too many open
files", "Cannot allocate memory") and kept in the result cache as such. Now the guest agent raises
its open-file limit to the kernel's maximum, and a check that still runs out of open files or
guest memory is an `error` cell that names the limit, is not cached, and makes `compat check`
exit 3.

The unit tests need no guest; the others boot one kernel (6.1) through the CLI: an object with
2000 maps (accepted), the test build of the image lowering the open-file limit for one object
(compat-fault-nofile.o), and a guest of 256 MiB with a 512 MiB map (and a 16 TiB one, which no
guest can hold: that one stays the object's rejection).
"""

from __future__ import annotations

import errno

import pytest
from compat_agent.checker import resources
from compat_agent.checker.check import Checker
from compat_agent.checker.resources import MEMORY, OPEN_FILES, Exhausted, exhausted, from_libbpf_lines, map_bytes

from compat.cache import Cache
from compat.guest import guestmsg
from compat.results.inventory import Inventory
from compat.run.resultcache import KIND, ResultCache


# -- the rules (no guest) -----------------------------------------------------------------------
def test_which_failures_are_the_guests():
    for code in (errno.EMFILE, errno.ENFILE):
        for stage in ("open", "btf", "map", "program", "object"):
            found = exhausted(code, stage, "m")
            assert found is not None and found.resource == OPEN_FILES and found.errno == code
    # memory: a map that fits some guest, a program the verifier ran out of memory on, libbpf's own
    assert exhausted(errno.ENOMEM, "map", "big", needs=map_bytes(1 << 17, 4096)).resource == MEMORY
    assert exhausted(-errno.ENOMEM, "program", "p", log="processed 12 insns").resource == MEMORY
    assert exhausted(errno.ENOMEM, "open").resource == MEMORY
    # the object's own: a map no guest (and practically no machine) can hold, a program the
    # verifier gave up on for its complexity, and every other errno
    assert exhausted(errno.ENOMEM, "map", "huge", needs=map_bytes(2**32 - 1, 4096)) is None
    log = "The sequence of 8193 jumps is too complex.\nverification time 12 usec\n"
    assert exhausted(errno.ENOMEM, "program", "p", log=log) is None
    for code in (None, 0, errno.EINVAL, errno.EACCES, errno.E2BIG, errno.EPERM):
        assert exhausted(code, "map", "m") is None
    assert map_bytes(1 << 17, 4096) == 512 << 20 and map_bytes(4096, 0) == 4096


def test_libbpf_going_on_without_btf_is_exhaustion():
    """libbpf treats an object's BTF as optional and loads on without it: with too few fds or too
    little memory the verdicts that followed would be another object's (libbpf <1.6 and >=1.6)."""
    assert from_libbpf_lines(["Error loading .BTF into kernel: -24. BTF is optional, ignoring."]).errno == 24
    assert from_libbpf_lines(["BTF loading error: -ENOMEM"]).resource == MEMORY
    assert from_libbpf_lines(["Detection of kernel BTF support failed: -23"]).resource == OPEN_FILES
    assert from_libbpf_lines(["Error loading .BTF into kernel: -22. BTF is optional, ignoring."]) is None
    assert from_libbpf_lines(["map 'm': failed to create: -12", "prog 'p': failed to load: -24"]) is None


def test_the_checker_blames_the_guest_not_the_object():
    """Checker._blame: a map that ran out of fds or memory ends the check (Exhausted), where it
    used to become the object's rejection; a map too big for any guest stays the object's."""
    c = Checker(b"", "x.o", attach=False)
    c.maps = {n: {"name": n, "type": "array", "ok": None, "errno": None} for n in ("m1", "big", "huge")}
    c.map_needs = {"m1": 8, "big": 512 << 20, "huge": map_bytes(2**32 - 1, 4096)}
    with pytest.raises(Exhausted) as e:
        c._blame(errno.EMFILE, ["map 'm1': failed to create: -24"], {}, {}, {}, False)
    assert (e.value.resource, e.value.stage, e.value.name) == (OPEN_FILES, "map", "m1")
    with pytest.raises(Exhausted) as e:
        c._blame(errno.ENOMEM, ["map 'big': failed to create: -12"], {}, {}, {}, False)
    assert (e.value.resource, e.value.needs) == (MEMORY, 512 << 20)
    assert c._blame(errno.ENOMEM, ["map 'huge': failed to create: -12"], {}, {}, {}, False)
    assert c.failed_maps == {"huge"} and c.maps["huge"]["errno"] == errno.ENOMEM
    with pytest.raises(Exhausted):  # the whole object (no program, no map named)
        c._blame(errno.EMFILE, ["libbpf: failed to load object 'x.o'"], {}, {}, {}, False)


def test_the_reply_is_a_code_the_host_words():
    e = exhausted(errno.EMFILE, "map", "m1999")
    reply = resources.reply(e, 7)
    assert reply["type"] == "error" and reply["code"] == "resource_exhausted" and reply["limit"] > 0
    assert guestmsg.problem(reply, "error") is None
    text = guestmsg.describe_error(reply)
    assert "ran out of open files" in text and "EMFILE" in text and "'m1999'" in text and "\n" not in text
    reply = {**resources.reply(exhausted(errno.ENOMEM, "map", "big", needs=512 << 20), 8), "limit": 250_000}
    text = guestmsg.describe_error(reply)
    assert "ran out of memory" in text and "244 MiB" in text and "512 MiB" in text and "--memory" in text
    # the guest's name is untrusted: bounded and printable in the host's words
    hostile = {**reply, "name": "x\n::warning::owned\x1b]8;;" + "y" * 500}
    text = guestmsg.describe_error(hostile)
    assert "\n" not in text and "\x1b" not in text and "y" * 65 not in text
    # a reply whose parameters are not what the contract says is not worded from them
    assert "unexpected reply" in guestmsg.describe_error({**reply, "resource": "disk"})
    assert "unexpected reply" in guestmsg.describe_error({**reply, "errno": "ENOMEM"})


def test_the_result_cache_keeps_no_exhaustion(tmp_path):
    rc = ResultCache(Cache(tmp_path), "image", {"attach": True})
    program = {"program": "p", "verdict": "rejected", "stage": "load", "errno": errno.EMFILE}
    for reply in (
        {"type": "check_result", "open": {"ok": True}, "programs": [program]},
        {"type": "check_result", "open": {"ok": False, "errno": errno.ENFILE}, "programs": []},
        {"type": "check_result", "open": {"ok": True}, "maps": [{"name": "m", "errno": 24}], "programs": []},
    ):
        rc.put("sha", "x.o", "kernel", reply, Inventory(), {"release": "6.1"}, "tcg")
        assert rc.get("sha", "x.o", "kernel") is None
    assert not list((tmp_path / KIND).glob("*.json"))
    fine = {"type": "check_result", "open": {"ok": True}, "programs": [{**program, "errno": errno.EACCES}]}
    rc.put("sha", "x.o", "kernel", fine, Inventory(), {"release": "6.1"}, "tcg")
    assert rc.get("sha", "x.o", "kernel") is not None
