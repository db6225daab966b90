"""The tree's layers, checked on the source: no import cycle, and nothing imports upward.

Every module's imports are read with the ast module (imports inside functions too: a lazy
import is still a dependency). LAYERS below is the one place that says the order in which data
flows; a module may import its own group and any group of a lower rank, nothing else.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"compat": ROOT / "compat", "compat_agent": ROOT / "guest-agent" / "compat_agent"}

# (rank, group, module prefixes), lowest first. Groups of the same rank may not import each other:
# guests, object files and results are three separate things that only a run brings together.
LAYERS = [
    (0, "shared with the guest", ["compat_agent.wire", "compat_agent.elf", "compat_agent"]),
    (1, "base", ["compat.errors", "compat.paths", "compat.cache", "compat.text", "compat"]),
    (2, "kernels", ["compat.kernels"]),
    (3, "guest", ["compat.guest"]),
    (3, "objects", ["compat.objects"]),
    (3, "results", ["compat.results"]),
    (4, "run", ["compat.run"]),
    (5, "reports", ["compat.reports"]),
    (6, "cli", ["compat.cli", "compat.__main__", "compat.api"]),
]
# What the host may import from the agent: its version, the wire contract and the ELF readers,
# never the libbpf bindings, the checker, the attach checks or the probes.
HOST_MAY_IMPORT_FROM_AGENT = ("compat_agent", "compat_agent.wire", "compat_agent.elf")
# Results and reports order kernels by version, but never pull in the archive or the cache.
KERNELS_FOR_RESULTS = ("compat.kernels.version",)


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for pkg, top in PACKAGES.items():
        for f in top.rglob("*.py"):
            parts = [pkg, *f.relative_to(top).with_suffix("").parts]
            is_pkg = parts[-1] == "__init__"
            mods[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return mods


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The project modules one module imports (a `from P import x` of a module x counts as P.x)."""
    path, is_pkg = MODULES[name]
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> tuple[int, str]:
    best = max((p for _, _, prefixes in LAYERS for p in prefixes if module == p or module.startswith(p + ".")), key=len)
    return next((rank, group) for rank, group, prefixes in LAYERS if best in prefixes)


def test_every_module_has_a_layer() -> None:
    host = [m for m in MODULES if m.split(".")[0] == "compat"]
    assert all(_layer(m) for m in host)


def test_no_import_cycle() -> None:
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] == "compat"))
def test_host_imports_only_downward(module: str) -> None:
    rank, group = _layer(module)
    upward = []
    for target in sorted(GRAPH[module]):
        if target.split(".")[0] == "compat_agent":
            if not any(target == p or target.startswith(p + ".") for p in HOST_MAY_IMPORT_FROM_AGENT[1:]) and (
                target != "compat_agent"
            ):
                upward.append(f"{target} (the guest's machinery)")
            continue
        t_rank, t_group = _layer(target)
        if t_rank > rank or (t_rank == rank and t_group != group):
            upward.append(f"{target} ({t_group})")
        if group in ("results", "reports") and t_group == "kernels" and target not in KERNELS_FOR_RESULTS:
            upward.append(f"{target} (apt or cache code: only {', '.join(KERNELS_FOR_RESULTS)})")
    assert upward == [], f"{module} ({group}) imports"


def test_the_agent_never_imports_the_host() -> None:
    agent = [m for m in MODULES if m.split(".")[0] == "compat_agent"]
    wrong = {m: sorted(t for t in GRAPH[m] if t.split(".")[0] == "compat") for m in agent}
    assert {m: t for m, t in wrong.items() if t} == {}


def test_the_shared_agent_packages_import_nothing_else_of_the_agent() -> None:
    # wire/ and elf/ run on the host too: they must not pull in the bindings (ctypes, libbpf).
    shared = [m for m in MODULES if _layer_agent(m)]
    wrong = {m: sorted(t for t in GRAPH[m] if not _layer_agent(t) and t != "compat_agent") for m in shared}
    assert {m: t for m, t in wrong.items() if t} == {}


def _layer_agent(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in HOST_MAY_IMPORT_FROM_AGENT[1:])


def test_a_planted_upward_import_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The check itself works: a results module that imports the fleet (guest) or apt is reported.
    monkeypatch.setitem(GRAPH, "compat.results.compare", {*GRAPH["compat.results.compare"], "compat.guest.fleet"})
    with pytest.raises(AssertionError):
        test_host_imports_only_downward("compat.results.compare")
    monkeypatch.setitem(GRAPH, "compat.results.compare", {"compat.kernels.apt"})
    with pytest.raises(AssertionError):
        test_host_imports_only_downward("compat.results.compare")
