"""pyxs 0.4's validation helpers, under their old names.

Kept so that ``from pyxs.helpers import check_path, ...`` goes on working.
The rules are those of :mod:`pyxs.paths`, which follow the servers: any
``@`` path may be watched (0.4 knew two), and a permission entry's number is
read as xenstored reads it (0.4 took decimal digits only).
"""

from __future__ import annotations

from .exceptions import XenStoreError, error_for_errno, error_from_payload
from .paths import PathLike, parse_perm
from .paths import validate_path as check_path
from .paths import validate_watch_path as check_watch_path

__all__ = ["check_path", "check_perms", "check_watch_path", "error"]


def check_perms(perms: list[PathLike]) -> list[PathLike]:
    """Check each entry of a permission list as 0.4 did; return the list.

    An empty list passes, as in 0.4 (the server refuses it, EINVAL).
    """
    for perm in perms:
        parse_perm(perm)
    return perms


def error(code: int | bytes) -> XenStoreError:
    """The exception for an errno value or an error name: ``error(22)``,
    ``error(b"EINVAL")``. Unknown ones give EINVAL (0.4 gave errno 0)."""
    if isinstance(code, bytes):
        return error_from_payload(code)
    return error_for_errno(code)
