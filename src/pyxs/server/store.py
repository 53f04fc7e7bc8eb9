"""The tree: nodes, values, permissions, generation counts.

Theory of operation
-------------------
The store is a flat ``dict`` from absolute path (``bytes``) to :class:`Node`,
the way cxenstored keeps its nodes in a TDB keyed by path. A node holds its
value (raw bytes), its :class:`~pyxs.server.perms.Perms` (shared, immutable, interned), the
names of its children in creation order (an insertion-ordered ``dict``, or
``None`` for a leaf) and its *generation*.

Generations follow ``tools/xenstore/xenstored_transaction.c`` exactly: one
global counter is incremented *before* it is copied to a node on every
write or delete of a node, and when a transaction starts. A node's
generation is therefore the counter value of its last modification; it is
what DIRECTORY_PART reports and what transactions use to detect conflicts.
Creating ``/a/b`` writes ``/a/b`` first, then ``/a`` (bottom up), then the
existing ancestor that gains a child, each taking the next generation.

The tree operations (:func:`get_node`, :func:`create_node`, :func:`rm_node`,
...) are written once against the small :class:`Access` interface:
:class:`Store` implements it directly (changes are global and watches fire
at once); :class:`~pyxs.server.transaction.Transaction` implements it as a
copy-on-write overlay. The operations replicate the order in which the real
daemon reads and writes nodes, because that order decides generation
numbers, transaction conflicts and the order of watch events.

No operation copies the tree: a write touches the node, its parent, and the
newly created ancestors; a removal walks only the removed subtree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable, Protocol

from ..paths import basename, child_path, parent_of
from ..protocol import XsdError
from .perms import (
    PERM_NONE,
    PERMS_N0,
    Perms,
    adjust,
    perm_for,
)

if TYPE_CHECKING:
    from .perms import DomainTable, Requester

__all__ = [
    "NO_GENERATION",
    "Fail",
    "Node",
    "Store",
    "create_node",
    "get_node",
    "lookup_node",
    "node_size",
    "rm_node",
]

#: ``NO_GENERATION`` of xenstored: the generation of a node that does not exist.
NO_GENERATION = 0xFFFFFFFFFFFFFFFF

#: ``sizeof(struct xs_tdb_record_hdr)`` and ``sizeof(struct xs_permissions)``:
#: the node-size quota and the memory report count a node as cxenstored does.
_HDR_SIZE = 24
_PERM_SIZE = 8

#: what a change outside transactions is passed to (the watches)
FireFunc = Callable[[bytes, "Node | None", bool, "Perms | None"], None]


class Fail(Exception):
    """An operation failed with a XenStore error: the reply is ``E<name>``.

    Raise a new instance every time, never a shared one: each raise chains
    the raising frames onto the instance's ``__traceback__``, and a
    module-level instance would keep them (and the requests and connections
    they reference) alive forever.
    """

    __slots__ = ("error",)

    def __init__(self, error: XsdError) -> None:
        super().__init__(error)
        self.error = error


class Children(dict[bytes, "Node"]):
    """A node's children, name -> node, in creation order.

    ``length`` is the size of the child list as DIRECTORY sends it (each
    name NUL-terminated); ``cache`` holds that listing once built.

    ``order`` is None except in one corner of transactions: a transaction's
    copy of a node still lists a child that was removed outside it, and the
    transaction creates that child again. cxenstored's ``add_child`` does
    not look for the name and lists it twice; ``order`` is then the listing
    with its duplicates. (Such a transaction read the parent, which changed
    outside, so it can only end in EAGAIN: the duplicate never reaches the
    global tree.)"""

    __slots__ = ("cache", "length", "order")

    def __init__(self) -> None:
        super().__init__()
        self.length = 0
        self.cache: bytes | None = None
        self.order: list[bytes] | None = None


class Node:
    """One node. Only nodes with children carry a :class:`Children` map."""

    __slots__ = ("acc", "children", "gen", "perms", "value")

    def __init__(self, value: bytes, perms: Perms, gen: int) -> None:
        self.value = value
        self.perms = perms
        self.children: Children | None = None
        self.gen = gen
        #: the memory accounted to the owner for this node when last stored
        self.acc = 0

    @property
    def childlen(self) -> int:
        children = self.children
        return children.length if children is not None else 0

    def copy(self) -> Node:
        """A private copy for a transaction (the child map is copied)."""
        node = Node(self.value, self.perms, self.gen)
        node.acc = self.acc
        children = self.children
        if children:
            copy = node.children = Children()
            copy.update(children)
            copy.length = children.length
            copy.cache = children.cache
            if children.order is not None:
                copy.order = list(children.order)
        return node

    def child_names(self) -> list[bytes]:
        """The names as listed (a name twice in the corner ``Children.order`` describes)."""
        children = self.children
        if children is None:
            return []
        return list(children.order if children.order is not None else children)

    def add_child(self, name: bytes, child: Node) -> None:
        children = self.children
        if children is None:
            children = self.children = Children()
        order = children.order
        if name in children and order is None:
            order = children.order = list(children)
        if order is not None:
            order.append(name)
        children[name] = child
        children.length += len(name) + 1
        children.cache = None

    def remove_child(self, name: bytes) -> None:
        children = self.children
        if children is not None and name in children:
            order = children.order
            if order is not None:
                order.remove(name)
                if name in order:
                    # still listed once more: only the first entry goes
                    children.length -= len(name) + 1
                    children.cache = None
                    return
            del children[name]
            if not children:
                self.children = None
            else:
                children.length -= len(name) + 1
                children.cache = None

    def listing(self) -> bytes:
        """The child names, each NUL-terminated, in creation order."""
        children = self.children
        if children is None:
            return b""
        cached = children.cache
        if cached is None:
            names = children.order if children.order is not None else children
            cached = children.cache = b"".join([n + b"\0" for n in names])
        return cached


def node_size(node: Node) -> int:
    """``data.dsize`` of ``write_node_raw``: what the node-size quota limits."""
    return _HDR_SIZE + _PERM_SIZE * len(node.perms.entries) + len(node.value) + node.childlen


if TYPE_CHECKING:  # for annotations only: no class at run time

    class Access(Protocol):
        """How the tree operations reach nodes: the store itself or a transaction."""

        #: whether reads have side effects (a transaction records them)
        records: bool

        def read(self, path: bytes) -> Node | None: ...

        def write(
            self, path: bytes, node: Node, old_owner: int | None, new_perms: bool = False
        ) -> None:
            """Store ``node`` at ``path`` after a change; it takes a new generation.

            ``old_owner`` is the owner before the change (None: a new node).
            Permission entries stale when the node was read (at its old
            generation) are marked ignored for good; with ``new_perms`` (SET_PERMS
            replaced them) only those stale at the new generation, as
            cxenstored's ``read_node`` and ``write_node_raw`` both adjust them."""

        def delete(self, path: bytes, node: Node) -> None: ...

        def fire(
            self, path: bytes, node: Node | None, exact: bool, old_perms: Perms | None
        ) -> None: ...

        def node_count(self, domid: int) -> int:
            """How many nodes ``domid`` owns, as seen through this access."""

        def adjust(self, perms: Perms, gen: int) -> Perms:
            """``perms`` of a node read at generation ``gen``, stale entries ignored."""

        def consume(self, count: int) -> None:
            """Use up ``count`` generations (writes the real daemon began, then undid)."""


