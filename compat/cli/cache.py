"""compat cache: what the cache holds, verifying and pruning it."""

from __future__ import annotations

import argparse
import os
import sys

from tabulate import tabulate

from compat.cache import NEVER_PRUNED, Cache
from compat.errors import EXIT_INFRA, EXIT_OK

from .options import KEEP_DAYS, _days


def cmd_cache(args, cache: Cache) -> int:
    """compat cache info|clean|prune|verify: one line and exit 2 for a kind compat does not know."""
    if getattr(args, "kinds", None):
        cache.kind_names(args.kinds)
    if args.action == "clean":
        freed = cache.clean(args.kinds or None)
        print(f"freed {freed / 1e6:.0f} MB in {cache.root}")
        return EXIT_OK
    if args.action == "verify":
        return _cache_verify(cache, args.kinds or None, args.json)
    if args.action == "prune":
        removed, freed = cache.prune(args.days, args.kinds or None)
        what = f"{removed} {'entry' if removed == 1 else 'entries'} unused for more than {args.days:g} days"
        print(f"freed {freed / 1e6:.0f} MB in {cache.root}: {what}")
        return EXIT_OK
    rows, kinds = [], []
    total = unused = 0
    if cache.root.is_dir():
        for kind in sorted(p for p in cache.root.iterdir() if p.is_dir()):
            size = cache.size(kind)
            old = cache.unused(kind.name, KEEP_DAYS)
            total += size
            unused += old
            never = kind.name in NEVER_PRUNED
            rows.append((kind.name, len(cache.entries(kind.name)), f"{size / 1e6:.0f} MB",
                         "-" if never else f"{old / 1e6:.0f} MB"))  # fmt: skip
            kinds.append({"kind": kind.name, "entries": rows[-1][1], "bytes": size,
                          "unused_bytes": None if never else old})
    if getattr(args, "json", False):
        import json

        print(json.dumps({"cache": str(cache.root), "kinds": kinds, "total_bytes": total, "unused_bytes": unused,
                          "keep_days": KEEP_DAYS}, indent=1))  # fmt: skip
        return EXIT_OK
    print(f"cache: {cache.root}")
    print(tabulate(rows, headers=["kind", "entries", "size", f"unused {KEEP_DAYS:g}+ days"]))
    print(f"total: {total / 1e6:.0f} MB ({unused / 1e6:.0f} MB unused for {KEEP_DAYS:g} days: 'compat cache prune')")
    return EXIT_OK


def _cache_verify(cache: Cache, kinds: list[str] | None, as_json: bool) -> int:
    """compat cache verify: every entry checked fully; damaged ones removed (rebuilt on next use).
    Exit 0 when everything is intact or was removed, 3 when a damaged entry could not be."""
    import json

    found = cache.verify(kinds)
    per_kind: dict[str, dict[str, int]] = {}
    for f in found:
        counts = per_kind.setdefault(f.kind, {"checked": 0, "damaged": 0, "removed": 0})
        counts["checked"] += 1
        counts["damaged"] += not f.intact
        counts["removed"] += f.removed
    stuck = [f for f in found if not f.intact and not f.removed]
    if as_json:
        damaged = [f.as_json() for f in found if not f.intact]
        totals = {k: sum(c[k] for c in per_kind.values()) for k in ("checked", "damaged", "removed")}
        print(json.dumps({"cache": str(cache.root), **totals, "kinds": per_kind, "damaged_entries": damaged}, indent=1))
    else:
        for f in found:
            if not f.intact:
                what = "removed (rebuilt on next use)" if f.removed else "NOT removed (in use by another process?)"
                print(f"{f.kind}/{f.key[:16]}: {f.damage}: {what}")
        rows = [(kind, c["checked"], c["damaged"], c["removed"]) for kind, c in sorted(per_kind.items())]
        print(f"cache: {cache.root}")
        print(tabulate(rows, headers=["kind", "checked", "damaged", "removed"]))
    return EXIT_INFRA if stuck else EXIT_OK


def _auto_prune(cache: Cache) -> None:
    """At most once a day, prune cache entries unused for COMPAT_CACHE_KEEP_DAYS days (default
    30; 0 turns it off). Never an error: the check it follows is done and reported."""
    debug = os.environ.get("COMPAT_DEBUG")
    try:
        text = os.environ.get("COMPAT_CACHE_KEEP_DAYS", "").strip()
        try:
            days = _days(text) if text else KEEP_DAYS
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"COMPAT_CACHE_KEEP_DAYS: {e}") from None  # not a setting to guess: no pruning
        pruned = cache.prune_daily(days) if days else None
        if pruned and debug:
            print(f"compat: cache: pruned {pruned[0]} entries unused for {days:g} days, {pruned[1] / 1e6:.0f} MB",
                  file=sys.stderr)  # fmt: skip
    except Exception as e:
        if debug:
            print(f"compat: cache: not pruned: {e.__class__.__name__}: {e}", file=sys.stderr)
