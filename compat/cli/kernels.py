"""compat kernels, image, vm and probe: the kernels, the guest image and what each kernel offers."""

from __future__ import annotations

import itertools
import sys

from tabulate import tabulate

from compat.cache import Cache
from compat.errors import EXIT_INFRA, EXIT_OK, CompatError, UserError
from compat.kernels.matrix import DEFAULT_ARCH, KernelSpec, flavour_arch, flavour_for_arch

from .shown import _shown, _shown_lines, _specs


def cmd_kernels(args, cache: Cache) -> int:
    from compat.kernels.sources import KernelStore, available

    store = KernelStore(cache, refresh=args.refresh)
    if args.action == "available":
        from compat.kernels.matrix import check_name

        if args.flavour:
            check_name("flavour", args.flavour, "--flavour: ")
        if args.suite is not None:
            check_name("suite", args.suite, "--suite: ")
        # The flavour says its arch (cloud-arm64); --arch gives the generic one; both must agree.
        own = flavour_arch(args.flavour) if args.flavour else None
        if args.arch and own and own != args.arch:
            raise UserError(f"--flavour {args.flavour} is an {own} flavour, not --arch {args.arch}",
                            f"use --flavour {flavour_for_arch(args.flavour, args.arch)}")  # fmt: skip
        arch = args.arch or own or DEFAULT_ARCH
        spec = KernelSpec(id="x", label="x", series=args.series, flavour=args.flavour, suite=args.suite,
                          arch=arch)  # fmt: skip
        if not args.series.replace(".", "").isdigit():
            raise UserError(f"series '{args.series}' is not like 6.1")
        found = available(store, args.series, source_spec=spec)
        if not found:
            raise UserError(f"the archive has no {spec.flavour} kernel of series {args.series}")
        if args.json:
            releases = [{"point_release": p.version.split("-")[0], "version": p.version, "package": p.name,
                         "suite": p.suite, "size": p.size} for p in found]  # fmt: skip
            return _print_json({"series": args.series, "flavour": spec.flavour, "arch": spec.arch,
                                "releases": releases})  # fmt: skip
        rows = [(p.version.split("-")[0], p.version, p.name, p.suite, f"{p.size / 1e6:.0f} MB") for p in found]
        print(tabulate(rows, headers=["point release", "package version", "package", "suite", "size"]))
        return EXIT_OK
    specs = _specs(args, cache)
    if args.action == "list":
        rows = []
        for spec in specs:
            r = store.resolve(spec)
            rows.append((spec.id, spec.label, spec.arch, spec.describe(), r.version, r.release,
                         bool(store.cached(r))))  # fmt: skip
        if args.json:
            keys = ("id", "label", "arch", "source", "version", "release", "cached")
            return _print_json({"kernels": [dict(zip(keys, row, strict=True)) for row in rows]})
        shown = [(*row[:6], "yes" if row[6] else "no") for row in rows]
        print(tabulate(shown, headers=["id", "label", "arch", "source", "version", "release", "cached"],
                       disable_numparse=True))  # fmt: skip
        return EXIT_OK
    for spec in specs:  # bad input (no such package) fails here, before any download
        store.resolve(spec)
    # Fetched in parallel (downloads wait on the network); one that fails does not stop the others.
    failed = 0
    for spec, k in zip(specs, store.fetch_all(specs), strict=True):
        if isinstance(k, CompatError):
            failed += 1
            print(f"compat: error: kernel {_shown(spec.id)}: {_shown(k)}", file=sys.stderr)
            continue
        print(f"{spec.id}: {k.version} ({k.release}) {k.vmlinuz.parent}")
    return EXIT_INFRA if failed else EXIT_OK


