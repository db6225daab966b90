"""The expectations a BPF selftest object carries about itself, read from its .BTF.

The kernel's BPF selftests annotate each program with BTF declaration tags (bpf_misc.h's
``__success``, ``__failure``, ``__msg("…")``, ``__flag(…)``, ``__log_level(n)``,
``__description("…")`` and their ``_unpriv`` variants): ``comment:test_expect_success``,
``comment:test_expect_msg=<counter>=<text>``... on the program's FUNC type, component -1.
tools/testing/selftests/bpf/test_loader.c (parse_test_spec) reads them; this module reads them
the same way on the host, from the object's bytes, without libbpf.

The object is untrusted input: a malformed .BTF or annotation gives a spec whose ``malformed``
says why, never an exception.
"""

from __future__ import annotations

import re
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from compat_agent.elf.analysis import _btf_types
from compat_agent.elf.reader import cstr, is_elf64le, section_body, section_headers, section_names
from compat_agent.wire.features import PROG_FLAGS as UAPI_PROG_FLAGS

BTF_KIND_FUNC, BTF_KIND_DECL_TAG = 12, 17
PREFIX = "comment:test_"
ACCEPTED, REJECTED = "accepted", "rejected"

# test_loader.c's tag names (6.12); msg tags carry a counter: "comment:test_expect_msg=3=text".
EXPECT_FAILURE = "comment:test_expect_failure"
EXPECT_SUCCESS = "comment:test_expect_success"
EXPECT_FAILURE_UNPRIV = "comment:test_expect_failure_unpriv"
EXPECT_SUCCESS_UNPRIV = "comment:test_expect_success_unpriv"
AUXILIARY = "comment:test_auxiliary"
AUXILIARY_UNPRIV = "comment:test_auxiliary_unpriv"
MSG = "comment:test_expect_msg="
MSG_UNPRIV = "comment:test_expect_msg_unpriv="
# What compat does not judge (the translated or JITed instructions, the return value of a run):
# recorded so a report can say so.
XLATED = ("comment:test_expect_xlated=", "comment:test_expect_xlated_unpriv=")
JITED = ("comment:test_jited=", "comment:test_jited_unpriv=")
RETVAL = "comment:test_retval="
RETVAL_UNPRIV = "comment:test_retval_unpriv="
LOG_LEVEL = "comment:test_log_level="
PROG_FLAGS = "comment:test_prog_flags="
DESCRIPTION = "comment:test_description="

# The BPF_PROG_LOAD flags __flag() may name by name (test_loader's parse_test_spec; any other is a
# number), their values from the uapi table.
FLAGS = {
    name: UAPI_PROG_FLAGS[name]
    for name in ("BPF_F_STRICT_ALIGNMENT", "BPF_F_ANY_ALIGNMENT", "BPF_F_TEST_RND_HI32", "BPF_F_TEST_STATE_FREQ",
                 "BPF_F_SLEEPABLE", "BPF_F_XDP_HAS_FRAGS", "BPF_F_TEST_REG_INVARIANTS")
}  # fmt: skip
# test_loader sets these on every program (testing_prog_flags()): checks for the tests' own sake
# that no expectation depends on, so they are not "needed" flags.
TESTING_FLAGS = FLAGS["BPF_F_TEST_RND_HI32"] | FLAGS["BPF_F_TEST_REG_INVARIANTS"]
MAX_TAGS = 4096  # per program: a selftest has a few dozen at most
MAX_TEXT = 4096  # characters of one message


class Malformed(ValueError):
    """An annotation test_loader would refuse (its parse_test_spec fails)."""


@dataclass
class Mode:
    """What one mode (privileged or unprivileged) expects."""

    expect: str = ACCEPTED  # accepted or rejected
    messages: list[str] = field(default_factory=list)  # in order; "{{re}}" parts are regular expressions
    explicit: bool = False  # a success/failure tag said so (else the default, or the privileged mode's)


