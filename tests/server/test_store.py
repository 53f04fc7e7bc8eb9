"""The store as a module: nodes, generations, sizes, quotas as the store applies them.

No sockets: the tree operations of pyxs.server.store are called directly,
with the Store itself as the access (changes are global, ``on_change``
hears each one). The end-to-end tests (test_server_ops.py, test_vs_real*.py)
hold the same rules against the real daemon.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from treekit import DOM0, Limits, Who, recording_store

from pyxs.protocol import XsdError
from pyxs.server import store as tree
from pyxs.server.perms import PERM_READ, PERM_WRITE, Perms
from pyxs.server.store import NO_GENERATION, Fail, Store


@dataclass
class Budget:
    bytes_left: int
    prefix: int = 0

    def left(self) -> int:
        return self.bytes_left


def make_store() -> tuple[Store, list[tuple[bytes, bool, bool]]]:
    store, _domains, changes = recording_store()
    return store, changes


def code(info: pytest.ExceptionInfo[Fail]) -> XsdError:
    return info.value.error


def test_initial_tree() -> None:
    store, _ = make_store()
    assert store.generation == 3
    assert [path for path, _ in store.walk()] == [b"/", b"/tool", b"/tool/xenstored"]
    assert store.node_counts == {0: 3}
    assert store.memory_of(0) == sum(tree.node_size(n) + len(p) for p, n in store.walk())
    assert store.lookup(b"/tool").gen == 2  # type: ignore[union-attr]
    assert store.lookup(b"/nope") is None
    assert store.check() == []


def test_create_writes_bottom_up() -> None:
    store, _ = make_store()
    node = tree.create_node(store, DOM0, b"/a/b/c", b"v", Limits())
    # the new leaf first, then its new ancestors, then the existing parent
    gens = {p: store.lookup(p).gen for p in (b"/a/b/c", b"/a/b", b"/a", b"/")}  # type: ignore[union-attr]
    assert gens == {b"/a/b/c": 4, b"/a/b": 5, b"/a": 6, b"/": 7}
    assert node.value == b"v"
    assert store.lookup(b"/a").listing() == b"b\0"  # type: ignore[union-attr]
    assert store.node_counts[0] == 6
    assert store.check() == []


def test_value_and_sizes() -> None:
    store, _ = make_store()
    node = tree.create_node(store, DOM0, b"/n", b"12345", Limits())
    assert tree.node_size(node) == 24 + 8 * 1 + 5
    before = store.memory_of(0)
    tree.set_node_value(store, DOM0, b"/n", node, b"1234567890", Limits())
    assert store.memory_of(0) == before + 5
    assert node.gen == store.generation
    assert store.check() == []


def test_guest_creates_and_owns() -> None:
    store, _ = make_store()
    store.domains.introduce(5, 1)  # type: ignore[union-attr]
    tree.create_node(store, DOM0, b"/g", b"", Limits())
    store.lookup(b"/g").perms = Perms.get(((PERM_WRITE, 0), (PERM_READ, 5)))  # type: ignore[union-attr]
    guest = Who(5)
    node = tree.create_node(store, guest, b"/g/mine", b"x", Limits())
    assert node.perms.owner == 5
    assert store.node_counts[5] == 1
    assert (
        tree.get_node(store, guest, b"/g/mine", PERM_READ | PERM_WRITE, store.domains).value == b"x"
    )
    # an unlisted domain gets the owner entry's letter: w, no reading
    with pytest.raises(Fail) as info:
        tree.get_node(store, Who(6), b"/g/mine", PERM_READ, store.domains)
    assert code(info) is XsdError.EACCES


def test_node_quota_consumes_generations() -> None:
    store, _ = make_store()
    tree.create_node(store, DOM0, b"/g", b"", Limits())
    store.lookup(b"/g").perms = Perms.get(((PERM_WRITE, 0),))  # type: ignore[union-attr]
    guest = Who(5)
    tree.create_node(store, guest, b"/g/one", b"", Limits(nodes=2))
    gen = store.generation
    failed: list[int] = []
    with pytest.raises(Fail) as info:
        tree.create_node(
            store, guest, b"/g/two/three", b"", Limits(nodes=2), lambda: failed.append(True)
        )
    assert code(info) is XsdError.ENOSPC
    # the real daemon wrote /g/two/three, then failed on /g/two (its second
    # node): the one write it began and undid used a generation
    assert store.generation == gen + 1
    assert failed == [1]
    assert store.lookup(b"/g/two") is None
    assert store.node_counts[5] == 1
    assert store.check() == []


def test_node_size_and_memory_quotas() -> None:
    store, _ = make_store()
    tree.create_node(store, DOM0, b"/g", b"", Limits())
    store.lookup(b"/g").perms = Perms.get(((PERM_WRITE, 0),))  # type: ignore[union-attr]
    guest = Who(5)
    with pytest.raises(Fail) as info:
        tree.create_node(store, guest, b"/g/big", b"x" * 100, Limits(node_size=24 + 8 + 100))
    assert code(info) is XsdError.ENOSPC
    tree.create_node(store, guest, b"/g/ok", b"x" * 99, Limits(node_size=24 + 8 + 100))
    with pytest.raises(Fail) as info:
        tree.create_node(store, guest, b"/g/m", b"x" * 10, Limits(), memory=Budget(24 + 8 + 10 + 4))
    assert code(info) is XsdError.EIO
    node = store.lookup(b"/g/ok")
    assert node is not None
    with pytest.raises(Fail) as info:
        tree.set_node_value(store, guest, b"/g/ok", node, b"y" * 200, Limits(), memory=Budget(100))
    assert code(info) is XsdError.EIO
    assert node.value == b"x" * 99
    assert store.check() == []


def test_lookup_hides_missing_nodes_under_unreadable_ones() -> None:
    store, _ = make_store()
    tree.create_node(store, DOM0, b"/secret/x", b"", Limits())
    guest = Who(5)
    # n0 everywhere: the guest cannot tell a missing node from a hidden one
    with pytest.raises(Fail) as info:
        tree.lookup_node(store, guest, b"/secret/missing", PERM_READ, store.domains)
    assert code(info) is XsdError.EACCES
    store.lookup(b"/secret").perms = Perms.get(((PERM_READ, 0),))  # type: ignore[union-attr]
    assert tree.lookup_node(store, guest, b"/secret/missing", PERM_READ, store.domains) is None
    with pytest.raises(Fail) as info:
        tree.get_node(store, guest, b"/secret/missing", PERM_READ, store.domains)
    assert code(info) is XsdError.ENOENT


def test_rm_removes_the_subtree_and_fires_in_post_order() -> None:
    store, changes = make_store()
    tree.create_node(store, DOM0, b"/r/a/b", b"", Limits())
    tree.create_node(store, DOM0, b"/r/c", b"", Limits())
    counted = store.node_counts[0]
    changes.clear()
    tree.rm_node(store, b"/r")
    assert store.lookup(b"/r") is None
    assert store.node_counts[0] == counted - 4
    # descendants fire for exact watches only; the removed root for all
    assert changes == [
        (b"/r/a/b", False, True),
        (b"/r/a", False, True),
        (b"/r/c", False, True),
        (b"/r", False, False),
    ]
    assert store.check() == []


def test_rm_of_a_missing_node_is_einval() -> None:
    store, _ = make_store()
    with pytest.raises(Fail) as info:
        tree.rm_node(store, b"/missing")
    assert code(info) is XsdError.EINVAL


def test_check_finds_a_corruption() -> None:
    store, _ = make_store()
    tree.create_node(store, DOM0, b"/x", b"", Limits())
    store.node_counts[0] += 1
    assert store.check() == ["domain 0 counted 5 nodes, owns 4"]


def test_no_generation_is_the_c_value() -> None:
    assert NO_GENERATION == 2**64 - 1
