"""Transactions: a copy-on-write overlay over the store, and the conflict rule.

Theory of operation
-------------------
A transaction sees the global tree, except for the nodes it has touched:
the first time it reads a node it keeps a private copy of it (and the
node's generation), the way ``access_node`` in
``tools/xenstore/xenstored_transaction.c`` copies it into the
transaction's part of the TDB. From then on the transaction reads and
writes its copy; nobody else sees it. Reading a node that does not exist
is remembered too (as ``NO_GENERATION``).

Only touched nodes are copied (a copy shares the value and permissions and
copies the child-name list), never the tree.

**Conflict rule.** At commit, every node whose first access in the
transaction was a read must still have the generation it had then, in the
global tree (``NO_GENERATION`` if it was missing and must still be).
Otherwise the commit fails with EAGAIN and nothing is applied. Since a
write or a creation first reads the node (and a creation the nodes above
it), in practice any node the transaction read or wrote that was changed
outside it since makes the commit fail.

**Domains.** Like ``changed_domains`` in cxenstored, a transaction
remembers every domain whose node count one of its operations changed.
If one of them no longer exists at commit (neither a domain structure nor
a running domain to make one for), the commit fails with ENOMEM and
applies nothing, as ``transaction_fix_domains`` does.

**Commit.** The modified nodes are installed in the order the
transaction first touched them, each taking a new generation; a node that
was removed is removed. Watches fire per installed node, in that order,
for the events the transaction's operations queued (a removed subtree's
descendants fire only for exactly matching watches). An abort discards the
overlay and fires nothing.
"""

from __future__ import annotations

from ..paths import basename, parent_of
from ..protocol import XsdError
from .perms import Perms, owner_of
from .store import NO_GENERATION, Fail, FireFunc, Node, Store, node_size

__all__ = ["Transaction"]


class _Entry:
    """One touched node (``struct accessed_node``)."""

    __slots__ = ("acc", "check_gen", "exact", "fire", "generation", "modified", "node", "perms")

    def __init__(self, node: Node | None, generation: int, check_gen: bool) -> None:
        #: the transaction's copy of the node (None: missing in the transaction)
        self.node = node
        #: generation of the global node at first access
        self.generation = generation
        self.check_gen = check_gen
        self.modified = False
        #: permissions before the transaction touched it (for watch filtering)
        self.perms: Perms | None = node.perms if node is not None else None
        self.fire = False
        self.exact = True
        #: the memory accounted for this copy (see Transaction.memory)
        self.acc = 0


