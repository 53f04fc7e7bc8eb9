"""The error hierarchy.

Two families, kept apart on purpose:

* local mistakes, found before anything is sent: :class:`InvalidPath`,
  :class:`InvalidPermission`, :class:`InvalidPayload`,
  :class:`InvalidOperation` (all ``ValueError`` too);
* what the other side said: :class:`XenStoreError` and one subclass per
  error name of ``xsd_errors[]`` (``ENOENT`` -> :class:`NoEntryError`, ...),
  built by table in :func:`error_from_payload`. That table's names and
  errno values are :class:`XsdError`, the one list of them (the embedded
  server answers with its members). Each carries ``.errno`` and
  keeps pyxs 0.4's ``e.args == (errno, strerror)``, so
  ``e.args[0] == errno.ENOENT`` still holds in old code.

Connection trouble is :class:`ConnectionError` (pyxs's own, as in pyxs 0.4).
"""

from __future__ import annotations

import enum
import errno as _errno
import os

__all__ = [
    "AlreadyConnectedError",
    "BusyError",
    "ConnectionError",
    "ExistsError",
    "InvalidArgumentError",
    "InvalidOperation",
    "InvalidPath",
    "InvalidPayload",
    "InvalidPermission",
    "IsDirectoryError",
    "NoEntryError",
    "NotEmptyError",
    "NotPermittedError",
    "NotSupportedError",
    "OutOfMemoryError",
    "PermissionDeniedError",
    "PyXSError",
    "QuotaExceededError",
    "ReadOnlyError",
    "TooBigError",
    "TransactionConflictError",
    "UnexpectedPacket",
    "XenStoreError",
    "XenStoreIOError",
    "XsdError",
    "error_for_errno",
    "error_from_payload",
]


class XsdError(enum.IntEnum):
    """The error names of ``xsd_errors[]`` in xs_wire.h, in its order.

    Each member's value is the errno it stands for; its name is what an
    ``ERROR`` packet carries (``b"ENOENT\\0"``).
    """

    EINVAL = _errno.EINVAL
    EACCES = _errno.EACCES
    EEXIST = _errno.EEXIST
    EISDIR = _errno.EISDIR
    ENOENT = _errno.ENOENT
    ENOMEM = _errno.ENOMEM
    ENOSPC = _errno.ENOSPC
    EIO = _errno.EIO
    ENOTEMPTY = _errno.ENOTEMPTY
    ENOSYS = _errno.ENOSYS
    EROFS = _errno.EROFS
    EBUSY = _errno.EBUSY
    EAGAIN = _errno.EAGAIN
    EISCONN = _errno.EISCONN
    E2BIG = _errno.E2BIG
    EPERM = _errno.EPERM

    @property
    def payload(self) -> bytes:
        """The payload of an ERROR packet carrying this error."""
        return self.name.encode("ascii") + b"\0"


class PyXSError(Exception):
    """Base class for all pyxs exceptions."""


class InvalidOperation(ValueError, PyXSError):
    """An operation code that XenStore does not define."""


class InvalidPayload(ValueError, PyXSError):
    """A payload over 4096 bytes, or an argument that is not 7-bit ASCII."""


class InvalidPath(ValueError, PyXSError):
    """A path that breaks XenStore's rules: only ``[A-Za-z0-9/_@-]``, no
    ``//``, no trailing ``/`` except for ``/``, not empty, at most 3072 bytes
    (2048 for a relative path)."""


class InvalidPermission(ValueError, PyXSError):
    """A permission that is not one of ``w<domid>``, ``r<domid>``,
    ``b<domid>`` or ``n<domid>``."""


class ConnectionError(PyXSError):  # noqa: A001 - pyxs 0.4's public name
    """The connection to XenStore failed, was closed, or is unusable.

    ``e.args`` is a message, as in pyxs 0.4; ``e.errno`` is the errno value
    libxenstore would leave for the same failure (the failed system call's,
    ``EBADF`` when the other side closed the connection or sent something
    that answers nothing), which :class:`pyxs.xs` raises as ``(errno,
    strerror)``.
    """

    #: the errno of the failure (see above)
    errno: int = _errno.EBADF

    def __init__(self, *args: object, errno: int | None = None) -> None:
        super().__init__(*args)
        if errno is not None:
            self.errno = errno

    def copy(self) -> ConnectionError:
        """A new exception of the same class, message and errno, with no
        traceback: for each caller to raise its own."""
        error = type(self).__new__(type(self))
        error.__dict__.update(self.__dict__)
        error.args = self.args
        return error