class Store:
    """The global tree (implements :class:`Access` for changes outside transactions).

    Nodes link to their children; a path is looked up from the root. A
    change links or unlinks a node in its parent's :class:`Children`, so
    :meth:`write` and :meth:`delete` only count generations and owners.
    """

    __slots__ = (
        "domains",
        "generation",
        "memory",
        "node_counts",
        "on_change",
        "records",
        "root",
    )

    def __init__(self, on_change: FireFunc | None = None) -> None:
        self.generation = 0
        self.records = False
        #: nodes per owner domid (the "nodes" quota)
        self.node_counts: dict[int, int] = {}
        #: bytes per owner domid, as cxenstored accounts its nodes (the
        #: "memory" quota): node_size() plus the length of the path
        self.memory: dict[int, int] = {}
        #: each change made outside a transaction is passed here as it
        #: happens (:class:`~pyxs.server.core.XenStore` passes its ``fire``)
        self.on_change = on_change
        #: which domains count for permissions (None: every entry counts)
        self.domains: DomainTable | None = None
        # manual_node() of setup_structure(): /, /tool, /tool/xenstored, n0.
        self.root = Node(b"", PERMS_N0, self.next_generation())
        tool = Node(b"", PERMS_N0, self.next_generation())
        xenstored = Node(b"", PERMS_N0, self.next_generation())
        tool.add_child(b"xenstored", xenstored)
        self.root.add_child(b"tool", tool)
        self.node_counts[0] = 3
        for path, node in ((b"/", self.root), (b"/tool", tool), (b"/tool/xenstored", xenstored)):
            self.account(path, node, None)

    def next_generation(self) -> int:
        self.generation += 1
        return self.generation

    def lookup(self, path: bytes) -> Node | None:
        """The node at an absolute, valid ``path`` (None if missing)."""
        node = self.root
        if path == b"/":
            return node
        for name in path[1:].split(b"/"):
            children = node.children
            if children is None:
                return None
            child = children.get(name)
            if child is None:
                return None
            node = child
        return node

    # -- Access ------------------------------------------------------------
    read = lookup

    def write(
        self, path: bytes, node: Node, old_owner: int | None, new_perms: bool = False
    ) -> None:
        perms = node.perms
        if len(perms.entries) > 1:
            read = old_owner is not None and not new_perms
            node.perms = self.adjust(perms, node.gen if read else self.generation + 1)
        self.generation += 1
        node.gen = self.generation
        # account() inlined: this runs for every node written
        perms = node.perms
        owner = perms.owner
        children = node.children
        acc = (
            _HDR_SIZE
            + _PERM_SIZE * len(perms.entries)
            + len(node.value)
            + (children.length if children is not None else 0)
            + len(path)
        )
        memory = self.memory
        if old_owner == owner:
            memory[owner] += acc - node.acc
        else:
            memory[owner] = memory.get(owner, 0) + acc
            counts = self.node_counts
            counts[owner] = counts.get(owner, 0) + 1
            if old_owner is not None:
                memory[old_owner] -= node.acc
                counts[old_owner] -= 1
        node.acc = acc

    def delete(self, path: bytes, node: Node) -> None:
        self.generation += 1
        self.node_counts[node.perms.owner] -= 1
        self.memory[node.perms.owner] -= node.acc

    def account(self, path: bytes, node: Node, old_owner: int | None) -> None:
        """Account ``node`` (just stored at ``path``) to its owner; ``old_owner``
        had it before (None: a new node)."""
        memory = self.memory
        if old_owner is not None:
            memory[old_owner] -= node.acc
        acc = node.acc = node_size(node) + len(path)
        owner = node.perms.owner
        memory[owner] = memory.get(owner, 0) + acc

    def unaccount(self, node: Node) -> None:
        """Forget a node a transaction replaced or removed."""
        self.memory[node.perms.owner] -= node.acc

    def fire(self, path: bytes, node: Node | None, exact: bool, old_perms: Perms | None) -> None:
        on_change = self.on_change
        if on_change is not None:
            on_change(path, node, exact, old_perms)

    def node_count(self, domid: int) -> int:
        return self.node_counts.get(domid, 0)

    def adjust(self, perms: Perms, gen: int) -> Perms:
        return adjust(perms, gen, self.domains)

    def consume(self, count: int) -> None:
        self.generation += count

    # -- walking -------------------------------------------------------------
    def walk(self, root: bytes = b"/") -> Iterator[tuple[bytes, Node]]:
        """Pre-order walk in creation order (for checks and domain cleanup)."""
        node = self.lookup(root)
        if node is None:
            return
        stack = [(root, node)]
        while stack:
            path, node = stack.pop()
            yield path, node
            children = node.children
            if children:
                base = path if path != b"/" else b""
                stack.extend(
                    (base + b"/" + name, child) for name, child in reversed(children.items())
                )

    def memory_of(self, domid: int) -> int:
        """Bytes the real daemon would account to ``domid`` for its nodes."""
        return self.memory.get(domid, 0)

    def count_nodes(self) -> int:
        return sum(self.node_counts.values())

    def check(self) -> list[str]:
        """Consistency problems (an empty list when the tree is sound)."""
        problems = []
        counts: dict[int, int] = {}
        memory: dict[int, int] = {}
        seen: set[int] = set()
        for path, node in self.walk():
            if id(node) in seen:
                problems.append(f"{path!r} is linked twice")
            seen.add(id(node))
            counts[node.perms.owner] = counts.get(node.perms.owner, 0) + 1
            size = node_size(node) + len(path)
            memory[node.perms.owner] = memory.get(node.perms.owner, 0) + size
            if node.acc != size:
                problems.append(f"{path!r} is accounted {node.acc} bytes, has {size}")
            children = node.children
            if children is not None:
                if not children:
                    problems.append(f"{path!r} has an empty child map")
                if children.length != sum(len(n) + 1 for n in children):
                    problems.append(f"{path!r} has a wrong child length")
                if children.cache is not None and children.cache != b"".join(
                    n + b"\0" for n in children
                ):
                    problems.append(f"{path!r} has a stale listing")
        for domid in set(counts) | set(self.node_counts):
            if counts.get(domid, 0) != self.node_counts.get(domid, 0):
                problems.append(
                    f"domain {domid} counted {self.node_counts.get(domid, 0)} nodes, "
                    f"owns {counts.get(domid, 0)}"
                )
        for domid in set(memory) | set(self.memory):
            if memory.get(domid, 0) != self.memory.get(domid, 0):
                problems.append(
                    f"domain {domid} accounted {self.memory.get(domid, 0)} bytes, "
                    f"owns {memory.get(domid, 0)}"
                )
        return problems


