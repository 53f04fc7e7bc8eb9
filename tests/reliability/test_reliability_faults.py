"""Faults, short mode: servers killed, restarted and stopped, partial writes
and resets, clients killed mid-transaction. Invariants: see
reliability/faults.py (each scenario's docstring)."""

from __future__ import annotations

import _relpath  # noqa: F401  (the repository root on sys.path)
import pytest

from reliability import faults

KINDS = ["embedded", pytest.param("real", marks=pytest.mark.realxs)]


@pytest.mark.parametrize("kind", KINDS)
def test_server_killed_mid_request(kind) -> None:
    fig = faults.server_killed(kind, pending=16)
    assert fig.ok, fig.explain()
    assert fig.errors == 16 + 4 + 1 + 4 + 1  # every pending call, then a refused connect


@pytest.mark.parametrize("kind", KINDS)
def test_server_stops_answering(kind) -> None:
    fig = faults.server_unresponsive(kind, timeout=0.3)
    assert fig.ok, fig.explain()
    assert fig.errors == 2  # the sync RequestTimeout and the asyncio TimeoutError


def test_fragmented_requests_and_replies(xs_server) -> None:
    fig = faults.fragmented_io(xs_server, threads=4, ops=80)
    assert fig.ok, fig.explain()


def test_connections_reset_mid_packet(xs_server) -> None:
    fig = faults.reset_connections(xs_server, resets=40)
    assert fig.ok, fig.explain()
    assert fig.faults == 40


def test_client_killed_mid_transaction(xs_server) -> None:
    fig = faults.client_killed_mid_transaction(xs_server, rounds=2)
    assert fig.ok, fig.explain()
    assert fig.faults == 2


def test_fake_server_split_reordered_and_reset_replies() -> None:
    fig = faults.fake_server_faults(rounds=30)
    assert fig.ok, fig.explain()
    assert fig.faults == 10


def test_reconnect_while_other_threads_send() -> None:
    fig = faults.reconnect_storm(resets=100, threads=4)
    assert fig.ok, fig.explain()
