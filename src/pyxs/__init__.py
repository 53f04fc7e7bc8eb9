"""pyxs: XenStore access the Python way.

>>> import pyxs
>>> with pyxs.Client() as c:  # doctest: +SKIP
...     c[b"/foo/bar"] = b"baz"
...     c[b"/foo/bar"]
b'baz'

Importing pyxs does no I/O: nothing is read or connected until you ask.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from .client import Client, Event, Monitor, RequestTimeout, Router
from .compat import Error, xs
from .exceptions import (
    AlreadyConnectedError,
    BusyError,
    ConnectionError,
    ExistsError,
    InvalidArgumentError,
    InvalidOperation,
    InvalidPath,
    InvalidPayload,
    InvalidPermission,
    IsDirectoryError,
    NoEntryError,
    NotEmptyError,
    NotPermittedError,
    NotSupportedError,
    OutOfMemoryError,
    PermissionDeniedError,
    PyXSError,
    QuotaExceededError,
    ReadOnlyError,
    TooBigError,
    TransactionConflictError,
    UnexpectedPacket,
    XenStoreError,
    XenStoreIOError,
)
from .protocol import Op

if TYPE_CHECKING:
    from .aio import AsyncClient

__version__ = "0.5.0"

__all__ = [
    "AlreadyConnectedError",
    "AsyncClient",
    "BusyError",
    "Client",
    "ConnectionError",
    "Error",
    "Event",
    "ExistsError",
    "InvalidArgumentError",
    "InvalidOperation",
    "InvalidPath",
    "InvalidPayload",
    "InvalidPermission",
    "IsDirectoryError",
    "Monitor",
    "NoEntryError",
    "NotEmptyError",
    "NotPermittedError",
    "NotSupportedError",
    "Op",
    "OutOfMemoryError",
    "PermissionDeniedError",
    "PyXSError",
    "QuotaExceededError",
    "ReadOnlyError",
    "RequestTimeout",
    "Router",
    "TooBigError",
    "TransactionConflictError",
    "UnexpectedPacket",
    "XenStoreError",
    "XenStoreIOError",
    "__version__",
    "monitor",
    "xs",
]


@contextmanager
def monitor(*args: Any, **kwargs: Any) -> Iterator[Monitor]:
    """A :class:`Monitor` on a client of its own, for one ``with`` block.

    All arguments go to :class:`Client`.

    >>> with pyxs.monitor() as m:  # doctest: +SKIP
    ...     m.watch(b"/vm", b"token")
    ...     next(m.wait())
    Event(path=b'/vm', token=b'token')
    """
    with Client(*args, **kwargs) as client, client.monitor() as m:
        yield m


def __getattr__(name: str) -> Any:
    # AsyncClient is imported on first use: importing asyncio costs ~50 ms,
    # which every short-lived process (the pyxs command) would pay otherwise.
    if name == "AsyncClient":
        from .aio import AsyncClient

        globals()["AsyncClient"] = AsyncClient
        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
