"""The result schema (compat/v1): what a run produces and what goes on disk.

One `ProgramResult` per object × program × kernel, plus the kernels and objects of the run.
`RunResult.to_json()` is the document `--format json` writes; `compat/schema/result-v1.json`
is its JSON Schema (the tests validate every document against it).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from compat import __version__
from compat.errors import UserError

SCHEMA = "compat/v1"
SCHEMA_FILE = Path(__file__).parent / "schema" / "result-v1.json"

ACCEPTED, REJECTED, ERROR = "accepted", "rejected", "error"
VERDICTS = (ACCEPTED, REJECTED, ERROR)
STAGES = ("open", "prepare", "load")

# The failure classes: small and stable, so users can gate and count on them.
REASONS = {
    "missing_helper": "missing helper",
    "missing_kfunc": "missing kfunc",
    "unsupported_prog_type": "unsupported program type",
    "unsupported_map_type": "unsupported map type",
    "missing_attach_target": "unsupported attach type / missing attach target",
    "core_relocation": "CO-RE relocation failure",
    "missing_btf": "missing BTF",
    "verifier_rejection": "verifier rejection",
    "complexity_limit": "complexity limit",
    "object_error": "object error (libbpf)",
    "infrastructure_error": "infrastructure error",
    "verifier_timeout": "verifier time limit (no verdict)",
    "unsupported_instruction": "unsupported instruction (BPF instruction set)",
    "not_permitted": "not permitted under this privilege (--privilege)",
}


@dataclass
class KernelInfo:
    """One kernel of the run as it really booted."""

    id: str
    label: str
    version: str  # upstream point release, 6.1.192
    release: str | None = None  # uname -r
    source: str = "debian"
    packages: list[str] = field(default_factory=list)
    libbpf: str | None = None
    accel: str | None = None
    # the kernel's architecture (Debian's name: amd64, arm64); files from before arm64 have none: amd64
    arch: str = "amd64"
    btf: bool | None = None
    boot_seconds: float | None = None
    order: int = 0
    required: bool = False
    error: str | None = None  # the kernel could not be fetched or booted
    # the stable series this point release was expanded from (debian:6.12.*, releases: all, bisect,
    # selftests): reports group such kernels under their series; None, and absent from the file, else
    series: str | None = None
    # the privilege of this column (--privilege caps|unprivileged: the kernel's id with the mode,
    # "6.1 (caps)"); None, and absent from the file, for the kernel's own (root) column
    privilege: str | None = None


@dataclass
class ObjectInfo:
    """One object file given to the run."""

    object: str
    path: str
    sha256: str | None = None
    size: int | None = None
    programs: list[str] = field(default_factory=list)
    error: str | None = None  # bad input: not checked


@dataclass
class ProgramResult:
    """The verdict of one program of one object on one kernel."""

    object: str
    object_sha256: str
    program: str
    section: str
    prog_type: str | None
    kernel: str
    verdict: str
    stage: str | None = None
    errno: int | None = None
    reason: str | None = None  # a key of REASONS, None when accepted
    message: str | None = None  # the reason in words, e.g. "helper bpf_loop (181) is not available…"
    detail: str | None = None  # the kernel's or libbpf's own line behind it
    stats: dict = field(default_factory=dict)
    log: str = ""
    log_level: int | None = None
    libbpf_log: str = ""
    attach: dict = field(default_factory=dict)
    helpers: list[int] = field(default_factory=list)
    load_ms: float | None = None
    source: dict | None = None  # where the rejection is in the C source (sourcemap.SourceLocation.to_json())
    # where prog_type came from when not from the section: "context" (guessed), "option" (--program-type)
    prog_type_from: str | None = None
    # what the program's selftest annotations expect and whether the verdict meets it
    # (compat/results/expectation.py); None, and absent from the file, for programs without any
    expectation: dict | None = None
    # the object as shipped on this kernel (every program and map as declared, as its skeleton loads
    # it): {"loads": bool, and when not: stage, name, errno, reason; "maps": the maps the kernel
    # could not create}, the same on each program of the object (classify.object_load); None, and
    # absent from the file, when not known (older results, the legacy-map loader)
    object_load: dict | None = None
    # the splats the kernel logged while the object was checked on this kernel ({kind, lines}:
    # WARN, BUG, verifier bug, REG INVARIANTS VIOLATION, lockdep, KASAN...; classify.kernel_warnings),
    # the same on each program of the object; None, and absent from the file, when it logged none
    kernel_warnings: list | None = None
    # the object was built for another architecture's struct pt_regs than this kernel's (an x86
    # kprobe checked on arm64: compat_agent/elf/ptregs.py), in words; the same on each program of
    # the object; None, and absent from the file, else
    pt_regs: str | None = None
    # the privilege the program was checked with (--privilege): root, caps or unprivileged; a
    # column other than root has its own kernel id ("6.1 (caps)", results/privilege.column)
    privilege: str = "root"


@dataclass
class RunResult:
    """Everything one `compat check` produced."""

    kernels: list[KernelInfo]
    objects: list[ObjectInfo]
    results: list[ProgramResult]
    image: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    compat_version: str = __version__

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "compat_version": self.compat_version,
            "created": self.created,
            "options": self.options,
            "image": self.image,
            "kernels": [_kernel_json(k) for k in self.kernels],
            "objects": [asdict(o) for o in self.objects],
            "results": [_result_json(r) for r in self.results],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def from_json(cls, doc: dict, source: str = "result file") -> RunResult:
        """Read a saved result document (checks the schema tag and the fields reports rely on;
        unknown fields are ignored)."""
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise UserError(f"{source}: not a compat result file (schema {SCHEMA} expected)")
        try:
            run = cls(
                kernels=[KernelInfo(**_known(KernelInfo, k)) for k in doc["kernels"]],
                objects=[ObjectInfo(**_known(ObjectInfo, o)) for o in doc["objects"]],
                results=[ProgramResult(**_known(ProgramResult, r)) for r in doc["results"]],
                image=doc.get("image") or {},
                options=doc.get("options") or {},
                created=doc.get("created", ""),
                compat_version=doc.get("compat_version", "?"),
            )
            _check(run)
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise UserError(f"{source}: malformed compat result file ({e.__class__.__name__}: {e})") from None
        return run

    @staticmethod
    def read_document(path: Path) -> dict:
        """The JSON document of a result file; a UserError (one line) when it cannot be read or
        nests deeper than any result file does (MAX_DEPTH)."""
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UserError(f"{path}: is a directory, not a result file") from None
        except RecursionError:  # the decoder recurses per level: ~1000 levels exhaust it
            raise UserError(f"{path}: not a compat result file (nested more than {MAX_DEPTH} levels deep)") from None
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable JSON result file ({e.__class__.__name__})") from None
        if _depth_exceeds(doc, MAX_DEPTH):
            # Shallower than the decoder's limit but still deeper than any result: renderers and
            # json.dumps recurse too, so it is refused here, in one line.
            raise UserError(f"{path}: not a compat result file (nested more than {MAX_DEPTH} levels deep)")
        return doc

    @classmethod
    def load(cls, path: Path) -> RunResult:
        return cls.from_json(cls.read_document(path), str(path))

    def cell(self, obj: str, program: str, kernel: str) -> ProgramResult | None:
        """The result of one program on one kernel (indexed: reports ask for every cell)."""
        key = (obj, program, kernel)
        for attempt in (1, 2):
            index = self.__dict__.get("_cells")
            if attempt == 2 or index is None or index[0] != len(self.results):
                index = (len(self.results), {(r.object, r.program, r.kernel): r for r in reversed(self.results)})
                self.__dict__["_cells"] = index
            r = index[1].get(key)
            if r is not None and (r.object, r.program, r.kernel) == key:
                return r
        return None


def _kernel_json(k: KernelInfo) -> dict:
    """A kernel's record; ``series`` only for a point release of an expanded series."""
    doc = asdict(k)
    for optional in ("series", "privilege"):
        if doc.get(optional) is None:
            doc.pop(optional, None)
    return doc


