"""``xs``: the ``xen.lowlevel.xs`` interface, in pure Python.

Scripts written for Xen's own Python binding (``tools/python/xen/lowlevel/xs/
xs.c``) run unchanged with ``from pyxs import xs``. The semantics follow that
module as built against libxenstore, checked side by side with it:

* transaction handles are hex strings (``"1A"``), ``""`` for none;
* ``read`` returns bytes, ``ls`` a list of str; both give None for a missing
  node; ``rm`` of a missing node is not an error;
* ``get_permissions`` returns ``[{'dom': 0, 'read': 0, 'write': 0}, ...]``,
  owner first, ``read`` and ``write`` as xs.c's bit values (1 or 0, 2 or 0);
  ``set_permissions`` takes that form (``read`` and ``write`` optional, any
  truth value) and, as xs.c does, makes dom0 the owner when the first entry
  grants access to another domain;
* ``watch(path, token)`` takes any object as token and ``read_watch`` returns
  ``(path, token)`` with that very object; ``read_watch`` blocks,
  ``check_watch`` returns None when nothing has fired; ``fileno`` is a
  descriptor that is readable while events are pending;
* ``transaction_end(t, abort=0)`` returns False when the commit conflicted;
* errors raise :class:`Error`-compatible exceptions: every exception an
  ``xs`` method raises is both the pyxs exception (a
  :class:`~pyxs.exceptions.XenStoreError` or
  :class:`~pyxs.exceptions.ConnectionError` subclass) and a
  ``RuntimeError``, which ``xen.lowlevel.xs.Error`` derives from, with
  ``e.args == (errno, strerror)`` and ``str(e)`` as xs.c's. Invalid
  arguments (a bad path) raise it with EINVAL, as the server would. A
  closed handle raises EINVAL too.
* connection failures carry the errno libxenstore leaves: ``xs()`` with no
  daemon, the connect's (ENOENT); the call during which the daemon went
  away, the failed system call's (EPIPE when the request could not be
  written, EBADF when the reply never came); every later call EBADF (the
  descriptor is gone), and also the first once a watch was added (the
  binding's reader thread has noticed by then); ``read_watch`` and
  ``check_watch`` EINVAL.
* ``xs()`` connects as ``xs_open`` does: the xenstored socket, else the
  XenBus device (:func:`pyxs.connection.default_connection`), so the same
  script runs in dom0 and in a guest.

Unlike xs.c, ``watch`` and ``unwatch`` also take str or bytes paths.
"""

from __future__ import annotations

import copy
import errno
import os
import threading
from collections.abc import Callable
from typing import Any, Union

from . import commands
from .client import Client, Monitor, Router
from .connection import default_connection
from .exceptions import (
    ConnectionError,
    InvalidArgumentError,
    NoEntryError,
    PyXSError,
    TransactionConflictError,
    XenStoreError,
)
from .paths import Permission, parse_perm
from .protocol import WatchEvent

__all__ = ["Error", "xs"]

#: pyxs 0.4 exported the base exception under this name.
Error = PyXSError

_Text = Union[str, bytes]
_RUNTIME: dict[type[PyXSError], type[PyXSError]] = {}


def _runtime_error(exc: PyXSError, code: int | None = None) -> PyXSError:
    """The same error as an instance of a subclass that is a RuntimeError
    too, with ``args == (errno, strerror)`` and xs.c's ``str()``.

    :param code: the errno, for errors that have none of their own (a
        ConnectionError's is its ``errno``).
    """
    cls = type(exc)
    compat = _RUNTIME.get(cls)
    if compat is None:
        # Exception.__str__ of (errno, strerror): "(2, 'No such file ...')",
        # as xen.lowlevel.xs.Error prints.
        namespace = {"__module__": __name__, "__str__": Exception.__str__}
        compat = type(cls.__name__, (cls, RuntimeError), namespace)
        _RUNTIME[cls] = compat
    error = compat.__new__(compat)
    error.__dict__.update(exc.__dict__)
    if code is None:
        code = getattr(exc, "errno", None)
    if code is None or isinstance(exc, XenStoreError):
        error.args = exc.args
    else:
        error.args = (code, os.strerror(code))
        error.__dict__["errno"] = code
    return error


def _errno_error(code: int) -> PyXSError:
    return _runtime_error(InvalidArgumentError(code, os.strerror(code)))


def _text(value: _Text) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise TypeError(f"expected str or bytes, not {type(value).__name__}")


