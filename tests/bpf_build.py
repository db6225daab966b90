"""Build the project's own BPF test programs (programs/*.bpf.c) with clang.

`build_programs(out_dir)` compiles every source in parallel and returns {name: object path},
where name is the file name without ".bpf.c" (programs/bpf_loop.bpf.c -> "bpf_loop" ->
out_dir/bpf_loop.o). The sources need only clang and the headers of libbpf-dev and
linux-libc-dev (Debian: apt-get install clang llvm libbpf-dev): no vmlinux.h, no kernel tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

PROGRAMS_DIR = Path(__file__).resolve().parent.parent / "programs"
EXPECTED_FILE = PROGRAMS_DIR / "expected.yaml"
SUFFIX = ".bpf.c"


class BuildError(RuntimeError):
    """The BPF test programs could not be built (no clang, or a compile error)."""


def sources(programs_dir: Path = PROGRAMS_DIR) -> dict[str, Path]:
    """{name: source} of every programs/*.bpf.c."""
    return {p.name[: -len(SUFFIX)]: p for p in sorted(programs_dir.glob(f"*{SUFFIX}"))}


def find_clang() -> str:
    """The clang to use: $CLANG, else clang on PATH."""
    clang = os.environ.get("CLANG") or shutil.which("clang")
    if not clang:
        raise BuildError(
            "clang not found: the BPF test programs are built at test time "
            "(Debian: apt-get install clang llvm libbpf-dev; or set CLANG=/path/to/clang)"
        )
    return clang


@cache
def _multiarch_include() -> list[str]:
    """-I/usr/include/<multiarch> (asm/types.h for <linux/bpf.h>), if the host has one."""
    try:
        triple = subprocess.run(
            ["gcc", "-print-multiarch"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        triple = ""
    candidates = [f"/usr/include/{triple}"] if triple else []
    candidates.append("/usr/include/x86_64-linux-gnu")
    return [f"-I{d}" for d in candidates if Path(d, "asm").is_dir()][:1]


def compile_command(clang: str, source: Path, output: Path) -> list[str]:
    return [
        clang,
        "-g",
        "-O2",
        "-target",
        "bpf",
        "-D__TARGET_ARCH_x86",
        *_multiarch_include(),
        "-Wall",
        "-Werror",
        "-c",
        str(source),
        "-o",
        str(output),
    ]


def build_source(text: str, directory: Path, name: str) -> Path:
    """Compile BPF C source text (a test's own program) to directory/name.o."""
    source = Path(directory) / f"{name}.bpf.c"
    source.write_text(text)
    obj = source.with_name(f"{name}.o")
    subprocess.run(compile_command(find_clang(), source, obj), check=True, timeout=300)
    return obj


def expected_mismatches(results, arch: str = "amd64") -> list[str]:
    """Cells of programs/expected.yaml that results (ProgramResult objects) do not match, in words.
    arch "arm64": the results of compat check --arch arm64 (kernel ids "<id>-arm64"), against the
    amd64 cells with the file's arm64 differences applied."""
    import yaml

    doc = yaml.safe_load(EXPECTED_FILE.read_text())
    expected = doc["objects"]
    differs = (doc.get("arm64") or {}) if arch == "arm64" else {}
    cells = {(r.object, r.program, r.kernel): r for r in results}
    problems = []
    for obj, spec in expected.items():
        for prog, pspec in spec["programs"].items():
            for kernel, want in pspec["kernels"].items():
                want = ((differs.get(obj) or {}).get(prog) or {}).get("kernels", {}).get(kernel, want)
                if arch != "amd64":
                    kernel = f"{kernel}-{arch}"
                got = cells.get((f"{obj}.o", prog, kernel))
                if got is None:
                    problems.append(f"{obj}:{prog} on {kernel}: no result")
                    continue
                have = {"verdict": got.verdict, "stage": got.stage, "reason": got.reason}
                wanted = {k: want.get(k) for k in ("verdict", "stage", "reason")}
                if "attach" in want:
                    have["attach"], wanted["attach"] = got.attach.get("status"), want["attach"]
                if have != wanted:
                    problems.append(f"{obj}:{prog} on {kernel}: want {wanted}, got {have}: {got.message}")
    return problems


def build_programs(out_dir: Path | str, programs_dir: Path = PROGRAMS_DIR, jobs: int | None = None) -> dict[str, Path]:
    """Compile every programs/*.bpf.c into out_dir/<name>.o, in parallel; {name: object path}.

    Raises BuildError naming each source that failed, with clang's own message.
    """
    clang = find_clang()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    srcs = sources(programs_dir)
    if not srcs:
        raise BuildError(f"no *{SUFFIX} sources in {programs_dir}")

    def build(item: tuple[str, Path]) -> tuple[str, Path, str | None]:
        name, source = item
        obj = out / f"{name}.o"
        try:
            proc = subprocess.run(compile_command(clang, source, obj), capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return name, obj, "clang timed out"
        if proc.returncode != 0:
            return name, obj, (proc.stderr or proc.stdout).strip() or f"clang exited with {proc.returncode}"
        return name, obj, None

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        results = list(pool.map(build, srcs.items()))
    failures = [f"{srcs[name].name}:\n{error}" for name, _, error in results if error]
    if failures:
        raise BuildError("building the BPF test programs failed:\n" + "\n\n".join(failures))
    return {name: obj for name, obj, _ in results}


def embedding_binary(path: Path, objects: list[Path]) -> Path:
    """A host (x86-64) ELF file holding the objects as byte arrays, as a libbpf skeleton does."""
    arrays = [
        f"const unsigned char object{i}[] = {{{', '.join(str(b) for b in o.read_bytes())}}};"
        for i, o in enumerate(objects)
    ]
    src = path.with_suffix(".c")
    src.write_text("\n".join(arrays) + "\n")
    subprocess.run([find_clang(), "-c", "-O0", str(src), "-o", str(path)], check=True, timeout=300)
    return path


if __name__ == "__main__":
    # python tests/bpf_build.py OUT_DIR: build the test programs for a manual `compat check`.
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python tests/bpf_build.py OUT_DIR")
    try:
        built = build_programs(sys.argv[1])
    except BuildError as e:
        sys.exit(f"bpf_build: {e}")
    print("\n".join(str(p) for p in built.values()))
