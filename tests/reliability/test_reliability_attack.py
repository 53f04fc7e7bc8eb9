"""The embedded server under attack (issue 11), in small sizes: error replies,
unread watch events, what lies at the socket path, domid reuse, the memory
quota, removing a subtree. Invariants: see reliability/attack.py (the CPU
figure at the descriptor limit and the time a large RM blocks the other
clients are reliability/run.py figures only: they are timings)."""

from __future__ import annotations

import _relpath  # noqa: F401  (the repository root on sys.path)
import pytest

from reliability import attack


def test_error_replies_keep_the_server_small() -> None:
    fig = attack.error_replies(200)
    assert fig.ok, fig.explain()
    assert fig.ops == 200 * (len(attack.DOM0_ERRORS) + len(attack.GUEST_ERRORS)) + 150


def test_unread_events_keep_the_server_small() -> None:
    fig = attack.unread_events(5_000)
    assert fig.ok, fig.explain()


def test_what_lies_at_the_socket_path_is_kept() -> None:
    fig = attack.socket_path()
    assert fig.ok, fig.explain()
    assert fig.ops == 4


def test_domid_reuse_inherits_nothing() -> None:
    fig = attack.stale_permissions(20)
    assert fig.ok, fig.explain()
    assert fig.errors == 20


def test_a_guest_filling_transactions_stops_at_the_memory_quota() -> None:
    # The embedded server, held to the real daemon's figures (EIO at write
    # 1,335, 2,619,870 bytes accounted). The real daemon gives them too, but
    # not always: once in about twenty loaded runs it stopped answering the
    # guest at the quota instead (its guest is served through the ring
    # bridge), so its row is in reliability/run.py, not in the suite;
    # test_vs_real_memory.py compares both servers byte for byte at a small
    # quota.
    fig = attack.memory_quota("embedded")
    assert fig.ok, fig.explain()
    assert fig.errors == 1


@pytest.mark.realxs  # the embedded server and the real daemon, side by side
def test_removing_a_subtree_leaves_the_others_a_right_reply() -> None:
    fig = attack.rm_subtree(2_000, rounds=1, ratio=None)
    assert fig.ok, fig.explain()
    assert fig.faults == 2  # one RM on each server
    assert fig.errors == 4  # its root and its last node gone, on each server
    assert any(note.startswith("shortest READ wait") for note in fig.notes), fig.explain()
