"""Every XenStore operation, defined once for every front end.

An operation is a function that validates its arguments and returns a
:class:`Command`: the op, the request payload, and how to decode the reply
payload. Front ends (the threaded :class:`~pyxs.client.Client`, the asyncio
client, the ``pyxs`` command) only move bytes: they send ``command.payload``
under ``command.op`` in their current transaction, wait for the reply and
call :meth:`Command.result` on it.

Theory of operation
-------------------
Operations that take several round trips (``list`` falling back to
DIRECTORY_PART, ``exists``) are *procedures*: generators that yield
:class:`Command` objects and receive each one's decoded result; the value
they return is the operation's result. Every front end drives a command or a
procedure the same way, through one :class:`Driver`, which does no I/O:
``driver.command`` is the request to send now, ``driver.feed(reply)`` decodes
its reply and returns True when the operation is done (its value in
``driver.result``). :func:`run_blocking` is that loop over a blocking
round trip.

The one catch rule: only a :class:`~pyxs.exceptions.XenStoreError` (the
server's answer, ENOENT, E2BIG...) is thrown into a procedure, which may
catch it. Anything else (an :class:`~pyxs.exceptions.UnexpectedPacket`, a
lost connection, a timeout, a bug) ends the operation: the procedure is
closed and the error propagates to the front end, which decides (an
UnexpectedPacket fails the connection).

Transactions that conflict (EAGAIN at commit) are run again under one
:class:`RetryPolicy`: how many attempts, and the error when they run out.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Generator, Iterable
from typing import Any, Callable, Generic, TypeVar, Union

from .exceptions import (
    NoEntryError,
    NotSupportedError,
    TooBigError,
    TransactionConflictError,
    UnexpectedPacket,
    XenStoreError,
    error_from_payload,
)
from .paths import (
    PathLike,
    Permission,
    check_ascii,
    validate_path,
    validate_perms,
    validate_watch_path,
)
from .protocol import Op, Packet, split_strings

__all__ = [
    "DEFAULT_RETRIES",
    "Command",
    "Driver",
    "Operation",
    "Procedure",
    "RetryPolicy",
    "control",
    "directory",
    "directory_part",
    "domain_id",
    "exists",
    "get_domain_path",
    "get_perms",
    "introduce",
    "is_domain_introduced",
    "list_children",
    "mkdir",
    "read",
    "release",
    "reset_watches",
    "resume",
    "rm",
    "run_blocking",
    "set_perms",
    "set_target",
    "transaction_end",
    "transaction_start",
    "unwatch",
    "watch",
    "write",
]

T = TypeVar("T")
_OP_ERROR = int(Op.ERROR)

# The ops of the requests made at every call, as module constants: looking a
# member up on its Enum class costs 0.08 us on Python 3.11, a global 0.01 us.
_READ, _WRITE, _MKDIR, _RM = Op.READ, Op.WRITE, Op.MKDIR, Op.RM
_DIRECTORY, _DIRECTORY_PART = Op.DIRECTORY, Op.DIRECTORY_PART
_GET_PERMS, _SET_PERMS, _WATCH, _UNWATCH = Op.GET_PERMS, Op.SET_PERMS, Op.WATCH, Op.UNWATCH
_TRANSACTION_START, _TRANSACTION_END = Op.TRANSACTION_START, Op.TRANSACTION_END


class Command(Generic[T]):
    """One request and the decoder of its reply."""

    __slots__ = ("decode", "op", "payload")

    def __init__(self, op: Op, payload: bytes, decode: Callable[[bytes], T]) -> None:
        self.op = op
        self.payload = payload
        self.decode = decode

    def result(self, reply: Packet) -> T:
        """Decode ``reply``; raise the server's error or UnexpectedPacket."""
        if reply.op == self.op:
            return self.decode(reply.payload)
        if reply.op == _OP_ERROR:
            raise error_from_payload(reply.payload)
        raise UnexpectedPacket(f"expected a reply of type {self.op.name}, got {reply!r}")

    def __repr__(self) -> str:
        return f"Command({self.op.name}, {self.payload!r})"


#: A multi-step operation: yields Commands, receives their results.
Procedure = Generator[Command[Any], Any, T]
Operation = Union[Command[T], Procedure[T]]


# -- reply decoders ----------------------------------------------------------


def _ok(payload: bytes) -> None:
    if payload != b"OK\0":
        raise UnexpectedPacket(f"expected OK, got {payload!r}")


def _raw(payload: bytes) -> bytes:
    return payload


def _string(payload: bytes) -> bytes:
    return payload[:-1] if payload[-1:] == b"\0" else payload


def _bool(payload: bytes) -> bool:
    return _string(payload) == b"T"


