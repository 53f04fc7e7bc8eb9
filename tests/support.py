"""Helpers shared by tests in several directories (an ordinary module: a
``conftest.py`` is pytest's to load, and importing one by name breaks when
only some directories are collected)."""

from __future__ import annotations

import os
from pathlib import Path

#: What may lie at a XenBus device's path without being one (make_non_device).
NON_DEVICES = ["file", "empty file", "fifo", "directory"]


def make_non_device(path: Path, kind: str) -> None:
    """Put at ``path`` a ``kind`` of :data:`NON_DEVICES`; a "file" holds
    ``b"keep me"``, so that a test can see nothing was written into it."""
    if kind == "file":
        path.write_bytes(b"keep me")
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        raise ValueError(kind)
