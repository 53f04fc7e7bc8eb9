"""pytest plugin: a XenStore server and client for your tests.

Registered as the ``pyxs`` ``pytest11`` entry point, so installing pyxs
makes these fixtures available everywhere:

``xenstore_server``
    A running :class:`pyxs.server.Server` (a fresh one per test; starting
    one takes a few milliseconds). Its ``socket_path`` is the dom0 socket;
    ``guest_socket_path(domid)`` and ``set_domain_state(domid, state)``
    let a test act as guest domains.

``xenstore_client``
    A connected :class:`pyxs.Client` on that server.

Importing this module is cheap: pytest loads it in every run, so the
server and the client are imported only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .client import Client
    from .server import Server

__all__ = ["xenstore_client", "xenstore_server"]


@pytest.fixture
def xenstore_server() -> Iterator[Server]:
    """A running embedded XenStore server, fresh for each test."""
    from .server import Server

    with Server() as server:
        yield server


@pytest.fixture
def xenstore_client(xenstore_server: Server) -> Iterator[Client]:
    """A :class:`pyxs.Client` connected to ``xenstore_server``."""
    from .client import Client

    client = Client(unix_socket_path=xenstore_server.socket_path)
    client.connect()
    try:
        yield client
    finally:
        client.close()
