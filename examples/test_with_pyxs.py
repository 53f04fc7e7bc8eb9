"""Testing your own XenStore code with pyxs's pytest fixtures.

Installing pyxs registers a pytest plugin; its fixtures need no import:

``xenstore_server``
    a fresh :class:`pyxs.server.Server` for each test;
``xenstore_client``
    a :class:`pyxs.Client` connected to it as dom0.

    python -m pytest examples/test_with_pyxs.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import pyxs
from pyxs.server import Server

# -- the code under test: what a toolstack might do ----------------------------


def set_memory(client: pyxs.Client, domid: int, mebibytes: int) -> None:
    """Record a domain's memory target, in KiB, as the toolstack does."""
    path = client.get_domain_path(domid) + b"/memory/target"
    client.write(path, b"%d" % (mebibytes * 1024))


def running_guests(client: pyxs.Client) -> list[int]:
    """The domains that have a home under /local/domain, dom0 excluded."""
    if not client.exists(b"/local/domain"):
        return []
    return sorted(int(d) for d in client.list(b"/local/domain") if d != b"0")


# -- the tests ---------------------------------------------------------------------


def test_set_memory(xenstore_client: pyxs.Client) -> None:
    set_memory(xenstore_client, 5, 512)
    assert xenstore_client.read(b"/local/domain/5/memory/target") == b"524288"


def test_each_test_gets_a_fresh_store(xenstore_client: pyxs.Client) -> None:
    assert running_guests(xenstore_client) == []
    xenstore_client.mkdir(b"/local/domain/3")
    assert running_guests(xenstore_client) == [3]


def test_a_guest_cannot_read_dom0_nodes(
    xenstore_server: Server, xenstore_client: pyxs.Client
) -> None:
    xenstore_client.write(b"/secret", b"dom0 only")
    xenstore_client.introduce_domain(5, 0x1000, 1)
    guest = pyxs.Client(xenstore_server.guest_socket_path(5))
    with guest, pytest.raises(pyxs.PermissionDeniedError):
        guest.read(b"/secret")


def test_cleanup_after_a_guest_dies(xenstore_server: Server, xenstore_client: pyxs.Client) -> None:
    xenstore_client.introduce_domain(5, 0x1000, 1)
    xenstore_client.mkdir(b"/local/domain/5")
    xenstore_client.set_perms(b"/local/domain/5", [b"n5"])  # owned by the guest
    with xenstore_client.monitor() as m:
        m.watch(b"@releaseDomain", b"released")
        assert m.next_event(timeout=5) is not None  # the initial event
        xenstore_server.set_domain_state(5, "dying")  # as if the domain died
        assert m.next_event(timeout=5) == (b"@releaseDomain", b"released")
    assert running_guests(xenstore_client) == []  # xenstored removed what it owned


def test_a_program_in_a_subprocess(xenstore_server: Server) -> None:
    # Programs find the server through XENSTORED_PATH, as libxenstore does.
    env = dict(os.environ, XENSTORED_PATH=xenstore_server.socket_path)
    code = "import pyxs; c = pyxs.Client(); c.connect(); c[b'/from/child'] = b'hi'; c.close()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    with pyxs.Client(xenstore_server.socket_path) as c:
        assert c[b"/from/child"] == b"hi"


# -- a server of your own: other quotas, another socket, asyncio ---------------------


@pytest.fixture
def strict_server() -> Iterator[Server]:
    """A server whose guests may own at most 2 nodes each."""
    with Server(quotas={"nodes": 2}) as server:
        yield server


def test_a_guest_over_its_quota(strict_server: Server) -> None:
    with pyxs.Client(strict_server.socket_path) as dom0:
        dom0.introduce_domain(5, 0x1000, 1)
        dom0.mkdir(b"/local/domain/5")
        dom0.set_perms(b"/local/domain/5", [b"n5"])  # the first node it owns
        with pyxs.Client(strict_server.guest_socket_path(5)) as guest:
            guest.write(b"one", b"1")
            with pytest.raises(pyxs.QuotaExceededError):
                guest.write(b"two", b"2")


def test_asyncio_code() -> None:
    async def scenario() -> bytes:
        async with Server() as server, pyxs.AsyncClient(server.socket_path) as c:
            await c.write(b"/vm/a", b"1")
            return await c.read(b"/vm/a")

    assert asyncio.run(scenario()) == b"1"
