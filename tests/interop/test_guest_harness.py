"""The guest-ring harness (tests/realxs_guest.py) against the real xenstored.

These check the harness itself against facts tests/REALXS.md records for
an unprivileged guest, so a harness bug cannot pass for a server behaviour.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from pyxs.protocol import Decoder, Op, Packet, encode
from realxs_guest import dom0_request

pytestmark = pytest.mark.realxs


class Conn:
    """A raw packet connection (no client library: this tests the bytes)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(10)
        self.decoder = Decoder()
        self.queue: list[Packet] = []

    def send(self, op: int, payload: bytes, req_id: int = 1, tx_id: int = 0) -> None:
        self.sock.sendall(encode(op, req_id, tx_id, payload))

    def recv(self) -> Packet:
        while not self.queue:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.queue.extend(self.decoder.feed(data))
        return self.queue.pop(0)

    def rt(self, op: int, payload: bytes, req_id: int = 1, tx_id: int = 0) -> Packet:
        self.send(op, payload, req_id, tx_id)
        return self.recv()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dom0(real_xenstored):
    conn = Conn(real_xenstored.socket_path)
    yield conn
    conn.close()


def test_guest_read_denied_and_allowed(real_xenstored, dom0, unique_path, unique_domid):
    guest = Conn(real_xenstored.introduce_guest(unique_domid))
    try:
        assert dom0.rt(Op.WRITE, unique_path + b"\0v") == Packet(Op.WRITE, 1, 0, b"OK\0")
        # n0: unreadable for the guest; a missing child of it: EACCES too
        assert guest.rt(Op.READ, unique_path + b"\0", 7) == Packet(Op.ERROR, 7, 0, b"EACCES\0")
        assert guest.rt(Op.READ, unique_path + b"/x\0", 8) == Packet(Op.ERROR, 8, 0, b"EACCES\0")
        assert dom0.rt(Op.SET_PERMS, unique_path + b"\0n0\0r%d\0" % unique_domid).op == (
            Op.SET_PERMS
        )
        assert guest.rt(Op.READ, unique_path + b"\0", 9) == Packet(Op.READ, 9, 0, b"v")
        assert guest.rt(Op.READ, unique_path + b"/x\0", 10) == Packet(Op.ERROR, 10, 0, b"ENOENT\0")
        # relative paths are under the guest's own domain path
        reply = guest.rt(Op.GET_DOMAIN_PATH, b"%d\0" % unique_domid, 11)
        assert reply.payload == b"/local/domain/%d\0" % unique_domid
        # privileged ops are refused
        assert guest.rt(Op.IS_DOMAIN_INTRODUCED, b"0\0", 12) == Packet(Op.ERROR, 12, 0, b"EACCES\0")
    finally:
        guest.close()


def test_large_payload_crosses_the_ring_in_pieces(real_xenstored, dom0, unique_path, unique_domid):
    guest = Conn(real_xenstored.introduce_guest(unique_domid))
    dom0.rt(Op.MKDIR, unique_path + b"\0")
    assert dom0.rt(Op.SET_PERMS, unique_path + b"\0n%d\0" % unique_domid).payload == b"OK\0"
    try:
        value = bytes(range(256)) * 7  # 1792 bytes: more than one 1024-byte ring
        path = unique_path + b"/big"
        assert guest.rt(Op.WRITE, path + b"\0" + value, 3).payload == b"OK\0"
        assert guest.rt(Op.READ, path + b"\0", 4) == Packet(Op.READ, 4, 0, value)
        # pipelined requests whose replies together exceed the ring
        for i in range(6):
            guest.send(Op.READ, path + b"\0", 100 + i)
        for i in range(6):
            assert guest.recv() == Packet(Op.READ, 100 + i, 0, value)
    finally:
        guest.close()


def test_guest_watch_events_filtered_and_reset_on_disconnect(
    real_xenstored, dom0, unique_path, unique_domid
):
    # introduce first: a perms entry for a domain that does not exist yet
    # is kept but ignored by the real daemon
    path = real_xenstored.introduce_guest(unique_domid)
    dom0.rt(Op.MKDIR, unique_path + b"\0")
    dom0.rt(Op.SET_PERMS, unique_path + b"\0n0\0r%d\0" % unique_domid)
    dom0.rt(Op.MKDIR, unique_path + b"/priv\0")
    dom0.rt(Op.SET_PERMS, unique_path + b"/priv\0n0\0")
    dom0.rt(Op.WRITE, unique_path + b"/priv/deep\0")
    dom0.rt(Op.SET_PERMS, unique_path + b"/priv/deep\0n0\0")
    guest = Conn(path)
    try:
        assert guest.rt(Op.WATCH, unique_path + b"\0tok\0", 5) == Packet(Op.WATCH, 5, 0, b"OK\0")
        assert guest.recv() == Packet(Op.WATCH_EVENT, 0, 0, unique_path + b"\0tok\0")
        dom0.rt(Op.WRITE, unique_path + b"/priv/deep\0x")  # neither it nor parent readable
        dom0.rt(Op.WRITE, unique_path + b"/seen\0y")
        # the event for /priv/deep is filtered; the sync reply comes after /seen's
        assert guest.recv() == Packet(Op.WATCH_EVENT, 0, 0, unique_path + b"/seen\0tok\0")
        assert guest.rt(Op.GET_DOMAIN_PATH, b"1\0", 6).op == Op.GET_DOMAIN_PATH
        tx = guest.rt(Op.TRANSACTION_START, b"\0", 7)
        assert tx.op == Op.TRANSACTION_START
    finally:
        guest.close()
    # a new connection: the old watch and transaction are gone
    guest = Conn(path)
    try:
        txid = int(tx.payload[:-1])
        assert guest.rt(Op.TRANSACTION_END, b"T\0", 8, txid) == Packet(
            Op.ERROR, 8, txid, b"ENOENT\0"
        )
        dom0.rt(Op.WRITE, unique_path + b"/seen\0z")
        assert guest.rt(Op.GET_DOMAIN_PATH, b"1\0", 9) == Packet(
            Op.GET_DOMAIN_PATH, 9, 0, b"/local/domain/1\0"
        )
    finally:
        guest.close()


