"""A stable series as kernels: every point release the archive offers, in version order.

``--kernel 'debian:6.12.*'`` and a matrix entry ``series: "6.12"`` with ``releases: all``
(``since 6.12.90``, ``last 5``) stand for several kernels: expand() turns such a spec into one
spec per point release, each with its own id (6.12.43) and label, resolved like
``debian:6.12.43``. The point releases come from sources.available (the resolver of
``compat kernels available``: one package per upstream version, native builds preferred over
backports), oldest first here.

For the commands built on a series (bisect, selftests): point_releases() lists a series,
select_range() cuts it to --from/--to with clear errors, suspects_between() gives the BPF
backports between two fetched kernels from their changelogs (changelog.py).
"""

from __future__ import annotations

import dataclasses
import re

from compat.errors import CompatError, UserError

from .apt import PackageVersion
from .changelog import Suspects, suspects
from .matrix import DEFAULT_ARCH, KernelSpec, check_releases
from .sources import Kernel, KernelStore, available
from .version import upstream_version, version_key

# Ids a series entry gets when none is given (6.12, debian:6.12.*; on arm64 6.12-arm64, …).
_DEFAULT_ID = re.compile(r"^(debian:)?\d+\.\d+(\.\*)?(-(?P<arch>[a-z0-9]+))?$")


def point_releases(store: KernelStore, series: str | KernelSpec, flavour: str = "") -> list[PackageVersion]:
    """The image packages of a series' point releases, oldest first, one per upstream version
    (the same choice as ``compat kernels available``); [] when the archive has none.
    ``series`` is "6.12" or a spec whose series, flavour, suite and archive are used."""
    if isinstance(series, KernelSpec):
        spec = dataclasses.replace(series, version=None, package=None, releases=None)
        return list(reversed(available(store, spec.series or "", source_spec=spec)))
    return list(reversed(available(store, series, flavour=flavour)))


def release_versions(store: KernelStore, series: str | KernelSpec, flavour: str = "") -> list[str]:
    """point_releases as upstream versions: ["6.12.43", "6.12.57", …, "6.12.118"]."""
    return [upstream_version(p.version) for p in point_releases(store, series, flavour)]


def select_range(versions: list[str], series: str, first: str | None = None, last: str | None = None) -> list[str]:
    """The point releases from ``first`` to ``last`` (both included; None: the oldest, the newest)
    of a series' ``versions`` (oldest first). A bound that is not a release of the series, or
    bounds that are swapped, are a UserError naming what the archive has."""
    if not versions:
        raise UserError(f"the archive has no kernel of series {series}", "see 'compat kernels available SERIES'")
    offered = f"{series} offers {versions[0]} to {versions[-1]}"
    for name, bound in (("--from", first), ("--to", last)):
        if bound is not None and bound not in versions:
            raise UserError(f"{name} {bound} is not a point release of {series} in the archive",
                            f"{offered}: see 'compat kernels available {series}'")  # fmt: skip
    lo = versions.index(first) if first else 0
    hi = versions.index(last) if last else len(versions) - 1
    if lo > hi:
        raise UserError(f"--from {versions[lo]} is newer than --to {versions[hi]}", "swap them")
    return versions[lo : hi + 1]


def _chosen(spec: KernelSpec, versions: list[str]) -> list[str]:
    rule = check_releases(spec.releases or "all", spec.series, f"kernel '{spec.id}'")
    if rule == "all":
        return versions
    kind, value = rule.split()
    if kind == "last":
        return versions[-int(value) :]
    chosen = [v for v in versions if version_key(v) >= version_key(value)]
    if not chosen:
        raise UserError(f"kernel '{spec.id}': releases since {value}: the archive's {spec.series} ends at "
                        f"{versions[-1]}", f"give a release from {versions[0]} to {versions[-1]}")  # fmt: skip
    return chosen


def expand_spec(store: KernelStore, spec: KernelSpec) -> list[KernelSpec]:
    """One spec per point release of a series spec (``releases`` set), oldest first; any other
    spec as it is. A series the archive does not have is a UserError."""
    if not spec.releases:
        return [spec]
    versions = [upstream_version(p.version) for p in point_releases(store, spec)]
    if not versions:
        raise UserError(f"kernel '{spec.id}': the archive has no {spec.flavour} kernel of series {spec.series}",
                        f"see 'compat kernels available {spec.series}'")  # fmt: skip
    default_id = bool(_DEFAULT_ID.match(spec.id))
    suffix = "" if spec.arch == DEFAULT_ARCH else f"-{spec.arch}"  # distinct from amd64's releases
    out = []
    for v in _chosen(spec, versions):
        kid = f"{v}{suffix}" if default_id else f"{spec.id}-{v}"
        label = f"Debian {v}" if default_id or spec.label == spec.id else f"{spec.label} {v}"
        label += f" {spec.arch}" if suffix and default_id else ""
        out.append(dataclasses.replace(spec, id=kid, label=label, version=v, releases=None))
    return out


def expand(store: KernelStore, specs: list[KernelSpec]) -> list[KernelSpec]:
    """The specs with every series spec expanded (expand_spec), in the order given; a kernel
    named twice (a matrix entry and a series that includes it) once. Asks the archive only when
    a spec is a series."""
    if not any(s.releases for s in specs):
        return list(specs)
    out: list[KernelSpec] = []
    seen: set[str] = set()
    for spec in specs:
        for one in expand_spec(store, spec):
            if one.id not in seen:
                seen.add(one.id)
                out.append(dataclasses.replace(one, order=len(out)))
    return out


def suspects_between(store: KernelStore, old: Kernel, new: Kernel) -> Suspects:
    """The BPF-related backports between two fetched kernels of a series (old older than new),
    newest first, from the newer one's Debian changelog (see changelog.suspects). A kernel
    entry cached before compat kept changelogs, or a package without one, gives no suspects and
    a note saying so: never an error."""
    return suspects(_changelog(store, old), _changelog(store, new), old.version, new.version)


def _changelog(store: KernelStore, kernel: Kernel):
    try:
        return store.changelog(kernel)
    except CompatError:  # the archive no longer has the package, a download failed: no suspects
        return kernel.changelog
