"""pyxs: XenStore access the Python way.

>>> import pyxs
>>> with pyxs.Client() as c:  # doctest: +SKIP
...     c[b"/foo/bar"] = b"baz"
...     c[b"/foo/bar"]
b'baz'

Importing pyxs does no I/O: nothing is read or connected until you ask.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

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
    from .client import Client, Event, Monitor, RequestTimeout, Router
    from .compat import Error, xs

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


def monitor(*args: Any, **kwargs: Any) -> AbstractContextManager[Monitor]:
    """A :class:`Monitor` on a client of its own, for one ``with`` block.

    All arguments go to :class:`Client`.

    >>> with pyxs.monitor() as m:  # doctest: +SKIP
    ...     m.watch(b"/vm", b"token")
    ...     next(m.wait())
    Event(path=b'/vm', token=b'token')
    """
    from contextlib import contextmanager

    from .client import Client

    @contextmanager
    def monitoring() -> Iterator[Monitor]:
        with Client(*args, **kwargs) as client, client.monitor() as m:
            yield m

    return monitoring()


#: Public names imported on first use, and the module each comes from.
#: Importing asyncio (AsyncClient) costs ~50 ms and the threaded client a few
#: more, which every short-lived process (the pyxs command) would pay.
_LAZY = {
    "AsyncClient": "aio",
    "Client": "client",
    "Event": "client",
    "Monitor": "client",
    "RequestTimeout": "client",
    "Router": "client",
    "Error": "compat",
    "xs": "compat",
}
_SUBMODULES = frozenset({"aio", "client", "compat", "connection", "cli", "server", "testing"})


def __getattr__(name: str) -> Any:
    from importlib import import_module

    module = _LAZY.get(name)
    if module is not None:
        value = getattr(import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:  # "import pyxs; pyxs.client" worked when it was eager
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
