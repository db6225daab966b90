"""Kernel modules the agent loads on demand (the host ships them in /compat-modules).

Loading a module costs time under emulation, so modules only some attach checks need (the
dummy interface driver, clsact and cls_bpf) are not loaded at boot but when first needed.
"""

from __future__ import annotations

import os
import re
import subprocess

MODULE_DIR = "/compat-modules"


def _on_demand() -> list[str]:
    try:
        with open(f"{MODULE_DIR}/on-demand") as f:
            return f.read().split()
    except OSError:
        return []


def load(*names: str) -> list[str]:
    """insmod the named modules (shipped on demand, dependencies listed first); returns what
    could not be loaded. A module that is built in or already loaded needs nothing."""
    wanted = {n.replace("-", "_") for n in names}
    failed = []
    for name in _on_demand():
        if name not in wanted or os.path.isdir(f"/sys/module/{name}"):
            continue
        proc = subprocess.run(["insmod", f"{MODULE_DIR}/{name}.ko"], capture_output=True, text=True)
        if proc.returncode != 0 and not os.path.isdir(f"/sys/module/{name}"):
            failed.append(name)
    return failed


def load_given(modules: list[dict], payload: bytes) -> dict:
    """insmod modules the host sends: [{name, size}] with their ELF bytes one after another in the
    payload, dependencies first. A module already loaded is left alone."""
    failed: dict[str, str] = {}
    loaded: list[str] = []
    pos = 0
    for module in modules:
        name, size = re.sub(r"[^\w-]", "_", str(module.get("name"))), int(module.get("size") or 0)
        blob, pos = payload[pos : pos + size], pos + size
        if os.path.isdir(f"/sys/module/{name}"):
            continue
        path = f"/tmp/compat-module-{name}.ko"
        with open(path, "wb") as f:
            f.write(blob)
        try:
            proc = subprocess.run(["insmod", path], capture_output=True, text=True)
        finally:
            os.unlink(path)
        if proc.returncode != 0 and not os.path.isdir(f"/sys/module/{name}"):
            failed[name] = (proc.stderr or proc.stdout).strip()[-300:] or f"insmod exited with {proc.returncode}"
        else:
            loaded.append(name)
    return {"type": "modules_loaded", "loaded": loaded, "failed": failed}
