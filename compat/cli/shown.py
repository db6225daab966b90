"""Texts from objects, guests and kernels as compat's own terminal lines, and the kernels a command names."""

from __future__ import annotations

from compat.kernels.matrix import KernelSpec, load_matrix


def _shown(text: object) -> str:
    """Text from an object, a guest or a kernel (a name, a path, a message) as one terminal line
    (compat/reports/escape.py: imported here, not at start-up, where it would cost 0.1 s)."""
    from compat.reports.escape import terminal

    return terminal(text)


def _shown_lines(text: str) -> list[str]:
    """A guest's multi-line text (a console tail) as escaped terminal lines."""
    from compat.reports.escape import terminal_lines

    return terminal_lines(text)


def _specs(args, cache=None) -> list[KernelSpec]:
    """The kernels a command names (matrix ids, --kernel); with a cache, a series
    (debian:6.12.*, releases: in the matrix) expanded to its point releases."""
    wanted = list(getattr(args, "ids", None) or []) + list(args.kernel or [])
    specs = load_matrix(args.matrix, getattr(args, "arch", None)).select(wanted)
    if cache is not None and any(s.releases for s in specs):
        from compat.kernels.series import expand
        from compat.kernels.sources import KernelStore

        specs = expand(KernelStore(cache, refresh=getattr(args, "refresh", False)), specs)
    return specs
