"""Fuzzing, short mode: a few thousand cases per target with a fixed seed
(``python reliability/run.py --long`` runs 100,000 per target, and each
target runs alone: ``python reliability/fuzz_server.py --cases N``).

Invariants (stated in full in the targets' docstrings):

- server: every complete request gets exactly one well-formed reply, in
  order, or (header over 4096 bytes) the connection is dropped; the server
  never crashes or hangs; ``/keep`` stays intact and the store consistent;
- client: every call returns a well-typed value or raises a PyXSError,
  never hangs, never gets another caller's reply.

The planted-bug tests show that the targets do catch what they claim to.
"""

from __future__ import annotations

import asyncio

import _relpath  # noqa: F401  (the repository root on sys.path)
import pytest
from reliability.fakeserver import FakeServer, Peer, answer, value_for

import pyxs
import pyxs.commands
from pyxs.protocol import Op, encode
from pyxs.server import core as server_core
from pyxs.server import store as server_store
from reliability import fuzz_client, fuzz_server

SERVER_CASES = 2500
CLIENT_CALLS = 1500


def test_server_packet_fuzz() -> None:
    fig = fuzz_server.fuzz_server(SERVER_CASES, seed=2024, check_every=500)
    assert fig.ok, fig.explain()
    assert fig.ops == SERVER_CASES


def test_client_reply_fuzz() -> None:
    # F2 (below) is fixed: a hit of a known bug fails this test too
    fig = fuzz_client.fuzz_client(CLIENT_CALLS, seed=2024, allow_known=False)
    assert fig.ok, fig.explain()
    assert fig.faults > CLIENT_CALLS * 2 * 0.2  # about 30% of the replies were broken


# -- the targets catch planted bugs --------------------------------------------


def test_server_fuzz_catches_a_crash(monkeypatch) -> None:
    original = server_core.XenStore._get_domain_path

    def crashing(self, conn, payload, tx):
        if payload.startswith(b"9"):
            raise IndexError("planted")
        return original(self, conn, payload, tx)

    monkeypatch.setattr(server_core.XenStore, "_get_domain_path", crashing)
    fig = fuzz_server.fuzz_server(600, seed=1, check_every=100)
    assert not fig.ok
    # the server survives its own bug (it drops that connection), the fuzzer
    # reports it: the traceback, and the requests left without a reply
    assert any("internal error" in note and "planted" in note for note in fig.notes), fig.explain()
    assert any("replies to" in note for note in fig.notes), fig.explain()


def test_server_fuzz_catches_a_corruption(monkeypatch) -> None:
    original = server_core.XenStore._rm

    def corrupting(self, conn, payload, tx):
        if payload.startswith(b"/fuzz/a"):
            server_store.rm_node(self.store, b"/keep/a")
        return original(self, conn, payload, tx)

    monkeypatch.setattr(server_core.XenStore, "_rm", corrupting)
    fig = fuzz_server.fuzz_server(600, seed=1, check_every=100)
    assert fig.lost > 0, fig.explain()


def test_client_fuzz_catches_a_decoder_crash(monkeypatch) -> None:
    def fragile(payload: bytes) -> bytes:
        # a READ decoder that indexes past the end of any mangled value
        if payload.startswith(b"v:"):
            return payload
        return bytes([payload[4096]])  # IndexError: payloads are at most 4096 bytes

    def fragile_read(path):
        command = original_read(path)
        command.decode = fragile
        return command

    original_read = pyxs.commands.read
    monkeypatch.setattr(pyxs.commands, "read", fragile_read)
    # one thread: the same calls meet the same broken replies on every run
    fig = fuzz_client.fuzz_client(1000, seed=3, threads=1, use_async=False)
    assert fig.failures > 0, fig.explain()
    assert any("IndexError" in note for note in fig.notes), fig.explain()


# -- bugs the fuzzer found (F2), kept as regression tests --------------------


@pytest.mark.parametrize("reply", [b"-1\0", b"4294967296\0", b"0\0", b"99999999999\0"])
def test_bad_transaction_id_is_a_pyxs_error(reply) -> None:
    def handler(peer: Peer) -> None:
        while True:
            for request in peer.requests():
                if request.op == Op.TRANSACTION_START:
                    peer.send(encode(Op.TRANSACTION_START, request.req_id, 0, reply))
                else:
                    peer.send(answer(request))

    with FakeServer(handler) as fake:
        with pyxs.Client(unix_socket_path=fake.socket_path, timeout=5) as c:
            with pytest.raises(pyxs.UnexpectedPacket, match="transaction id"):
                c.transaction()
            assert c.tx_id == 0
            assert c.read(b"/x") == value_for(b"/x")  # the connection is fine

        async def async_side() -> None:
            async with pyxs.AsyncClient(unix_socket_path=fake.socket_path) as ac:
                with pytest.raises(pyxs.UnexpectedPacket, match="transaction id"):
                    await ac.transaction()

        asyncio.run(async_side())
