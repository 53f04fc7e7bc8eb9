"""A pipelined walk of a XenStore subtree, in ``xenstore-ls`` order.

Theory of operation
-------------------
``xenstore-ls`` visits the tree depth first, children in creation order,
and asks one question at a time: DIRECTORY of a node, then READ (and
GET_PERMS with ``-p``) of each child, then recurses into it. That costs a
full round trip per request, which is what makes it slow on large trees.

:func:`walk` yields the same nodes in the same order, but keeps the
:class:`~.session.Session`'s pipeline full: as soon as a node's child list
arrives, its children go on an *issue stack*, and requests (READ,
GET_PERMS, DIRECTORY for each node) are sent for the top of that stack
whenever the window has room. The stack makes the fetching roughly depth
first, like the output, so what the consumer needs next is usually in
flight already. Nodes are *yielded* strictly in ``xenstore-ls`` order, as
soon as everything about them (and everything before them) is known.

This is the hot loop of ``pyxs ls`` and ``pyxs dump``: requests go out
through :meth:`Session.raw` and each reply is decoded by a method of its
node, without a Command object per request. The starting path is checked
by :mod:`pyxs.paths` as usual; the paths below it are made of names that
the server gave, and are sent as they are. A child list too big for
DIRECTORY (E2BIG) is read by the ``list_children`` procedure of
:mod:`pyxs.commands` (DIRECTORY_PART), through the same session.

Errors follow xenstore-ls: a failure to list the starting node raises
:class:`ListFailed`; a node that disappears during the walk (ENOENT on its
DIRECTORY) simply has no children; any other failure to list a node raises
:class:`ListFailed` when the walk reaches it; a failed READ or GET_PERMS is
reported on the node itself (``value_error``, ``perms_error``).
"""

from __future__ import annotations

import gc
from typing import Any, Iterator

from .. import commands
from ..exceptions import NoEntryError, TooBigError, UnexpectedPacket, error_from_payload
from ..paths import validate_path
from ..protocol import Op, Packet, split_strings
from .session import MAX_INFLIGHT_BYTES, Session

__all__ = ["ListFailed", "Node", "child_path", "walk"]

_READ = int(Op.READ)
_DIRECTORY = int(Op.DIRECTORY)
_GET_PERMS = int(Op.GET_PERMS)
_ERROR = int(Op.ERROR)
_OVERHEAD = 17  # header and NUL of a one-path request


def child_path(parent: bytes, name: bytes) -> bytes:
    """``xenstore-ls``'s ``"%s%s%s"``: no extra slash after a trailing one."""
    return parent + name if parent.endswith(b"/") else parent + b"/" + name


def _unexpected(expected: int, packet: Packet) -> UnexpectedPacket:
    return UnexpectedPacket(f"expected a reply of type {expected}, got {packet!r}")


class ListFailed(Exception):
    """Listing a node failed: ``path`` and the ``error`` the server gave."""

    def __init__(self, path: bytes, error: BaseException) -> None:
        super().__init__(path, error)
        self.path = path
        self.error = error


class _Walk:
    """State shared by the nodes of one walk."""

    __slots__ = ("expected", "inflight", "issue", "session", "tx")

    def __init__(self, session: Session, tx: int, expected: int) -> None:
        self.session = session
        self.tx = tx
        self.expected = expected
        self.issue: list[Node] = []
        self.inflight = 0  # request bytes of this walk in flight


class Node:
    """One node of the walk. ``value``/``perms``/``children`` are filled in
    as replies arrive; each may instead end up as the exception that the
    server answered (``value_error`` etc.)."""

    __slots__ = (
        "children",
        "children_error",
        "depth",
        "missing",
        "name",
        "path",
        "perms",
        "perms_error",
        "value",
        "value_error",
        "walk",
    )

    def __init__(self, walk: _Walk, path: bytes, name: bytes, depth: int, missing: int) -> None:
        self.walk = walk
        self.path = path
        self.name = name
        self.depth = depth
        self.value: bytes | None = None
        self.value_error: BaseException | None = None
        self.perms: list[bytes] | None = None
        self.perms_error: BaseException | None = None
        self.children: list[Node] | None = None
        self.children_error: BaseException | None = None
        #: replies still expected for this node's own line (value, perms)
        self.missing = missing

    def __repr__(self) -> str:
        return f"Node({self.path!r})"

    # -- reply handlers (Session.raw) ------------------------------------------

    def on_value(self, packet: Packet) -> None:
        self.walk.inflight -= len(self.path) + _OVERHEAD
        op = packet.op
        if op == _READ:
            self.value = packet.payload
        elif op == _ERROR:
            self.value_error = error_from_payload(packet.payload)
        else:
            raise _unexpected(_READ, packet)
        self.missing -= 1

    def on_perms(self, packet: Packet) -> None:
        self.walk.inflight -= len(self.path) + _OVERHEAD
        op = packet.op
        if op == _GET_PERMS:
            self.perms = split_strings(packet.payload)
        elif op == _ERROR:
            self.perms_error = error_from_payload(packet.payload)
        else:
            raise _unexpected(_GET_PERMS, packet)
        self.missing -= 1

    def on_children(self, packet: Packet) -> None:
        walk = self.walk
        walk.inflight -= len(self.path) + _OVERHEAD
        op = packet.op
        if op == _DIRECTORY:
            payload = packet.payload
            if not payload:  # a leaf: the common case
                self.children = []
                return
            names = payload.split(b"\0")
            if names[-1] == b"":
                names.pop()
            depth = self.depth + 1
            path = self.path
            base = path if path.endswith(b"/") else path + b"/"
            expected = walk.expected
            kids = [Node(walk, base + name, name, depth, expected) for name in names]
            self.children = kids
            kids.reverse()
            walk.issue.extend(kids)
            kids.reverse()
        elif op == _ERROR:
            error = error_from_payload(packet.payload)
            if isinstance(error, TooBigError):
                # Too many children for one reply: DIRECTORY_PART, by the book.
                procedure = commands.list_children(self.path)
                next(procedure)  # its DIRECTORY, which we just did
                command = procedure.throw(error)
                walk.session.submit_started(procedure, command, self.set_children, walk.tx)
            else:
                self.set_children([], error)
        else:
            raise _unexpected(_DIRECTORY, packet)

    def set_children(self, names: list[bytes] | None, error: BaseException | None) -> None:
        if error is not None or names is None:
            self.children_error = error
            self.children = []
            return
        walk = self.walk
        depth = self.depth + 1
        base = self.path if self.path.endswith(b"/") else self.path + b"/"
        expected = walk.expected
        kids = [Node(walk, base + name, name, depth, expected) for name in names]
        self.children = kids
        walk.issue.extend(reversed(kids))


