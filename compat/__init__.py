"""compat: cross-kernel BPF program compatibility checker."""

__version__ = "0.1.0"
