"""A pipelined walk of a XenStore subtree, in ``xenstore-ls`` order.

Theory of operation
-------------------
``xenstore-ls`` visits the tree depth first, children in creation order,
and asks one question at a time: DIRECTORY of a node, then READ (and
GET_PERMS with ``-p``) of each child, then recurses into it. That costs a
full round trip per request, which is what makes it slow on large trees.

:func:`walk` yields the same nodes in the same order, but keeps the
:class:`~.session.Session`'s pipeline full: as soon as a node's child list
arrives, it goes on an *issue stack*, and requests (READ, GET_PERMS,
DIRECTORY for each node) are sent for the next child of the top list
whenever the window has room. The stack is kept in yield order (a list
goes in where its first child falls in a depth-first walk, the child
indices from the starting node down to it), so requests go out in the
order the nodes are yielded and what the consumer needs next is usually
in flight already. Nodes are *yielded* strictly in ``xenstore-ls`` order, as
soon as everything about them (and everything before them) is known.

A child's :class:`Node` is made only when its requests go out, and let go
once it is yielded: the walk holds the nodes between those two points, not
every child listed so far (the first window alone lists dozens of
directories). The cyclic garbage collector runs whenever some 700 more
objects are alive than at its last run; with a few windows' worth of nodes
alive, it seldom runs during a walk.

This is the hot loop of ``pyxs ls`` and ``pyxs dump``. Its requests are
the :class:`~pyxs.commands.Command` objects of :mod:`pyxs.commands` (READ,
GET_PERMS, DIRECTORY) built for the starting path, which :mod:`pyxs.paths`
checks as usual. The paths below it are made of names that the server gave,
so each node's request is the starting path's command of the same kind
with the node's path as its payload: handed to the session as ``(command,
payload, callback)``, in one batch per step (:meth:`Session.submit_many
<.session.Session.submit_many>`), with a method of its node as the
callback; the session decodes each reply by the command's rule
(:meth:`Command.result <pyxs.commands.Command.result>`). Neither a path
check (about 2 us a node) nor a Command object is paid per node: each
would cost a tenth of ``pyxs ls``'s time. A child list
too big for DIRECTORY (E2BIG) is read by the ``list_children`` procedure
of :mod:`pyxs.commands` (DIRECTORY_PART), through the same session.

Errors follow xenstore-ls: a failure to list the starting node raises
:class:`ListFailed`; a node that disappears during the walk (ENOENT on its
DIRECTORY) simply has no children; any other failure to list a node raises
:class:`ListFailed` when the walk reaches it; a failed READ or GET_PERMS is
reported on the node itself (``value_error``, ``perms_error``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import commands
from ..commands import Command
from ..exceptions import NoEntryError, TooBigError
from ..paths import validate_path
from .session import Session

__all__ = ["ListFailed", "Node", "child_path", "walk"]


def child_path(parent: bytes, name: bytes) -> bytes:
    """``xenstore-ls``'s ``"%s%s%s"``: no extra slash after a trailing one."""
    return parent + name if parent.endswith(b"/") else parent + b"/" + name


class ListFailed(Exception):
    """Listing a node failed: ``path`` and the ``error`` the server gave."""

    def __init__(self, path: bytes, error: BaseException) -> None:
        super().__init__(path, error)
        self.path = path
        self.error = error


class _Walk:
    """State shared by the nodes of one walk: the session, the transaction,
    the replies each node's own line waits for, the issue stack (entries
    ``[parent, names, next index, parent's path + "/", children's depth,
    parent's place]``, the next child to send on top), and the commands of
    the starting path (READ, GET_PERMS, DIRECTORY)."""

    __slots__ = ("directory", "expected", "get_perms", "issue", "read", "session", "tx")

    def __init__(self, session: Session, tx: int, expected: int, path: bytes) -> None:
        self.session = session
        self.tx = tx
        self.expected = expected
        self.issue: list[list[Any]] = []
        self.read = commands.read(path)
        self.get_perms = commands.get_perms(path)
        self.directory = commands.directory(path)