@dataclass
class Spec:
    """One program's test_loader spec; priv/unpriv are None when the test does not run in that mode."""

    program: str
    priv: Mode | None = None
    unpriv: Mode | None = None
    description: str | None = None
    log_level: int = 0
    flags: int = TESTING_FLAGS  # test_loader's prog_flags, the testing flags included
    auxiliary: bool = False
    unjudged: list[str] = field(default_factory=list)  # what the tags ask that compat does not judge
    malformed: str | None = None

    @property
    def needed_flags(self) -> list[str]:
        """The flags the test loads with, beyond the testing ones, by name (or number)."""
        rest = self.flags & ~TESTING_FLAGS
        names = [name for name, bit in FLAGS.items() if rest & bit]
        left = rest & ~sum(FLAGS[n] for n in names)
        return names + ([hex(left)] if left else [])

    def load(self) -> tuple[int, int]:
        """How test_loader loads the program, as the check request's ``tests`` entry says it:
        the flags beyond the testing ones, and the level of the log its expected messages are
        searched in (the test's own level, at least 1 when it expects messages; 0: no log)."""
        messages = any(m and m.messages for m in (self.priv, self.unpriv))
        level = self.log_level & 3 or (1 if messages else 0)
        return self.flags & ~TESTING_FLAGS & 0xFFFFFFFF, level

    def to_json(self) -> dict[str, Any]:
        """The spec as plain data (what the judge in compat/results reads)."""
        doc = asdict(self)
        doc["needed_flags"] = self.needed_flags
        return doc


def _parse_int(text: str, what: str) -> int:
    """test_loader's parse_int: 0x… hexadecimal, else decimal, nothing after."""
    try:
        value = int(text[2:], 16) if text.startswith("0x") else int(text, 10)
    except ValueError:
        raise Malformed(f"{what} {text[:40]!r} is not a number") from None
    if not -(1 << 31) <= value < (1 << 32):
        raise Malformed(f"{what} {text[:40]!r} is out of range")
    return value


def _dynamic(tag: str, prefix: str) -> str | None:
    """skip_dynamic_pfx: the text after "<prefix><counter>=", None when it has no such form."""
    if not tag.startswith(prefix):
        return None
    rest = tag[len(prefix) :]
    cut = rest.find("=")
    return rest[cut + 1 :] if cut >= 0 else None


def check_message(text: str) -> None:
    """A message test_loader could compile: its {{…}} parts closed and valid regular expressions."""
    if len(text) > MAX_TEXT:
        raise Malformed(f"message of {len(text)} characters")
    if "{{" in text:
        try:
            message_regex(text)
        except re.error as e:
            raise Malformed(f"message {text[:60]!r}: bad regular expression ({e})") from None


def message_regex(text: str) -> re.Pattern[str]:
    """compile_regex: {{…}} parts are regular expressions, the rest literal (the log's lines
    matched one at a time, as REG_NEWLINE does)."""
    parts = []
    pos = 0
    while pos < len(text):
        start = text.find("{{", pos)
        if start < 0:
            parts.append(re.escape(text[pos:]))
            break
        end = text.find("}}", start + 2)
        if end < 0:
            raise re.error("open '{{' but no closing '}}'")
        parts.append(re.escape(text[pos:start]))
        parts.append(text[start + 2 : end])
        pos = end + 2
    return re.compile("".join(parts), re.MULTILINE)