def _str(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _handle(transaction: _Text | int | None) -> int:
    """A transaction handle as xs.c parses it: ``strtoul(t, NULL, 16)``."""
    if transaction is None:
        return 0
    if isinstance(transaction, int):
        return transaction
    text = _text(transaction).strip().lower()
    if text.startswith(b"0x"):
        text = text[2:]
    end = 0
    while end < len(text) and text[end : end + 1] in b"0123456789abcdef":
        end += 1
    return int(text[:end], 16) if end else 0


def _perm_entry(perm: dict[str, Any]) -> tuple[int, bool, bool]:
    if not isinstance(perm, dict):
        raise TypeError(f"a permission is a dict, not {type(perm).__name__}")
    unknown = set(perm) - {"dom", "read", "write"}
    if unknown:
        raise TypeError(f"unknown permission keys {sorted(unknown)!r}")
    if "dom" not in perm:
        raise TypeError("a permission needs 'dom'")
    return int(perm["dom"]), bool(perm.get("read", 0)), bool(perm.get("write", 0))


#: XS_PERM_READ and XS_PERM_WRITE, the bits xs.c reports.
_READ = 1
_WRITE = 2

_LETTER = {(False, False): "n", (True, False): "r", (False, True): "w", (True, True): "b"}


class _FilenoMonitor(Monitor):
    """The handle's monitor: it also calls ``notify`` for every event it
    queues (with the router's state lock held), for :meth:`xs.fileno`."""

    notify: Callable[[], None] | None = None

    def _deliver(self, event: WatchEvent) -> None:
        super()._deliver(event)
        if self.notify is not None:
            self.notify()

    def has_events(self) -> bool:
        """Whether events are queued, not yet taken."""
        return bool(self._events)


class xs:
    """A XenStore handle with the interface of ``xen.lowlevel.xs.xs``.

    :param readonly: accepted for compatibility (xenstored has had no
        read-only socket since Xen 4.15).
    :param unix_socket_path, xen_bus_path: where to connect, as for
        :class:`~pyxs.client.Client`; by default the xenstored socket.
    """

    def __init__(
        self,
        readonly: int = 0,
        *,
        unix_socket_path: str | None = None,
        xen_bus_path: str | None = None,
    ) -> None:
        try:
            if unix_socket_path or xen_bus_path:
                self.client = Client(unix_socket_path, xen_bus_path)
                self.client.connect()
            else:  # xs_open: the socket, else the XenBus device
                self.client = Client(router=Router(default_connection(connect=True)))
                self.client.connect()
        except PyXSError as exc:
            raise _runtime_error(exc) from None
        # As Client.monitor() makes it: on a copy, with its own transactions.
        self.monitor = _FilenoMonitor(copy.copy(self.client))
        #: wire token -> [the token object, how many watches use it]
        self._tokens: dict[str, list[Any]] = {}
        self._pipe: tuple[int, int] | None = None
        self._pump: threading.Thread | None = None
        self._closed = False
        #: watch() was called: libxenstore has a reader thread from then on
        self._reader = False

    def __repr__(self) -> str:
        return f"xs({self.client.router.connection!r})"

    # -- plumbing ----------------------------------------------------------------

    def _run(self, operation: Any, transaction: _Text | int | None = 0) -> Any:
        if self._closed:
            raise _errno_error(errno.EINVAL)
        connected = self.client.router.is_connected
        try:
            return self.client.execute(operation, tx_id=_handle(transaction))
        except XenStoreError as exc:
            raise _runtime_error(exc) from None
        except ValueError as exc:  # InvalidPath, InvalidPermission, ... (local)
            raise _errno_error(errno.EINVAL) from exc
        except ConnectionError as exc:
            raise self._lost(exc, connected) from None
        except PyXSError as exc:
            raise _runtime_error(exc) from None

    def _lost(self, exc: ConnectionError, connected: bool) -> PyXSError:
        """A call's ConnectionError, with the errno libxenstore would give.

        Its descriptor is closed after the first failure (EBADF from then
        on); with a reader thread (after a watch) that thread has already
        seen the end, unless the daemon died during this very call.
        """
        if not connected or self._reader:
            return _runtime_error(exc, errno.EBADF)
        return _runtime_error(exc, exc.errno)

    def _build(self, factory: Any, *args: Any) -> Any:
        if self._closed:
            raise _errno_error(errno.EINVAL)
        try:
            return factory(*args)
        except (ValueError, TypeError) as exc:
            raise _errno_error(errno.EINVAL) from exc

    # -- nodes -------------------------------------------------------------------

    def read(self, transaction: _Text, path: _Text) -> bytes | None:
        """The value at ``path``; None when it does not exist."""
        command = self._build(commands.read, _text(path))
        try:
            value: bytes = self._run(command, transaction)
        except NoEntryError:
            return None
        return value

    def write(self, transaction: _Text, path: _Text, data: _Text) -> None:
        """Set the value at ``path`` (str is written as UTF-8)."""
        self._run(self._build(commands.write, _text(path), _text(data)), transaction)

    def ls(self, transaction: _Text, path: _Text) -> list[str] | None:
        """The names of the children of ``path``; None when it does not exist."""
        procedure = self._build(commands.list_children, _text(path))
        try:
            names: list[bytes] = self._run(procedure, transaction)
        except NoEntryError:
            return None
        return [_str(name) for name in names]

    def mkdir(self, transaction: _Text, path: _Text) -> None:
        """Create ``path`` (and its parents) if missing."""
        self._run(self._build(commands.mkdir, _text(path)), transaction)

    def rm(self, transaction: _Text, path: _Text) -> None:
        """Remove ``path`` and its subtree; a missing node is fine."""
        try:
            self._run(self._build(commands.rm, _text(path)), transaction)
        except NoEntryError:
            pass

    def get_permissions(self, transaction: _Text, path: _Text) -> list[dict[str, int]]:
        """``[{'dom': int, 'read': 1 or 0, 'write': 2 or 0}, ...]``, owner first."""
        entries: list[bytes] = self._run(self._build(commands.get_perms, _text(path)), transaction)
        perms = []
        for entry in entries:
            try:
                perm = parse_perm(entry)
            except ValueError:
                continue
            perms.append(
                {
                    "dom": perm.domid,
                    "read": _READ if perm.read else 0,
                    "write": _WRITE if perm.write else 0,
                }
            )
        return perms

    def set_permissions(self, transaction: _Text, path: _Text, perms: list[dict[str, Any]]) -> None:
        """Set the permissions of ``path`` from a list of dicts.

        If the first entry grants access to a domain other than 0, dom0
        becomes the owner and that entry follows (as xs.c does).
        """
        if not isinstance(perms, list):
            raise _errno_error(errno.EINVAL)
        entries = [_perm_entry(p) for p in perms]
        if entries and entries[0][0] and (entries[0][1] or entries[0][2]):
            entries.insert(0, (0, False, False))
        permissions = [Permission(_LETTER[(r, w)], dom) for dom, r, w in entries]
        self._run(self._build(commands.set_perms, _text(path), permissions), transaction)

    # -- watches -----------------------------------------------------------------

    def watch(self, path: _Text, token: Any) -> None:
        """Watch ``path``; events carry ``token`` (any object)."""
        # As xs.c: the wire token is the object's id, and the object is kept
        # (once per watch) so that read_watch can return it.
        stub = str(id(token))
        self._reader = True  # xs_watch starts the reader thread first thing
        # Register before the request: the first event may beat the reply.
        self._hold(stub, token)
        try:
            self._watch_call(self.monitor.watch, path, stub)
        except BaseException:
            self._release(stub)
            raise

    def unwatch(self, path: _Text, token: Any) -> None:
        """Remove a watch added with the same path and token."""
        stub = str(id(token))
        try:
            self._watch_call(self.monitor.unwatch, path, stub)
        finally:
            self._release(stub)

    def _hold(self, stub: str, token: Any) -> None:
        entry = self._tokens.get(stub)
        if entry is None:
            self._tokens[stub] = [token, 1]
        else:
            entry[1] += 1

    def _release(self, stub: str) -> None:
        entry = self._tokens.get(stub)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._tokens[stub]

    def _watch_call(self, method: Any, path: _Text, stub: str) -> None:
        if self._closed:
            raise _errno_error(errno.EINVAL)
        connected = self.client.router.is_connected
        try:
            method(_text(path), stub)
        except XenStoreError as exc:
            raise _runtime_error(exc) from None
        except (ValueError, TypeError) as exc:
            raise _errno_error(errno.EINVAL) from exc
        except ConnectionError as exc:
            raise self._lost(exc, connected) from None
        except PyXSError as exc:
            raise _runtime_error(exc) from None

    def _next(self, timeout: float | None) -> tuple[str, Any] | None:
        if self._closed:
            raise _errno_error(errno.EINVAL)
        while True:
            try:
                event = self.monitor.next_event(timeout)
            except PyXSError as exc:
                # libxenstore: no event and the descriptor gone is EINVAL.
                raise _runtime_error(exc, errno.EINVAL) from None
            if event is None:
                if timeout is None and not self._closed:
                    continue  # spurious wake-up
                return None
            entry = self._tokens.get(_str(event.token))
            if entry is None:
                continue  # a watch removed meanwhile: its events are dropped
            return _str(event.path), entry[0]

    def read_watch(self) -> tuple[str, Any]:
        """Block until a watch fires; ``(path, token)``."""
        event = self._next(None)
        if event is None:  # closed meanwhile
            raise _errno_error(errno.EINVAL)
        self._rearm()
        return event

    def check_watch(self) -> tuple[str, Any] | None:
        """``(path, token)`` of a fired watch, or None; never blocks."""
        self._drain()
        event = self._next(0)
        self._rearm()
        return event

    def fileno(self) -> int:
        """A descriptor that is readable while watch events are pending.

        Select on it, then call :meth:`check_watch` until it returns None.
        The first call starts a helper thread that keeps reading the
        connection, as libxenstore does.
        """
        if self._closed:
            raise _errno_error(errno.EINVAL)
        if self._pipe is None:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)
            self._pipe = (read_fd, write_fd)
            self.monitor.notify = self._notify
            if self.monitor.has_events():
                self._notify()
            self._pump = threading.Thread(target=self._pump_loop, name="pyxs-xs-fileno")
            self._pump.daemon = True
            self._pump.start()
        return self._pipe[0]

    def _notify(self) -> None:
        pipe = self._pipe
        if pipe is not None:
            try:
                os.write(pipe[1], b"!")
            except OSError:
                pass  # full: readable anyway

    def _drain(self) -> None:
        pipe = self._pipe
        if pipe is None:
            return
        try:
            while os.read(pipe[0], 4096):
                pass
        except OSError:
            pass

    def _rearm(self) -> None:
        if self._pipe is not None and self.monitor.has_events():
            self._notify()

    def _pump_loop(self) -> None:
        # Be a reader of last resort, so events arrive with nobody calling.
        try:
            self.client.router.read_until_closed()
        except PyXSError:
            pass

    # -- transactions --------------------------------------------------------

    def transaction_start(self) -> str:
        """Start a transaction; its handle, a hex string."""
        tx_id: int = self._run(commands.transaction_start(), 0)
        return f"{tx_id:X}"

    def transaction_end(self, transaction: _Text, abort: int = 0) -> bool:
        """Commit (or, with ``abort``, abort) a transaction.

        :returns: True, or False when the commit conflicted: try again.
        """
        try:
            self._run(commands.transaction_end(not abort), transaction)
        except TransactionConflictError:
            return False
        return True

    # -- domains -----------------------------------------------------------------

    def introduce_domain(self, dom: int, page: int, port: int) -> None:
        """Tell xenstored about a domain: its ring page and event channel."""
        self._run(self._build(commands.introduce, dom, page, port))

    def release_domain(self, dom: int) -> None:
        """Tell xenstored to forget a domain."""
        self._run(self._build(commands.release, dom))

    def resume_domain(self, dom: int) -> None:
        """Clear a domain's shutdown flag."""
        self._run(self._build(commands.resume, dom))

    def set_target(self, dom: int, target: int) -> None:
        """Let ``dom`` act with ``target``'s rights."""
        self._run(self._build(commands.set_target, dom, target))

    def get_domain_path(self, domid: int) -> str:
        """``"/local/domain/<domid>"``, whether or not the domain exists."""
        path: bytes = self._run(self._build(commands.get_domain_path, domid))
        return _str(path)

    # -- the handle --------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; the handle is unusable afterwards.

        As in xs.c, the watches are forgotten, and closing twice raises.
        """
        if self._closed:
            raise _errno_error(errno.EINVAL)
        self._closed = True
        self._tokens.clear()
        self.monitor.unwatch_queue.clear()
        self.client.close()
        self.monitor.wake()
        pipe, self._pipe = self._pipe, None
        if self._pump is not None:
            self._pump.join(5.0)
        if pipe is not None:
            for fd in pipe:
                try:
                    os.close(fd)
                except OSError:
                    pass
