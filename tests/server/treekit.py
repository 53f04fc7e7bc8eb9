"""What the store and transaction unit tests share: a requester, quotas, a store.

The tree operations of pyxs.server.store take a requester (who asks) and
quotas; here they are plain objects, and the store records each change it
passes to ``on_change`` (path, whether the node is gone, exact).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyxs.server.domains import Domains
from pyxs.server.perms import Perms
from pyxs.server.store import Node, Store

#: a change as the store passes it on: (path, node gone, exact watches only)
Change = tuple[bytes, bool, bool]


@dataclass
class Who:
    """A requester: ``domid`` 0 is privileged."""

    domid: int
    target: int | None = None

    @property
    def privileged(self) -> bool:
        return self.domid == 0


@dataclass
class Limits:
    """The quotas the tree operations read."""

    nodes: int = 1000
    node_size: int = 2048


DOM0 = Who(0)


def recording_store() -> tuple[Store, Domains, list[Change]]:
    """A fresh store with its domain table, and the list its changes go to."""
    changes: list[Change] = []

    def on_change(path: bytes, node: Node | None, exact: bool, old: Perms | None) -> None:
        changes.append((path, node is None, exact))

    store = Store(on_change=on_change)
    domains = store.domains = Domains(store)
    return store, domains, changes
