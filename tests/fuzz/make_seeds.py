#!/usr/bin/env python3
"""Rebuild the fuzzers' seed corpus, tests/fuzz/seeds/ (committed: the fuzz runs need no clang).

    python tests/fuzz/make_seeds.py            # rewrites tests/fuzz/seeds/*.o

The corpus is every programs/*.bpf.c object, plus edge cases the mutator would rarely reach from
those: legacy `struct bpf_map_def` maps (sections "maps" and "maps/NAME"), an object without BTF
(built without -g), one with DWARF line tables but no .BTF.ext, one without .BTF and .BTF.ext at
all, and an x86-64 ELF file that embeds an object as a byte array (a libbpf skeleton's binary).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: bpf_build

from bpf_build import build_programs, build_source, compile_command, embedding_binary, find_clang  # noqa: E402
from bpf_sources import LEGACY  # noqa: E402

SEEDS = HERE / "seeds"

def main() -> int:
    SEEDS.mkdir(exist_ok=True)
    for old in SEEDS.glob("*.o"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="compat-seeds-") as tmp:
        work = Path(tmp)
        built = build_programs(work / "programs")
        for name, path in built.items():
            shutil.copy(path, SEEDS / f"{name}.o")
        shutil.copy(build_source(LEGACY, work, "legacy_maps"), SEEDS / "legacy_maps.o")
        # No -g: no BTF, no line info (what some old loaders' objects are).
        src = Path(built["counter"]).parent.parent / "counter.bpf.c"
        if not src.exists():
            from bpf_build import PROGRAMS_DIR

            src = PROGRAMS_DIR / "counter.bpf.c"
        cmd = [a for a in compile_command(find_clang(), src, SEEDS / "counter_nobtf.o") if a != "-g"]
        subprocess.run(cmd, check=True, timeout=300)
        objcopy = shutil.which("llvm-objcopy") or "llvm-objcopy"
        # DWARF line tables only (sourcemap's other path).
        subprocess.run([objcopy, "--remove-section", ".BTF.ext", "--remove-section", ".rel.BTF.ext",
                        str(built["bpf_loop"]), str(SEEDS / "bpf_loop_dwarf_only.o")], check=True)  # fmt: skip
        # Neither BTF nor DWARF: sections, symbols and relocations only.
        subprocess.run([objcopy, "--strip-debug", "--remove-section", ".BTF", "--remove-section", ".BTF.ext",
                        "--remove-section", ".rel.BTF.ext", str(built["mixed_verdicts"]),
                        str(SEEDS / "mixed_verdicts_stripped.o")], check=True)  # fmt: skip
        embedding_binary(work / "skeleton.o", [Path(built["counter"])])
        shutil.copy(work / "skeleton.o", SEEDS / "skeleton_x86.o")
    total = sum(p.stat().st_size for p in SEEDS.glob("*.o"))
    print(f"{len(list(SEEDS.glob('*.o')))} seeds, {total} bytes in {SEEDS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
