"""Classification of saved results from rebuilt guest records: the recorded reason and message, again?

    python bench/classify_parity.py RESULT.json [RESULT.json ...] [--probes DIR] [--show N]

For every rejected record of the result files (compat/v1, as `compat check --format json`
writes them) it rebuilds the guest's program record as well as a result allows (the guest's
message is the record's detail; libbpf's lines, the verifier log, helpers and stats are kept;
the object's maps, externs, kfuncs and open log are not in a result), gives it the facts the
agent sends for those texts (what the kernel's and libbpf's words say, compat_agent.wire.textfacts;
what the agent now sends as facts directly is read back from its old wording, here: results
written before the agent sent facts keep only its sentences) and the modules the host
loaded (read back from the host's own note), and classifies it with compat.results.classify,
without an inventory and with every kernel inventory cached under --probes (default
~/.cache/compat/probes). Prints the records no inventory reproduces (at most --show) and a
summary: how faithful the rebuilding and the fact classifier are to what was recorded. Exit 0
always (a rebuilt record lacks what a result does not keep), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "guest-agent")]

from compat_agent.wire.textfacts import program_facts  # noqa: E402

from compat.results import classify as fact_classify  # noqa: E402
from compat.results.inventory import Inventory  # noqa: E402

# The agent's own sentences in results written before it sent facts, and the facts it sends
# for them today (checker/check.py, checker/state.py). Only this bench tool reads them: the
# product's textfacts reads the kernel's and libbpf's words alone.
_OLD_TYPE_OPTION = re.compile(r"^--program-type names section '(.*)', which libbpf (\S+) does not know")
_OLD_LEGACY_UNSUPPORTED = re.compile(r"compat's legacy-map loader cannot load it either: ([^)\n]*)")
_OLD_WEAK_KFUNC = re.compile(r"calls kfunc '(\w+)', which this kernel does not have")
_OLD_POISONED = re.compile(r"calls a kfunc this kernel does not have")
_OLD_SO_UNUSED = re.compile(r"a struct_ops program no struct_ops map uses")
_OLD_SO_SIBLING = re.compile(r"its struct_ops map '([\w.]+)' cannot be created without program '(\w+)'")
_OLD_SO_FAILED = re.compile(r"its struct_ops map '([\w.]+)' could not be created")

_NOTE = "[compat: module "
_LOADED = " loaded first: it defines "


def host_modules(libbpf_log: str) -> tuple[dict[str, str], str]:
    """The host's own notes on the modules it loaded first (symbol -> module), and libbpf's log
    without them (the guest never sees them: phase 2 passes the modules as data)."""
    modules: dict[str, str] = {}
    kept = []
    for line in libbpf_log.split("\n"):
        if line.startswith(_NOTE) and line.endswith("]"):
            body = line[len(_NOTE) : -1]
            if _LOADED in body:
                module, _, uses = body.partition(_LOADED)
                for symbol in uses.split(", "):
                    modules.setdefault(symbol, module)
            continue
        kept.append(line)
    return modules, "\n".join(kept)


def old_agent_facts(message: str, texts: str) -> list[dict[str, Any]]:
    """The facts the agent sends directly today, read back from its sentences in an old result
    (message: the program's; texts: every text of the record, joined)."""
    facts: list[dict[str, Any]] = []
    m = _OLD_TYPE_OPTION.match(message)
    if m:
        facts.append({"code": "unknown_type_option", "section": m.group(1), "libbpf": m.group(2)})
    facts += [{"code": "legacy_unsupported", "reason": m.group(1)} for m in _OLD_LEGACY_UNSUPPORTED.finditer(texts)]
    facts += [{"code": "kfunc_unresolved", "name": m.group(1)} for m in _OLD_WEAK_KFUNC.finditer(texts)]
    if _OLD_POISONED.search(texts):
        facts.append({"code": "poisoned_kfunc_call"})
    if _OLD_SO_UNUSED.search(texts):
        facts.append({"code": "struct_ops_unused", "referenced": False})
    facts += [{"code": "struct_ops_sibling", "map": m.group(1), "program": m.group(2)}
              for m in _OLD_SO_SIBLING.finditer(texts)]  # fmt: skip
    facts += [{"code": "struct_ops_map_failed", "map": m.group(1)} for m in _OLD_SO_FAILED.finditer(texts)]
    return facts


def with_facts(program: dict[str, Any], obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A guest program record with the facts the guest sends (the agent's own first, read back
    from its old sentences, then what the kernel's and libbpf's texts say), and the modules the
    host loaded first (from its notes)."""
    modules, libbpf_log = host_modules(str(program.get("libbpf_log") or ""))
    maps = [str(m.get("name")) for m in obj.get("maps") or [] if isinstance(m, dict)]
    message, log = str(program.get("message") or ""), str(program.get("log") or "")
    open_log = str((obj.get("open") or {}).get("libbpf_log") or "")
    own = old_agent_facts(message, "\n".join((message, libbpf_log, log, open_log)))
    return {**program, "facts": [*own, *program_facts(message, libbpf_log, log, open_log, maps)]}, modules


def classified(
    program: dict[str, Any], obj: dict[str, Any], inv: Inventory | None, names: dict[int, str]
) -> tuple[Any, Any]:
    """The classification of one rebuilt record (reason, message), from its facts."""
    record, modules = with_facts(program, obj)
    programs = [with_facts(p, obj)[0] for p in obj.get("programs") or []]
    new = fact_classify.classify(record, {**obj, "programs": programs}, inv, names, modules)
    return new.reason, new.message


def guest_records(result: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(host record, rebuilt guest record, rebuilt object) for every rejected record."""
    rejected = [r for r in result.get("results") or [] if isinstance(r, dict) and r.get("verdict") == "rejected"]
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    out = []
    for r in rejected:
        gp = {
            "program": r.get("program"), "section": r.get("section"), "prog_type": r.get("prog_type"),
            "verdict": "rejected", "stage": r.get("stage"), "errno": r.get("errno"), "message": r.get("detail"),
            "libbpf_log": r.get("libbpf_log") or "", "log": r.get("log") or "", "helpers": r.get("helpers") or [],
            "kfuncs": [], "stats": r.get("stats") or {},
        }  # fmt: skip
        by_cell[(str(r.get("object_sha256")), str(r.get("kernel")))].append(gp)
        out.append((r, gp, by_cell[(str(r.get("object_sha256")), str(r.get("kernel")))]))
    return [(r, gp, {"open": {}, "maps": [], "externs": [], "programs": siblings}) for r, gp, siblings in out]


def inventories(probes: Path) -> list[tuple[str, Inventory | None]]:
    """No inventory, then every kernel inventory cached by compat check."""
    found: list[tuple[str, Inventory | None]] = [("none", None)]
    for manifest in sorted(probes.glob("*/manifest.json")):
        probe = (json.loads(manifest.read_text()).get("meta") or {}).get("probe")
        if isinstance(probe, dict):
            found.append((manifest.parent.name[:12], Inventory.from_probe(probe)))
    return found


def main(argv: list[str] | None = None) -> int:
    """Compare the two classifiers on result files; exit 0 when they agree on every record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--probes", type=Path, default=Path.home() / ".cache" / "compat" / "probes")
    parser.add_argument("--show", type=int, default=20)
    args = parser.parse_args(argv)
    invs = inventories(args.probes)
    names = {k: v for _, inv in invs if inv for k, v in inv.helper_names.items()}  # as the host merges them
    records = recorded = shown = 0
    for path in args.results:
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            print(f"classify_parity: error: cannot read {path}: {e}", file=sys.stderr)
            return 2
        for host, gp, obj in guest_records(result):
            records += 1
            want = (host.get("reason"), host.get("message"))
            got = [classified(gp, obj, inv, names) for _, inv in invs]
            if want in got:
                recorded += 1
            elif shown < args.show:
                shown += 1
                print(f"{path.name}: {host.get('object')}/{host.get('program')} on {host.get('kernel')}\n"
                      f"  recorded: {want}\n  now: {got[0]}")  # fmt: skip
    print(f"the rebuilt record reproduces the recorded reason and message for {recorded}/{records}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
