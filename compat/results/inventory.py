"""What a kernel offers BPF programs: program and map types, helpers, kfuncs.

Built from the guest's probe (libbpf's feature probes, the kernel's BTF, and probe loads of
the kfuncs the objects use), once per kernel and guest image, and cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Named kernel features the probe reports besides types, helpers and kfuncs.
FEATURES = ("struct_ops_link",)  # struct_ops maps with BPF_F_LINK (SEC(".struct_ops.link")), Linux 6.4


@dataclass
class Inventory:
    """One kernel's BPF features, as the guest probed them."""

    prog_types: dict[str, bool] = field(default_factory=dict)
    map_types: dict[str, bool] = field(default_factory=dict)
    helpers: dict[str, list[int]] = field(default_factory=dict)  # prog type -> available helper ids
    helper_names: dict[int, str] = field(default_factory=dict)
    kfuncs: set[str] = field(default_factory=set)  # kfuncs in vmlinux and module BTF
    kfuncs_checked: set[str] = field(default_factory=set)  # kfuncs asked for by name: absent means missing
    kfunc_allowed: dict[str, dict[str, bool]] = field(default_factory=dict)  # kfunc -> prog type -> ok
    features: dict[str, bool] = field(default_factory=dict)  # FEATURES name -> supported (absent: not probed)
    # Where kfuncs came from: "decl_tag" (the kernel's BTF lists every kfunc: 6.10 or so on) or
    # "requested" (it does not: only the names asked for were looked up; their count means nothing).
    kfuncs_source: str | None = None

    @classmethod
    def from_probe(cls, probe: dict) -> Inventory:
        """From the guest's probe_result message (unknown or missing parts stay empty)."""

        def bool_map(value) -> dict[str, bool]:
            return {str(k): bool(v) for k, v in value.items()} if isinstance(value, dict) else {}

        helpers = probe.get("helpers") if isinstance(probe.get("helpers"), dict) else {}
        names = probe.get("helper_names") if isinstance(probe.get("helper_names"), dict) else {}
        allowed = probe.get("kfunc_allowed") if isinstance(probe.get("kfunc_allowed"), dict) else {}
        features = probe.get("features") if isinstance(probe.get("features"), dict) else {}
        return cls(
            prog_types=bool_map(probe.get("prog_types")),
            map_types=bool_map(probe.get("map_types")),
            helpers={str(t): [i for i in v if isinstance(i, int)] for t, v in helpers.items() if isinstance(v, list)},
            helper_names={int(k): str(v) for k, v in names.items() if str(k).isdigit()},
            kfuncs={str(k) for k in probe.get("kfuncs_btf") or [] if isinstance(k, str)},
            kfunc_allowed={str(k): bool_map(v) for k, v in allowed.items()},
            features={k: features[k] for k in FEATURES if isinstance(features.get(k), bool)},
            kfuncs_source=probe["kfuncs_source"] if isinstance(probe.get("kfuncs_source"), str) else None,
        )

    def to_json(self) -> dict:
        return {
            "prog_types": self.prog_types,
            "map_types": self.map_types,
            "helpers": self.helpers,
            "helper_names": {str(k): v for k, v in sorted(self.helper_names.items())},
            "kfuncs_btf": sorted(self.kfuncs),
            "kfunc_allowed": self.kfunc_allowed,
            "features": self.features,
            "kfuncs_source": self.kfuncs_source,
        }

    def helper_available(self, prog_type: str | None, helper: int) -> bool | None:
        """Whether a program of this type may call this helper (None: not probed)."""
        ids = self.helpers.get(prog_type or "")
        if ids is None:
            return None
        return helper in ids

    def all_helpers(self) -> set[int]:
        return {h for ids in self.helpers.values() for h in ids}


def helper_label(helper: int, names: dict[int, str]) -> str:
    """'bpf_loop (181)', or '#181' when no kernel of the run knows its name."""
    name = names.get(helper)
    return f"{name} ({helper})" if name else f"#{helper}"


def merged_helper_names(inventories: list[Inventory]) -> dict[int, str]:
    """Helper names known to any kernel of the run: newer kernels name helpers older ones lack."""
    names: dict[int, str] = {}
    for inv in inventories:
        names.update(inv.helper_names)
    return names


@dataclass
class InventoryDiff:
    """What one kernel adds and removes relative to the previous one."""

    prog_types: tuple[list[str], list[str]]
    map_types: tuple[list[str], list[str]]
    helpers: tuple[list[str], list[str]]
    kfuncs: tuple[list[str], list[str]]
    features: tuple[list[str], list[str]] = ([], [])

    def empty(self) -> bool:
        return not any(a or r for a, r in (self.prog_types, self.map_types, self.helpers, self.kfuncs, self.features))


def diff(old: Inventory, new: Inventory, names: dict[int, str]) -> InventoryDiff:
    """Features new has that old lacks (added) and the reverse (removed)."""

    def d(a: set, b: set) -> tuple[list[str], list[str]]:
        return sorted(b - a), sorted(a - b)

    def on(m: dict[str, bool]) -> set[str]:
        return {k for k, v in m.items() if v}

    return InventoryDiff(
        prog_types=d(on(old.prog_types), on(new.prog_types)),
        map_types=d(on(old.map_types), on(new.map_types)),
        helpers=d(*({helper_label(h, names) for h in inv.all_helpers()} for inv in (old, new))),
        kfuncs=d(old.kfuncs, new.kfuncs),
        features=d(on(old.features), on(new.features)),
    )
