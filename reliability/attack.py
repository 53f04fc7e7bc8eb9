"""The embedded server under attack (issue 11): what a hostile client costs it.

Each scenario runs the embedded server in a process of its own
(``python -m pyxs.server``) and reads that process's figures from
``/proc/<pid>``: resident memory (``VmRSS``) and CPU time (user + system).
Its notes carry the numbers; a scenario fails when a bound is broken.

``error_replies``
    N error replies of each kind (9 kinds from dom0, 6 from a guest);
    invariant: RSS grows by less than 8 MiB (it grew by about a kilobyte
    per reply while error replies leaked; the real daemon: +0).
``unread_events``
    an idle dom0 watcher and an idle guest watcher, W writes by dom0
    cycling over 1,000 watched paths (no tree growth, every write an
    event for both); invariant: RSS stays under 64 MiB (dom0 bound) +
    2.5 MiB (guest quota) + 48 MiB, and the dom0 watcher is closed.
``fd_exhaustion``
    a server limited to 64 descriptors, 100 clients connected: 64 are
    served, the rest wait in the backlog; invariant: the server uses less
    than 0.2 s of CPU in the next second (it spun at 100 % before), for
    the selectors loop (``python -m pyxs.server``) and the asyncio one.
``socket_path``
    a regular file, a symlink, a live server's socket and a stale socket
    at ``--socket PATH``; invariant: the first three are refused and left
    as they were (exit statuses 1, 1, 5), the stale one is replaced.
``memory_quota``
    a guest opens 10 transactions and writes 1,900-byte nodes in them until
    a write fails; invariant: the first failure is EIO at the real
    daemon's point (the same write number and the same accounted memory,
    2,619,870 bytes, on both servers), and the guest holds no more.
``outstanding``
    a guest pipelines N READs of a 4,000-byte node and reads no reply;
    invariant: at most 20 replies wait in the server (the rest of the
    requests wait unread), then every reply arrives, in order.
``stale_permissions``
    R rounds of: domain D is granted ``rD``, dies (its home is removed), a
    new domain D comes, dom0 rewrites the node; invariant: the new domain D
    never reads it.
``rm_subtree``
    one RM of a subtree of N nodes while another connection makes a READ,
    on the embedded server and on the real daemon (a fresh one of each per
    round); invariant: the subtree is gone, both replies are right, and the
    embedded server keeps the other connection waiting at most twice as long
    as the real daemon does in the same run (figures: the RM's time, the
    READ's wait, per server).
"""

from __future__ import annotations

import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pyxs.protocol import Decoder, Op, Packet, encode

from .figures import Figures

__all__ = [
    "error_replies",
    "fd_exhaustion",
    "memory_quota",
    "outstanding",
    "rm_subtree",
    "socket_path",
    "stale_permissions",
    "unread_events",
]

MIB = 1024 * 1024

#: (op, payload, error) from dom0 and from guest 5 (see tests/server/test_server_attack.py)
DOM0_ERRORS: list[tuple[int, bytes, bytes]] = [
    (Op.READ, b"/missing\0", b"ENOENT"),
    (Op.READ, b"/bad.path\0", b"EINVAL"),
    (Op.READ, b"/x", b"EINVAL"),
    (Op.RM, b"/\0", b"EINVAL"),
    (Op.SET_PERMS, b"/secret\0q0\0", b"EINVAL"),
    (Op.WATCH, b"/dup\0tok\0", b"EEXIST"),
    (Op.TRANSACTION_END, b"T\0", b"ENOENT"),
    (Op.CONTROL, b"no-such-command\0", b"EINVAL"),
    (99, b"", b"ENOSYS"),
]
GUEST_ERRORS: list[tuple[int, bytes, bytes]] = [
    (Op.READ, b"/secret\0", b"EACCES"),
    (Op.WRITE, b"/secret\0v", b"EACCES"),
    (Op.READ, b"missing\0", b"ENOENT"),
    (Op.INTRODUCE, b"6\x000\x001\0", b"EACCES"),
    (Op.WRITE, b"big\0" + b"x" * 3000, b"ENOSPC"),
    (Op.SET_PERMS, b"/local/domain/5\0n0\0", b"EPERM"),
]