class UnexpectedPacket(ConnectionError):
    """The other side sent a packet that answers nothing we asked."""


class XenStoreError(PyXSError):
    """XenStore answered a request with an error.

    ``e.errno`` is the errno value, ``e.args`` is ``(errno, strerror)``.
    """

    #: the errno this class stands for (set on each subclass).
    code: int = _errno.EINVAL

    def __init__(self, code: int | None = None, message: str | None = None, *rest: object) -> None:
        if code is None:
            code = type(self).code
        if message is None:
            message = os.strerror(code)
        super().__init__(code, message, *rest)
        self.errno = code
        self.strerror = message

    @property
    def name(self) -> str:
        """The wire name of the error, for example ``"ENOENT"``."""
        if self.errno in _BY_ERRNO:
            return XsdError(self.errno).name
        # An errno XenStore does not send (an error made by hand): the C library's name.
        return _errno.errorcode.get(self.errno, "EINVAL")

    def __str__(self) -> str:
        extra = "".join(f": {x}" for x in self.args[2:])
        return f"[{self.name}] {self.strerror}{extra}"


class InvalidArgumentError(XenStoreError):
    """EINVAL: the server rejected the request's arguments."""

    code = _errno.EINVAL


class PermissionDeniedError(XenStoreError):
    """EACCES: the caller's domain may not do this."""

    code = _errno.EACCES


class ExistsError(XenStoreError):
    """EEXIST: already there (for example the same watch twice)."""

    code = _errno.EEXIST


class IsDirectoryError(XenStoreError):
    """EISDIR."""

    code = _errno.EISDIR


class NoEntryError(XenStoreError):
    """ENOENT: no such node, transaction, watch or domain."""

    code = _errno.ENOENT


class OutOfMemoryError(XenStoreError):
    """ENOMEM."""

    code = _errno.ENOMEM


class QuotaExceededError(XenStoreError):
    """ENOSPC: a quota of the caller's domain is exhausted."""

    code = _errno.ENOSPC


class XenStoreIOError(XenStoreError):
    """EIO."""

    code = _errno.EIO


class NotEmptyError(XenStoreError):
    """ENOTEMPTY."""

    code = _errno.ENOTEMPTY


class NotSupportedError(XenStoreError):
    """ENOSYS: the server does not know this operation."""

    code = _errno.ENOSYS


class ReadOnlyError(XenStoreError):
    """EROFS."""

    code = _errno.EROFS


class BusyError(XenStoreError):
    """EBUSY: for example a transaction started inside a transaction."""

    code = _errno.EBUSY


class TransactionConflictError(XenStoreError):
    """EAGAIN: the transaction conflicted with another change; retry it."""

    code = _errno.EAGAIN


class AlreadyConnectedError(XenStoreError):
    """EISCONN."""

    code = _errno.EISCONN


class TooBigError(XenStoreError):
    """E2BIG: the reply would not fit in one packet."""

    code = _errno.E2BIG


class NotPermittedError(XenStoreError):
    """EPERM: for example a guest changing a node's owner."""

    code = _errno.EPERM


#: errno -> the exception class standing for it, one per :class:`XsdError`.
_BY_ERRNO: dict[int, type[XenStoreError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        PermissionDeniedError,
        ExistsError,
        IsDirectoryError,
        NoEntryError,
        OutOfMemoryError,
        QuotaExceededError,
        XenStoreIOError,
        NotEmptyError,
        NotSupportedError,
        ReadOnlyError,
        BusyError,
        TransactionConflictError,
        AlreadyConnectedError,
        TooBigError,
        NotPermittedError,
    )
}

#: An ERROR payload's name -> its exception class.
_BY_NAME: dict[bytes, type[XenStoreError]] = {
    error.name.encode("ascii"): _BY_ERRNO[error] for error in XsdError
}


def error_for_errno(code: int, *context: object) -> XenStoreError:
    """The exception for an errno value (unknown values give EINVAL)."""
    cls = _BY_ERRNO.get(code)
    if cls is None:
        return InvalidArgumentError(_errno.EINVAL, os.strerror(_errno.EINVAL), *context)
    return cls(code, os.strerror(code), *context)


def error_from_payload(payload: bytes, *context: object) -> XenStoreError:
    """The exception for an ERROR packet's payload, ``b"ENOENT\\0"``.

    Unknown names give EINVAL, as libxenstore does.
    """
    cls = _BY_NAME.get(payload.rstrip(b"\0"), InvalidArgumentError)
    return cls(cls.code, os.strerror(cls.code), *context)
