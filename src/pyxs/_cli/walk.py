"""A pipelined walk of a XenStore subtree, in ``xenstore-ls`` order.

Theory of operation
-------------------
``xenstore-ls`` visits the tree depth first, children in creation order,
and asks one question at a time: DIRECTORY of a node, then READ (and
GET_PERMS with ``-p``) of each child, then recurses into it. That costs a
full round trip per request, which is what makes it slow on large trees.

:func:`walk` yields the same nodes in the same order, but keeps the
:class:`~.session.Session`'s pipeline full: as soon as a node's child list
arrives, the READ, GET_PERMS and DIRECTORY requests of all its children are
queued. Requests are *issued* in output order (a heap keyed by each node's
position in the depth-first order, the tuple of child indices from the
root), so the nodes the consumer needs next are the ones being fetched, and
nodes are *yielded*
strictly in ``xenstore-ls`` order as soon as everything about them (and
everything before them) is known. Memory is bounded by the part of the tree
that has been fetched but not yet yielded.

Errors follow xenstore-ls: a failure to list the starting node is raised;
a node that disappears during the walk (ENOENT on its DIRECTORY) simply has
no children; any other failure to list a node is raised when the walk
reaches it; a failed READ or GET_PERMS is reported on the node itself.
"""

from __future__ import annotations

import heapq
from typing import Iterator

from .. import commands
from ..exceptions import NoEntryError, PyXSError
from .session import Session

__all__ = ["Node", "walk"]


class Node:
    """One node of the walk. ``value``/``perms``/``children`` are filled in
    as replies arrive; each may instead end up as the exception that the
    server answered (``value_error`` etc.)."""

    __slots__ = (
        "children",
        "children_error",
        "depth",
        "key",
        "missing",
        "name",
        "path",
        "perms",
        "perms_error",
        "value",
        "value_error",
    )

    def __init__(
        self, path: bytes, name: bytes, depth: int, key: tuple[int, ...], missing: int
    ) -> None:
        self.path = path
        self.key = key
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


def child_path(parent: bytes, name: bytes) -> bytes:
    """``xenstore-ls``'s ``"%s%s%s"``: no extra slash after a trailing one."""
    return parent + name if parent.endswith(b"/") else parent + b"/" + name


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
    expected = int(values) + int(perms)
    root = Node(path, b"", -1, (), expected if include_root else 0)
    # nodes whose requests are still to be queued, by depth-first position
    issue: list[tuple[tuple[int, ...], Node]] = []

    def fetch(node: Node) -> None:
        """Queue the requests about ``node``."""
        if node is not root or include_root:
            if values:

                def got_value(result: bytes, error: BaseException | None) -> None:
                    node.value, node.value_error = result, error
                    node.missing -= 1

                session.submit(commands.read(node.path), got_value, tx)
            if perms:

                def got_perms(result: list[bytes], error: BaseException | None) -> None:
                    node.perms, node.perms_error = result, error
                    node.missing -= 1

                session.submit(commands.get_perms(node.path), got_perms, tx)

        def got_children(result: list[bytes], error: BaseException | None) -> None:
            if error is not None:
                node.children_error = error
                node.children = []
                return
            depth = node.depth + 1
            base = node.path
            key = node.key
            kids = [
                Node(child_path(base, name), name, depth, (*key, i), expected)
                for i, name in enumerate(result)
            ]
            node.children = kids
            push = heapq.heappush
            for kid in kids:
                push(issue, (kid.key, kid))

        session.submit(commands.list_children(node.path), got_children, tx)

    try:
        fetch(root)
    except PyXSError as exc:  # a bad path, found before anything was sent
        raise exc from None

    def pump() -> None:
        """Queue what is waiting to be issued, then take one batch of replies."""
        pop = heapq.heappop
        while issue and len(session._queue) < session.window:
            fetch(pop(issue)[1])
        session.step()

    if include_root:
        while root.missing:
            pump()
        yield root
    while root.children is None:
        pump()
    if root.children_error is not None:
        raise root.children_error

    # Depth-first emission: a stack of (node, index of its next child).
    stack: list[list[object]] = [[root, 0]]
    while stack:
        top = stack[-1]
        node: Node = top[0]  # type: ignore[assignment]
        kids = node.children
        if kids is None:
            pump()
            continue
        if node.children_error is not None and node is not root:
            error = node.children_error
            if not isinstance(error, NoEntryError):
                raise error
        index: int = top[1]  # type: ignore[assignment]
        if index >= len(kids):
            stack.pop()
            continue
        child = kids[index]
        while child.missing:
            pump()
        top[1] = index + 1
        yield child
        stack.append([child, 0])
    # Nothing should be left in flight, but leave the session clean.
    issue.clear()
    session.drain()
