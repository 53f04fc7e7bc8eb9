"""Fixtures for the threaded client's tests.

``client`` is a connected :class:`pyxs.Client` on ``xs_server`` (so every
test that uses it runs against the embedded server and the real xenstored);
``guest_client`` makes clients that act as an unprivileged domain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import pyxs


@pytest.fixture
def client(xs_server) -> Iterator[pyxs.Client]:
    with pyxs.Client(unix_socket_path=xs_server.socket_path, timeout=30) as c:
        yield c


@pytest.fixture
def guest_client(xs_server) -> Iterator[Callable[[int], pyxs.Client]]:
    """``guest_client(domid)``: a connected client acting as that domain."""
    made: list[pyxs.Client] = []

    def make(domid: int) -> pyxs.Client:
        c = pyxs.Client(unix_socket_path=xs_server.introduce_guest(domid), timeout=30)
        c.connect()
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
