"""Sharding a check over many machines, and merging the shards' result files.

`compat check --shard I/N` checks a deterministic part of the kernel × object matrix: the
cells are listed kernel by kernel (matrix order), objects sorted by name and content hash,
and shard I of N takes the I-th of N contiguous, equal slices. Contiguous slices keep each
shard on as few kernels as possible (every kernel a shard touches costs it a guest), and
every runner of a CI job matrix computes the same split from the same inputs.

`compat merge A.json B.json …` combines result files (the shards of one check, or any runs
over disjoint cells) into one result: kernels, objects and cells united, checked for
overlaps, conflicts and missing shards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from compat.errors import UserError
from compat.objects.objfile import BpfObject
from compat.results.compare import _pair_objects
from compat.results.model import KernelInfo, ObjectInfo, ProgramResult, RunResult

from . import options as check_options


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if not m:
            raise UserError(f"--shard {text}: not of the form I/N", "e.g. --shard 2/4 for the second of four shards")
        index, count = int(m.group(1)), int(m.group(2))
        if count < 1 or not 1 <= index <= count:
            raise UserError(f"--shard {text}: I must be between 1 and N", "shards are numbered 1..N")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def to_json(self) -> dict:
        return {"index": self.index, "count": self.count}


def object_order(objects: list[BpfObject]) -> list[BpfObject]:
    """Objects in the order shards count them: by name, then content (not command-line order,
    which a shell glob may change between runners)."""
    return sorted(objects, key=lambda o: (o.name, o.sha256))


def plan(kernel_ids: list[str], objects: list[BpfObject], shard: Shard | None) -> dict[str, list[BpfObject]]:
    """kernel id -> the objects to check on it ({} entries left out): everything without a shard."""
    ordered = object_order(objects)
    cells = [(k, o) for k in kernel_ids for o in ordered]
    if shard is not None:
        lo = (shard.index - 1) * len(cells) // shard.count
        hi = shard.index * len(cells) // shard.count
        cells = cells[lo:hi]
    out: dict[str, list[BpfObject]] = {}
    for k, o in cells:
        out.setdefault(k, []).append(o)
    return out


def baseline_plan(main: dict[str, list[BpfObject]], baseline_objects: list[BpfObject]) -> dict[str, list[BpfObject]]:
    """Where the --baseline-object builds go: on every kernel where the object they are paired
    with (same name, or a lone pair) is checked, so each shard compares its own cells."""
    names = list(dict.fromkeys(o.name for objs in main.values() for o in objs))
    pairs = _pair_objects(names, [b.name for b in baseline_objects])
    out: dict[str, list[BpfObject]] = {}
    for k, objs in main.items():
        here = {pairs[o.name] for o in objs if o.name in pairs}
        chosen = [b for b in baseline_objects if b.name in here]
        if chosen:
            out[k] = chosen
    return out


def restrict(baseline: RunResult, result: RunResult) -> RunResult:
    """A baseline result cut down to the cells of a shard's result (kernel × paired object), so
    that cells other shards check are not reported as removed."""
    current = list(dict.fromkeys(r.object for r in result.results))
    pairs = _pair_objects(current, list(dict.fromkeys(r.object for r in baseline.results)))
    reverse = {b: c for c, b in pairs.items()}
    cells = {(r.kernel, r.object) for r in result.results}
    kept = [r for r in baseline.results if (r.kernel, reverse.get(r.object)) in cells]
    kernels = {r.kernel for r in kept}
    objects = {r.object for r in kept}
    return replace(
        baseline,
        results=kept,
        kernels=[k for k in baseline.kernels if k.id in kernels],
        objects=[o for o in baseline.objects if o.object in objects],
    )


@dataclass
class Merged:
    result: RunResult
    warnings: list[str]


def merge(results: list[tuple[str, RunResult]], strict: bool = True) -> Merged:
    """One result from several (source name, result) pairs. Raises UserError on objects that
    differ under one name and, when strict, on overlapping cells and inconsistent or missing
    shards (not strict, for the baselines shards embed: the first of two equal cells wins)."""
    if not results:
        raise UserError("nothing to merge", "give the result files of every shard")
    warnings: list[str] = []
    if strict:
        _check_shards(results)

    kernels: dict[str, KernelInfo] = {}
    for source, run in results:
        for k in run.kernels:
            have = kernels.get(k.id)
            if have is None:
                kernels[k.id] = replace(k)
                continue
            if k.version != have.version or (k.packages and have.packages and k.packages != have.packages):
                warnings.append(
                    f"kernel {k.id}: the results come from different builds ({have.version} and {k.version} in "
                    f"{source}): keeping {have.version}"
                )
            if have.error is None and k.error is not None:
                have.error = k.error  # a part of this kernel's cells had no guest: say so
            for name in ("release", "libbpf", "btf", "accel", "boot_seconds"):
                if getattr(have, name) is None:
                    setattr(have, name, getattr(k, name))

    objects: dict[tuple[str, str | None], ObjectInfo] = {}
    by_name: dict[str, str | None] = {}
    for source, run in results:
        for o in run.objects:
            if o.object in by_name and by_name[o.object] != o.sha256 and o.sha256 and by_name[o.object]:
                raise UserError(
                    f"{source}: object {o.object} differs from the one in an earlier result file (another build)",
                    "merge the results of one check: every shard must check the same objects",
                )
            by_name.setdefault(o.object, o.sha256)
            objects.setdefault((o.object, o.sha256), o)

    cells: dict[tuple[str, str, str], tuple[str, ProgramResult]] = {}
    for source, run in results:
        for r in run.results:
            key = (r.object, r.program, r.kernel)
            if key in cells and not strict:
                continue
            if key in cells:
                raise UserError(
                    f"{source}: {r.object}:{r.program} on {r.kernel} is also in {cells[key][0]}",
                    "give each shard's result file once; shards never overlap",
                )
            cells[key] = (source, r)

    object_index = {name: i for i, (name, _sha) in enumerate(objects)}
    kernel_list = sorted(kernels.values(), key=lambda k: k.order)
    kernel_index = {k.id: i for i, k in enumerate(kernel_list)}
    program_index = {(o.object, p): i for o in objects.values() for i, p in enumerate(o.programs)}
    ordered = sorted(
        (r for _, r in cells.values()),
        key=lambda r: (
            object_index.get(r.object, len(object_index)),
            kernel_index.get(r.kernel, len(kernel_index)),
            program_index.get((r.object, r.program), 1 << 20),
            r.program,
        ),
    )

    first = results[0][1]
    images = list({run.image.get("key"): run.image for _, run in results if run.image}.values())
    if len(images) > 1:
        warnings.append(
            "the result files come from different guest images ("
            + ", ".join(f"libbpf {i.get('libbpf')} {i.get('key')}" for i in images)
            + "): each kernel records its own libbpf"
        )
    # The check options (run/options.py's table): those always recorded first, as a check writes them.
    runs = [run for _, run in results]
    recorded, said = check_options.merged(runs, always=True)
    warnings += said
    options: dict = {
        **recorded,
        "wall_seconds": max((run.options.get("wall_seconds") or 0.0) for _, run in results),
        "merged_from": len(results),
    }
    for name in ("kernel_axis",):
        if name in first.options:
            options[name] = first.options[name]
    recorded, said = check_options.merged(runs, always=False)
    warnings += said
    options.update(recorded)
    shards = [run.options.get("shard") for _, run in results if isinstance(run.options.get("shard"), dict)]
    if shards:
        options["shards"] = shards[0].get("count")
    hits = [run.options.get("result_cache") for _, run in results if isinstance(run.options.get("result_cache"), dict)]
    if hits:
        options["result_cache"] = {
            "hits": sum(int(h.get("hits") or 0) for h in hits),
            "misses": sum(int(h.get("misses") or 0) for h in hits),
        }
    merged = RunResult(
        kernels=kernel_list,
        objects=list(objects.values()),
        results=ordered,
        image=dict(first.image),
        options=options,
    )
    return Merged(merged, warnings)


def _check_shards(results: list[tuple[str, RunResult]]) -> None:
    info = [(source, run.options.get("shard")) for source, run in results]
    sharded = [(s, i) for s, i in info if isinstance(i, dict)]
    if not sharded:
        return
    if len(sharded) != len(info):
        plain = next(s for s, i in info if not isinstance(i, dict))
        raise UserError(f"{plain}: not a shard's result, unlike {sharded[0][0]}", "merge the shards of one check")
    counts = {i.get("count") for _, i in sharded}
    if len(counts) != 1:
        raise UserError("the result files are shards of different splits (--shard I/N with different N)")
    (count,) = counts
    seen: dict[int, str] = {}
    for source, i in sharded:
        if i.get("index") in seen:
            raise UserError(f"{source}: shard {i.get('index')}/{count} is also {seen[i['index']]}")
        seen[i.get("index")] = source
    missing = [i for i in range(1, int(count or 0) + 1) if i not in seen]
    if missing:
        raise UserError(
            f"shard result(s) missing: {', '.join(f'{i}/{count}' for i in missing)}",
            "give the result file of every shard",
        )