# ---------------------------------------------------------------------------
# Tree operations, written once over Access (order of reads/writes as in
# tools/xenstore/xenstored_core.c).


def ask_parents(acc: Access, who: Requester, path: bytes, domains: DomainTable | None) -> int:
    """The permission the nearest existing ancestor grants (``ask_parents``)."""
    name = path
    while True:
        name = parent_of(name)
        node = acc.read(name)
        if node is not None:
            return perm_for(who, node.perms, node.gen, domains)
        if name == b"/":
            return PERM_NONE


def lookup_node(
    acc: Access, who: Requester, path: bytes, perm: int, domains: DomainTable | None
) -> Node | None:
    """``get_node``: the node if ``who`` may access it with ``perm``, None if missing.

    A missing node counts as missing only if the nearest existing ancestor
    grants ``perm``; otherwise it is EACCES, so that ENOENT does not leak
    through unreadable nodes.
    """
    node = acc.read(path)
    if node is not None:
        if who.privileged or (perm_for(who, node.perms, node.gen, domains) & perm) == perm:
            return node
        error: Fail | None = Fail(XsdError.EACCES)
    else:
        error = None
    if who.privileged and not acc.records:
        if error is not None:
            raise error
        return None
    if ask_parents(acc, who, path, domains) & perm:
        if error is not None:
            raise error
        return None
    raise Fail(XsdError.EACCES)


