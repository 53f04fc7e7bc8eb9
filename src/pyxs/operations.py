# mypy: disable-error-code="no-any-return"
# (The methods return what the front end's _op gives, typed Any here: a
# cast() per call would cost a function call on every request.)
"""The method layer, written once for every client.

Theory of operation
-------------------
The methods users call (``read``, ``write``, ``list``, ``get_domain_path``,
...) exist once, here, as redis-py shares its command mixins between
``Redis`` and ``asyncio.Redis``. Each method names the :mod:`pyxs.commands`
operation it is and its arguments; it does not build the request itself.
The class that inherits it supplies *how an operation is run*:

* ``_op(make, *args)`` runs the operation ``make(*args)`` (a
  :class:`~pyxs.commands.Command` or a procedure) in the object's current
  transaction, if any, and ``_submit(operation)`` one built already;
* ``_op_outside(make, *args)`` runs it with no transaction, as
  libxenstore sends the connection-level requests (domains, CONTROL);
* ``_in_transaction`` says whether calls go in a transaction (for
  :meth:`Operations.exists`).

Building the operation is left to the front end so that each reports a bad
argument its own way, before any I/O: the threaded
:class:`~pyxs.client.Client` raises at once and returns the result; the
:class:`~pyxs.aio.AsyncClient` and its transactions return a
:class:`~pyxs.aio.ReplyFuture` that raises where it is awaited.

The classes are generic over what the methods return, so that both front
ends keep precise types: :class:`~pyxs.client.Client` is an
``DomainOperations[bytes, None, bool, list[bytes]]`` and
:class:`~pyxs.aio.AsyncClient` one over ``ReplyFuture[bytes]``,
``ReplyFuture[None]``... The walk is shared too: :class:`TreeWalk` holds its order and
:func:`walk_node` visits one node; only the loop that runs them (iterating
or async-iterating) is each front end's.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Any, Callable, Generic, TypeVar, Union

from . import commands
from .commands import Command, Operation, Procedure, domain_id
from .exceptions import NoEntryError, XenStoreError
from .paths import PathLike, Permission, validate_path

__all__ = ["DomainOperations", "Operations", "TreeWalk", "walk_node"]

RBytes = TypeVar("RBytes")
RNone = TypeVar("RNone")
RBool = TypeVar("RBool")
RList = TypeVar("RList")
T = TypeVar("T")

#: What :meth:`Operations.walk` yields: ``(path, value, children)``.
WalkEntry = tuple[bytes, bytes, list[bytes]]
#: What a walk's node visit gives: ``(value, children)``, or None (gone).
Visited = Union[tuple[bytes, list[bytes]], None]  # an alias: evaluated on Python 3.9

#: READ commands by path (bytes): programs read the same paths over and
#: over, and a Command is never changed once made. Bounded.
_READS: dict[bytes, Command[bytes]] = {}


def _read(path: PathLike) -> Command[bytes]:
    command = _READS.get(path) if path.__class__ is bytes else None
    if command is None:
        command = commands.read(path)
        if path.__class__ is bytes:
            if len(_READS) >= 4096:
                _READS.clear()
            _READS[path] = command
    return command


def _read_or_default(path: PathLike, default: bytes) -> Procedure[bytes]:
    command = _read(path)  # validated now, before anything is sent
    return _or_default(command, default)


def _or_default(command: Command[T], default: T) -> Procedure[T]:
    try:
        value: T = yield command
    except NoEntryError:
        return default
    return value


def _introduce(domid: int | str | bytes, mfn: int, port: int) -> Command[None]:
    # pyxs 0.4's order: the domid read, domain 0 refused, then mfn, port, range.
    if not domain_id(domid, check_range=False):
        raise ValueError("domain 0 cannot be introduced.")
    return commands.introduce(domid, mfn, port)


class Operations(Generic[RBytes, RNone, RBool, RList]):
    """The data operations: what a client and a transaction both do."""

    __slots__ = ()

    def _op(self, make: Callable[..., Any], *args: Any) -> Any:
        """Run the operation ``make(*args)`` in this object's transaction."""
        raise NotImplementedError

    def _submit(self, operation: Operation[Any]) -> Any:
        """Run ``operation``, built (and checked) already, as :meth:`_op` would."""
        raise NotImplementedError

    @property
    def _in_transaction(self) -> bool:
        """Whether :meth:`_op` runs operations in a transaction."""
        raise NotImplementedError

    def read(self, path: PathLike, default: bytes | None = None) -> RBytes:
        """The value at ``path`` (bytes, possibly empty).

        :param default: returned instead of raising
            :class:`~pyxs.exceptions.NoEntryError` when ``path`` is missing.
        """
        if default is None:
            # The hot path: a path read before has its READ made and checked.
            command = _READS.get(path) if path.__class__ is bytes else None
            if command is not None:
                return self._submit(command)
            return self._op(_read, path)
        return self._op(_read_or_default, path, default)

    def write(self, path: PathLike, value: bytes) -> RNone:
        """Set the value at ``path``, creating it and missing parents."""
        return self._op(commands.write, path, value)

    def mkdir(self, path: PathLike) -> RNone:
        """Make sure ``path`` exists; a new node (and parents) get ``b""``.
        An existing node keeps its value."""
        return self._op(commands.mkdir, path)

    def delete(self, path: PathLike) -> RNone:
        """Remove ``path`` and everything under it. A missing ``path`` is
        fine, but its parent must exist (else NoEntryError)."""
        return self._op(commands.rm, path)

    def list(self, path: PathLike) -> RList:
        """The names of the children of ``path``, in creation order.

        Lists too long for one reply are read in parts (DIRECTORY_PART).
        """
        return self._op(commands.list_children, path)

    def exists(self, path: PathLike) -> RBool:
        """Whether ``path`` exists.

        In a transaction the server no longer knows (it answers ENOENT to
        everything then), this raises that NoEntryError rather than saying
        False.
        """
        return self._op(commands.exists, path, self._in_transaction)

    def get_perms(self, path: PathLike) -> RList:
        """The permissions of ``path``, owner first: ``[b"n0", b"r5"]``."""
        return self._op(commands.get_perms, path)

    def set_perms(self, path: PathLike, perms: Iterable[PathLike | Permission]) -> RNone:
        """Replace the permissions of ``path``; the first entry names the owner.

        Each entry is ``w<domid>``, ``r<domid>``, ``b<domid>`` (both) or
        ``n<domid>`` (none), as bytes, str or :class:`~pyxs.paths.Permission`.
        """
        return self._op(commands.set_perms, path, perms)


