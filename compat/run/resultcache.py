"""The result cache: a guest's verdicts on one object, kept per kernel, image and options.

What the guest says about an object is a pure function of the object (its bytes and the name
it is loaded under), the kernel (its packages), the guest image (libbpf, python, the agent's
sources) and the check's options (attach or not, guest memory). All of them are in the key,
so a re-check of an unchanged object on a kernel it was checked on needs no VM at all.

What is kept is the guest's validated check_result reply (not the host's classification:
that also depends on what the other kernels of a run know, e.g. helper names), with the
slice of the kernel's kfunc probe the object's kfuncs need, the guest's hello (uname -r,
libbpf, BTF) and the accelerator that produced it. A guest failure (an "error" cell) is
never kept: only replies that passed validation are, and not those that show the guest ran
out of open files (EMFILE, ENFILE: a limit of the guest, never a verdict; the agent answers
such a check with an error, this is the host's own guard, on writing and on reading).

One small JSON file per entry, written atomically (rename), checked on read (key, schema and
a sha256 of the payload): a damaged entry is a miss, never a wrong verdict.
"""

from __future__ import annotations

import errno
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from compat_agent import AGENT_VERSION
from compat_agent.wire.framing import PROTOCOL_VERSION

from compat.cache import Cache, mark_used, sha256_json, write_atomic
from compat.results.inventory import Inventory

KIND = "results"
SCHEMA = "compat-result-cache/v1"
_FILE_ERRNOS = {errno.EMFILE, errno.ENFILE, -errno.EMFILE, -errno.ENFILE}


@dataclass(frozen=True)
class CachedResult:
    """One object's verdicts on one kernel, as a guest gave them."""

    reply: dict  # the guest's check_result (validated when it was received)
    kfuncs: dict  # the kernel's kfunc probe, for this object's kfuncs only (see kfunc_slice)
    hello: dict  # the guest's hello: release, libbpf, btf
    accel: str | None


def out_of_files(reply: dict) -> bool:
    """Whether a check_result says the guest ran out of open files anywhere (opening the object,
    creating a map, loading a program): such a reply holds no verdict to keep."""
    records = [reply.get("open"), *(reply.get("maps") or []), *(reply.get("programs") or [])]
    return any(isinstance(r, dict) and r.get("errno") in _FILE_ERRNOS for r in records)


def kfunc_externs(reply: dict) -> set[str]:
    """The kfuncs an object declares (from the guest's reply)."""
    return {e["name"] for e in reply.get("externs") or [] if isinstance(e, dict) and e.get("kind") == "kfunc"}


def kfunc_slice(reply: dict, inventory: Inventory) -> dict:
    """What the classifier needs to know about this object's kfuncs on this kernel."""
    used = kfunc_externs(reply)
    return {
        "kfuncs": sorted(used & inventory.kfuncs),
        "checked": sorted(used & inventory.kfuncs_checked),
        "allowed": {k: inventory.kfunc_allowed[k] for k in sorted(used) if k in inventory.kfunc_allowed},
    }


def apply_kfunc_slice(inventory: Inventory, kfuncs: dict) -> None:
    """Merge a kfunc slice into a kernel's inventory (the union of slices is the run's probe)."""
    inventory.kfuncs |= set(kfuncs.get("kfuncs") or [])
    inventory.kfuncs_checked |= set(kfuncs.get("checked") or [])
    for name, allowed in (kfuncs.get("allowed") or {}).items():
        inventory.kfunc_allowed[name] = dict(allowed)


class ResultCache:
    """Cached guest verdicts for one run's image and options (disabled: every lookup misses and
    nothing is stored)."""

    def __init__(
        self, cache: Cache, image_key: str, options: dict, enabled: bool = True, images: dict[str, str] | None = None
    ):
        self.cache = cache
        self.image_key = image_key
        self.images = dict(images or {})  # per architecture: the guest image its kernels boot
        self.options = dict(options)
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def key(self, object_sha256: str, object_name: str, kernel_key: str, arch: str = "amd64") -> str:
        """The entry's key: the object, the kernel, the guest image of the kernel's architecture,
        the agent and the options (an arm64 entry also names its arch; amd64 keys stay as they were)."""
        key = {
            "schema": SCHEMA,
            "object": object_sha256,
            "name": object_name,
            "kernel": kernel_key,
            "image": self.images.get(arch, self.image_key),
            "agent": AGENT_VERSION,
            "protocol": PROTOCOL_VERSION,  # a reply of another protocol (without facts) is never reused
            "options": self.options,
        }
        return sha256_json(key if arch == "amd64" else {**key, "arch": arch})

    def _path(self, key: str) -> Path:
        return self.cache.root / KIND / f"{key}.json"

    def get(self, object_sha256: str, object_name: str, kernel_key: str, arch: str = "amd64") -> CachedResult | None:
        """The cached result, or None (missing, damaged, or the cache is disabled)."""
        if not self.enabled:
            return None
        key = self.key(object_sha256, object_name, kernel_key, arch)
        found = self._read(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def _read(self, key: str) -> CachedResult | None:
        try:
            doc = json.loads(self._path(key).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("key") != key:
            return None
        payload = doc.get("payload")
        if not isinstance(payload, dict) or doc.get("sha256") != _digest(payload):
            return None
        reply, kfuncs, hello = payload.get("reply"), payload.get("kfuncs"), payload.get("hello")
        if not (isinstance(reply, dict) and reply.get("type") == "check_result") or out_of_files(reply):
            return None
        if not isinstance(kfuncs, dict) or not isinstance(hello, dict):
            return None
        mark_used(self._path(key))  # for `compat cache prune`: results are plain files, not entries
        accel = payload.get("accel") if payload.get("accel") in ("kvm", "tcg") else None
        return CachedResult(reply, kfuncs, hello, accel)

    def put(
        self,
        object_sha256: str,
        object_name: str,
        kernel_key: str,
        reply: dict,
        inventory: Inventory,
        hello: dict | None,
        accel: str | None,
        arch: str = "amd64",
    ) -> None:
        """Keep one validated guest reply (best effort: a cache that cannot be written is skipped)."""
        if not self.enabled or not reply or reply.get("type") != "check_result" or out_of_files(reply):
            return
        key = self.key(object_sha256, object_name, kernel_key, arch)
        payload = {
            "reply": reply,
            "kfuncs": kfunc_slice(reply, inventory),
            "hello": {k: v for k, v in (hello or {}).items() if k in ("release", "libbpf", "btf", "python", "agent")},
            "accel": accel,
        }
        doc = {"schema": SCHEMA, "key": key, "sha256": _digest(payload), "payload": payload}
        write_atomic(self._path(key), json.dumps(doc, separators=(",", ":")))


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
