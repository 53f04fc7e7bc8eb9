"""Fixtures for the embedded server's tests: a fresh server per test and raw clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest
from rawxs import RawConn

from pyxs.protocol import Op
from pyxs.server import Server


@pytest.fixture
def srv() -> Iterator[Server]:
    """A fresh embedded server (a few milliseconds to start)."""
    with Server() as server:
        yield server


@pytest.fixture
def connect(srv: Server) -> Iterator[Callable[..., RawConn]]:
    """``connect(path=None)``: a raw connection (dom0 by default), closed afterwards."""
    conns: list[RawConn] = []

    def factory(path: str | None = None) -> RawConn:
        conn = RawConn(path or srv.socket_path)
        conns.append(conn)
        return conn

    yield factory
    for conn in conns:
        conn.close()


@pytest.fixture
def dom0(connect: Callable[..., RawConn]) -> RawConn:
    return connect()


@pytest.fixture
def guest(srv: Server, dom0: RawConn, connect: Callable[..., RawConn]) -> Callable[[int], RawConn]:
    """``guest(domid)``: INTRODUCE ``domid`` (once) and connect as that domain."""
    introduced: set[int] = set()

    def factory(domid: int) -> RawConn:
        if domid not in introduced:
            assert dom0.ok(Op.INTRODUCE, b"%d\x000\x00%d\x00" % (domid, 100 + domid)) == b"OK\0"
            introduced.add(domid)
        return connect(srv.guest_socket_path(domid))

    return factory
