"""The kernel matrix: which kernels a run covers, read from matrix.yaml."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from compat.arch import ARCHES, DEFAULT_ARCH, alias_of
from compat.errors import UserError
from compat.paths import data_file

SOURCES = ("debian", "apt", "local")
AXES = ("version", "matrix")  # how reports order kernels: by upstream version, or as the file lists them
FLAVOURS_HINT = "amd64, cloud-amd64, rt-amd64; arm64, cloud-arm64, rt-arm64"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_SERIES_RE = re.compile(r"^\d+(\.\d+)?$")
_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")

# Names that become apt source lines and cache paths, in Debian's own grammar (Policy 5.6.1 for
# packages; a suite or component is a plain name): refused before any path or deb line is made.
_PLAIN_NAMES = {
    "package": re.compile(r"^[a-z0-9][a-z0-9+.-]+$"),
    "flavour": re.compile(r"^[a-z0-9][a-z0-9+.-]*$"),  # the tail of a package name: amd64, cloud-amd64
    "suite": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
    "component": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
}
MAX_NAME = 128  # Debian's longest package names are ~60 characters

# Bounds of a matrix file (far above any real matrix: Debian has ~40 kernel point releases a year).
MAX_MATRIX_BYTES = 1 << 20
MAX_DEPTH = 16  # a matrix needs 4: top mapping, kernels list, entry, components list
MAX_NODES = 100_000  # YAML events: mappings, lists and scalars
MAX_KERNELS = 1000
MAX_COMPONENTS = 32
MAX_VALUE = 4096  # characters of one value (a path, a mirror URI)


def check_name(kind: str, value: str, where: str = "") -> str:
    """value if it is a plain Debian name of this kind (package, flavour, suite or component);
    else a UserError, raised before anything makes a path or an apt source line of it
    (``suite: ../../x`` must not become a directory outside the cache)."""
    ok = isinstance(value, str) and len(value) <= MAX_NAME and _PLAIN_NAMES[kind].match(value) and ".." not in value
    if not ok:
        shown = repr(value)[:60]
        raise UserError(
            f"{where}{kind} {shown} is not a plain {kind} name",
            {
                "package": "Debian package names are lower-case letters, digits, '+', '-' and '.'",
                "flavour": "e.g. amd64, cloud-amd64, rt-amd64",
            }.get(kind, "letters, digits, '.', '_' and '-', no '/' or '..', e.g. bookworm-security"),
        )
    return value


def check_arch(value: object, where: str = "") -> str:
    """value if it is an architecture compat knows (ARCHES, Debian's names); else a UserError."""
    if isinstance(value, str) and value in ARCHES:
        return value
    shown = repr(value)[:40]
    alias = alias_of(value) if isinstance(value, str) else None
    hint = f"Debian calls it {alias}" if alias else f"use one of {', '.join(ARCHES)}"
    raise UserError(f"{where}unknown arch {shown}", hint)


def flavour_arch(flavour: str) -> str | None:
    """The architecture a Debian kernel flavour belongs to (amd64, cloud-amd64 -> amd64; arm64,
    cloud-arm64, arm64-16k -> arm64), or None for a flavour that names none (Ubuntu's generic)."""
    for arch in ARCHES:
        if flavour == arch or flavour.endswith(f"-{arch}") or flavour.startswith(f"{arch}-"):
            return arch
    return None


def flavour_for_arch(flavour: str, arch: str) -> str:
    """The same flavour on another architecture (cloud-amd64 -> cloud-arm64): what ``--arch``
    does to an entry that named its flavour for the default architecture."""
    own = flavour_arch(flavour)
    if own is None or own == arch:
        return flavour
    return flavour.replace(own, arch, 1)


@dataclass(frozen=True)
class KernelSpec:
    """One kernel of the matrix, as the user declared it (not yet resolved to a package)."""

    id: str
    label: str
    source: str = "debian"
    series: str | None = None  # "6.1": the newest point release of that series
    version: str | None = None  # "6.1.176": one upstream point release
    package: str | None = None  # exact image package name, e.g. linux-image-6.1.0-50-amd64
    suite: str | None = None  # restrict to one archive suite (bookworm-security, sid, …)
    flavour: str = ""  # Debian's flavour; empty: the arch's generic one (amd64 -> amd64, arm64 -> arm64)
    arch: str = DEFAULT_ARCH  # amd64 or arm64 (ARCHES): the packages, the guest image and the QEMU it needs
    mirror: str | None = None  # apt source: archive URI
    components: tuple[str, ...] = ("main",)
    keyring: str | None = None  # apt source: keyring that signs the archive
    image: Path | None = None  # local source: bzImage / vmlinuz
    modules: Path | None = None  # local source: lib/modules/<release> directory
    required: bool = False  # a rejection on this kernel fails the gate
    releases: str | None = None  # with series: "all", "since 6.12.90" or "last N" point releases (series.py)
    order: int = 0  # position in the matrix file (the kernel axis when versions tie)

    def __post_init__(self) -> None:
        # Checked for specs made in code too (the CLI, bisect): a flavour of the other
        # architecture would resolve packages the guest cannot boot.
        check_arch(self.arch, f"kernel '{self.id}': ")
        if not self.flavour:
            object.__setattr__(self, "flavour", self.arch)
        own = flavour_arch(self.flavour)
        if own is not None and own != self.arch:
            raise UserError(f"kernel '{self.id}': flavour {self.flavour} is an {own} flavour, not {self.arch}",
                            f"use flavour {flavour_for_arch(self.flavour, self.arch)} or arch {own}")  # fmt: skip

    def with_arch(self, arch: str) -> KernelSpec:
        """This kernel on another architecture: the same series (version, suite), its flavour
        moved over (cloud-amd64 -> cloud-arm64), the arch added to the id and label (a mixed
        matrix keeps distinct ids: 6.12 and 6.12-arm64). The spec itself when arch is its own."""
        check_arch(arch)
        if arch == self.arch:
            return self
        base = self.id.removesuffix(f"-{self.arch}")
        kid = base if arch == DEFAULT_ARCH else f"{base}-{arch}"
        label = self.label.removesuffix(f" {self.arch}")
        label = label if arch == DEFAULT_ARCH else f"{label} {arch}"
        return replace(self, id=kid, label=label, arch=arch, flavour=flavour_for_arch(self.flavour, arch))

    def describe(self) -> str:
        """A short human description of the source, for listings."""
        if self.source == "local":
            return f"local {self.image}"
        what = self.package or self.version or (f"{self.series}.x" if self.series else "newest")
        if self.releases:
            what = f"{self.series}.* ({self.releases})"
        where = f" [{self.suite}]" if self.suite else ""
        return f"{self.source} {what} {self.flavour}{where}"


@dataclass
class Matrix:
    """The kernels of one matrix file, in file order."""

    path: Path
    kernels: list[KernelSpec] = field(default_factory=list)
    axis: str = "version"  # the kernel axis of reports: by upstream version, or "matrix" (file order)
    arch: str | None = None  # --arch: the architecture of entries that name none, and of ad hoc kernels

    def ids(self) -> list[str]:
        return [k.id for k in self.kernels]

    def select(self, wanted: list[str] | None) -> list[KernelSpec]:
        """The kernels named by --kernel (all when none), in the order asked.

        A name that is not a matrix id may be an ad hoc kernel: ``debian:6.1``,
        ``debian:6.1.176`` or the path of a kernel image file.
        """
        if not wanted:
            return list(self.kernels)
        by_id = {k.id: k for k in self.kernels}
        chosen: list[KernelSpec] = []
        for name in wanted:
            # With --arch arm64 the matrix's 6.12 is 6.12-arm64: --kernel 6.12 still names it.
            spec = (by_id.get(name) or (by_id.get(f"{name}-{self.arch}") if self.arch else None)
                    or _adhoc_spec(name, len(self.kernels) + len(chosen), self.arch)
                    or _other_arch(name, by_id, len(self.kernels) + len(chosen)))  # fmt: skip
            if spec is None:
                known = ", ".join(self.ids()) or "(none)"
                raise UserError(
                    f"unknown kernel '{name}' in {self.path}",
                    f"known ids: {known}; or use debian:SERIES, debian:VERSION, debian:SERIES.* or a kernel image "
                    "path; ID-arm64 for another architecture",
                )
            if spec.id not in {c.id for c in chosen}:
                chosen.append(spec)
        return chosen



def _other_arch(name: str, by_id: dict[str, KernelSpec], order: int) -> KernelSpec | None:
    """``ID-ARCH`` (6.12-arm64, debian:6.12-arm64, debian:6.12.43-arm64): the kernel ID (a matrix
    id in by_id or a debian: name) on that architecture, so one command line mixes both."""
    base, dash, arch = name.rpartition("-")
    if not dash or arch not in ARCHES:
        return None
    spec = by_id.get(base) or _adhoc_spec(base, order)
    return spec.with_arch(arch) if spec is not None and spec.source != "local" else None


def _adhoc_spec(name: str, order: int, arch: str | None = None) -> KernelSpec | None:
    """The kernel of a --kernel name that is no matrix id: ``debian:SERIES``, ``debian:VERSION``,
    ``debian:SERIES.*`` (of ``arch``, default amd64: its id then carries the arch, e.g.
    debian:6.12-arm64) or a kernel image path (its arch read from the image, whatever ``arch``
    says: --arch names the architecture of archive kernels)."""
    if name.startswith("debian:"):
        ver = name.split(":", 1)[1]
        spec = None
        if ver.endswith(".*") and _SERIES_RE.match(ver[:-2]) and "." in ver[:-2]:
            # Every point release of the series the archive offers (expanded by series.expand).
            spec = KernelSpec(id=name, label=f"Debian {ver}", series=ver[:-2], releases="all", order=order)
        elif _VERSION_RE.match(ver) and ver.count(".") == 2:
            spec = KernelSpec(id=name, label=f"Debian {ver}", version=ver, order=order)
        elif _SERIES_RE.match(ver):
            spec = KernelSpec(id=name, label=f"Debian {ver}", series=ver, order=order)
        return spec.with_arch(arch) if spec and arch else spec
    path = Path(name).expanduser()
    if ("/" in name or path.exists()) and path.is_file():
        image = path.resolve()
        return KernelSpec(id=path.name, label=str(path), source="local", image=image, order=order,
                          arch=local_arch(image, None, f"kernel '{path.name}': "))  # fmt: skip
    return None


def local_arch(image: Path, declared: str | None, where: str = "") -> str:
    """The architecture of a local kernel image, read from the image (imagearch.py), never
    guessed: a declared arch that the image contradicts is a UserError. An image that cannot be
    read yet (missing: resolving it says so) takes the declared arch, or the default."""
    from .imagearch import image_arch

    found = image_arch(image) if image.is_file() else None
    if declared and found and found != declared:
        raise UserError(f"{where}{image} is an {found} kernel image, not {declared}",
                        f"use arch {found} for it, or an {declared} image")  # fmt: skip
    return found or declared or DEFAULT_ARCH


_ALLOWED = {f.name for f in fields(KernelSpec)} - {"order"}


def default_matrix_path() -> Path:
    """The matrix shipped with compat (the repository's matrix.yaml)."""
    return data_file("matrix.yaml")


class _Number:
    """A YAML number together with the text it was written as (``6.10`` read as 6.1), so that the
    error can quote what the user wrote."""

    def __init__(self, value: int | float, text: str, line: int):
        self.value, self.text, self.line = value, text, line


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when PyYAML has it
    """PyYAML's safe loader (no object construction), whose numbers remember their text. Its
    composer recurses per level: _check_shape bounds the nesting first."""


def _number(loader: yaml.SafeLoader, node: yaml.ScalarNode, kind: str) -> _Number:
    value = getattr(yaml.SafeLoader, f"construct_yaml_{kind}")(loader, node)
    return _Number(value, node.value, node.start_mark.line + 1)


_Loader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: _number(loader, node, "int"))
_Loader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: _number(loader, node, "float"))