def _transaction_id(payload: bytes) -> int:
    # A tx_id travels in a uint32 header field, and 0 means "no transaction":
    # anything else would only fail later, far from here.
    digits = _string(payload)
    if digits.isdigit() and len(digits) <= 10:
        tx_id = int(digits)
        if 0 < tx_id <= 0xFFFFFFFF:
            return tx_id
    raise UnexpectedPacket(f"expected a transaction id in 1..4294967295, got {payload!r}")


def domain_id(domid: int | str | bytes, check_range: bool = True) -> int:
    """A domain id checked: an int in 0..65535 (``"5"`` and ``b"5"`` are
    accepted, as pyxs 0.4 formatted domids with ``str()``). Without
    ``check_range`` only the reading of a str or bytes is checked."""
    if isinstance(domid, (str, bytes)):
        try:
            domid = int(domid)
        except ValueError:
            raise ValueError(f"domain id must be an integer, not {domid!r}") from None
    if check_range and (
        isinstance(domid, bool) or not isinstance(domid, int) or not 0 <= domid <= 0xFFFF
    ):
        raise ValueError(f"domain id must be an int in 0..65535, not {domid!r}")
    return domid


def _domid(domid: int | str | bytes) -> bytes:
    return b"%d" % domain_id(domid)


# -- single-request operations -------------------------------------------------


def read(path: PathLike) -> Command[bytes]:
    """READ: the node's value (raw bytes, may be empty or contain NULs)."""
    return Command(_READ, validate_path(path) + b"\0", _raw)


def write(path: PathLike, value: bytes | bytearray | memoryview) -> Command[None]:
    """WRITE: set a value (any bytes, may be empty), creating missing parents."""
    if not isinstance(value, bytes):
        if not isinstance(value, (bytearray, memoryview)):
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        value = bytes(value)
    return Command(_WRITE, validate_path(path) + b"\0" + value, _ok)


def mkdir(path: PathLike) -> Command[None]:
    """MKDIR: create a node (and parents); an existing node is left alone."""
    return Command(_MKDIR, validate_path(path) + b"\0", _ok)


def rm(path: PathLike) -> Command[None]:
    """RM: remove a node and its subtree."""
    return Command(_RM, validate_path(path) + b"\0", _ok)


def directory(path: PathLike) -> Command[list[bytes]]:
    """DIRECTORY: child names in creation order (E2BIG when over 4096 bytes)."""
    return Command(_DIRECTORY, validate_path(path) + b"\0", split_strings)


def _directory_part_reply(payload: bytes) -> tuple[bytes, bytes, bool]:
    generation, sep, rest = payload.partition(b"\0")
    if not sep:
        raise UnexpectedPacket(f"malformed DIRECTORY_PART reply {payload!r}")
    # The last part carries an extra NUL (an empty name) after the list.
    if rest == b"\0" or rest.endswith(b"\0\0"):
        return generation, rest[:-1], True
    return generation, rest, rest == b""


def directory_part(path: PathLike, offset: int) -> Command[tuple[bytes, bytes, bool]]:
    """DIRECTORY_PART: ``(generation, raw NUL-terminated names, complete)``."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, not {offset!r}")
    payload = validate_path(path) + b"\0%d\0" % offset
    return Command(_DIRECTORY_PART, payload, _directory_part_reply)


def get_perms(path: PathLike) -> Command[list[bytes]]:
    """GET_PERMS: the permission list as pyxs 0.4 gave it, ``[b"n0", b"r5"]``."""
    return Command(_GET_PERMS, validate_path(path) + b"\0", split_strings)


def set_perms(path: PathLike, perms: Iterable[PathLike | Permission]) -> Command[None]:
    """SET_PERMS: replace the node's permission list (owner first)."""
    path = validate_path(path)  # first, as pyxs 0.4 checked
    entries = validate_perms(perms)
    payload = path + b"\0" + b"".join(p + b"\0" for p in entries)
    return Command(_SET_PERMS, payload, _ok)


def watch(path: PathLike, token: PathLike) -> Command[None]:
    """WATCH: register (path, token); an initial event follows the OK."""
    payload = validate_watch_path(path) + b"\0" + check_ascii(token, "token") + b"\0"
    return Command(_WATCH, payload, _ok)


def unwatch(path: PathLike, token: PathLike) -> Command[None]:
    """UNWATCH: drop (path, token)."""
    payload = validate_watch_path(path) + b"\0" + check_ascii(token, "token") + b"\0"
    return Command(_UNWATCH, payload, _ok)


def transaction_start() -> Command[int]:
    """TRANSACTION_START: the new transaction's id."""
    return Command(_TRANSACTION_START, b"\0", _transaction_id)


