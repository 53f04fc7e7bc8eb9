"""How pyxs warns of a pyxs 0.4 name that has a better replacement."""

from __future__ import annotations

import warnings


def deprecated(old: str, new: str) -> None:
    """Warn that ``old`` is deprecated; point the warning at the caller's caller."""
    warnings.warn(f"{old} is deprecated (pyxs 0.4): use {new}", DeprecationWarning, stacklevel=3)