def _check_shape(text: str, path: Path) -> None:
    """Bound a YAML text's nesting and size on its event stream, before anything is built: PyYAML
    builds documents recursively (deep nesting ends in RecursionError), and aliases can make a
    small text stand for a huge document (billion laughs)."""
    too_deep = UserError(f"matrix file {path} nests more than {MAX_DEPTH} levels deep",
                         "a matrix needs 4: kernels, an entry, its components")  # fmt: skip
    depth = aliases = 0
    # libyaml's parser when PyYAML has it (25x faster on a large file); both are iterative.
    parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        events = list(itertools.islice(yaml.parse(text, Loader=parser), MAX_NODES + 1))
    except yaml.YAMLError as e:
        if "nesting depth" in str(e):  # libyaml's own limit (1000 levels), met before ours when it scans ahead
            raise too_deep from None
        raise
    for nodes, event in enumerate(events, 1):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise too_deep
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
        if nodes > MAX_NODES or aliases > MAX_KERNELS:
            raise UserError(f"matrix file {path} is too large (more than {MAX_NODES} values or {MAX_KERNELS} aliases)")


def load_matrix(path: Path | None = None, arch: str | None = None) -> Matrix:
    """Read and validate a matrix file; every problem is a UserError naming file and entry.
    ``arch`` (--arch) is the architecture of every entry that names none (see parse_matrix)."""
    path = Path(path) if path else default_matrix_path()
    try:
        if path.stat().st_size > MAX_MATRIX_BYTES:
            raise UserError(f"matrix file {path} is larger than {MAX_MATRIX_BYTES >> 20} MiB")
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"matrix file {path} does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read matrix file {path}: {e.__class__.__name__}") from None
    try:
        _check_shape(text, path)
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader: builds no objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"matrix file {path} is not valid YAML{where}") from None
    return parse_matrix(doc, path, arch)


