"""Both clients, one rule (issue 11, point 8), in small sizes: a reply that
matches no request, or carries another tx_id than its request's, amid
pipelined traffic, fails the connection with UnexpectedPacket in the sync
and the asyncio client, and reaches no other caller. Invariants: see
reliability/clients.py."""

from __future__ import annotations

import _relpath  # noqa: F401  (the repository root on sys.path)

from reliability import clients


def test_one_rule_in_both_clients() -> None:
    cases, callers = 12, 6
    fig = clients.one_rule(cases, callers=callers, calls=4)
    assert fig.ok, fig.explain()
    assert fig.faults == 2 * cases  # each client got every faulty reply
    assert fig.ops == 2 * cases * callers  # every caller of every case judged
    assert fig.errors >= 2 * cases  # an UnexpectedPacket in each case at least
    for name in ("sync", "asyncio"):
        assert f"{name}: {cases} cases" in "\n".join(fig.notes), fig.explain()
    assert all("wrong replies 0" in note for note in fig.notes), fig.explain()
    assert all(f"connection failed {cases}/{cases}" in note for note in fig.notes)