class DomainOperations(Operations[RBytes, RNone, RBool, RList]):
    """The data operations and the connection-level ones: what a client does.

    Domain ids are ints; ``"5"`` and ``b"5"`` are accepted as pyxs 0.4
    accepted them.
    """

    __slots__ = ()

    def _op_outside(self, make: Callable[..., Any], *args: Any) -> Any:
        """Run the operation ``make(*args)`` outside any transaction."""
        raise NotImplementedError

    def get_domain_path(self, domid: int | str | bytes) -> RBytes:
        """The home path of a domain, ``b"/local/domain/<domid>"``."""
        return self._op_outside(commands.get_domain_path, domid)

    def is_domain_introduced(self, domid: int | str | bytes) -> RBool:
        """Whether xenstored talks to the domain (introduced, not released)."""
        return self._op_outside(commands.is_domain_introduced, domid)

    def introduce_domain(self, domid: int | str | bytes, mfn: int, eventchn: int) -> RNone:
        """Tell xenstored about a new domain: its ring page and event channel.

        :raises ValueError: for domain 0, as pyxs 0.4 did.
        """
        return self._op_outside(_introduce, domid, mfn, eventchn)

    def release_domain(self, domid: int | str | bytes) -> RNone:
        """Tell xenstored to forget a domain (fires ``@releaseDomain``)."""
        return self._op_outside(commands.release, domid)

    def resume_domain(self, domid: int | str | bytes) -> RNone:
        """Clear a domain's shutdown flag, so that its next shutdown fires
        the watches again."""
        return self._op_outside(commands.resume, domid)

    def set_target(self, domid: int | str | bytes, target: int | str | bytes) -> RNone:
        """Let ``domid`` act on ``target``'s nodes with ``target``'s rights
        (stub domains)."""
        return self._op_outside(commands.set_target, domid, target)

    def control(self, *args: PathLike) -> RBytes:
        """A ``xenstore-control`` command: ``control(b"print", b"hello")``."""
        return self._op_outside(commands.control, *args)

    #: The pre-Xen 4.9 name of CONTROL.
    debug = control


# -- the walk ------------------------------------------------------------------


def walk_node(path: bytes, top: bool) -> Procedure[Visited]:
    """One node of a walk: ``(value, children)``, or None when it went away.

    The children are listed first; a node missing then is skipped (None),
    unless it is the walk's ``top`` (NoEntryError). A value that cannot be
    read (no permission, or removed since) is ``b""``.
    """
    try:
        children = yield from commands.list_children(path)
    except NoEntryError:
        if top:
            raise
        return None
    try:
        value: bytes = yield _read(path)
    except XenStoreError:
        value = b""
    return value, children


def _walk_steps(
    top: PathLike, topdown: bool
) -> Generator[WalkEntry | Procedure[Visited], Visited, None]:
    top = validate_path(top)
    # (path, entry or None: None means "visit it"): iterative, so deep trees are fine.
    stack: list[tuple[bytes, WalkEntry | None]] = [(top, None)]
    while stack:
        path, entry = stack.pop()
        if entry is not None:
            yield entry
            continue
        visited = yield walk_node(path, path is top)
        if visited is None:
            continue
        value, children = visited
        if topdown:
            yield path, value, children  # resumed after the caller has pruned children
        else:
            stack.append((path, (path, value, children)))
        prefix = path if path == b"/" else path + b"/"
        stack.extend((prefix + child, None) for child in reversed(children))


class TreeWalk:
    """The order of a walk, as :func:`os.walk`'s; no I/O.

    Iterating gives, in turn, either an entry ``(path, value, children)`` to
    yield to the user, or a procedure (:func:`walk_node`) to run, whose
    result is handed back with :meth:`answer` before the next step::

        walk = TreeWalk(top, topdown)
        for step in walk:
            if step.__class__ is tuple:
                yield step
            else:
                walk.answer(run(step))

    Top-down, a node comes before its children, and removing names from the
    ``children`` yielded prunes the walk; bottom-up, after them. ``top`` is
    checked at the first step.
    """

    __slots__ = ("_answer", "_steps")

    def __init__(self, top: PathLike, topdown: bool) -> None:
        self._steps = _walk_steps(top, topdown)
        self._answer: Visited = None

    def __iter__(self) -> TreeWalk:
        return self

    def __next__(self) -> WalkEntry | Procedure[Visited]:
        answer, self._answer = self._answer, None
        return self._steps.send(answer)

    def answer(self, visited: Visited) -> None:
        """The result of the procedure the last step gave."""
        self._answer = visited