def parse_matrix(doc: object, path: Path, arch: str | None = None) -> Matrix:
    """Validate a parsed matrix document (see matrix.yaml for the format). With ``arch``
    (--arch arm64), entries that name no arch (nor a flavour of one) are the same kernels on that
    architecture, their ids suffixed (6.12 -> 6.12-arm64); a local image keeps its own."""
    if arch is not None:
        check_arch(arch, "--arch: ")
    if isinstance(doc, list):
        doc = {"kernels": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("kernels"), list):
        raise UserError(f"matrix file {path} needs a top-level 'kernels:' list")
    unknown_top = set(doc) - {"kernels", "defaults", "schema", "axis"}
    if unknown_top:
        raise UserError(f"matrix file {path}: unknown top-level key '{sorted(unknown_top)[0]}'")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise UserError(f"matrix file {path}: 'defaults' must be a mapping")
    axis = doc.get("axis") or "version"
    if axis not in AXES:
        raise UserError(f"matrix file {path}: axis must be one of {', '.join(AXES)}, not '{axis}'")
    if len(doc["kernels"]) > MAX_KERNELS:
        raise UserError(f"matrix file {path} lists more than {MAX_KERNELS} kernels", "split it into several matrices")
    matrix = Matrix(path=path, axis=axis, arch=arch)
    seen: set[str] = set()
    for index, raw in enumerate(doc["kernels"]):
        if not isinstance(raw, dict):
            raise UserError(f"matrix file {path}: kernel entry {index + 1} must be a mapping")
        spec = _parse_entry({**defaults, **raw}, index, path, arch)
        if spec.id in seen:
            raise UserError(f"matrix file {path}: kernel id '{spec.id}' appears twice")
        seen.add(spec.id)
        matrix.kernels.append(spec)
    if not matrix.kernels:
        raise UserError(f"matrix file {path} lists no kernels")
    return matrix