def walk(
    session: Session,
    path: bytes,
    *,
    values: bool = True,
    perms: bool = False,
    tx: int = 0,
    include_root: bool = False,
) -> Iterator[Node]:
    """Yield the nodes under ``path`` (not ``path`` itself unless
    ``include_root``) depth first, children in creation order.

    The cyclic garbage collector is off while the walk runs: it allocates
    objects per node and nothing cyclic that outlives the walk, and the
    collector's passes over them cost about a tenth of ``pyxs ls``'s time.
    """
    path = validate_path(path)
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield from _walk(session, path, values, perms, tx, include_root)
    finally:
        if collecting:
            gc.enable()


def _walk(
    session: Session, path: bytes, values: bool, perms: bool, tx: int, include_root: bool
) -> Iterator[Node]:
    state = _Walk(session, tx, int(values) + int(perms))
    root = Node(state, path, b"", -1, state.expected if include_root else 0)
    # Session.raw() inlined: this runs for every node.
    request = session.protocol.request
    outbox = session.outbox
    window = session.window
    waiting = session.waiting
    issue = state.issue
    per_node = state.expected + 1

    def fetch_later(node: Node, own_line: bool = True) -> None:
        # a window too small for a node's requests (XenBus): the session
        # sends them one by one
        payload = node.path + b"\0"
        if own_line and values:
            session.raw_later(_READ, payload, tx, node.on_value)
        if own_line and perms:
            session.raw_later(_GET_PERMS, payload, tx, node.on_perms)
        session.raw_later(_DIRECTORY, payload, tx, node.on_children)

    def fetch(node: Node, own_line: bool = True) -> None:
        if window < per_node:
            fetch_later(node, own_line)
            return
        payload = node.path + b"\0"
        if own_line:
            if values:
                req_id, data = request(_READ, payload, tx)
                waiting[req_id] = node.on_value
                outbox.append(data)
            if perms:
                req_id, data = request(_GET_PERMS, payload, tx)
                waiting[req_id] = node.on_perms
                outbox.append(data)
            state.inflight += (len(payload) + 16) * per_node
        else:
            state.inflight += len(payload) + 16
        req_id, data = request(_DIRECTORY, payload, tx)
        waiting[req_id] = node.on_children
        outbox.append(data)

    def pump() -> None:
        """Issue what the window allows, then handle one batch of replies."""
        limit = window - per_node
        while issue and (len(waiting) <= limit or not session.busy):
            if state.inflight >= MAX_INFLIGHT_BYTES and session.busy:
                break
            fetch(issue.pop())
        session.step()

    fetch(root, include_root)
    if include_root:
        while root.missing:
            pump()
        yield root
    while root.children is None:
        pump()
    if root.children_error is not None:
        raise ListFailed(path, root.children_error)

    # Depth-first emission: a stack of [node, index of its next child].
    stack: list[list[Any]] = [[root, 0]]
    while stack:
        top = stack[-1]
        node: Node = top[0]
        kids = node.children
        if kids is None:
            pump()
            continue
        error = node.children_error
        if error is not None and node is not root and not isinstance(error, NoEntryError):
            raise ListFailed(node.path, error)
        index: int = top[1]
        if index >= len(kids):
            stack.pop()
            continue
        child = kids[index]
        while child.missing:
            pump()
        top[1] = index + 1
        yield child
        if child.children or child.children is None or child.children_error is not None:
            stack.append([child, 0])
        # else: a leaf, the common case, with nothing more to do
    session.drain()