def _result_json(r: ProgramResult) -> dict:
    """A result's record; ``expectation`` only for annotated programs (files stay as they were)."""
    doc = asdict(r)
    for optional in ("expectation", "object_load", "kernel_warnings", "pt_regs"):
        if doc.get(optional) is None:
            doc.pop(optional, None)
    return doc


def _check(run: RunResult) -> None:
    """The types reports rely on (a hand-edited or foreign file fails here, not in a renderer)."""
    for k in run.kernels:
        if not isinstance(k.id, str) or not isinstance(k.version, str) or not isinstance(k.order, int):
            raise ValueError(f"kernel {k.id!r}: id and version must be strings")
        if not isinstance(k.arch, str):
            raise ValueError(f"kernel {k.id!r}: arch must be a string")
    for o in run.objects:
        if not isinstance(o.object, str) or not isinstance(o.path, str):
            raise ValueError("object names and paths must be strings")
    for r in run.results:
        for name in ("object", "program", "kernel", "section", "log"):
            if not isinstance(getattr(r, name), str):
                raise ValueError(f"result field '{name}' must be a string")
        if r.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {r.verdict!r}")
        if not isinstance(r.privilege, str):
            raise ValueError("result field 'privilege' must be a string")
        if not isinstance(r.stats, dict) or not isinstance(r.attach, dict):
            raise ValueError("result 'stats' and 'attach' must be objects")
        if r.source is not None and not isinstance(r.source, dict):
            raise ValueError("result 'source' must be an object")
        if r.expectation is not None and not isinstance(r.expectation, dict):
            raise ValueError("result 'expectation' must be an object")
        if r.object_load is not None and not isinstance(r.object_load, dict):
            raise ValueError("result 'object_load' must be an object")
        if r.kernel_warnings is not None and not all(isinstance(w, dict) for w in r.kernel_warnings):
            raise ValueError("result 'kernel_warnings' must be a list of objects")


# A result nests about 8 levels (comparison > baseline_result > results > a result > attach >
# ...); 64 leaves room for what a later schema adds, far below Python's recursion limit.
MAX_DEPTH = 64


def _depth_exceeds(doc: object, limit: int) -> bool:
    """Whether a parsed JSON document nests more than limit levels (iterative: no recursion)."""
    if type(doc) is not dict and type(doc) is not list:
        return False
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if type(node) is dict else node:
            kind = type(child)  # exact types, as json.loads makes them: 40% faster than isinstance
            if kind is dict or kind is list:
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _known(cls, values: dict) -> dict:
    names = cls.__dataclass_fields__.keys()
    return {k: v for k, v in values.items() if k in names}