def _parse_entry(raw: dict, index: int, path: Path, cli_arch: str | None = None) -> KernelSpec:
    where = f"matrix file {path}, kernel entry {index + 1}"
    unknown = set(raw) - _ALLOWED
    if unknown:
        raise UserError(f"{where}: unknown key '{sorted(unknown)[0]}'", f"allowed: {', '.join(sorted(_ALLOWED))}")
    values = dict(raw)
    for key, value in values.items():
        if isinstance(value, _Number | int | float) and not isinstance(value, bool):
            # YAML reads an unquoted 6.10 as the number 6.1: never guess which kernel was meant.
            text = value.text if isinstance(value, _Number) else str(value)
            line = f" (line {value.line})" if isinstance(value, _Number) else ""
            raise UserError(f"{where}: '{key}' is the number {text}{line}, not a string",
                            f'write {key}: "{text}" in quotes: YAML reads an unquoted 6.10 as 6.1')  # fmt: skip
        if key == "required":
            if not isinstance(value, bool):
                raise UserError(f"{where}: 'required' must be true or false")
        elif key == "components":
            if isinstance(value, str):
                values[key] = tuple(value.split())
            elif isinstance(value, list) and all(isinstance(c, str) for c in value):
                values[key] = tuple(value)
            else:
                raise UserError(f"{where}: 'components' must be a list of names")
            if not values[key] or len(values[key]) > MAX_COMPONENTS:
                raise UserError(f"{where}: 'components' must list 1 to {MAX_COMPONENTS} names")
            for component in values[key]:
                check_name("component", component, f"{where}: ")
        elif value is not None and not isinstance(value, str):
            raise UserError(f"{where}: '{key}' must be a string")
        elif isinstance(value, str) and (len(value) > MAX_VALUE or "\0" in value):
            raise UserError(f"{where}: '{key}' is longer than {MAX_VALUE} characters or holds a NUL character")
    for kind in ("package", "flavour", "suite"):
        if values.get(kind) is not None:
            check_name(kind, values[kind], f"{where}: ")
    mirror = values.get("mirror")
    if mirror is not None and not re.fullmatch(r"[a-z][a-z0-9+]*:[^\s\[\]]+", mirror):
        # It becomes one field of a deb line: a space or bracket would add options or suites.
        raise UserError(f"{where}: mirror {mirror[:60]!r} is not a URI", "e.g. http://HOST/ubuntu")

    source = values.get("source") or ("local" if values.get("image") else "debian")
    if source not in SOURCES:
        raise UserError(f"{where}: unknown source '{source}'", f"use one of {', '.join(SOURCES)}")
    values["source"] = source
    series, version = values.get("series"), values.get("version")
    if series and not _SERIES_RE.match(series):
        raise UserError(f"{where}: series '{series}' is not like 6.1")
    if version and not _VERSION_RE.match(version):
        raise UserError(f"{where}: version '{version}' is not like 6.1.176")
    if values.get("releases") is not None:
        values["releases"] = check_releases(values["releases"], series, where)
        if source == "local" or not series or version or values.get("package"):
            raise UserError(f"{where}: 'releases' goes with a 'series' of an archive, without 'version' or 'package'",
                            'e.g. series: "6.12" with releases: all')  # fmt: skip
    if source == "local":
        if not values.get("image"):
            raise UserError(f"{where}: a local kernel needs 'image: PATH'")
        values["image"] = _resolve_path(values["image"], path)
        if values.get("modules"):
            values["modules"] = _resolve_path(values["modules"], path)
    else:
        for key in ("image", "modules"):
            if values.get(key):
                raise UserError(f"{where}: '{key}' belongs to local kernels only")
        if source == "apt" and not (values.get("mirror") and values.get("suite")):
            raise UserError(f"{where}: an apt kernel needs 'mirror' and 'suite'")
        if not (series or version or values.get("package") or values.get("suite")):
            raise UserError(f"{where}: say which kernel: series, version, package or suite")
    # The architecture: declared, else --arch (below), else the flavour's (cloud-arm64), else
    # amd64; a local image's is read from the image and must agree with a declared one.
    # Only an 'arch:' pins an entry against --arch (its flavour then moves over: cloud-amd64 ->
    # cloud-arm64).
    declared = check_arch(values["arch"], f"{where}: ") if values.get("arch") is not None else None
    if source == "local":
        values["arch"] = local_arch(values["image"], declared, f"{where}: ")  # the image says, not --arch
    elif declared:
        values["arch"] = declared
    elif values.get("flavour") and flavour_arch(values["flavour"]):
        values["arch"] = flavour_arch(values["flavour"])
    kid = values.get("id") or version or series or values.get("package") or values.get("suite")
    if not kid and source == "local":
        kid = Path(values["image"]).name
    if not kid or not _ID_RE.match(kid):
        raise UserError(f"{where}: id '{kid}' must be letters, digits, '.', '_', '+' or '-'")
    if not values.get("id") and source != "local" and values.get("arch", DEFAULT_ARCH) != DEFAULT_ARCH:
        kid = f"{kid}-{values['arch']}"  # distinct from the same series' amd64 entry
    values["id"] = kid
    values.setdefault("label", kid)
    values["order"] = index
    try:
        spec = KernelSpec(**values)
    except UserError as e:
        raise UserError(f"{where}: {str(e.args[0]).split(': ', 1)[-1]}", e.hint) from None
    if cli_arch and not declared and source != "local":
        spec = spec.with_arch(cli_arch)
    return spec


