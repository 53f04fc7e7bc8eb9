"""Raw-socket load generator for the server benchmarks.

The same generator drives the real xenstored and the embedded server, so any
difference measured is the server's. It uses only the standard library and
never parses more than it must: every request is built before the clock
starts, and the replies the server must send back are known byte for byte in
advance (replies echo the req_id, and a READ of a fixed value, a WRITE's
``OK`` and an event's payload are all predictable). A run compares what came
back with what was expected, so a server that answers with an error fails
the run instead of looking fast.

Run as a script by ``benchmarks/run.py``::

    python loadgen.py '{"bench": "read_pipelined", "socket": "/tmp/x/socket", ...}'

It prints one JSON object on stdout: ``{"value": ..., "unit": ..., ...}``.
"""

from __future__ import annotations

import json
import selectors
import socket
import struct
import sys
import time
from typing import Any, Callable

HEADER = struct.Struct("<IIII")
READ, WATCH, TX_START, TX_END, RM, WATCH_EVENT, ERROR, WRITE = 2, 4, 6, 7, 13, 15, 16, 11
OK = b"OK\0"


def packet(op: int, req_id: int, payload: bytes, tx_id: int = 0) -> bytes:
    return HEADER.pack(op, req_id & 0xFFFFFFFF, tx_id, len(payload)) + payload


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if not n:
            raise ConnectionError(f"server closed the connection ({got}/{size} bytes read)")
        got += n
    return bytes(buf)


def describe_mismatch(got: bytes, expected: bytes) -> str:
    """Name the first reply that differs from the expected stream."""
    pos = 0
    while pos + 16 <= len(got):
        op, req_id, tx_id, size = HEADER.unpack_from(got, pos)
        body = got[pos + 16 : pos + 16 + size]
        if got[pos : pos + 16 + size] != expected[pos : pos + 16 + size]:
            return f"unexpected reply op={op} req_id={req_id} tx_id={tx_id} payload={body[:60]!r}"
        pos += 16 + size
    return f"reply stream differs (got {len(got)} bytes, expected {len(expected)})"


def check(got: bytes, expected: bytes) -> None:
    if got != expected:
        raise RuntimeError(describe_mismatch(got, expected))


def roundtrip(sock: socket.socket, request: bytes, reply: bytes) -> None:
    sock.sendall(request)
    check(recv_exact(sock, len(reply)), reply)


class Pipeline:
    """Requests sent in chunks, topped up as replies arrive.

    At most ``window`` chunks are unanswered at any time. After every
    ``recv`` (whatever it returned) the pipeline is topped up again, so the
    server never runs dry while the generator waits for the rest of a chunk:
    on one CPU, waiting for whole chunks halves what the real daemon serves.
    """

    def __init__(
        self, sock: socket.socket, chunks: list[tuple[bytes, bytes]], window: int = 2
    ) -> None:
        self.sock = sock
        self.chunks = chunks
        self.window = window
        self.sent = 0  # chunks sent
        self.done = 0  # chunks whose replies were all received and checked
        self.buf = bytearray()

    def top_up(self) -> None:
        chunks = self.chunks
        while self.sent < len(chunks) and self.sent - self.done < self.window:
            self.sock.sendall(chunks[self.sent][0])
            self.sent += 1

    def receive(self) -> bool:
        """Read what is there, check whole chunks; False once all are done."""
        data = self.sock.recv(1 << 18)
        if not data:
            raise ConnectionError(f"server closed the connection after {self.done} chunks")
        buf = self.buf
        buf += data
        chunks = self.chunks
        while self.done < self.sent:
            expected = chunks[self.done][1]
            size = len(expected)
            if len(buf) < size:
                break
            if buf[:size] != expected:
                check(bytes(buf[:size]), expected)
            del buf[:size]
            self.done += 1
        self.top_up()
        return self.done < len(chunks)


