"""Where compat keeps its cache and finds its shipped recipes."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def cache_root() -> Path:
    """The cache directory: $COMPAT_CACHE, else $XDG_CACHE_HOME/compat, else ~/.cache/compat."""
    explicit = os.environ.get("COMPAT_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "compat").resolve()


def data_file(name: str) -> Path:
    """A file shipped in compat/data (the default matrix and the image recipes)."""
    return Path(str(resources.files("compat") / "data" / name))


def agent_source_dir() -> Path:
    """The directory of the guest agent package, copied into the guest image."""
    import compat_agent

    return Path(compat_agent.__file__).parent