def transaction_end(commit: bool) -> Command[None]:
    """TRANSACTION_END: commit (``T``) or abort (``F``); EAGAIN on conflict."""
    return Command(_TRANSACTION_END, b"T\0" if commit else b"F\0", _ok)


def introduce(domid: int | str | bytes, mfn: int, port: int) -> Command[None]:
    """INTRODUCE a domain: its id, ring page frame and event channel."""
    if isinstance(mfn, bool) or not isinstance(mfn, int) or mfn < 0:
        raise ValueError(f"mfn must be a non-negative int, not {mfn!r}")
    if isinstance(port, bool) or not isinstance(port, int) or port < 0:
        raise ValueError(f"event channel must be a non-negative int, not {port!r}")
    return Command(Op.INTRODUCE, _domid(domid) + b"\0%d\0%d\0" % (mfn, port), _ok)


def release(domid: int | str | bytes) -> Command[None]:
    """RELEASE a domain: xenstored forgets it and fires @releaseDomain."""
    return Command(Op.RELEASE, _domid(domid) + b"\0", _ok)


def resume(domid: int | str | bytes) -> Command[None]:
    """RESUME a domain after suspend."""
    return Command(Op.RESUME, _domid(domid) + b"\0", _ok)


def set_target(domid: int | str | bytes, target: int | str | bytes) -> Command[None]:
    """SET_TARGET: let ``domid`` act with ``target``'s privileges (stub domains)."""
    return Command(Op.SET_TARGET, _domid(domid) + b"\0" + _domid(target) + b"\0", _ok)


def get_domain_path(domid: int | str | bytes) -> Command[bytes]:
    """GET_DOMAIN_PATH: ``/local/domain/<domid>``."""
    return Command(Op.GET_DOMAIN_PATH, _domid(domid) + b"\0", _string)


def is_domain_introduced(domid: int | str | bytes) -> Command[bool]:
    """IS_DOMAIN_INTRODUCED."""
    return Command(Op.IS_DOMAIN_INTRODUCED, _domid(domid) + b"\0", _bool)


def reset_watches() -> Command[None]:
    """RESET_WATCHES: drop this connection's watches and transactions."""
    return Command(Op.RESET_WATCHES, b"", _ok)


def control(*args: PathLike) -> Command[bytes]:
    """CONTROL (``xenstore-control``): ``control(b"print", b"hello")``."""
    if not args:
        raise ValueError("control needs a command, for example b'check'")
    parts = [check_ascii(a, "control argument") for a in args]
    return Command(Op.CONTROL, b"".join(p + b"\0" for p in parts), _string)


# -- procedures --------------------------------------------------------------


def list_children(path: PathLike) -> Procedure[list[bytes]]:
    """Child names; falls back to DIRECTORY_PART when DIRECTORY gives E2BIG.

    As libxenstore does, the parts are read again from the start when the
    node's generation changes between two of them, and a server without
    DIRECTORY_PART (ENOSYS: oxenstored 4.17) leaves the E2BIG.
    """
    path = validate_path(path)
    try:
        children: list[bytes] = yield directory(path)
        return children
    except TooBigError:
        pass
    while True:
        chunks: list[bytes] = []
        offset = 0
        first_generation = None
        while True:
            try:
                generation, names, complete = yield directory_part(path, offset)
            except NotSupportedError:
                # oxenstored 4.17 has no DIRECTORY_PART: libxenstore's E2BIG
                raise TooBigError() from None
            if first_generation is None:
                first_generation = generation
            elif generation != first_generation:
                break  # the directory changed under us: start again
            chunks.append(names)
            offset += len(names)
            if complete:
                return split_strings(b"".join(chunks))


def exists(path: PathLike, in_transaction: bool = False) -> Procedure[bool]:
    """Whether the node exists: READ succeeds (True) or says ENOENT (False).

    Other errors (EACCES for a guest) propagate: they do not say "missing".

    xenstored answers ENOENT to *every* request in a transaction it does not
    know (ended, dropped by RESET_WATCHES, left over from a previous
    connection), so inside a transaction ENOENT alone cannot say "missing".
    With ``in_transaction`` an ENOENT is checked by a READ of ``/``, which
    exists in every live transaction: if that says ENOENT too, the
    transaction is gone and the first ENOENT is raised instead of returning
    False. That costs a second round trip, and only when the answer would be
    False.
    """
    path = validate_path(path)
    try:
        yield read(path)
    except NoEntryError as missing:
        if in_transaction and path != b"/":
            try:
                yield read(b"/")
            except NoEntryError:
                raise missing from None
            except XenStoreError:
                pass  # EACCES (a guest): the transaction is alive
        return False
    return True


# -- driving an operation ------------------------------------------------------


