"""pyxs 0.4's validation helpers, under their old names.

Kept so that ``from pyxs.helpers import check_path, ...`` goes on working.
The rules are those of :mod:`pyxs.paths` (stricter than 0.4's in places: an
``@`` path is only a watch path, and a permission list cannot be empty).
"""

from __future__ import annotations

from typing import Union

from .exceptions import XenStoreError, error_for_errno, error_from_payload
from .paths import validate_path as check_path
from .paths import validate_perms as check_perms
from .paths import validate_watch_path as check_watch_path

__all__ = ["check_path", "check_perms", "check_watch_path", "error"]


def error(code: Union[int, bytes]) -> XenStoreError:
    """The exception for an errno value or an error name: ``error(22)``,
    ``error(b"EINVAL")``. Unknown ones give EINVAL (0.4 gave errno 0)."""
    if isinstance(code, bytes):
        return error_from_payload(code)
    return error_for_errno(code)
