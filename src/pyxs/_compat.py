"""pyxs 0.4's module name for the ``xen.lowlevel.xs`` interface.

Kept so that ``from pyxs._compat import xs, Error`` goes on working; the
interface lives in :mod:`pyxs.compat`.
"""

from __future__ import annotations

from .compat import Error, xs

__all__ = ["Error", "xs"]