class Node:
    """One node of the walk. ``value``/``perms``/``children`` are filled in
    as replies arrive; each may instead end up as the exception that the
    server answered (``value_error`` etc.). ``children`` holds None for a
    child not made yet (or already emitted)."""

    __slots__ = (
        "children",
        "children_error",
        "depth",
        "entry",
        "index",
        "missing",
        "name",
        "path",
        "perms",
        "perms_error",
        "value",
        "value_error",
        "walk",
    )

    def __init__(
        self,
        walk: _Walk,
        path: bytes,
        name: bytes,
        depth: int,
        missing: int,
        entry: list[Any] | None = None,
        index: int = 0,
    ) -> None:
        self.walk = walk
        #: the issue-stack entry of the parent's child list, and the place in it
        self.entry = entry
        self.index = index
        self.path = path
        self.name = name
        self.depth = depth
        self.value: bytes | None = None
        self.value_error: BaseException | None = None
        self.perms: list[bytes] | None = None
        self.perms_error: BaseException | None = None
        self.children: list[Node | None] | None = None
        self.children_error: BaseException | None = None
        #: replies still expected for this node's own line (value, perms)
        self.missing = missing

    def __repr__(self) -> str:
        return f"Node({self.path!r})"

    # -- callbacks (Session.submit) -------------------------------------------

    def set_value(self, value: bytes | None, error: BaseException | None) -> None:
        if error is None:
            self.value = value
        else:
            self.value_error = error
        self.missing -= 1

    def set_perms(self, perms: list[bytes] | None, error: BaseException | None) -> None:
        if error is None:
            self.perms = perms
        else:
            self.perms_error = error
        self.missing -= 1

    def set_directory(self, names: list[bytes] | None, error: BaseException | None) -> None:
        """The reply to DIRECTORY."""
        if error is None:
            if names:
                self._add_children(names)
            else:  # a leaf: the common case
                self.children = []
        elif isinstance(error, TooBigError):
            # Too many children for one reply: DIRECTORY_PART, by the book.
            walk = self.walk
            walk.session.submit(commands.list_children(self.path), self.set_children, walk.tx)
        else:
            self.set_children(None, error)

    def set_children(self, names: list[bytes] | None, error: BaseException | None) -> None:
        """The children's names (or why there are none to be had)."""
        if error is not None or not names:
            self.children_error = error
            self.children = []
        else:
            self._add_children(names)

    def _add_children(self, names: list[bytes]) -> None:
        path = self.path
        base = path if path.endswith(b"/") else path + b"/"
        self.children = [None] * len(names)
        # The stack stays in yield order, the next child to send on top: an
        # entry's place is where its next child falls in a depth-first walk
        # (the child indices from the starting node down to it); a new list
        # goes below every entry whose next child comes before its first.
        entry = self.entry
        key = () if entry is None else entry[5] + (self.index,)
        place = (*key, 0)
        issue = self.walk.issue
        at = len(issue)
        while at and issue[at - 1][5] + (issue[at - 1][2],) < place:
            at -= 1
        issue.insert(at, [self, names, 0, base, self.depth + 1, key])


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
    ``include_root``) depth first, children in creation order."""
    path = validate_path(path)
    state = _Walk(session, tx, int(values) + int(perms), path)
    root = Node(state, path, b"", -1, state.expected if include_root else 0)
    issue = state.issue
    per_node = state.expected + 1
    # the starting path's commands, sent again with each node's path
    read, get_perms, directory = state.read, state.get_perms, state.directory
    batch: list[tuple[Command[Any], bytes, Any]] = []

    def fetch(nodes: list[Node], own_line: bool = True) -> None:
        with_value, with_perms = values and own_line, perms and own_line
        for node in nodes:
            payload = node.path + b"\0"
            if with_value:
                batch.append((read, payload, node.set_value))
            if with_perms:
                batch.append((get_perms, payload, node.set_perms))
            batch.append((directory, payload, node.set_directory))

    def pump() -> None:
        """Issue what the window allows, then handle one batch of replies."""
        if issue:
            room = session.room()
            if room < per_node and not session.busy:
                room = per_node  # a window smaller than a node's requests
            expected = state.expected
            while issue and room >= per_node:
                entry = issue[-1]
                parent, names, start, base, depth, _ = entry
                stop = min(len(names), start + room // per_node)
                room -= (stop - start) * per_node
                if stop < len(names):
                    entry[2] = stop
                else:
                    issue.pop()
                made = [
                    Node(state, base + name, name, depth, expected, entry, index)
                    for index, name in enumerate(names[start:stop], start)
                ]
                parent.children[start:stop] = made
                fetch(made)
            session.submit_many(batch, tx)
            batch.clear()
        session.step()

    fetch([root], include_root)
    session.submit_many(batch, tx)
    batch.clear()
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
        while child is None or child.missing:
            pump()
            child = kids[index]
        top[1] = index + 1
        # Emitted nodes are let go (the parent's list no longer holds them):
        # a walk keeps only what it still needs, which leaves the cyclic
        # garbage collector little to look at and the tree nothing to free
        # at the end.
        kids[index] = None
        yield child
        if child.children or child.children is None or child.children_error is not None:
            stack.append([child, 0])
        # else: a leaf, the common case, with nothing more to do
    session.drain()
