"""pyxs: XenStore access the Python way.

Importing pyxs does no I/O: nothing is read or connected until you ask.
"""

from __future__ import annotations

from .aio import AsyncClient
from .exceptions import (
    ConnectionError,
    InvalidOperation,
    InvalidPath,
    InvalidPayload,
    InvalidPermission,
    PyXSError,
    UnexpectedPacket,
    XenStoreError,
)
from .protocol import Op

__version__ = "0.5.0"

__all__ = [
    "AsyncClient",
    "ConnectionError",
    "InvalidOperation",
    "InvalidPath",
    "InvalidPayload",
    "InvalidPermission",
    "Op",
    "PyXSError",
    "UnexpectedPacket",
    "XenStoreError",
    "__version__",
]