_RELEASES_RE = re.compile(r"^(all|since\s+(?P<since>\d+\.\d+\.\d+)|last\s+(?P<last>\d{1,4}))$")


def check_releases(text: str, series: str | None, where: str = "") -> str:
    """A matrix entry's ``releases`` (which point releases of its series): ``all``, ``since X.Y.Z``
    (that release and every newer one; X.Y.Z of the entry's series) or ``last N`` (the N newest),
    normalised to single spaces; a UserError otherwise."""
    where = f"{where}: " if where else ""
    m = _RELEASES_RE.match(" ".join(str(text).split()))
    if not m:
        raise UserError(f"{where}releases {str(text)[:40]!r} is not all, since X.Y.Z or last N",
                        'e.g. releases: all, releases: "since 6.12.90", releases: "last 5"')  # fmt: skip
    since, last = m.group("since"), m.group("last")
    if since and series and not since.startswith(series + "."):
        raise UserError(f"{where}releases since {since} is outside the series {series}",
                        f"give a point release of {series}, e.g. since {series}.1")  # fmt: skip
    if last is not None and not 1 <= int(last) <= MAX_KERNELS:
        raise UserError(f"{where}releases last {last} must be between 1 and {MAX_KERNELS}")
    return " ".join(m.group(0).split())


def _resolve_path(value: str, matrix_path: Path) -> Path:
    # Paths in a matrix file are relative to the file, so a checked-in matrix works from any cwd.
    p = Path(value).expanduser()
    return p if p.is_absolute() else (matrix_path.parent / p).resolve()