class Transaction:
    """A transaction of one connection; implements :class:`~pyxs.server.store.Access`."""

    __slots__ = (
        "changed_domains",
        "entries",
        "failed",
        "generation",
        "id",
        "limit",
        "memory",
        "prefix",
        "store",
    )

    records = True

    def __init__(self, tx_id: int, store: Store, limit: int | None) -> None:
        self.id = tx_id
        self.store = store
        #: the generation the transaction started at
        self.generation = store.next_generation()
        self.entries: dict[bytes, _Entry] = {}
        #: set when an operation failed half-way: the commit must fail
        self.failed = False
        #: transaction-nodes quota (None: unlimited)
        self.limit = limit
        #: domains whose node count the transaction changed
        self.changed_domains: set[int] = set()
        #: what cxenstored accounts to the owner for the transaction's node
        #: copies: each stored as "<generation>/<path>" (the memory quota)
        self.prefix = len(b"%d/" % self.generation)
        self.memory = 0

    def _introduce(self, path: bytes, entry: _Entry) -> None:
        if self.limit is not None and len(self.entries) >= self.limit:
            self.failed = True
            raise Fail(XsdError.ENOSPC)
        self.entries[path] = entry
        if entry.node is not None:
            entry.acc = node_size(entry.node) + self.prefix + len(path)
            self.memory += entry.acc

    # -- Access ------------------------------------------------------------
    def read(self, path: bytes) -> Node | None:
        entry = self.entries.get(path)
        if entry is not None:
            return entry.node
        node = self.store.lookup(path)
        if node is None:
            self._introduce(path, _Entry(None, NO_GENERATION, True))
            return None
        copy = node.copy()
        self._introduce(path, _Entry(copy, node.gen, True))
        return copy

    def adjust(self, perms: Perms, gen: int) -> Perms:
        return self.store.adjust(perms, gen)

    def write(
        self, path: bytes, node: Node, old_owner: int | None, new_perms: bool = False
    ) -> None:
        if old_owner != node.perms.owner:
            # the new owner is named by this write; the old one is judged
            # at node.gen, the generation the node was read at
            self.changed_domains.add(node.perms.owner)
            if old_owner is not None:
                self.changed_domains.add(owner_of(old_owner, node.gen, self.store.domains))
        if len(node.perms.entries) > 1:
            read = old_owner is not None and not new_perms
            gen = node.gen if read else self.store.generation + 1
            node.perms = self.adjust(node.perms, gen)
        node.gen = self.store.next_generation()
        entry = self.entries.get(path)
        if entry is None:
            entry = _Entry(node, 0, False)
            self._introduce(path, entry)
        entry.node = node
        entry.modified = True
        acc = node_size(node) + self.prefix + len(path)
        self.memory += acc - entry.acc
        entry.acc = acc

    def delete(self, path: bytes, node: Node) -> None:
        self.changed_domains.add(owner_of(node.perms.owner, node.gen, self.store.domains))
        self.store.next_generation()
        entry = self.entries.get(path)
        if entry is None:
            return
        entry.node = None
        entry.modified = True
        self.memory -= entry.acc
        entry.acc = 0

    def fire(self, path: bytes, node: Node | None, exact: bool, old_perms: Perms | None) -> None:
        entry = self.entries.get(path)
        if entry is None:
            self.failed = True
            return
        if not entry.fire:
            entry.fire = True
            entry.exact = exact
        elif not exact:
            entry.exact = False

    def node_count(self, domid: int) -> int:
        return self.store.node_counts.get(domid, 0) + self.count_deltas().get(domid, 0)

    def consume(self, count: int) -> None:
        self.store.generation += count

    # -- commit ------------------------------------------------------------
    def count_deltas(self) -> dict[int, int]:
        """Per owner domid: nodes the transaction adds (or removes), if any
        changed hands; ``created`` tells whether a node was created."""
        deltas: dict[int, int] = {}
        lookup = self.store.lookup
        for path, entry in self.entries.items():
            if not entry.modified:
                continue
            old = lookup(path)
            new = entry.node
            old_owner = old.perms.owner if old is not None else None
            new_owner = new.perms.owner if new is not None else None
            if old_owner == new_owner:
                continue
            if old_owner is not None:
                deltas[old_owner] = deltas.get(old_owner, 0) - 1
            if new_owner is not None:
                deltas[new_owner] = deltas.get(new_owner, 0) + 1
        return deltas

    def lost_domain(self) -> bool:
        """Does a domain whose node count changed no longer exist?"""
        domains = self.store.domains
        if domains is None:
            return False
        return any(domid != 0 and not domains.exists(domid) for domid in self.changed_domains)

    def created_nodes(self) -> bool:
        lookup = self.store.lookup
        return any(
            entry.modified and entry.node is not None and lookup(path) is None
            for path, entry in self.entries.items()
        )

    def conflicts(self) -> bool:
        lookup = self.store.lookup
        for path, entry in self.entries.items():
            if entry.check_gen:
                node = lookup(path)
                if (node.gen if node is not None else NO_GENERATION) != entry.generation:
                    return True
        return False

    def commit(self, fire: FireFunc) -> None:
        """Install the changes and fire their watches (the caller checked conflicts).

        The transaction's node objects replace the global ones. Each
        installed node's child map is re-pointed at the nodes that are
        current after the commit: the transaction's own for the children it
        changed, the global ones for the others.
        """
        store = self.store
        lookup = store.lookup
        counts = store.node_counts
        modified = [(path, entry) for path, entry in self.entries.items() if entry.modified]
        old = {path: lookup(path) for path, _ in modified}
        new = {path: entry.node for path, entry in modified}
        for path, entry in modified:
            node = entry.node
            previous = old[path]
            if node is not None:
                self._relink(path, node, previous, new)
                node.gen = store.next_generation()
                if path == b"/":
                    store.root = node
                else:
                    parent_path = parent_of(path)
                    if parent_path not in new:
                        parent = lookup(parent_path)
                        if parent is not None and parent.children is not None:
                            parent.children[basename(path)] = node
                owner = node.perms.owner
                counts[owner] = counts.get(owner, 0) + 1
                if previous is not None:
                    counts[previous.perms.owner] -= 1
                    store.unaccount(previous)
                store.account(path, node, None)
            elif previous is not None and entry.generation != NO_GENERATION:
                counts[previous.perms.owner] -= 1
                store.unaccount(previous)
                parent_path = parent_of(path)
                if parent_path not in new:
                    parent = lookup(parent_path)
                    if parent is not None:
                        parent.remove_child(basename(path))
                        store.account(parent_path, parent, parent.perms.owner)
            if entry.fire:
                # the node as read back from the store now (None if removed)
                fire(path, node, entry.exact, entry.perms)
        self.entries = {}

    @staticmethod
    def _relink(
        path: bytes, node: Node, previous: Node | None, new: dict[bytes, Node | None]
    ) -> None:
        children = node.children
        if not children:
            return
        current = previous.children if previous is not None else None
        base = path if path != b"/" else b""
        for name in list(children):
            child_path = base + b"/" + name
            if child_path in new:
                child = new[child_path]
            else:
                child = current.get(name) if current is not None else None
            if child is None:
                node.remove_child(name)
            else:
                children[name] = child