# -- a server process and its figures ------------------------------------------------


class _Process:
    """An embedded server in a process of its own, on a fresh socket path."""

    def __init__(
        self, script: str | None = None, nofile: int | None = None, path: str | None = None
    ) -> None:
        self.rundir = tempfile.mkdtemp(prefix="rla", dir="/tmp")
        self.socket_path = path or os.path.join(self.rundir, "socket")

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        if script is None:
            argv = [sys.executable, "-m", "pyxs.server", "--socket", self.socket_path]
        else:
            argv = [sys.executable, "-c", script, self.socket_path]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=limit
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("SOCKET="):
            self.close()
            raise RuntimeError("the server process did not come up")
        self.pid = self.proc.pid

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        for name in os.listdir(self.rundir):
            os.unlink(os.path.join(self.rundir, name))
        os.rmdir(self.rundir)


class _Conn:
    """A raw connection: pipelined requests, every reply checked."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)
        self.decoder = Decoder()
        self.pending: list[Packet] = []

    def packet(self) -> Packet:
        while not self.pending:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("closed")
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def reply(self, op: int, payload: bytes) -> Packet:
        self.sock.sendall(encode(op, 1, 0, payload))
        while True:
            packet = self.packet()
            if packet.op != Op.WATCH_EVENT:
                return packet

    def close(self) -> None:
        self.sock.close()


def _errors(fig: Figures, conn: _Conn, requests: list[tuple[int, bytes, bytes]], n: int) -> None:
    batch = b"".join(encode(op, i, 0, payload) for i, (op, payload, _) in enumerate(requests))
    for _ in range(n):
        conn.sock.sendall(batch)
        for i, (_op, _payload, error) in enumerate(requests):
            packet = conn.packet()
            fig.ops += 1
            if (packet.op, packet.req_id, packet.payload) != (Op.ERROR, i, error + b"\0"):
                fig.fail(f"request {i}: {packet!r}, expected {error!r}")


def _setup_guest(dom0: _Conn, rundir: str, domid: int = 5) -> _Conn:
    dom0.reply(Op.INTRODUCE, b"%d\x000\x001\0" % domid)
    dom0.reply(Op.MKDIR, b"/local/domain/%d\0" % domid)
    dom0.reply(Op.SET_PERMS, b"/local/domain/%d\0n%d\0" % (domid, domid))
    return _Conn(os.path.join(rundir, f"domain-{domid}.sock"))


# -- scenarios -----------------------------------------------------------------------------


def error_replies(n: int) -> Figures:
    """RSS after ``n`` error replies of each kind, from dom0 and from a guest."""
    fig = Figures("error replies", "embedded")
    server = _Process()
    try:
        dom0 = _Conn(server.socket_path)
        dom0.reply(Op.WRITE, b"/secret\0s")
        dom0.reply(Op.WATCH, b"/dup\0tok\0")
        guest = _setup_guest(dom0, server.rundir)
        _errors(fig, dom0, DOM0_ERRORS, 10)
        _errors(fig, guest, GUEST_ERRORS, 10)
        before = server.rss()
        _errors(fig, dom0, DOM0_ERRORS, n)
        after_dom0 = server.rss()
        _errors(fig, guest, GUEST_ERRORS, n)
        after = server.rss()
        fig.note(
            f"RSS {before / MIB:.1f} MiB; after {n:,} error replies of each of "
            f"{len(DOM0_ERRORS)} kinds from dom0 +{(after_dom0 - before) / 1024:.0f} KiB; "
            f"after {n:,} of each of {len(GUEST_ERRORS)} from a guest "
            f"+{(after - after_dom0) / 1024:.0f} KiB"
        )
        if after - before > 8 * MIB:
            fig.fail(f"RSS grew by {(after - before) / MIB:.1f} MiB")
        guest.close()
        dom0.close()
    finally:
        server.close()
    return fig.done()


def unread_events(writes: int) -> Figures:
    """RSS with an idle dom0 and an idle guest watcher while dom0 writes."""
    fig = Figures("unread events", "embedded")
    server = _Process()
    try:
        dom0 = _Conn(server.socket_path)
        dom0.reply(Op.WRITE, b"/ev\0")
        dom0.reply(Op.SET_PERMS, b"/ev\0n0\0r5\0")
        guest = _setup_guest(dom0, server.rundir)
        idle = _Conn(server.socket_path)
        for conn in (idle, guest):
            if conn.reply(Op.WATCH, b"/ev\0tok\0").op != Op.WATCH:
                fig.fail("WATCH failed")
        name = b"/ev/" + b"n" * 100
        before = server.rss()
        peak = before
        batch = 500
        for start in range(0, writes, batch):
            dom0.sock.sendall(
                b"".join(
                    encode(Op.WRITE, i, 0, name + b"%d\0v" % (i % 1000))
                    for i in range(start, start + batch)
                )
            )
            for _ in range(batch):
                if dom0.packet().op != Op.WRITE:
                    fig.fail("a WRITE failed")
                fig.ops += 1
            if start % 20_000 == 0:
                peak = max(peak, server.rss())
        peak = max(peak, server.rss())
        closed = False
        if writes * 120 > 64 * MIB:  # the dom0 watcher must have been closed
            try:
                while idle.sock.recv(1 << 16):
                    pass
                closed = True
            except OSError:
                pass
        guest.close()
        idle.close()
        dom0.reply(Op.GET_DOMAIN_PATH, b"0\0")  # the server has seen them go
        after = server.rss()
        fig.note(
            f"RSS {before / MIB:.1f} MiB, at most {peak / MIB:.1f} MiB during {writes:,} "
            f"writes unread by a dom0 and a guest watcher (dom0 watcher closed: {closed}); "
            f"{after / MIB:.1f} MiB once both had gone"
        )
        if peak - before > (64 + 2.5 + 48) * MIB:
            fig.fail(f"RSS grew by {(peak - before) / MIB:.1f} MiB")
        if writes * 120 > 64 * MIB and not closed:
            fig.fail("the dom0 watcher 64 MiB behind was not closed")
        dom0.close()
    finally:
        server.close()
    return fig.done()


_ASYNC_SERVER = textwrap.dedent(
    """
    import asyncio, logging, signal, sys
    from pyxs.server import Server
    logging.disable(logging.CRITICAL)  # asyncio logs each failed accept()
    async def main():
        async with Server(sys.argv[1]) as srv:
            print("SOCKET=" + srv.socket_path, flush=True)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
    asyncio.run(main())
    """
)


def fd_exhaustion(clients: int = 100, nofile: int = 64) -> Figures:
    """CPU used in a second by a server out of descriptors, both loops."""
    fig = Figures("fd exhaustion", "embedded")
    for loop, script in (("selectors", None), ("asyncio", _ASYNC_SERVER)):
        server = _Process(script, nofile=nofile)
        socks: list[socket.socket] = []
        try:
            for _ in range(clients):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(30)
                sock.connect(server.socket_path)
                socks.append(sock)
            # the first client is served (a real reply), the backlog waits
            socks[0].sendall(encode(Op.READ, 1, 0, b"/\0"))
            socks[0].recv(4096)
            start = server.cpu()
            time.sleep(1.0)  # a measurement window, not synchronisation
            used = server.cpu() - start
            fig.ops += 1
            fig.faults += 1
            fig.note(
                f"{loop} loop, {clients} clients against {nofile} descriptors: "
                f"{used:.2f} s of CPU in 1 s"
            )
            if used > 0.2:
                fig.fail(f"the {loop} loop used {used:.2f} s of CPU in 1 s at the fd limit")
            for sock in socks[:-1]:
                sock.close()  # descriptors free: the backlog is served
            socks = socks[-1:]
            socks[-1].sendall(encode(Op.READ, 2, 0, b"/\0"))
            socks[-1].settimeout(60)
            if not socks[-1].recv(4096):
                fig.fail(f"{loop}: the last client was never served")
        finally:
            for sock in socks:
                sock.close()
            server.close()
    return fig.done()


def _serve_cli(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyxs", "serve", "--socket", path],
        capture_output=True,
        text=True,
        timeout=60,
    )


def socket_path() -> Figures:
    """What ``pyxs serve --socket PATH`` does to what is at PATH."""
    fig = Figures("socket path", "embedded")
    with tempfile.TemporaryDirectory(prefix="rls", dir="/tmp") as tmp:
        target = os.path.join(tmp, "target")
        with open(target, "wb") as f:
            f.write(b"keep me")
        cases: list[tuple[str, Callable[[str], Any], int]] = [
            ("regular file", lambda p: Path(p).write_bytes(b"keep me"), 1),
            ("symlink", lambda p: os.symlink(target, p), 1),
        ]
        for what, make, status in cases:
            path = os.path.join(tmp, what.replace(" ", "-"))
            make(path)
            before = os.lstat(path)
            result = _serve_cli(path)
            fig.ops += 1
            after = os.lstat(path) if os.path.lexists(path) else None
            if result.returncode != status:
                fig.fail(f"{what}: exit status {result.returncode}, expected {status}")
            if after is None or (after.st_ino, after.st_mtime) != (before.st_ino, before.st_mtime):
                fig.fail(f"{what}: the file was changed or removed")
            fig.note(f"{what}: exit {result.returncode}: {result.stderr.strip()}")
        live = _Process()
        try:
            inode = os.lstat(live.socket_path).st_ino
            result = _serve_cli(live.socket_path)
            fig.ops += 1
            if result.returncode != 5 or os.lstat(live.socket_path).st_ino != inode:
                fig.fail(f"live server: exit {result.returncode}, or its socket was replaced")
            conn = _Conn(live.socket_path)
            if conn.reply(Op.READ, b"/\0").op != Op.READ:
                fig.fail("the live server no longer answers")
            conn.close()
            fig.note(f"live server: exit {result.returncode}: {result.stderr.strip()}")
        finally:
            live.close()
        stale = os.path.join(tmp, "stale")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(stale)
        sock.close()
        server = _Process(path=stale)
        try:
            conn = _Conn(stale)
            fig.ops += 1
            if conn.reply(Op.READ, b"/\0").op != Op.READ:
                fig.fail("the server on a stale socket does not answer")
            conn.close()
            fig.note("stale socket: replaced, served")
        finally:
            server.close()
    return fig.done()


def stale_permissions(rounds: int) -> Figures:
    """Domid reuse never inherits an old domain's permission entries."""
    from pyxs.server import Server

    fig = Figures("stale permissions", "embedded")
    with Server() as srv:
        dom0 = _Conn(srv.socket_path)
        for r in range(rounds):
            domid = 10 + r % 100
            path = b"/stale/%d" % r
            dom0.reply(Op.INTRODUCE, b"%d\x000\x001\0" % domid)
            dom0.reply(Op.MKDIR, b"/local/domain/%d\0" % domid)
            dom0.reply(Op.WRITE, path + b"\0secret")
            dom0.reply(Op.SET_PERMS, path + b"\0n0\0r%d\0" % domid)
            old = _Conn(srv.guest_socket_path(domid))
            if old.reply(Op.READ, path + b"\0").op != Op.READ:
                fig.fail(f"round {r}: the granted domain could not read")
            old.close()
            srv.set_domain_state(domid, "dying")
            # the toolstack removes the dead domain's home (a write): without
            # any write in between, cxenstored's generation check (<=) lets
            # a domain that comes back at once in (the embedded server too)
            dom0.reply(Op.RM, b"/local/domain/%d\0" % domid)
            srv.set_domain_state(domid, "running")
            dom0.reply(Op.INTRODUCE, b"%d\x000\x001\0" % domid)
            dom0.reply(Op.WRITE, path + b"\0rewritten")
            new = _Conn(srv.guest_socket_path(domid))
            reply = new.reply(Op.READ, path + b"\0")
            fig.ops += 1
            fig.faults += 1
            if reply.op != Op.ERROR:
                fig.fail(f"round {r}: the new domain {domid} read {reply.payload!r}")
            else:
                fig.errors += 1
            new.close()
            srv.set_domain_state(domid, "gone")
        dom0.close()
    fig.note(f"{rounds} domid reuses: the new domain read the old one's node 0 times")
    return fig.done()