def get_node(
    acc: Access, who: Requester, path: bytes, perm: int, domains: DomainTable | None
) -> Node:
    """Like :func:`lookup_node`, but a missing node is ENOENT."""
    node = lookup_node(acc, who, path, perm, domains)
    if node is None:
        raise Fail(XsdError.ENOENT)
    return node


if TYPE_CHECKING:  # for annotations only: no class at run time

    class Memory(Protocol):
        """The memory quota of an unprivileged writer (cxenstored's hard quota).

        A change that would bring the writer's accounted memory to the quota
        fails with EIO (the real daemon's reply), nothing changed."""

        #: the key of a node copy in a transaction ("<generation>/") adds this
        prefix: int

        def left(self) -> int:
            """Bytes the writer may still take before it reaches its quota."""

    class Quota(Protocol):
        @property
        def nodes(self) -> int: ...

        @property
        def node_size(self) -> int: ...


def create_node(
    acc: Access,
    who: Requester,
    path: bytes,
    value: bytes,
    quota: Quota,
    on_fail: Callable[[], None] | None = None,
    memory: Memory | None = None,
) -> Node:
    """``create_node``: create ``path`` and its missing ancestors (empty).

    New nodes copy the permissions of the nearest existing ancestor; an
    unprivileged creator becomes their owner. Quotas (nodes per domain,
    node size, and with ``memory`` the creator's memory: EIO) apply to
    unprivileged creators; on failure nothing changes but the generations
    the real daemon consumed are consumed too.
    """
    new_paths = [path]
    name = path
    while True:
        name = parent_of(name)
        parent = acc.read(name)
        if parent is not None:
            break
        if name == b"/":
            raise Fail(XsdError.ENOENT)
        new_paths.append(name)
    # a new node copies the parent's entries as read, ignored ones included
    perms = acc.adjust(parent.perms, parent.gen)
    if not who.privileged:
        perms = perms.with_owner(who.domid)

    if not who.privileged:
        # The real daemon writes bottom-up and undoes on failure; check first.
        base = acc.node_count(who.domid)
        left = memory.left() if memory is not None else 1 << 62
        attempted = 0
        error: XsdError | None = None
        for index in range(len(new_paths)):
            if base + index >= quota.nodes:
                error = XsdError.ENOSPC
                break
            attempted += 1
            size = _HDR_SIZE + _PERM_SIZE * len(perms.entries)
            size += len(value) if index == 0 else len(basename(new_paths[index - 1])) + 1
            if size >= quota.node_size:
                error = XsdError.ENOSPC
                break
            if memory is not None:
                left -= size + memory.prefix + len(new_paths[index])
                if left <= 0:
                    error = XsdError.EIO
                    break
        else:
            attempted += 1
            grown = len(basename(new_paths[-1])) + 1
            if node_size(parent) + grown >= quota.node_size:
                error = XsdError.ENOSPC
            elif left - grown <= 0:
                error = XsdError.EIO
        if error is not None:
            acc.consume(attempted)
            if on_fail is not None and attempted:
                on_fail()
            raise Fail(error)

    node = Node(value, perms, 0)
    acc.write(path, node, None)
    child, child_name = node, basename(path)
    for new in new_paths[1:]:
        inter = Node(b"", perms, 0)
        inter.add_child(child_name, child)
        acc.write(new, inter, None)
        child, child_name = inter, basename(new)
    parent.add_child(child_name, child)
    acc.write(name, parent, parent.perms.owner)
    return node


