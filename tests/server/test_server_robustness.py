"""Bad input never crashes the server, never leaks state, never disturbs others.

Invariant (checked by the fuzz tests): for any bytes a client sends, the
server replies or drops *that* connection; it never raises, the store stays
consistent (``XenStore.check()`` finds nothing), and other connections keep
working.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawxs import RawConn

from pyxs.protocol import HEADER, Decoder, Op, encode
from pyxs.server import Server, XenStore

OK = b"OK\0"


def test_oversized_header_closes_only_that_connection(
    srv: Server, dom0: RawConn, connect: Callable[..., RawConn]
) -> None:
    bad = connect()
    tx = int(bad.ok(Op.TRANSACTION_START, b"\0")[:-1])
    bad.ok(Op.WATCH, b"/x\0t\0")
    bad.send_raw(HEADER.pack(Op.READ, 1, 0, 4097))
    assert bad.is_closed()
    assert dom0.ok(Op.READ, b"/\0") == b""
    assert tx == 1
    assert srv.call(lambda core: (len(core.watches), len(core.conns))) == (0, 1)


def test_exactly_4096_bytes_is_fine(dom0: RawConn) -> None:
    dom0.send_raw(HEADER.pack(Op.WRITE, 1, 0, 4096) + b"/m\0" + b"v" * 4093)
    assert dom0.read_packet() == (Op.WRITE, 1, 0, OK)


def test_half_packets(dom0: RawConn) -> None:
    data = encode(Op.WRITE, 9, 0, b"/half\0value") + encode(Op.READ, 10, 0, b"/half\0")
    for i in range(len(data)):
        dom0.send_raw(data[i : i + 1])
        if i % 7 == 0:
            time.sleep(0.001)
    assert dom0.read_packet() == (Op.WRITE, 9, 0, OK)
    assert dom0.read_packet() == (Op.READ, 10, 0, b"value")


def test_client_vanishes_mid_request(
    srv: Server, dom0: RawConn, connect: Callable[..., RawConn]
) -> None:
    c = connect()
    c.send_raw(encode(Op.WRITE, 1, 0, b"/vanish\0" + b"x" * 100)[:40])
    c.close()
    assert dom0.error(Op.READ, b"/vanish\0") == "ENOENT"
    assert _connections_become(srv, 1)


def test_client_vanishes_with_output_pending(srv: Server, dom0: RawConn) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(srv.socket_path)
    dom0.ok(Op.WRITE, b"/big\0" + b"x" * 4000)
    sock.sendall(b"".join(encode(Op.READ, i, 0, b"/big\0") for i in range(2000)))
    sock.close()
    assert dom0.ok(Op.READ, b"/\0") == b""
    assert _connections_become(srv, 1)


def _connections_become(srv: Server, count: int) -> bool:
    """Whether the server soon holds ``count`` connections (it drops a closed
    one when it reads the EOF; 30 s is a hang guard)."""
    deadline = time.monotonic() + 30
    while srv.call(lambda core: len(core.conns)) != count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_slow_reader_does_not_block_others(srv: Server, dom0: RawConn) -> None:
    dom0.ok(Op.WRITE, b"/big\0" + b"x" * 4000)
    slow = socket.socket(socket.AF_UNIX)
    slow.connect(srv.socket_path)
    slow.setblocking(False)
    request = encode(Op.READ, 1, 0, b"/big\0")
    sent = 0
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # the server stops reading once its output piles up
        try:
            slow.send(request)
            sent += 1
        except BlockingIOError:
            break
    assert dom0.ok(Op.READ, b"/\0") == b""  # others are served meanwhile
    slow.setblocking(True)
    slow.settimeout(10)
    decoder = Decoder()
    got = 0
    while got < sent:
        got += len(decoder.feed(slow.recv(1 << 20)))
    assert got == sent
    slow.close()


def test_garbage_then_good(dom0: RawConn, connect: Callable[..., RawConn]) -> None:
    junk = connect()
    junk.send_raw(struct.pack("<IIII", 0xFFFF, 1, 0, 3) + b"abc")
    assert junk.read_packet() == (Op.ERROR, 1, 0, b"ENOSYS\0")
    junk.send_raw(struct.pack("<IIII", Op.READ, 2, 77, 0))
    assert junk.read_packet() == (Op.ERROR, 2, 77, b"ENOENT\0")
    junk.send_raw(struct.pack("<IIII", Op.READ, 3, 0, 0))
    assert junk.read_packet() == (Op.ERROR, 3, 0, b"EINVAL\0")
    junk.send_raw(b"\xff" * 16)
    assert junk.is_closed()
    assert dom0.ok(Op.READ, b"/\0") == b""


# -- fuzzing the core (no sockets: fast) -------------------------------------------

_names = st.sampled_from([b"a", b"b", b"c", b"local", b"domain", b"0", b"5", b"tool"])
_paths = st.lists(_names, min_size=0, max_size=4).map(lambda parts: b"/" + b"/".join(parts))
_strings = st.one_of(
    _paths,
    _names,
    st.sampled_from(
        [b"@releaseDomain", b"@introduceDomain", b"T", b"F", b"n0", b"r5", b"b5", b"5", b"0"]
    ),
    st.binary(max_size=12),
)
_payloads = st.one_of(
    st.lists(_strings, max_size=4).map(lambda items: b"".join(i + b"\0" for i in items)),
    st.tuples(_paths, st.binary(max_size=20)).map(lambda t: t[0] + b"\0" + t[1]),
    st.binary(max_size=40),
)
_ops = st.one_of(
    st.sampled_from([int(op) for op in Op if op != Op.CONTROL]), st.integers(0, 0xFFFF)
)
_packets = st.tuples(_ops, st.integers(0, 3), st.integers(0, 3), _payloads).map(
    lambda t: encode(t[0], t[1], t[2], t[3])
)
_streams = st.lists(st.one_of(_packets, st.binary(max_size=24)), max_size=25).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    streams=st.lists(st.tuples(st.integers(0, 2), _streams), min_size=1, max_size=6),
    cut=st.integers(1, 64),
)
def test_fuzz_core(streams: list[tuple[int, bytes]], cut: int) -> None:
    core = XenStore()
    conns = [core.connect(0) for _ in range(2)]
    core.process(conns[0], Op.INTRODUCE, 1, 0, b"5\x000\x007\0")
    core.take_output(conns[0])
    conns.append(core.connect(5))
    alive = [True] * len(conns)
    decoders = [Decoder() for _ in conns]
    for index, data in streams:
        conn = conns[index]
        if not alive[index]:
            continue
        for start in range(0, len(data), cut):
            if not core.receive(conn, data[start : start + cut]):
                core.disconnect(conn)
                alive[index] = False
                break
        for i, c in enumerate(conns):
            out = core.take_output(c)
            if out and alive[i]:
                for packet in decoders[i].feed(out):  # the server only sends well-formed packets
                    assert packet.op in (Op.WATCH_EVENT, Op.ERROR) or packet.op < 23
    assert core.check() == []
    # a fresh connection still works
    probe = core.connect(0)
    core.process(probe, Op.WRITE, 1, 0, b"/probe\0ok")
    core.process(probe, Op.READ, 2, 0, b"/probe\0")
    replies = Decoder().feed(core.take_output(probe))
    assert replies[-1] == (Op.READ, 2, 0, b"ok")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=_streams)
def test_fuzz_socket(srv: Server, data: bytes) -> None:
    fuzz = RawConn(srv.socket_path)
    try:
        try:
            fuzz.send_raw(data)
            fuzz.send_raw(encode(Op.GET_DOMAIN_PATH, 0xABCDEF, 0, b"7\0"))
            while True:
                packet = fuzz.read_packet(timeout=0.5)
                if packet.req_id == 0xABCDEF and packet.op == Op.GET_DOMAIN_PATH:
                    break
        except (EOFError, ConnectionResetError, BrokenPipeError, TimeoutError):
            pass  # dropped: fine
    finally:
        fuzz.close()
    with RawConn(srv.socket_path) as other:
        assert other.ok(Op.GET_DOMAIN_PATH, b"3\0") == b"/local/domain/3\0"
    assert srv.call(lambda core: core.check()) == []