def memory_quota(kind: str, domid: int = 5) -> Figures:
    """Where a guest filling 10 transactions is stopped, and how (a fresh
    server of ``kind``: the figures depend on generation numbers)."""
    from .harness import open_server

    fig = Figures("memory quota", kind)
    with open_server(kind) as server:
        _fill_transactions(fig, server, domid)
    return fig.done()


def _fill_transactions(fig: Figures, server: Any, domid: int) -> None:
    dom0 = _Conn(server.socket_path)
    guest = _Conn(server.introduce_guest(domid))
    try:
        home = b"/local/domain/%d" % domid
        dom0.reply(Op.MKDIR, home + b"\0")
        dom0.reply(Op.SET_PERMS, home + b"\0n%d\0" % domid)
        txs = [int(guest.reply(Op.TRANSACTION_START, b"\0").payload[:-1]) for _ in range(10)]
        value = b"v" * 1900
        writes = 0
        failure = None
        for tx in txs:
            for i in range(900):
                request = encode(
                    Op.WRITE, 1, tx, b"t%d/d%d/n%d\0" % (tx, i // 100, i % 100) + value
                )
                guest.sock.sendall(request)
                packet = guest.packet()
                writes += 1
                fig.ops += 1
                if packet.op == Op.ERROR:
                    failure = packet.payload.rstrip(b"\0").decode()
                    break
            if failure:
                break
        report = dom0.reply(Op.CONTROL, b"quota\0%d\0" % domid).payload.decode()
        memory = int(report.split("memory")[1].split(":")[1].split()[0])
        fig.note(
            f"first failure: {failure} at write {writes:,} "
            f"({writes * 1900 / MIB:.2f} MiB of values), accounted memory {memory:,} bytes"
        )
        if (failure, writes, memory) != ("EIO", 1335, 2_619_870):
            fig.fail("expected EIO at write 1,335 with 2,619,870 bytes, as the real daemon")
        else:
            fig.faults += 1
            fig.errors += 1
    finally:
        guest.close()
        dom0.close()


def outstanding(requests: int) -> Figures:
    """Replies a guest that does not read can make the server hold."""
    from pyxs.server import Server, XenStore

    fig = Figures("outstanding", "embedded")
    with Server() as srv:
        dom0 = _Conn(srv.socket_path)
        guest = _setup_guest(dom0, srv.run_dir)
        dom0.reply(Op.WRITE, b"/local/domain/5/big\0" + b"v" * 4000)
        guest.reply(Op.READ, b"big\0")
        data = [encode(Op.READ, i, 0, b"big\0") for i in range(requests)]
        # what the socket buffers hold first; the rest from a thread, which
        # waits while the server does not read the guest
        guest.sock.sendall(b"".join(data[:3000]))
        dom0.reply(Op.GET_DOMAIN_PATH, b"0\0")  # the server has read what the guest sent
        rest = b"".join(data[3000:])
        sender = threading.Thread(target=guest.sock.sendall, args=(rest,), daemon=True)

        def state(core: XenStore) -> tuple[int, int, int]:
            conn = next(c for c in core.conns.values() if c.domid == 5)
            waiting = conn.out_bytes + (conn.unsent() if conn.unsent is not None else 0)
            return core.outstanding(conn), len(conn.held), waiting

        replies, held, waiting = srv.call(state)
        sender.start()
        for i in range(requests):
            packet = guest.packet()
            fig.ops += 1
            if (packet.op, packet.req_id, len(packet.payload)) != (Op.READ, i, 4000):
                fig.fail(f"reply {i}: {packet.op} {packet.req_id}")
                break
        sender.join(60)
        if sender.is_alive():
            fig.fail("the guest's requests were never all read", "hangs")
        fig.note(
            f"{requests:,} READs pipelined, none read: {replies} replies ({waiting:,} bytes) "
            f"waited in the server, {held:,} of the first 3,000 requests waited unread; then all "
            "were answered, in order"
        )
        if replies > 20:
            fig.fail(f"{replies} replies outstanding (quota 20)")
        guest.close()
        dom0.close()
    return fig.done()


#: how much longer than the real daemon the embedded server may keep the
#: other clients waiting while it removes a subtree (see :func:`rm_subtree`)
RM_BLOCK_RATIO = 2.0


def rm_subtree(nodes: int, rounds: int = 3, ratio: float | None = RM_BLOCK_RATIO) -> Figures:
    """One RM of a subtree of ``nodes`` nodes, and another connection's READ
    sent right after it, on the embedded server and on the real daemon.

    A XenStore server runs one request at a time: while it removes a subtree
    every other client waits (issue 11, point 7: 200,000 nodes blocked every
    client 6.8 s on the old embedded server; the real daemon takes about
    3 s). Each round starts a fresh embedded server (``python -m pyxs.server``,
    a process of its own, as the real daemon is) and a fresh real daemon
    (without ``-V``, as in production), makes ``/rmtree/d<i>/n<j>`` (100
    nodes a directory, by pipelined WRITEs) and ``/other``, then sends the
    RM of ``/rmtree`` and, on a second connection, a READ of ``/other``; the
    arrival of each reply is timed (``select`` on both sockets). Figures:
    the RM's time (request sent to reply read) and how long the READ waited
    (its request sent to its reply read), per server and round.

    Invariants (what fails the row):

    - the RM answers OK, and the subtree is gone: its root and its last
      node read ENOENT, ``/`` no longer lists it;
    - the other connection's reply is the right one (``/other``'s value,
      its req_id), and nothing else arrives on it;
    - the embedded server's blocking time is at most ``ratio`` (2) times the
      real daemon's, both measured in the same run: the shortest READ wait
      of the rounds of each (the rounds alternate which server goes first).
      A ratio of the same run, not a deadline in seconds: the machine this
      runs on may be loaded (the figures of a 2-core machine running a CI
      job are several times those of an idle one), and what stretches one
      server's time stretches the other's; the shortest of the rounds is
      the measurement least disturbed by whatever else ran. 2, not 1: the
      benchmark (benchmarks/run.py, S6) holds the embedded server to the
      real daemon's time with pinned CPUs; here a loaded machine's noise
      must not fail the row, while a server blocking everyone several times
      as long as the real daemon (the old 6.8 s against 3 s was 2.3 times
      as long) still does. The sizes matter: the real daemon's cost per
      node grows with the tree (its TDB), the embedded server's does not;
      at 20,000 nodes the embedded server takes 1.7 to 1.9 times the real
      daemon's time, too near 2 for a row that must not fail by chance, at
      50,000 (run.py's short mode) 0.7 to 1.1, at 200,000 (long mode) 0.1.

    ``ratio=None`` checks everything but the ratio (the pytest's small
    sizes: no timing assertion there).
    """
    from .harness import RealServer

    fig = Figures(f"rm subtree ({nodes:,} nodes)", "embedded/real")
    waits: dict[str, list[tuple[float, float, float]]] = {"embedded": [], "real": []}
    for r in range(rounds):
        for kind in ("embedded", "real") if r % 2 == 0 else ("real", "embedded"):
            server: Any = _Process() if kind == "embedded" else RealServer(verbose=False)
            try:
                measured = _rm_measure(fig, kind, server.socket_path, nodes)
            finally:
                server.close()
            if measured is not None:
                waits[kind].append(measured)
    removed = nodes + (nodes + 99) // 100 + 1
    for kind, runs in waits.items():
        if runs:
            fig.note(
                f"{kind}: RM of {removed:,} nodes took "
                + ", ".join(f"{rm:.3f}" for _, rm, _ in runs)
                + " s; the other connection's READ waited "
                + ", ".join(f"{waited:.3f}" for _, _, waited in runs)
                + " s (making them took "
                + ", ".join(f"{built:.1f}" for built, _, _ in runs)
                + " s)"
            )
    if waits["embedded"] and waits["real"]:
        embedded = min(waited for _, _, waited in waits["embedded"])
        real = min(waited for _, _, waited in waits["real"])
        measured_ratio = embedded / real if real > 0 else float("inf")
        fig.note(
            f"shortest READ wait: embedded {embedded:.3f} s, real {real:.3f} s: "
            f"embedded/real {measured_ratio:.2f}"
            + (f" (at most {ratio:g})" if ratio is not None else "")
        )
        if ratio is not None and measured_ratio > ratio:
            fig.fail(
                f"the embedded server blocked the other connection {embedded:.3f} s, "
                f"{measured_ratio:.2f} times the real daemon's {real:.3f} s (at most {ratio:g})"
            )
    return fig.done()


def _rm_node(i: int) -> bytes:
    return b"/rmtree/d%d/n%d" % (i // 100, i % 100)


def _rm_measure(
    fig: Figures, kind: str, path: str, nodes: int
) -> tuple[float, float, float] | None:
    """Make the subtree, remove it, time both replies; check the result.
    Returns (seconds to make it, the RM's seconds, the READ's wait)."""
    remover = _Conn(path)
    other = _Conn(path)
    try:
        building = time.perf_counter()
        if remover.reply(Op.WRITE, b"/other\0still here").op != Op.WRITE:
            fig.fail(f"{kind}: WRITE /other failed")
            return None
        batch = 1000
        for start in range(0, nodes, batch):
            end = min(nodes, start + batch)
            remover.sock.sendall(
                b"".join(
                    encode(Op.WRITE, i + 1, 0, _rm_node(i) + b"\0v%d" % i)
                    for i in range(start, end)
                )
            )
            for i in range(start, end):
                packet = remover.packet()
                if (packet.op, packet.req_id) != (Op.WRITE, i + 1):
                    fig.fail(f"{kind}: WRITE {_rm_node(i)!r}: {packet!r}")
                    return None
        fig.ops += nodes + 1
        last = _rm_node(nodes - 1)
        if remover.reply(Op.READ, last + b"\0").payload != b"v%d" % (nodes - 1):
            fig.fail(f"{kind}: {last!r} was not written")
            return None

        built = time.perf_counter() - building
        started = time.perf_counter()
        remover.sock.sendall(encode(Op.RM, 2, 0, b"/rmtree\0"))
        read_sent = time.perf_counter()
        other.sock.sendall(encode(Op.READ, 3, 0, b"/other\0"))
        arrived: dict[_Conn, float] = {}
        while len(arrived) < 2:
            waiting = [c for c in (remover, other) if c not in arrived]
            # 120 s: a hang guard (the real daemon removes 200,000 nodes in
            # about 3 s)
            readable, _, _ = select.select([c.sock for c in waiting], [], [], 120)
            if not readable:
                fig.fail(f"{kind}: no reply to the RM or the READ in 120 s", "hangs")
                return None
            now = time.perf_counter()
            for conn in waiting:
                if conn.sock in readable:
                    data = conn.sock.recv(1 << 16)
                    if not data:
                        fig.fail(f"{kind}: the server closed a connection")
                        return None
                    conn.pending.extend(conn.decoder.feed(data))
                    if conn.pending:
                        arrived[conn] = now
        fig.ops += 2
        fig.faults += 1
        rm_seconds = arrived[remover] - started
        waited = arrived[other] - read_sent
        rm_reply, read_reply = remover.packet(), other.packet()
        if (rm_reply.op, rm_reply.req_id, rm_reply.payload) != (Op.RM, 2, b"OK\0"):
            fig.fail(f"{kind}: RM of the subtree: {rm_reply!r}")
        if (read_reply.op, read_reply.req_id, read_reply.payload) != (Op.READ, 3, b"still here"):
            fig.fail(f"{kind}: the other connection's READ got {read_reply!r}")
        if other.pending:
            fig.fail(f"{kind}: the other connection got more: {other.pending!r}")
        for gone in (b"/rmtree", last):
            reply = remover.reply(Op.READ, gone + b"\0")
            fig.ops += 1
            if (reply.op, reply.payload) != (Op.ERROR, b"ENOENT\0"):
                fig.fail(f"{kind}: {gone!r} after the RM: {reply!r}")
            else:
                fig.errors += 1
        listing = remover.reply(Op.DIRECTORY, b"/\0").payload.split(b"\0")
        fig.ops += 1
        if b"rmtree" in listing or b"other" not in listing:
            fig.fail(f"{kind}: / lists {listing!r} after the RM")
        return built, rm_seconds, waited
    finally:
        other.close()
        remover.close()
