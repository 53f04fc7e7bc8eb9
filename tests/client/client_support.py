"""Helpers for the threaded client's tests (fixtures are built from these in
each test module: a conftest.py here would shadow the root one's module name).

``connected_client(server)`` yields a connected :class:`pyxs.Client` on an
``xs_server``; ``guest_clients(server)`` yields ``make(domid)``, which returns
clients acting as that unprivileged domain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyxs


def connected_client(server: Any) -> Iterator[pyxs.Client]:
    with pyxs.Client(unix_socket_path=server.socket_path, timeout=30) as c:
        yield c


def guest_clients(server: Any) -> Iterator[Callable[[int], pyxs.Client]]:
    made: list[pyxs.Client] = []

    def make(domid: int) -> pyxs.Client:
        c = pyxs.Client(unix_socket_path=server.introduce_guest(domid), timeout=30)
        c.connect()
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
