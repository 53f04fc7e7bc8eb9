"""A transaction as a module: its own view of the tree, and conflicts at commit.

No sockets: a :class:`~pyxs.server.transaction.Transaction` is driven
directly over a :class:`~pyxs.server.store.Store`, with the same tree
operations the server's handlers use. End to end (and against the real
daemon): test_server_watches_transactions.py, test_vs_real.py.
"""

from __future__ import annotations

import pytest
from treekit import DOM0, Limits, Who, recording_store

from pyxs.protocol import XsdError
from pyxs.server.domains import Domains
from pyxs.server.perms import PERM_WRITE, Perms
from pyxs.server.store import NO_GENERATION, Fail, Store, create_node, rm_node
from pyxs.server.transaction import Transaction

Fired = list[tuple[bytes, bool, bool]]


def setup() -> tuple[Store, Fired]:
    store, _domains, fired = recording_store()
    create_node(store, DOM0, b"/t/a", b"1", Limits())
    create_node(store, DOM0, b"/t/b", b"2", Limits())
    fired.clear()
    return store, fired


def commit(tx: Transaction, fired: Fired) -> None:
    """What TRANSACTION_END T does once its checks passed."""
    tx.commit(lambda path, node, exact, old: fired.append((path, node is None, exact)))


def test_the_transaction_sees_its_own_writes_only() -> None:
    store, fired = setup()
    tx = Transaction(1, store, None)
    assert tx.generation == store.generation
    node = tx.read(b"/t/a")
    assert node is not None
    node.value = b"changed"
    tx.write(b"/t/a", node, 0)
    create_node(tx, DOM0, b"/t/new", b"n", Limits())
    assert tx.read(b"/t/a").value == b"changed"  # type: ignore[union-attr]
    assert tx.read(b"/t/new") is not None
    # outside: nothing changed, nothing fired
    assert store.lookup(b"/t/a").value == b"1"  # type: ignore[union-attr]
    assert store.lookup(b"/t/new") is None
    assert fired == []
    assert not tx.conflicts()
    assert tx.created_nodes()
    assert tx.count_deltas() == {0: 1}


def test_commit_installs_in_first_touch_order_with_new_generations() -> None:
    store, fired = setup()
    tx = Transaction(1, store, None)
    create_node(tx, DOM0, b"/t/c", b"3", Limits())
    tx.fire(b"/t/c", tx.read(b"/t/c"), False, None)
    rm_node(tx, b"/t/a")
    gen = store.generation
    commit(tx, fired)
    assert store.lookup(b"/t/a") is None
    assert store.lookup(b"/t/c").value == b"3"  # type: ignore[union-attr]
    assert store.lookup(b"/t/c").gen > gen  # type: ignore[union-attr]
    assert store.lookup(b"/t").listing() == b"b\0c\0"  # type: ignore[union-attr]
    assert fired == [(b"/t/c", False, False), (b"/t/a", True, False)]
    assert store.check() == []


def test_a_node_read_then_changed_outside_conflicts() -> None:
    store, _ = setup()
    tx = Transaction(1, store, None)
    assert tx.read(b"/t/a") is not None
    assert not tx.conflicts()
    outside = store.lookup(b"/t/a")
    assert outside is not None
    outside.value = b"other"
    store.write(b"/t/a", outside, 0)
    assert tx.conflicts()


def test_a_missing_node_read_then_created_outside_conflicts() -> None:
    store, _ = setup()
    tx = Transaction(1, store, None)
    assert tx.read(b"/t/later") is None
    assert tx.entries[b"/t/later"].generation == NO_GENERATION
    create_node(store, DOM0, b"/t/later", b"", Limits())
    assert tx.conflicts()


def test_an_untouched_node_changed_outside_does_not_conflict() -> None:
    store, _ = setup()
    tx = Transaction(1, store, None)
    assert tx.read(b"/t/a") is not None
    create_node(store, DOM0, b"/other", b"", Limits())
    assert not tx.conflicts()


def test_transaction_nodes_quota() -> None:
    store, _ = setup()
    tx = Transaction(1, store, 2)
    tx.read(b"/t/a")
    tx.read(b"/t/b")
    with pytest.raises(Fail) as info:
        tx.read(b"/t")
    assert info.value.error is XsdError.ENOSPC
    assert tx.failed


def test_memory_accounts_each_copy_with_its_key() -> None:
    store, _ = setup()
    tx = Transaction(1, store, None)
    node = tx.read(b"/t/a")
    assert node is not None
    # a copy is stored as "<generation>/<path>"
    key = len(b"%d/" % tx.generation) + len(b"/t/a")
    assert tx.memory == 24 + 8 + 1 + key


def test_a_domain_gone_before_commit_is_lost() -> None:
    store, _ = setup()
    domains = store.domains
    assert isinstance(domains, Domains)
    domains.introduce(5, 1)
    store.lookup(b"/t").perms = Perms.get(((PERM_WRITE, 0),))  # type: ignore[union-attr]
    tx = Transaction(1, store, None)
    create_node(tx, Who(5), b"/t/guest", b"", Limits())
    assert not tx.lost_domain()
    domains.drop(domains.get(5))  # type: ignore[arg-type]
    assert tx.lost_domain()