def parse_tags(program: str, tags: list[str]) -> Spec:
    """parse_test_spec on one program's tags (in BTF order); malformed tags give a spec whose
    ``malformed`` says which."""
    spec = Spec(program)
    priv, unpriv = Mode(), Mode()
    mask = set()
    try:
        for tag in tags:
            if tag.startswith(DESCRIPTION):
                spec.description = tag[len(DESCRIPTION) :]
            elif tag in (EXPECT_FAILURE, EXPECT_SUCCESS):
                priv.expect, priv.explicit = (REJECTED if tag == EXPECT_FAILURE else ACCEPTED), True
                mask.add("priv")
            elif tag in (EXPECT_FAILURE_UNPRIV, EXPECT_SUCCESS_UNPRIV):
                unpriv.expect, unpriv.explicit = (REJECTED if tag == EXPECT_FAILURE_UNPRIV else ACCEPTED), True
                mask.add("unpriv")
            elif tag in (AUXILIARY, AUXILIARY_UNPRIV):
                spec.auxiliary = True
                mask.add("priv" if tag == AUXILIARY else "unpriv")
            elif (msg := _dynamic(tag, MSG)) is not None:
                check_message(msg)
                priv.messages.append(msg)
                mask.add("priv")
            elif (msg := _dynamic(tag, MSG_UNPRIV)) is not None:
                check_message(msg)
                unpriv.messages.append(msg)
                mask.add("unpriv")
            elif tag.startswith(XLATED) or tag.startswith(JITED):
                _note(spec, "the translated or JITed instructions")
                mask.add("unpriv" if "_unpriv=" in tag else "priv")
            elif tag.startswith((RETVAL, RETVAL_UNPRIV)):
                _note(spec, "the return value of a test run")
                mask.add("unpriv" if tag.startswith(RETVAL_UNPRIV) else "priv")
            elif tag.startswith(LOG_LEVEL):
                spec.log_level = _parse_int(tag[len(LOG_LEVEL) :], "log level")
            elif tag.startswith(PROG_FLAGS):
                value = tag[len(PROG_FLAGS) :]
                clear = value.startswith("!")
                value = value[1:] if clear else value
                bits = FLAGS[value] if value in FLAGS else _parse_int(value, "program flags") & 0xFFFFFFFF
                spec.flags = spec.flags & ~bits if clear else spec.flags | bits
    except Malformed as e:
        spec.malformed = str(e)
        return spec
    if not mask:
        mask.add("priv")
    # What the unprivileged mode does not say it takes from the privileged one (test_loader does so).
    if not unpriv.explicit:
        unpriv.expect = priv.expect
    if not unpriv.messages:
        unpriv.messages = list(priv.messages)
    spec.priv = priv if "priv" in mask else None
    spec.unpriv = unpriv if "unpriv" in mask else None
    return spec


def _note(spec: Spec, what: str) -> None:
    if what not in spec.unjudged:
        spec.unjudged.append(what)


def func_tags(btf: bytes) -> dict[str, list[str]]:
    """{function name: its ``comment:test_…`` decl tags, in type-id order} of a .BTF section."""
    types, strs, table = _btf_types(btf)
    out: dict[str, list[str]] = {}
    for kind, name_off, _vlen, target, extra in table:
        if kind != BTF_KIND_DECL_TAG or not 0 < target <= len(table):
            continue
        (component,) = struct.unpack_from("<i", types, extra)
        if component != -1 or table[target - 1][0] != BTF_KIND_FUNC:
            continue
        tag = cstr(strs, name_off)
        if not tag.startswith(PREFIX):
            continue
        tags = out.setdefault(cstr(strs, table[target - 1][1]), [])
        if len(tags) >= MAX_TAGS:
            raise Malformed(f"more than {MAX_TAGS} annotations on one function")
        tags.append(tag)
    return out


@dataclass
class ObjectSpecs:
    """The specs of an object's annotated programs, or why the annotations cannot be read."""

    specs: dict[str, Spec] = field(default_factory=dict)
    malformed: str | None = None  # the whole .BTF is unreadable

    @property
    def annotated(self) -> bool:
        return bool(self.specs) or self.malformed is not None


def read_specs(data: bytes) -> ObjectSpecs:
    """The test_loader specs of the programs of an ELF object that carry ``comment:test_`` tags
    (an object without any gives an empty ObjectSpecs). Never raises."""
    try:
        if not is_elf64le(data):
            return ObjectSpecs()
        secs = section_headers(data)
        names = section_names(data, secs)
        btf = next((section_body(data, s) for s, n in zip(secs, names, strict=False) if n == ".BTF"), None)
        if btf is None:
            return ObjectSpecs()
        tagged = func_tags(btf)
    except Malformed as e:
        return ObjectSpecs(malformed=f"annotation malformed: {e}")
    except (struct.error, IndexError, ValueError, KeyError, OverflowError, MemoryError) as e:
        # Only an object that shows test tags at all is called malformed; others are not tests.
        if b"comment:test_" in data:
            return ObjectSpecs(malformed=f"annotation malformed: unreadable .BTF ({e.__class__.__name__})")
        return ObjectSpecs()
    return ObjectSpecs({name: parse_tags(name, tags) for name, tags in tagged.items()})