def cmd_image(args, cache: Cache) -> int:
    from compat.guest.image import ImageBuilder, describe

    builder = ImageBuilder(cache, arch=args.arch)  # one image per architecture
    image = builder.build() if args.action == "build" else builder.cached()
    if image is None:
        if getattr(args, "json", False):
            return _print_json({"image": None})
        print("no guest image is cached yet: 'compat image build' builds one")
        return EXIT_OK
    info = describe(image)
    if getattr(args, "json", False):
        return _print_json({"image": {**info, "packages": list(image.packages)}})
    print(tabulate([(k, v) for k, v in info.items()], tablefmt="plain"))
    print("packages:", ", ".join(image.packages))
    return EXIT_OK


def cmd_vm(args, cache: Cache) -> int:
    from compat.guest.fleet import Fleet

    fleet = Fleet(cache, _specs(args, cache), jobs=args.jobs, refresh=args.refresh)
    outcomes = fleet.run(lambda vm, kernel: vm.request({"type": "ping"})[0])
    rows, failed = [], 0
    for o in outcomes:
        h = o.hello or {}
        if o.error:
            failed += 1
            rows.append(
                (
                    o.spec.id,
                    o.spec.label,
                    o.kernel.version if o.kernel else "?",
                    "-",
                    "-",
                    "-",
                    "-",
                    f"error: {o.error}",
                )
            )
            continue
        assert o.kernel is not None
        rows.append(
            (
                o.spec.id,
                o.spec.label,
                o.kernel.version,
                h.get("release"),
                "yes" if h.get("btf") else "no",
                h.get("libbpf"),
                fleet.accel,
                f"{o.boot_seconds:.2f}",
            )
        )
    if args.json:
        keys = ("id", "label", "version", "release", "btf", "libbpf", "accel", "boot_seconds", "error")
        found = []
        for o in outcomes:
            h = o.hello or {}
            found.append(dict(zip(keys, (
                o.spec.id, o.spec.label, o.kernel.version if o.kernel else None,
                None if o.error else h.get("release"), None if o.error else bool(h.get("btf")),
                None if o.error else h.get("libbpf"), None if o.error else fleet.accel,
                None if o.error or o.boot_seconds is None else round(o.boot_seconds, 2),
                str(o.error) if o.error else None), strict=True)))  # fmt: skip
        _print_json({"kernels": found})
        return EXIT_INFRA if failed else EXIT_OK
    shown = [[_shown(v) if isinstance(v, str) else v for v in row] for row in rows]  # the guest's hello, errors
    print(tabulate(shown, headers=["id", "label", "version", "uname -r", "BTF", "libbpf", "accel", "boot s"],
                   disable_numparse=True))  # fmt: skip
    for o in outcomes:
        if o.error and o.console_tail:
            tail = "\n".join(_shown_lines(o.console_tail))
            print(f"\n--- console of {_shown(o.spec.id)} (last lines) ---\n{tail}", file=sys.stderr)
    return EXIT_INFRA if failed else EXIT_OK