def run_pipelines(pipes: list[Pipeline], timeout: float = 60.0) -> None:
    if len(pipes) == 1:
        p = pipes[0]
        p.top_up()
        while p.receive():
            pass
        return
    sel = selectors.DefaultSelector()
    for p in pipes:
        p.top_up()
        sel.register(p.sock, selectors.EVENT_READ, p)
    active = len(pipes)
    while active:
        ready = sel.select(timeout)
        if not ready:
            raise RuntimeError(f"no reply for {timeout}s")
        for key, _ in ready:
            pipe: Pipeline = key.data
            if not pipe.receive():
                sel.unregister(pipe.sock)
                active -= 1
    sel.close()


def build_chunks(
    requests: list[bytes], replies: list[bytes], chunk: int
) -> list[tuple[bytes, bytes]]:
    return [
        (b"".join(requests[i : i + chunk]), b"".join(replies[i : i + chunk]))
        for i in range(0, len(requests), chunk)
    ]


# -- benchmarks ------------------------------------------------------------------


def bench_read_pipelined(socket_path: str, conns: int, reads: int, chunk: int) -> dict[str, Any]:
    """``reads`` READs on each of ``conns`` connections, pipelined; reads/s."""
    path, value = b"/bench/srv/read", b"0123456789abcdef"
    setup = connect(socket_path)
    roundtrip(setup, packet(WRITE, 1, path + b"\0" + value), packet(WRITE, 1, OK))
    socks = [connect(socket_path) for _ in range(conns)]
    pipes = []
    for _ in socks:
        reqs = [packet(READ, i + 1, path + b"\0") for i in range(reads)]
        reps = [packet(READ, i + 1, value) for i in range(reads)]
        pipes.append(Pipeline(_, build_chunks(reqs, reps, chunk)))
    # warm up each connection with one round trip
    for s in socks:
        roundtrip(s, packet(READ, 0, path + b"\0"), packet(READ, 0, value))
    t0 = time.perf_counter()
    run_pipelines(pipes)
    elapsed = time.perf_counter() - t0
    for s in [*socks, setup]:
        s.close()
    return {"value": conns * reads / elapsed, "unit": "reads/s", "seconds": elapsed}


def bench_write_seq(socket_path: str, writes: int) -> dict[str, Any]:
    """Sequential WRITE round trips on one connection; writes/s."""
    sock = connect(socket_path)
    reqs = [
        packet(WRITE, i + 1, b"/bench/srv/w%d\0value-%08d" % (i % 16, i)) for i in range(writes)
    ]
    reps = [packet(WRITE, i + 1, OK) for i in range(writes)]
    warm = min(200, writes)
    for i in range(warm):
        roundtrip(sock, reqs[i], reps[i])
    size = len(reps[0])
    t0 = time.perf_counter()
    for req, rep in zip(reqs, reps):
        sock.sendall(req)
        got = sock.recv(size)
        if len(got) != size:
            got += recv_exact(sock, size - len(got))
        if got != rep:
            check(got, rep)
    elapsed = time.perf_counter() - t0
    sock.close()
    return {"value": writes / elapsed, "unit": "writes/s", "seconds": elapsed}