class Driver(Generic[T]):
    """One operation (a :class:`Command` or a procedure) under way, sans I/O.

    Made from the operation; a procedure is started at once, so an error
    in its arguments is raised here, before anything is sent.
    :attr:`command` is the request to send now. Hand its reply to
    :meth:`feed`: True when the operation is done, its value in
    :attr:`result`; False when :attr:`command` is the next request.

    Only a :class:`~pyxs.exceptions.XenStoreError` decoded from a reply is
    thrown into the procedure; any other error (an UnexpectedPacket, a bug
    in a decoder or in the procedure) closes the procedure and propagates,
    as does the XenStoreError the procedure does not catch. A front end that
    gives up on an operation for a reason of its own (the connection is
    lost, the call is cancelled) calls :meth:`close`.
    """

    __slots__ = ("command", "procedure", "result")

    command: Command[Any]
    procedure: Procedure[T] | None
    result: T

    def __init__(self, operation: Operation[T]) -> None:
        if isinstance(operation, Command):
            self.command = operation
            self.procedure = None
            return
        self.procedure = operation
        try:
            self.command = next(operation)
        except StopIteration:  # pragma: no cover - every procedure asks something
            raise RuntimeError("a procedure returned without a request") from None

    @property
    def done(self) -> bool:
        """Whether :attr:`result` holds the operation's value."""
        return hasattr(self, "result")

    def feed(self, reply: Packet) -> bool:
        """Decode ``reply`` to :attr:`command`; True when the operation is done.

        :raises pyxs.exceptions.XenStoreError: the operation's error.
        :raises pyxs.exceptions.UnexpectedPacket: ``reply`` answers another
            request type (the procedure, if any, is closed).
        """
        procedure = self.procedure
        if procedure is None:
            self.result = self.command.result(reply)
            return True
        error: XenStoreError | None = None
        try:
            value = self.command.result(reply)
        except XenStoreError as answer:  # the server's answer: the procedure's to catch
            error = answer
        except BaseException:
            procedure.close()
            raise
        try:  # (outside the handler: what the procedure raises gets no context from us)
            command = procedure.send(value) if error is None else procedure.throw(error)
        except StopIteration as stop:
            self.result = stop.value
            return True
        self.command = command
        return False

    def close(self) -> None:
        """Give the operation up (the front end's reason): close its procedure."""
        if self.procedure is not None:
            self.procedure.close()


def run_blocking(operation: Operation[T], exchange: Callable[[Command[Any]], Packet]) -> T:
    """Drive ``operation`` with ``exchange(command) -> reply``, a blocking round trip.

    An error ``exchange`` raises (a timeout, a lost connection) closes the
    procedure and propagates, as :class:`Driver` says.
    """
    if isinstance(operation, Command):
        return operation.result(exchange(operation))
    driver = Driver(operation)
    while True:
        try:
            reply = exchange(driver.command)
        except BaseException:
            driver.close()
            raise
        if driver.feed(reply):
            return driver.result


# -- retrying transactions ------------------------------------------------------

#: How many times the clients run a transaction again after a conflict.
DEFAULT_RETRIES = 16


class RetryPolicy:
    """How often a conflicting transaction is run again, and when to give up.

    Every front end's loop is the same: start a transaction, run the body,
    commit; when the commit (or a request in the body) says EAGAIN, call
    :meth:`conflicted` and go round again. :meth:`conflicted` raises
    :class:`~pyxs.exceptions.TransactionConflictError` ``(EAGAIN, strerror,
    "transaction conflicted N times")`` once ``retries`` runs after the first
    have conflicted too. ``retries=None`` retries forever, as the C
    xenstore-utils do (the ``pyxs`` command); the clients allow
    :data:`DEFAULT_RETRIES`.

    >>> policy = RetryPolicy(1)
    >>> policy.conflicted()      # the first run conflicted: run again
    >>> policy.conflicted()      # doctest: +ELLIPSIS
    Traceback (most recent call last):
    pyxs.exceptions.TransactionConflictError: [EAGAIN] ...: transaction conflicted 2 times
    """

    __slots__ = ("conflicts", "retries")

    def __init__(self, retries: int | None = DEFAULT_RETRIES) -> None:
        if retries is not None and retries < 0:
            raise ValueError("retries must be >= 0")
        self.retries = retries
        #: How many runs have conflicted so far.
        self.conflicts = 0

    def conflicted(self) -> None:
        """A run conflicted: return to run again, or raise when none is left."""
        self.conflicts += 1
        if self.retries is not None and self.conflicts > self.retries:
            raise TransactionConflictError(
                errno.EAGAIN,
                os.strerror(errno.EAGAIN),
                f"transaction conflicted {self.conflicts} times",
            )