def test_events_from_others_arrive_without_guest_activity(
    real_xenstored, dom0, unique_path, unique_domid
):
    """The bridge polls: an event caused elsewhere reaches an idle guest."""
    guest = Conn(real_xenstored.introduce_guest(unique_domid))
    dom0.rt(Op.MKDIR, unique_path + b"\0")
    assert dom0.rt(Op.SET_PERMS, unique_path + b"\0n%d\0" % unique_domid).payload == b"OK\0"
    try:
        guest.rt(Op.WATCH, unique_path + b"/w\0t\0", 2)
        assert guest.recv().op == Op.WATCH_EVENT
        timer = threading.Timer(
            0.2, lambda: dom0_request(real_xenstored.socket_path, Op.WRITE, unique_path + b"/w\0v")
        )
        timer.start()
        start = time.monotonic()
        assert guest.recv() == Packet(Op.WATCH_EVENT, 0, 0, unique_path + b"/w\0t\0")
        assert time.monotonic() - start < 30  # a hang guard
        timer.join()
    finally:
        guest.close()


def test_set_domain_state_fires_release_domain(real_xenstored, dom0, unique_domid):
    real_xenstored.introduce_guest(unique_domid)
    assert dom0.rt(Op.WATCH, b"@releaseDomain\0r\0").op == Op.WATCH
    assert dom0.recv() == Packet(Op.WATCH_EVENT, 0, 0, b"@releaseDomain\0r\0")
    real_xenstored.set_domain_state(unique_domid, "shutdown")
    assert dom0.recv() == Packet(Op.WATCH_EVENT, 0, 0, b"@releaseDomain\0r\0")
    assert dom0.rt(Op.IS_DOMAIN_INTRODUCED, b"%d\0" % unique_domid, 2).payload == b"T\0"
    real_xenstored.set_domain_state(unique_domid, "dying")
    assert dom0.recv() == Packet(Op.WATCH_EVENT, 0, 0, b"@releaseDomain\0r\0")
    assert dom0.rt(Op.IS_DOMAIN_INTRODUCED, b"%d\0" % unique_domid, 3).payload == b"F\0"
    assert dom0.rt(Op.UNWATCH, b"@releaseDomain\0r\0", 4).op == Op.UNWATCH


# -- the unified fixtures, on both servers -------------------------------------


def test_xs_server_guest_is_unprivileged(xs_server, unique_path, unique_domid):
    guest_path = xs_server.introduce_guest(unique_domid)
    dom0 = Conn(xs_server.socket_path)
    guest = Conn(guest_path)
    try:
        assert dom0.rt(Op.WRITE, unique_path + b"\0v").payload == b"OK\0"
        assert guest.rt(Op.READ, unique_path + b"\0", 2) == Packet(Op.ERROR, 2, 0, b"EACCES\0")
        assert guest.rt(Op.INTRODUCE, b"9\x009\x001\0", 3) == Packet(Op.ERROR, 3, 0, b"EACCES\0")
        reply = guest.rt(Op.WRITE, b"rel\0x", 4)
        # no /local/domain/<id>, and "/" is n0: the guest may not learn ENOENT
        assert reply == Packet(Op.ERROR, 4, 0, b"EACCES\0")
    finally:
        guest.close()
        dom0.close()


def test_fresh_xs_server_release_domain_and_initial_tree(fresh_xs_server):
    dom0 = Conn(fresh_xs_server.socket_path)
    try:
        assert dom0.rt(Op.DIRECTORY, b"/\0") == Packet(Op.DIRECTORY, 1, 0, b"tool\0")
        fresh_xs_server.introduce_guest(3)
        assert dom0.rt(Op.WATCH, b"@releaseDomain\0r\0", 2).op == Op.WATCH
        assert dom0.recv() == Packet(Op.WATCH_EVENT, 0, 0, b"@releaseDomain\0r\0")
        fresh_xs_server.set_domain_state(3, "crashed")
        assert dom0.recv() == Packet(Op.WATCH_EVENT, 0, 0, b"@releaseDomain\0r\0")
        assert dom0.rt(Op.IS_DOMAIN_INTRODUCED, b"3\0", 3).payload == b"T\0"
        fresh_xs_server.set_domain_state(3, "gone")
        assert dom0.recv() == Packet(Op.WATCH_EVENT, 0, 0, b"@releaseDomain\0r\0")
        assert dom0.rt(Op.IS_DOMAIN_INTRODUCED, b"3\0", 4).payload == b"F\0"
    finally:
        dom0.close()
