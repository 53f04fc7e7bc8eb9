"""Both clients read the same stream the same way (faults: a scripted fake).

* a reply larger than 4096 bytes (oxenstored sends them, for a DIRECTORY of
  a large node) fails that one call with E2BIG, as libxenstore does, and the
  connection goes on: the header frames the reply, so it is read and dropped;
  ``list`` then falls back to DIRECTORY_PART, as ``xs_directory`` does;
* a reply that matches no request, or carries another tx_id than its
  request's, is a protocol violation: UnexpectedPacket in both clients, and
  the connection fails;
* the server closing the connection in the middle of a call is a
  ConnectionError with EBADF (libxenstore's errno for it), through ``xs`` too.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable

import pytest
from fake_server import Peer, fake_fixture  # noqa: F401 - the "fake" fixture

import pyxs
from pyxs.protocol import HEADER, Op, encode

BIG = 6760  # what oxenstored announced for a DIRECTORY of a large node


def big_directory_then_parts(peer: Peer) -> None:
    """oxenstored's answers: DIRECTORY too big, DIRECTORY_PART in pieces,
    READ echoes the path; the oversized reply is written in pieces."""
    while True:
        request = peer.request()
        if request.op == Op.DIRECTORY:
            peer.send(HEADER.pack(Op.DIRECTORY, request.req_id, request.tx_id, BIG))
            body = b"child\0" * (BIG // 6) + b"x" * (BIG % 6)
            for start in range(0, BIG, 1000):
                peer.send(body[start : start + 1000])
        elif request.op == Op.DIRECTORY_PART:
            offset = int(request.payload.split(b"\0")[1])
            payload = b"7\0a\0b\0\0" if offset == 0 else b"7\0\0"
            peer.reply(request, payload)
        else:
            peer.reply(request, request.payload.rstrip(b"\0"))


def run_sync(path: str, steps: Callable[[pyxs.Client], None]) -> None:
    with pyxs.Client(unix_socket_path=path, timeout=30) as c:
        steps(c)


def test_oversized_reply_fails_one_call_sync(fake) -> None:
    server = fake(big_directory_then_parts)
    with pyxs.Client(unix_socket_path=server.path, timeout=30) as c:
        with pytest.raises(pyxs.TooBigError) as info:
            c.execute(pyxs.commands.Command(Op.DIRECTORY, b"/big\0", lambda p: p))
        assert info.value.args == (errno.E2BIG, "Argument list too long")
        assert c.read(b"/after") == b"/after"  # the same connection, in step
        assert c.list(b"/big") == [b"a", b"b"]  # E2BIG: DIRECTORY_PART
        assert c.router.is_connected
    assert len(server.peers) == 1


def test_oversized_reply_fails_one_call_async(fake) -> None:
    server = fake(big_directory_then_parts)

    async def main() -> None:
        async with pyxs.AsyncClient(server.path) as c:
            with pytest.raises(pyxs.TooBigError):
                await c._call(pyxs.commands.Command(Op.DIRECTORY, b"/big\0", lambda p: p))
            assert await c.read(b"/after") == b"/after"
            assert await c.list(b"/big") == [b"a", b"b"]
            assert c.connected

    asyncio.run(asyncio.wait_for(main(), 60))
    assert len(server.peers) == 1


def test_oversized_reply_through_xs(fake, monkeypatch) -> None:
    server = fake(big_directory_then_parts)
    monkeypatch.setenv("XENSTORED_PATH", server.path)
    x = pyxs.xs()
    assert x.ls("", "/big") == ["a", "b"]
    assert x.read("", "/after") == b"/after"
    x.close()


def stray_reply(peer: Peer) -> None:
    request = peer.request()
    peer.send(encode(request.op, request.req_id + 1000, request.tx_id, b"stray\0"))
    peer.request()  # until the client hangs up


def wrong_tx_id(peer: Peer) -> None:
    request = peer.request()
    peer.send(encode(request.op, request.req_id, request.tx_id + 5, b"v"))
    peer.request()


@pytest.mark.parametrize("script", [stray_reply, wrong_tx_id], ids=["stray", "wrong-tx-id"])
def test_protocol_violation_same_in_both_clients(fake, script) -> None:
    server = fake(script)
    with pyxs.Client(unix_socket_path=server.path, timeout=30) as c:
        with pytest.raises(pyxs.UnexpectedPacket) as sync_info:
            c.read(b"/a")
        assert not c.router.is_connected
        assert sync_info.value.__cause__ is None

    async def main() -> BaseException:
        async with pyxs.AsyncClient(server.path) as c:
            with pytest.raises(pyxs.UnexpectedPacket) as info:
                await c.read(b"/a")
            assert not c.connected
            return info.value

    async_error = asyncio.run(asyncio.wait_for(main(), 60))
    assert str(async_error) == str(sync_info.value)
    assert async_error.errno == sync_info.value.errno == errno.EBADF


def hang_up_mid_call(peer: Peer) -> None:
    peer.request()
    # and close without answering


def test_closed_mid_call_is_ebadf(fake, monkeypatch) -> None:
    server = fake(hang_up_mid_call)
    with pyxs.Client(unix_socket_path=server.path, timeout=30) as c:
        with pytest.raises(pyxs.ConnectionError) as info:
            c.read(b"/a")
        assert info.value.errno == errno.EBADF
    monkeypatch.setenv("XENSTORED_PATH", server.path)
    x = pyxs.xs()
    with pytest.raises(RuntimeError) as xs_info:
        x.read("", "/a")
    assert xs_info.value.args == (errno.EBADF, "Bad file descriptor")
    x.close()


@pytest.mark.parametrize("kind", ["sync", "async", "xs"])
def test_error_on_a_closed_client_prints_once(xs_server, kind) -> None:
    # Issue 10: the ConnectionError came chained to a copy of itself.
    import subprocess
    import sys

    program = {
        "sync": "c = pyxs.Client(unix_socket_path=p); c.connect(); c.close(); c.read(b'/a')",
        "async": (
            "import asyncio\n"
            "async def main():\n"
            "    c = pyxs.AsyncClient(p); await c.connect(); await c.close()\n"
            "    await c.read(b'/a')\n"
            "asyncio.run(main())"
        ),
        "xs": "x = pyxs.xs(unix_socket_path=p); x.client.close(); x.read('', '/a')",
    }[kind]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, pyxs\np = sys.argv[1]\n{program}",
            xs_server.socket_path,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert result.stderr.count("ConnectionError") == 1, result.stderr