def set_node_value(
    acc: Access,
    who: Requester,
    path: bytes,
    node: Node,
    value: bytes,
    quota: Quota,
    on_fail: Callable[[], None] | None = None,
    memory: Memory | None = None,
) -> None:
    """Give an existing node a new value (node-size and, with ``memory``,
    memory quota for the unprivileged)."""
    if not who.privileged:
        size = _HDR_SIZE + _PERM_SIZE * len(node.perms.entries) + len(value) + node.childlen
        error = None
        if size >= quota.node_size:
            error = XsdError.ENOSPC
        elif memory is not None and memory.left() - (len(value) - len(node.value)) <= 0:
            error = XsdError.EIO
        if error is not None:
            acc.consume(1)
            if on_fail is not None:
                on_fail()
            raise Fail(error)
    node.value = value
    acc.write(path, node, node.perms.owner)


def rm_node(acc: Access, path: bytes) -> None:
    """``rm_node``: remove ``path`` and its subtree (post-order).

    Each removed node fires watches: exactly-matching watches for the
    descendants, the removed root for watches on it and its ancestors.
    """
    parent_path = parent_of(path)
    parent = acc.read(parent_path)
    root = acc.read(path)
    if parent is None or root is None:
        raise Fail(XsdError.EINVAL)
    # Iterative post-order walk: (path, node, iterator over child names)
    stack: list[tuple[bytes, Node, Iterator[bytes]]] = [(path, root, iter(root.child_names()))]
    while stack:
        cpath, cnode, kids = stack[-1]
        for name in kids:
            child = acc.read(child_path(cpath, name))
            if child is None:
                # a transaction's copy lists a child removed outside it:
                # cxenstored's tree walk stops with EIO
                raise Fail(XsdError.EIO)
            stack.append((child_path(cpath, name), child, iter(child.child_names())))
            break
        else:
            stack.pop()
            acc.delete(cpath, cnode)
            acc.fire(cpath, cnode, cpath != path, None)
            if stack:
                ppath, pnode, _ = stack[-1]
                pnode.remove_child(basename(cpath))
                acc.write(ppath, pnode, pnode.perms.owner)
    name = basename(path)
    if parent.children is None or name not in parent.children:
        # a transaction's copy of the parent lacks a child created outside
        # it: cxenstored's delete_child() finds no entry, EIO
        raise Fail(XsdError.EIO)
    parent.remove_child(name)
    acc.write(parent_path, parent, parent.perms.owner)
