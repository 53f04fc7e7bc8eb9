"""Limits and security: quotas, 4096/4097-byte payloads, guest isolation,
socket modes. Invariants: see reliability/limits.py."""

from __future__ import annotations

import _relpath  # noqa: F401  (the repository root on sys.path)
import pytest

from reliability import limits


@pytest.mark.parametrize("kind", ["embedded", pytest.param("real", marks=pytest.mark.realxs)])
def test_quotas_give_enospc_never_a_crash(kind) -> None:
    fig = limits.quotas(kind)
    assert fig.ok, fig.explain()
    assert fig.faults == 6


def test_payload_of_4096_and_4097_bytes(xs_server) -> None:
    fig = limits.payload_limits(xs_server)
    assert fig.ok, fig.explain()


def test_guest_cannot_touch_what_it_does_not_own(xs_server, unique_domid) -> None:
    # a second domid no other test takes (unique_domid counts up from 100)
    fig = limits.guest_isolation(xs_server, unique_domid, unique_domid + 20000)
    assert fig.ok, fig.explain()
    assert fig.errors == 23


def test_embedded_sockets_are_private() -> None:
    fig = limits.socket_modes()
    assert fig.ok, fig.explain()


@pytest.mark.realxs
def test_real_daemon_socket_is_private(real_xenstored) -> None:
    fig = limits.socket_modes(real_xenstored)
    assert fig.ok, fig.explain()