def node_path(i: int) -> bytes:
    return b"/bench/nodes/d%d/n%d" % (i // 100, i % 100)


def bench_create_nodes(socket_path: str, nodes: int, chunk: int) -> dict[str, Any]:
    """Create ``nodes`` nodes (100 per directory) by pipelined WRITEs; seconds."""
    sock = connect(socket_path)
    reqs = [packet(WRITE, i + 1, node_path(i) + b"\0v%07d" % i) for i in range(nodes)]
    reps = [packet(WRITE, i + 1, OK) for i in range(nodes)]
    pipe = Pipeline(sock, build_chunks(reqs, reps, chunk))
    t0 = time.perf_counter()
    run_pipelines([pipe])
    elapsed = time.perf_counter() - t0
    # spot-check that the nodes are really there
    last = nodes - 1
    v = b"v%07d" % last
    roundtrip(sock, packet(READ, 7, node_path(last) + b"\0"), packet(READ, 7, v))
    sock.close()
    return {"value": elapsed, "unit": "s", "us_per_node": elapsed / nodes * 1e6}


def bench_rm_tree(socket_path: str, nodes: int) -> dict[str, Any]:
    """After :func:`bench_create_nodes` made ``nodes`` nodes: time one RM of
    their common root, and a READ another connection sent right after it
    (every other client waits while the RM runs); seconds."""
    sock = connect(socket_path)
    other = connect(socket_path)
    t0 = time.perf_counter()
    sock.sendall(packet(RM, 1, b"/bench\0"))
    other.sendall(packet(READ, 2, b"/\0"))
    check(recv_exact(sock, 16 + len(OK)), packet(RM, 1, OK))
    elapsed = time.perf_counter() - t0
    reply = recv_exact(other, 16)
    blocked = time.perf_counter() - t0
    recv_exact(other, int.from_bytes(reply[12:16], "little"))
    roundtrip(sock, packet(READ, 3, b"/bench\0"), packet(ERROR, 3, b"ENOENT\0"))
    sock.close()
    other.close()
    return {
        "value": elapsed,
        "unit": "s",
        "nodes": nodes + nodes // 100 + 2,
        "other_read_waited": blocked,
    }


def bench_watch_fanout(
    socket_path: str,
    conns: int,
    watches: int,
    writes: int,
    repeat: int,
    window: int = 64,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """``watches`` watches spread over ``conns`` connections, then ``writes``
    WRITEs; seconds from the first WRITE until every event arrived (mean of
    ``repeat`` passes).

    Every connection watches the same ``watches // conns`` paths, so each
    WRITE fires one event on every watching connection (fan-out ``conns``):
    ``writes * conns`` events per pass. The writer keeps at most ``window``
    WRITEs unanswered and the watchers are drained all along, as a real
    client would: the real xenstored drops events that pile up unread past
    its per-domain memory quota (and every socket connection is domain 0).
    """
    per_conn = watches // conns
    paths = [b"/bench/fan/p%d" % j for j in range(per_conn)]
    socks = [connect(socket_path) for _ in range(conns)]
    writer = connect(socket_path)
    roundtrip(writer, packet(WRITE, 1, b"/bench/fan\0"), packet(WRITE, 1, OK))
    for c, s in enumerate(socks):
        watch_reqs = b"".join(
            packet(WATCH, j + 1, p + b"\0" + b"t%d\0" % c) for j, p in enumerate(paths)
        )
        s.sendall(watch_reqs)
        # each WATCH gives OK then its initial event
        expected = b"".join(
            packet(WATCH, j + 1, OK) + packet(WATCH_EVENT, 0, p + b"\0" + b"t%d\0" % c)
            for j, p in enumerate(paths)
        )
        check(recv_exact(s, len(expected)), expected)
    events_per_conn = [
        b"".join(
            packet(WATCH_EVENT, 0, paths[k % per_conn] + b"\0" + b"t%d\0" % c)
            for k in range(writes)
        )
        for c in range(conns)
    ]
    reply_size = len(packet(WRITE, 0, OK))
    total = 0.0
    for r in range(repeat):
        reqs = [
            packet(WRITE, k + 1, paths[k % per_conn] + b"\0v%d-%d" % (r, k)) for k in range(writes)
        ]
        reps = b"".join(packet(WRITE, k + 1, OK) for k in range(writes))
        sel = selectors.DefaultSelector()
        want = {s: len(events_per_conn[c]) for c, s in enumerate(socks)}
        want[writer] = len(reps)
        bufs: dict[socket.socket, bytearray] = {s: bytearray() for s in want}
        for s in want:
            sel.register(s, selectors.EVENT_READ)
        remaining = len(want)
        t0 = time.perf_counter()
        sent = min(window, writes)
        writer.sendall(b"".join(reqs[:sent]))
        while remaining:
            ready = sel.select(timeout)
            if not ready:
                progress = {c: len(bufs[s]) for c, s in enumerate(socks)}
                raise RuntimeError(
                    f"no event for {timeout}s: writer {len(bufs[writer])}/{len(reps)} bytes,"
                    f" watchers {progress} of {len(events_per_conn[0])} bytes each"
                )
            for key, _ in ready:
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                data = conn.recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed a connection")
                buf = bufs[conn]
                buf += data
                if len(buf) >= want[conn]:
                    sel.unregister(conn)
                    remaining -= 1
                if conn is writer and sent < writes:
                    upto = min(writes, len(buf) // reply_size + window)
                    if upto > sent:
                        writer.sendall(b"".join(reqs[sent:upto]))
                        sent = upto
        total += time.perf_counter() - t0
        sel.close()
        check(bytes(bufs[writer]), reps)
        for c, s in enumerate(socks):
            check(bytes(bufs[s]), events_per_conn[c])
    for s in [*socks, writer]:
        s.close()
    mean = total / repeat
    return {"value": mean, "unit": "s", "events_per_pass": writes * conns}


def bench_tx_pipelined(socket_path: str, concurrency: int, batches: int) -> dict[str, Any]:
    """Batches of ``concurrency`` transactions (5 READs + 5 WRITEs + commit each),
    all pipelined on one connection; committed transactions/s.

    Each batch sends the STARTs, reads the ids, then sends every transaction's
    operations and its END at once. It is the most a client can get out of
    one connection, so it bounds what the asyncio client can do.
    """
    sock = connect(socket_path)
    reads = [b"/bench/tx/r%d\0" % i for i in range(5)]
    value = b"tx-value"
    writes = [[b"/bench/txp/%d/w%d\0" % (k, i) for i in range(5)] for k in range(concurrency)]
    setup = [packet(WRITE, 1, p + value) for p in reads] + [
        packet(WRITE, 1, p + value) for w in writes for p in w
    ]
    sock.sendall(b"".join(setup))
    check(
        recv_exact(sock, len(setup) * len(packet(WRITE, 1, OK))), packet(WRITE, 1, OK) * len(setup)
    )
    starts = b"".join(packet(TX_START, k + 1, b"\0") for k in range(concurrency))

    def batch() -> None:
        sock.sendall(starts)
        got = b""
        ids: list[int] = []
        pos = 0
        while len(ids) < concurrency:
            while len(got) - pos < 16:
                got += sock.recv(1 << 16)
            op, _, _, size = HEADER.unpack_from(got, pos)
            while len(got) - pos < 16 + size:
                got += sock.recv(1 << 16)
            if op != TX_START:
                raise RuntimeError(f"TRANSACTION_START failed: {got[pos + 16 : pos + 16 + size]!r}")
            ids.append(int(got[pos + 16 : pos + 15 + size]))
            pos += 16 + size
        reqs = []
        reps = []
        for k, t in enumerate(ids):
            for i, p in enumerate(reads):
                reqs.append(packet(READ, i + 1, p, t))
                reps.append(packet(READ, i + 1, value, t))
            for i, p in enumerate(writes[k]):
                reqs.append(packet(WRITE, i + 6, p + value, t))
                reps.append(packet(WRITE, i + 6, OK, t))
            reqs.append(packet(TX_END, 11, b"T\0", t))
            reps.append(packet(TX_END, 11, OK, t))
        expected = b"".join(reps)
        sock.sendall(b"".join(reqs))
        check(recv_exact(sock, len(expected)), expected)

    batch()
    t0 = time.perf_counter()
    for _ in range(batches):
        batch()
    elapsed = time.perf_counter() - t0
    sock.close()
    return {"value": concurrency * batches / elapsed, "unit": "tx/s", "seconds": elapsed}


BENCHES: dict[str, Callable[..., dict[str, Any]]] = {
    "read_pipelined": bench_read_pipelined,
    "write_seq": bench_write_seq,
    "create_nodes": bench_create_nodes,
    "rm_tree": bench_rm_tree,
    "watch_fanout": bench_watch_fanout,
    "tx_pipelined": bench_tx_pipelined,
}


def main(argv: list[str]) -> int:
    args = json.loads(argv[1])
    fn = BENCHES[args.pop("bench")]
    socket_path = args.pop("socket")
    result = fn(socket_path, **args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