def cmd_probe(args, cache: Cache) -> int:
    import json

    from compat.kernels.version import version_key
    from compat.results.inventory import diff, merged_helper_names
    from compat.run.checker import Checker, CheckOptions

    checker = Checker(cache, _specs(args, cache), CheckOptions(jobs=args.jobs, refresh=args.refresh))
    checker.fleet.prepare()
    outcomes = checker.fleet.run(lambda session, kernel: checker.probe(session, sorted(args.kfunc)))
    good = sorted((o for o in outcomes if o.value), key=lambda o: (version_key(o.kernel.version), o.spec.order))
    for o in outcomes:
        if o.error:
            print(f"compat: error: kernel {_shown(o.spec.id)}: {_shown(o.error)}", file=sys.stderr)
    names = merged_helper_names([o.value for o in good])
    if args.format == "json":
        doc: dict = {}
        for o in good:
            assert o.kernel is not None and o.value is not None  # good: the outcomes with a value
            doc[o.spec.id] = {"version": o.kernel.version, **o.value.to_json()}
        if args.diff:  # the kernels as without --diff, and what each adds or removes
            changes = []
            for prev, cur in itertools.pairwise(good):
                assert prev.value is not None and cur.value is not None
                d = diff(prev.value, cur.value, names)
                parts = {"prog_types": d.prog_types, "map_types": d.map_types, "helpers": d.helpers,
                         "kfuncs": d.kfuncs, "features": d.features}  # fmt: skip
                changes.append({"kernel": cur.spec.id, "relative_to": prev.spec.id,
                                "added": {k: list(v[0]) for k, v in parts.items()},
                                "removed": {k: list(v[1]) for k, v in parts.items()}})  # fmt: skip
            doc = {"kernels": doc, "diff": changes}
        print(json.dumps(doc, indent=1))
    elif args.diff:
        for prev, cur in itertools.pairwise(good):
            print(f"{_shown(cur.spec.id)} ({_shown(cur.kernel.version)}) relative to "
                  f"{_shown(prev.spec.id)} ({_shown(prev.kernel.version)}):")  # fmt: skip
            print("\n".join(diff_lines(diff(prev.value, cur.value, names))))
    else:
        rows = []
        for o in good:
            inv = o.value
            rows.append((o.spec.id, o.kernel.version, sum(inv.prog_types.values()), sum(inv.map_types.values()),
                         len(inv.all_helpers()), kfunc_count(inv)))  # fmt: skip
        print(tabulate(rows, headers=["id", "version", "prog types", "map types", "helpers", "kfuncs"],
                       disable_numparse=True))  # fmt: skip
        for kf in sorted(args.kfunc):
            for o in good:
                print(kfunc_line(kf, o.spec.id, o.value))
    return EXIT_INFRA if any(o.error for o in outcomes) else EXIT_OK


def kfunc_count(inv) -> str:
    """The probe table's kfunc count: a number only where the kernel's BTF lists its kfuncs (decl
    tags, 6.10 or so on); elsewhere only the names asked for were looked up."""
    if inv.kfuncs_source in (None, "decl_tag"):
        return str(len(inv.kfuncs))
    return "unknown (this kernel's BTF does not list kfuncs)"


def kfunc_line(kfunc: str, kernel_id: str, inv) -> str:
    """`compat probe --kfunc`'s line for one kernel: present or not, the program types a probe
    load may call it from, and the supported types the probe cannot load generically."""
    tried = inv.kfunc_allowed.get(kfunc, {})
    allowed = sorted(t for t, ok in tried.items() if ok)
    # struct_ops is tried against one struct_ops type ("struct_ops:tcp_congestion_ops").
    tried_types = {t.split(":")[0] for t in tried}
    unprobed = sorted(t for t, ok in inv.prog_types.items() if ok and t not in tried_types)
    present = "present" if kfunc in inv.kfuncs else "absent"
    text = f"{_shown(kfunc)} on {_shown(kernel_id)}: {present}; callable from: {_shown(', '.join(allowed)) or 'none'}"
    return text + (f"; not probed: {_shown(', '.join(unprobed))}" if unprobed and tried else "")


def _print_json(doc: object) -> int:
    """A command's --json output: texts from guests and archives stay data, escaped by the JSON
    encoder (ASCII only: no control or bidi character reaches a terminal)."""
    import json

    print(json.dumps(doc, indent=1))
    return EXIT_OK


def diff_lines(d) -> list[str]:
    """`compat probe --diff`'s lines for one kernel against the previous one (an InventoryDiff).
    Helper, kfunc and type names come from the guest: each is shown escaped (one terminal line)."""
    if d.empty():
        return ["  no change"]
    lines = []
    for what, (added, removed) in (("program types", d.prog_types), ("map types", d.map_types),
                                   ("helpers", d.helpers), ("kfuncs", d.kfuncs),
                                   ("features", d.features)):  # fmt: skip
        if added:
            lines.append(f"  + {what}: {', '.join(_shown(n) for n in added)}")
        if removed:
            lines.append(f"  - {what}: {', '.join(_shown(n) for n in removed)}")
    return lines
