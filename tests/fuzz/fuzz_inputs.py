#!/usr/bin/env python3
"""Fuzz what compat parses on the host from untrusted sources: users' object files, the guest's
frames and the guest's replies; and load the mutated objects the host accepts in real guests.
Deterministic (seeded), no extra dependencies.

    python tests/fuzz/fuzz_inputs.py                    # 10 000 objects, 5 000 frames, 5 000 replies
    python tests/fuzz/fuzz_inputs.py --objects 50000 --seed 7 --findings /tmp/findings
    nice -n 10 python tests/fuzz/fuzz_inputs.py --long  # 100 000 host inputs, then 1 000 mutants
                                                        # in real guests (--guest N --kernel 6.1)

Targets and what must hold:
- objects: the seed corpus (tests/fuzz/seeds/: the programs/ objects and hand-made edge cases,
  rebuilt by make_seeds.py), mutated two ways: structure-aware (elfmut.py: fields of section
  headers, symbols, relocations, instructions, legacy map definitions, BTF types and strings,
  .BTF.ext func_info/line_info/CO-RE records, with boundary values; records duplicated or deleted
  with their counts fixed; sections spliced from another seed, truncated) and blind (bit flips,
  interesting integers, truncation, splices, ...). Each is written to a file and read with
  compat.objects.objfile.read_objects exactly as `compat check` reads its inputs, sometimes embedded in a
  host binary (compat.objects.embedded's carving). Every input is accepted or refused with a BadObject
  whose message is one line naming the file; each accepted one also goes through
  compat.objects.sourcemap.locate (which parses line info), compat.run.checker.check_request (the ELF analysis
  the guest gets: externs, calls, contexts, globals), compat.kernels.modsyms.wanted_functions, and the
  guest agent's legacy-map parser (compat_agent.checker.legacy.parse, pure Python: refused with
  Unsupported or parsed).
- guest (--guest N): the first N distinct mutants the host accepts are checked by `compat check
  --kernel K --no-cache` in real guests, 250 objects per run, with every report format written:
  every cell must be a verdict (accepted or rejected) or the documented "a limit of the guest"
  (a mutated map bigger than the guest's memory); an `error` cell (the agent crashed, the guest
  died or hung), a traceback or "internal error", a report line beginning with `::` that compat
  did not write, a raw control character in the table or markdown, or a JUnit/SARIF file that
  does not parse is a finding.
- frames: encoded guest messages, mutated, decoded with compat_agent.wire.framing.read_frame with the
  host's bounds: a message or a ProtocolError, nothing else; decoded messages then go through the
  reply validation (compat.guest.guestmsg).
- replies: well-formed check_result / probe_result replies with fields replaced, dropped or nested;
  the validation accepts or refuses each, and whatever it accepts turns into results that serialize
  as strict JSON.
Any other exception, a message over one line, or an input that takes over --hang seconds is a
finding: printed (and saved with --findings DIR); the exit status is then 1.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import random
import re
import signal
import struct
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: bpf_build
sys.path.insert(0, str(HERE.parent.parent))  # the repository: compat
sys.path.insert(0, str(HERE.parent.parent / "guest-agent"))

import elfmut  # noqa: E402
from compat_agent.checker import legacy  # noqa: E402
from compat_agent.wire.framing import MAGIC, ChannelClosed, ProtocolError, encode, read_frame  # noqa: E402

from compat.guest import guestmsg  # noqa: E402
from compat.guest.fleet import Outcome  # noqa: E402
from compat.guest.vm import REPLY_MAX_PAYLOAD  # noqa: E402
from compat.kernels.matrix import KernelSpec  # noqa: E402
from compat.kernels.modsyms import wanted_functions  # noqa: E402
from compat.objects.globalvars import Assignment  # noqa: E402
from compat.objects.objfile import BadObject, BpfObject, read_objects  # noqa: E402
from compat.objects.sourcemap import locate  # noqa: E402
from compat.results.inventory import Inventory  # noqa: E402
from compat.run.checker import Checker, CheckOptions, KernelWork, check_request  # noqa: E402

SEEDS = HERE / "seeds"

MAX_MESSAGE = 400  # a one-line error stays readable
INTERESTING_8 = [0, 1, 0x7F, 0x80, 0xFF]
INTERESTING = [0, 1, 2, 7, 8, 0x40, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]  # fmt: skip


class Hang(Exception):
    pass


@dataclass
class Stats:
    name: str
    inputs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    findings: list[tuple[str, bytes, str]] = field(default_factory=list)  # (kind, input, traceback)
    slowest: float = 0.0
    slow: int = 0  # inputs over a tenth of the hang bound
    seconds: float = 0.0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def line(self) -> str:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
        return (f"{self.name}: {self.inputs} inputs: {parts}; {len(self.findings)} finding(s); "
                f"slowest {self.slowest:.2f} s, {self.slow} over a tenth of the bound; "
                f"{self.seconds:.1f} s")  # fmt: skip


def run_one(stats: Stats, data: bytes, fn, hang: float) -> None:
    """fn(data) -> outcome name, or raises: anything raised is a finding."""
    stats.inputs += 1
    signal.setitimer(signal.ITIMER_REAL, hang)
    t0 = time.monotonic()
    try:
        stats.count(fn(data))
    except Hang:
        stats.findings.append(("hang", data, f"took over {hang} s"))
    except Exception:
        stats.findings.append(("uncaught", data, traceback.format_exc()))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        took = time.monotonic() - t0
        stats.slowest = max(stats.slowest, took)
        stats.slow += took > hang / 10


# -- byte mutations ---------------------------------------------------------------------------
@dataclass
class Layout:
    """Where the fields of a (valid) seed ELF are, for structure-aware mutations."""

    fields: list[tuple[int, int]]  # (offset, size) of header fields worth corrupting
    sections: list[tuple[str, int, int]]  # (name, offset, size)


def elf_layout(data: bytes) -> Layout:
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    fields = [(0x10, 2), (0x12, 2), (0x28, 8), (0x3A, 2), (0x3C, 2), (0x3E, 2), (0x04, 1), (0x05, 1)]
    shoff, shentsize = elf["e_shoff"], elf["e_shentsize"]
    sections = []
    for i in range(elf.num_sections()):
        base = shoff + i * shentsize
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign, sh_entsize
        fields += [(base, 4), (base + 4, 4), (base + 8, 8), (base + 24, 8), (base + 32, 8), (base + 40, 4),
                   (base + 44, 4), (base + 56, 8)]  # fmt: skip
        sec = elf.get_section(i)
        sections.append((sec.name, sec["sh_offset"], sec["sh_size"]))
        if sec["sh_type"] == "SHT_SYMTAB":
            entsize = sec["sh_entsize"] or 24
            for j in range(sec["sh_size"] // entsize):
                sym = sec["sh_offset"] + j * entsize
                fields += [(sym, 4), (sym + 4, 1), (sym + 6, 2), (sym + 8, 8), (sym + 16, 8)]
    return Layout(fields, sections)


def put_int(buf: bytearray, offset: int, size: int, value: int) -> None:
    if offset >= 0 and offset + size <= len(buf):
        buf[offset : offset + size] = (value % (1 << (8 * size))).to_bytes(size, "little")


def mutate_bytes(rng: random.Random, data: bytes, layout: Layout | None, others: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 4])):
        op = rng.randrange(11)
        n = len(buf)
        if op == 0 and n:  # flip bits
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(n)
                buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # interesting bytes
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(n)] = rng.choice([*INTERESTING_8, rng.randrange(256)])
        elif op == 2 and n > 8:  # an interesting integer anywhere (aligned)
            size = rng.choice([2, 4, 8])
            put_int(
                buf, rng.randrange(0, n - size, size) if n > size else 0, size, rng.choice([*INTERESTING, n, n + 1])
            )
        elif op in (3, 4, 5) and layout and layout.fields:  # a header, section header or symbol field
            offset, size = rng.choice(layout.fields)
            value = rng.choice([*INTERESTING, n, n - 1, n + 1, rng.randrange(1 << (8 * size))])
            put_int(buf, offset, size, value)
        elif op == 6 and layout and layout.sections:  # inside one section (.BTF, .BTF.ext, .symtab, code ...)
            _name, off, size = rng.choice(layout.sections)
            if size and off + size <= n:
                for _ in range(rng.randint(1, 6)):
                    i = off + rng.randrange(size)
                    if rng.random() < 0.5:
                        buf[i] = rng.randrange(256)
                    else:
                        put_int(buf, i - i % 4, 4, rng.choice(INTERESTING))
        elif op == 7:  # truncate
            del buf[rng.randrange(n + 1) if rng.random() < 0.7 else rng.randrange(min(n, 80) + 1) :]
        elif op == 8:  # extend
            buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif op == 9 and n > 2:  # delete, duplicate or overwrite a chunk
            a = rng.randrange(n)
            b = min(n, a + rng.randint(1, 256))
            kind = rng.randrange(3)
            if kind == 0:
                del buf[a:b]
            elif kind == 1:
                buf[a:a] = buf[a:b]
            else:
                src = rng.randrange(n)
                chunk = buf[src : src + (b - a)]
                buf[a : a + len(chunk)] = chunk
        elif op == 10 and others:  # splice with another seed
            other = rng.choice(others)
            cut = rng.randrange(min(len(buf), len(other)) + 1)
            buf = buf[:cut] + other[cut:]
    return bytes(buf)


# -- target: objects ----------------------------------------------------------------------------------
LOGS = [
    "",
    "0: (85) call bpf_loop#181\ninvalid func unknown#181\nprocessed 1 insns",
    "; x = *(u32 *)data; @ prog.bpf.c:12\n5: (61) r1 = *(u32 *)(r1 +0)\ninvalid access\n",
    "; x @ /etc/passwd:1\n3: (b7) r0 = 0\nR0 !read_ok\n",
    "1000000: (95) exit\nBPF program is too large. Processed 1000001 insn\n",
]


# What a classification blames (results.classify.Classified: helper ids, kfunc names), or nothing.
REASONS: list[tuple[tuple[int, ...], tuple[str, ...]]] = [((181,), ()), ((), ("bpf_iter_num_new",)), ((), ())]
GLOBALS = (Assignment("counter", 1), Assignment("step", -1))  # set wherever a mutated object has them


def check_refusal(text: str, label: str) -> None:
    """A refused object's message is one line naming the file, of bounded length; as compat
    prints it (compat.reports.escape.terminal: the one escaping module, which also shows bidi
    controls such as U+202E visibly) nothing in it is unprintable. The message itself may hold
    such characters of a damaged name: the writers escape, not the parsers."""
    from compat.reports.escape import terminal

    shown = terminal(text)
    if "\n" in text or "\r" in text or not shown.isprintable() or not text.startswith(label):
        raise AssertionError(f"not a one-line report: {text[: MAX_MESSAGE * 2]!r}")
    if len(text) > len(label) + MAX_MESSAGE:
        raise AssertionError(f"a report of {len(text)} characters: {text[: MAX_MESSAGE * 2]!r}")


def structures(seeds: list[bytes]) -> list[elfmut.Structure | None]:
    return [elfmut.parse(s) for s in seeds]


def mutate_object(rng: random.Random, seeds: list[bytes], layouts: list, shapes: list) -> bytes:
    """One mutant: structure-aware two times in three (where the seed parses), else blind."""
    i = rng.randrange(len(seeds))
    if shapes[i] is not None and rng.random() < 0.67:
        data = elfmut.mutate(rng, seeds[i], shapes[i], list(zip(seeds, shapes, strict=True)))
        if rng.random() < 0.2:  # and a blind one on top: structure-aware changes reach the parsers,
            data = mutate_bytes(rng, data, None, [])  # blind ones break what they then expect
        return data
    return mutate_bytes(rng, seeds[i], layouts[i], seeds)


def fuzz_objects(seeds: list[bytes], count: int, rng: random.Random, hang: float, workdir: Path,
                 keep: dict[str, bytes] | None = None, keep_max: int = 0) -> Stats:  # fmt: skip
    """count mutants through the host's parsers; keep (sha256 -> bytes) collects up to keep_max
    distinct accepted BPF objects for a guest run."""
    stats = Stats("objects")
    layouts = [elf_layout(s) for s in seeds]
    shapes = structures(seeds)
    host = next((s for s in seeds if s[:4] == b"\x7fELF" and s[18:20] != b"\xf7\x00"), None)  # a host binary
    path = workdir / "input.o"
    embedded = {"now": False}

    def target(data: bytes) -> str:
        path.write_bytes(data)
        try:
            objects = read_objects(path)
        except BadObject as e:
            check_refusal(str(e), str(path))
            return "refused"
        for obj in objects:
            # One located rejection per object (a program and a blame at random): locate parses the
            # object's line info on every call, the same for each program (the cost of a fuzz input).
            p = rng.choice(obj.programs)
            helpers, kfuncs = rng.choice(REASONS)
            loc = locate(obj.data, obj.path, p.name, p.section, rng.choice(LOGS), helpers=helpers, kfuncs=kfuncs)
            if loc is not None:
                json.dumps(loc.to_json(), allow_nan=False)
                if loc.path and loc.path.startswith(("/etc", "/proc")):
                    raise AssertionError(f"read {loc.path}, a file the object does not name")
        for obj in objects:  # the host's ELF analysis for the guest (externs, calls, contexts, variables)
            request = check_request(obj.name, obj.data, True, global_values=GLOBALS)
            json.dumps(request, allow_nan=False)
            wanted_functions([p.section for p in obj.programs], (request.get("elf") or {}).get("externs") or [])
            with contextlib.suppress(legacy.Unsupported):  # the guest agent's legacy-map parser (pure Python)
                legacy.parse(obj.data)
            if keep is not None and len(keep) < keep_max and not embedded["now"]:
                keep.setdefault(obj.sha256, obj.data)
        return "accepted embedded" if embedded["now"] else "accepted"

    t0 = time.monotonic()
    for _ in range(count):
        data = mutate_object(rng, seeds, layouts, shapes)
        embedded["now"] = host is not None and rng.random() < 0.05 and data[18:20] == b"\xf7\x00"
        if embedded["now"]:  # inside a binary, as a libbpf skeleton embeds it: compat.objects.embedded carves it
            data = host + data
        run_one(stats, data, target, hang)
    stats.seconds = time.monotonic() - t0
    return stats


# -- target: frames -----------------------------------------------------------------------------------
def sample_check_result() -> dict:
    program = {
        "program": "count_getpid", "section": "tracepoint/syscalls/sys_enter_getpid", "prog_type": "tracepoint",
        "attach_type": None, "attach_target": "syscalls/sys_enter_getpid", "verdict": "rejected", "stage": "load",
        "errno": 13, "message": "R1 invalid mem access 'scalar'", "libbpf_log": "libbpf: prog 'count_getpid': failed",
        "log": "0: (85) call bpf_get_current_pid_tgid#14\nR1 invalid mem access 'scalar'\nprocessed 3 insns",
        "log_level": 1,
        "stats": {"insns_processed": 3, "states_total": 0, "states_peak": 0, "verification_time_us": 20,
                  "stack_depth": [0], "insn_cnt": 4},
        "helpers": [14, 1], "kfuncs": ["bpf_iter_num_new"], "load_ms": 3.2,
        "attach": {"status": "not_attempted", "errno": None, "reason": "the program was not loaded"},
    }  # fmt: skip
    return {
        "type": "check_result", "id": 4, "object": "counter.o", "duration_ms": 50.5, "libbpf": "1.5",
        "externs": [{"name": "bpf_iter_num_new", "kind": "kfunc", "weak": True}],
        "maps": [{"name": "counts", "type": "hash", "ok": True, "errno": None}],
        "open": {"ok": True, "errno": None, "message": None, "libbpf_log": ""},
        "programs": [program, {**program, "program": "other", "verdict": "accepted", "stage": None}],
    }  # fmt: skip


def sample_probe_result() -> dict:
    return {
        "type": "probe_result", "id": 1, "duration_ms": 100.0,
        "prog_types": {"xdp": True, "lsm": False}, "map_types": {"hash": True, "arena": False},
        "helpers": {"xdp": [1, 2, 3, 181], "kprobe": [1, 14]}, "helper_names": {"1": "map_lookup_elem", "181": "loop"},
        "kfuncs_btf": ["bpf_iter_num_new"], "kfuncs_source": "decl_tag",
        "kfunc_allowed": {"bpf_iter_num_new": {"xdp": True}}, "timings": {"types_ms": 3.5, "helper_probes": 9},
    }  # fmt: skip


SAMPLES = [
    sample_check_result(),
    sample_probe_result(),
    {"type": "hello", "schema": "compat/v1", "release": "6.12.0-1-amd64", "btf": True, "libbpf": "1.5"},
    {"type": "error", "id": 2, "error": "check failed: MemoryError"},
    {"type": "pong", "id": 1, "payload_bytes": 0},
]
JSON_BODIES = [b"[" * 100000, b'{"type": "x", "a": ' * 50000, b'{"type": NaN}', b'{"type": "\\ud800"}',
               b'{"type": 1e999}', b'{"type": "check_result", "programs": Infinity}', b"\xff\xfe{}",
               b'{"type": "check_result", "id": 1' + b"0" * 5000 + b"}", b"null", b'"type"', b"{}"]  # fmt: skip


def decode(data: bytes) -> tuple[dict, bytes]:
    stream = io.BytesIO(data)

    def read_exact(n: int) -> bytes:
        chunk = stream.read(n)
        if len(chunk) < n:
            raise ChannelClosed("channel closed")
        return chunk

    return read_frame(read_exact, max_payload=REPLY_MAX_PAYLOAD)


def use_reply(message: object, checker: Checker, obj: BpfObject) -> str:
    """What the host does with a reply: validate it, and use it only when it is well formed."""
    outcome = "refused"
    for kind in ("check_result", "probe_result", "hello"):  # what the host asked for decides the shape
        if guestmsg.problem(message, kind) is None:
            outcome = f"valid {kind}"
            if kind == "check_result":
                kw = KernelWork(replies={obj.sha256: message})
                results = checker._results(obj, Outcome(spec=KernelSpec(id="k", label="k")), kw, {})
                json.dumps([r.__dict__ for r in results], allow_nan=False)
            elif kind == "probe_result":
                json.dumps(Inventory.from_probe(message).to_json(), allow_nan=False)
    return outcome


def fuzz_frames(count: int, rng: random.Random, hang: float, checker: Checker, obj: BpfObject) -> Stats:
    stats = Stats("frames")
    seeds = [encode(m) for m in SAMPLES] + [MAGIC + struct.pack(">II", len(b), 0) + b for b in JSON_BODIES]

    def target(data: bytes) -> str:
        try:
            message, _ = decode(data)
        except ProtocolError:
            return "refused frame"
        return use_reply(message, checker, obj)

    t0 = time.monotonic()
    for _ in range(count):
        data = rng.choice(seeds)
        if rng.random() < 0.9:
            data = mutate_bytes(rng, data, Layout([(0, 4), (4, 4), (8, 4)], []), seeds)
            if rng.random() < 0.3 and len(data) >= 12:  # keep the lengths consistent: reach the JSON
                body = data[12:]
                data = MAGIC + struct.pack(">II", len(body), 0) + body
        run_one(stats, data, target, hang)
    stats.seconds = time.monotonic() - t0
    return stats


# -- target: replies ----------------------------------------------------------------------------------
def random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(10 if depth < 3 else 7)
    return [
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: rng.choice([*INTERESTING, -1, -(1 << 63), 1 << 70]),
        lambda: rng.choice([0.5, -0.0, float("nan"), float("inf"), 1e308]),
        lambda: rng.choice(["", "x", "accepted", "rejected", "a" * 5000, "\udc80", "../../etc/passwd", "\n\x00"]),
        lambda: "s" * rng.choice([4096, 4097, 1 << 20, (1 << 20) + 1]),
        lambda: rng.choice([[], {}, [1] * 70000]),
        lambda: [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))],
        lambda: {
            rng.choice(["program", "verdict", "log", "x", "type", "ok"]): random_json(rng, depth + 1)
            for _ in range(rng.randint(0, 3))
        },
        lambda: [[[[[random_json(rng, depth + 3)]]]]],
    ][kind]()


def mutate_reply(rng: random.Random, reply: dict) -> dict:
    reply = copy.deepcopy(reply)
    for _ in range(rng.randint(1, 3)):
        # a random node: walk down from the top
        parent, key = None, None
        node: object = reply
        while isinstance(node, dict | list) and node and rng.random() < 0.75:
            parent = node
            key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
            node = node[key]
        if parent is None:
            continue
        action = rng.randrange(4)
        if action == 0 and isinstance(parent, dict):
            del parent[key]
        elif action == 1 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:
            parent[key] = random_json(rng)
    return reply


def fuzz_replies(count: int, rng: random.Random, hang: float, checker: Checker, obj: BpfObject) -> Stats:
    stats = Stats("replies")
    seeds = [sample_check_result(), sample_probe_result()]
    t0 = time.monotonic()
    for _ in range(count):
        reply = mutate_reply(rng, rng.choice(seeds))
        run_one(stats, b"", lambda _data, reply=reply: use_reply(reply, checker, obj), hang)
        if stats.findings and stats.findings[-1][1] == b"":
            kind, _, tb = stats.findings[-1]
            stats.findings[-1] = (kind, repr(reply)[:100000].encode(), tb)
    stats.seconds = time.monotonic() - t0
    return stats


# -- target: real guests ------------------------------------------------------------------------------
GUEST_BATCH = 250  # objects per `compat check` run: one guest restore, the objects one after another
# What compat itself says about an object when a guest had no verdict for it: an infrastructure
# fault (agent crash, guest death or hang) is a finding; a verifier time limit is not, nor a guest
# that ran out of memory or open files for what the object asks (a map of 7 GiB: documented as
# "a limit of the guest, not a verdict", never cached).
NOT_FINDINGS = {"verifier_timeout"}
GUEST_LIMIT = "a limit of the guest"


REPORTS = {"table": "table.txt", "markdown": "report.md", "github": "github.txt", "junit": "junit.xml",
           "sarif": "report.sarif"}  # fmt: skip
# A GitHub Actions workflow command compat writes: one line, its own command and properties.
OWN_COMMAND = re.compile(r"::(error|warning|notice)( (file|line|col|endLine|endColumn|title)=[^:,]*(,[^:,]*)*)?::")


def report_problems(part: Path) -> list[str]:
    """What is wrong in the reports of a guest run on mutants, whose names, sections, logs and
    messages come from the objects and the guest: a line beginning with `::` compat did not write
    (a workflow command in a CI log: the mutator writes `a\\n::warning title=t::x` into strings),
    raw control characters in the table and markdown, a JUnit file that is not XML, a SARIF file
    that is not JSON."""
    import xml.etree.ElementTree as ET

    problems = []
    for fmt, name in REPORTS.items():
        path = part / name
        if not path.exists():
            problems.append(f"{fmt}: no report written")
            continue
        text = path.read_text(errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if line.startswith("::") and (fmt != "github" or not OWN_COMMAND.match(line)):
                problems.append(f"{fmt} line {n} begins with '::': {line[:200]!r}")
            elif line.startswith("::warning title=t::"):
                problems.append(f"{fmt} line {n}: an object's workflow command: {line[:200]!r}")
            if fmt in ("table", "markdown") and any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in line):
                problems.append(f"{fmt} line {n} has a raw control character: {line[:200]!r}")
        try:
            if fmt == "junit":
                ET.fromstring(path.read_bytes())
            elif fmt == "sarif":
                json.loads(text)
        except (ET.ParseError, ValueError) as e:
            problems.append(f"{fmt}: does not parse: {e}")
    return problems


@dataclass
class GuestStats:
    objects: int = 0
    cells: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    findings: list[tuple[str, str]] = field(default_factory=list)  # (object, what)
    runs: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(self.verdicts.items()))
        return (f"guest: {self.objects} mutants in {self.runs} run(s): {self.cells} cells: {parts}; "
                f"{len(self.findings)} finding(s); {self.seconds:.1f} s")  # fmt: skip


def fuzz_guests(mutants: dict[str, bytes], kernel: str, workdir: Path, findings_dir: Path | None = None,
                object_timeout: float = 120.0, batch: int = GUEST_BATCH) -> GuestStats:  # fmt: skip
    """Check the mutants in real guests with `compat check` (result cache off), batch by batch."""
    import subprocess

    stats = GuestStats()
    items = sorted(mutants.items())
    t0 = time.monotonic()
    for start in range(0, len(items), batch):
        part = workdir / f"guest-{start // batch}"
        part.mkdir(parents=True, exist_ok=True)
        for digest, data in items[start : start + batch]:
            (part / f"m-{digest[:16]}.o").write_bytes(data)
        out = part / "result.json"
        cmd = [sys.executable, "-m", "compat", "check", str(part), "--kernel", kernel, "--no-cache",
               "--fail-on", "never", "--object-timeout", str(object_timeout), "--format", "json",
               "--output", str(out)]  # fmt: skip
        for fmt, name in REPORTS.items():
            cmd += ["--format", fmt, "--output", str(part / name)]
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent.parent)
        stats.runs += 1
        stats.objects += len(items[start : start + batch])
        broken = "Traceback" in run.stderr or "internal error" in run.stderr
        if broken or run.returncode not in (0, 1, 3) or not out.exists():
            stats.findings.append((str(part), f"exit {run.returncode}: {run.stderr[-2000:]}"))
            continue
        stats.findings += [(str(part), what) for what in report_problems(part)]
        doc = json.loads(out.read_text())
        for r in doc["results"]:
            stats.cells += 1
            limit = r["verdict"] == "error" and GUEST_LIMIT in (r.get("message") or "")
            verdict = "error (guest limit)" if limit else r["verdict"]
            stats.verdicts[verdict] = stats.verdicts.get(verdict, 0) + 1
            if r["verdict"] not in ("accepted", "rejected") and r.get("reason") not in NOT_FINDINGS and not limit:
                stats.findings.append((r["object"], f"{r['program']}: {r['verdict']} {r.get('reason')}: "
                                                    f"{r.get('message')}\n{(r.get('log') or '')[-1500:]}"))  # fmt: skip
        for o in doc["objects"]:
            if o.get("error"):  # the host accepted it before: the CLI must too
                stats.findings.append((o["object"], f"refused by compat check: {o['error']}"))
    stats.seconds = time.monotonic() - t0
    if findings_dir is not None and stats.findings:
        findings_dir.mkdir(parents=True, exist_ok=True)
        for n, (name, what) in enumerate(stats.findings):
            digest = next((d for d in mutants if d[:16] in name), None)
            if digest:
                (findings_dir / f"guest-{n + 1}.o").write_bytes(mutants[digest])
            (findings_dir / f"guest-{n + 1}.txt").write_text(f"{name}\n{what}\n")
    return stats


# -- driver -------------------------------------------------------------------------------------------
def corpus(corpus_dir: Path | None, workdir: Path) -> list[bytes]:
    if corpus_dir is None and SEEDS.is_dir():
        corpus_dir = SEEDS
    if corpus_dir is not None:
        files = sorted(corpus_dir.glob("*.o"))
    else:
        from bpf_build import build_programs

        files = sorted(build_programs(workdir / "programs").values())
    if not files:
        raise SystemExit("fuzz: no seed objects")
    return [f.read_bytes() for f in files]


def fake_object(seed: bytes) -> BpfObject:
    from compat.objects.objfile import inspect_bytes

    programs = inspect_bytes(seed, "seed")
    return BpfObject(Path("seed.o"), "seed.o", seed, hashlib.sha256(seed).hexdigest(), programs)


def run(objects: int, frames: int, replies: int, seed: int, corpus_dir: Path | None = None,
        hang: float = 10.0, findings_dir: Path | None = None, quiet: bool = False, guest: int = 0,
        kernel: str = "6.1") -> list:  # fmt: skip
    """The fuzz runs asked for: a Stats for each host target, then a GuestStats when guest > 0
    (that many distinct host-accepted mutants checked in real guests of one kernel)."""

    def alarm(signum, frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    out: list = []
    try:
        with tempfile.TemporaryDirectory(prefix="compat-fuzz-") as tmp:
            workdir = Path(tmp)
            seeds = corpus(corpus_dir, workdir)
            checker = Checker.__new__(Checker)  # only its reply-to-results code is used: no fleet
            checker.options = CheckOptions()
            obj = fake_object(seeds[0])
            keep: dict[str, bytes] = {}
            if objects or guest:
                rng = random.Random(seed)
                stats = fuzz_objects(seeds, objects, rng, hang, workdir, keep, guest)
                while len(keep) < guest:  # more mutants for the guests than the host run kept
                    more = fuzz_objects(seeds, guest, rng, hang, workdir, keep, guest)
                    stats.inputs += more.inputs
                    stats.findings += more.findings
                    stats.seconds += more.seconds
                    stats.slow += more.slow
                    stats.slowest = max(stats.slowest, more.slowest)
                    for k, n in more.outcomes.items():
                        stats.outcomes[k] = stats.outcomes.get(k, 0) + n
                out.append(stats)
            if frames:
                out.append(fuzz_frames(frames, random.Random(seed + 1), hang, checker, obj))
            if replies:
                out.append(fuzz_replies(replies, random.Random(seed + 2), hang, checker, obj))
            if guest:
                signal.signal(signal.SIGALRM, previous)  # the guest runs are bounded by compat's own timeouts
                if not quiet:
                    print(f"guest: {len(keep)} mutants on {kernel} ...", flush=True)
                out.append(fuzz_guests(keep, kernel, workdir, findings_dir))
    finally:
        signal.signal(signal.SIGALRM, previous)
    for stats in out:
        if not quiet:
            print(stats.line(), flush=True)
        if isinstance(stats, GuestStats):
            for n, (name, what) in enumerate(stats.findings[:3]):
                if not quiet:
                    print(f"--- guest finding {n + 1}: {name}: {what}", file=sys.stderr)
            continue
        for n, (kind, data, tb) in enumerate(stats.findings):
            if not quiet and n < 3:
                print(f"--- {stats.name} finding {n + 1} ({kind}):\n{tb}", file=sys.stderr)
            if findings_dir is not None:
                findings_dir.mkdir(parents=True, exist_ok=True)
                name = f"{stats.name}-{n + 1}-{kind}"
                (findings_dir / f"{name}.bin").write_bytes(data)
                (findings_dir / f"{name}.txt").write_text(tb)
    return out


LONG = {"objects": 70000, "frames": 15000, "replies": 15000, "guest": 1000}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, default=10000, help="mutated objects (default 10000)")
    p.add_argument("--frames", type=int, default=5000, help="mutated frames (default 5000)")
    p.add_argument("--replies", type=int, default=5000, help="mutated replies (default 5000)")
    p.add_argument("--guest", type=int, default=0, help="host-accepted mutants to check in real guests (default 0)")
    p.add_argument("--kernel", default="6.1", help="the kernel of the guest runs (a matrix id; default 6.1)")
    p.add_argument("--long", action="store_true",
                   help=f"the long run: {LONG['objects']} objects, {LONG['frames']} frames, {LONG['replies']} "
                        f"replies, {LONG['guest']} mutants in guests (explicit counts win)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--corpus", type=Path, help="directory of seed .o files (default: tests/fuzz/seeds)")
    p.add_argument("--hang", type=float, default=10.0, help="seconds after which one input counts as a hang")
    p.add_argument("--findings", type=Path, help="save every finding's input and traceback here")
    args = p.parse_args()
    # Stopped with SIGTERM: unwind, so the running `compat check` is killed (subprocess.run does on
    # an exception; its QEMU dies with it) and the work directory is removed, nothing left behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.long:
        given = {a.lstrip("-").split("=")[0] for a in sys.argv[1:]}
        for name, value in LONG.items():
            if name not in given:
                setattr(args, name, value)
    t0 = time.monotonic()
    results = run(args.objects, args.frames, args.replies, args.seed, args.corpus, args.hang, args.findings,
                  guest=args.guest, kernel=args.kernel)  # fmt: skip
    total = sum(len(s.findings) for s in results)
    host = sum(s.inputs for s in results if isinstance(s, Stats))
    print(f"fuzz: {host} host inputs, {sum(s.objects for s in results if isinstance(s, GuestStats))} guest "
          f"mutants, {total} finding(s), {time.monotonic() - t0:.0f} s (seed {args.seed})")  # fmt: skip
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
