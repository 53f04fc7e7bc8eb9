"""Fuzz target (a): the embedded server's packet handling.

Run it alone: ``python reliability/fuzz_server.py --cases 100000 [--seed N]``
(or ``--atheris`` to let atheris mutate the byte streams, if installed).

A *case* is one byte stream sent on a fresh connection to a live embedded
server, as dom0 or as an unprivileged guest (domain 7): one to six packets
built from a grammar of XenStore requests (valid, nearly valid and invalid
paths, values, permissions, tokens, domids, transaction ids; every op number
and random ones), then, for a third of the cases, mutated as bytes (bits
flipped, bytes set, inserted, deleted, duplicated, header lengths changed,
garbage appended, cut short). Pure garbage streams are cases too. After
sending, the client half-closes the connection and reads until the server
closes it.

Invariant
---------
The server *replies, or drops only that connection (and only when the
protocol says so), never crashes, never corrupts the store*:

1. every complete request in the stream gets exactly one reply, in order,
   with its req_id and tx_id, of its own op or ERROR (a known error name);
   acknowledgements are ``OK\\0``; watch events are ``path\\0token\\0`` with
   req_id 0; no reply payload exceeds 4096 bytes;
2. a header announcing more than 4096 bytes ends the connection: the
   replies are then a prefix of (1) (the real xenstored behaves alike);
3. the server answers every case within the timeout (no hang), its
   thread never dies and no request makes it hit an internal error (the
   server drops a connection whose request raised, printing a traceback:
   each such traceback is a failure);
4. a checker connection, every ``check_every`` cases and at the end, finds
   the known subtree ``/keep`` intact (values, permissions, children), its
   watch on ``/keep`` silent, and ``XenStore.check()`` (the store's own
   consistency check: links, child lists, per-domain node counts) empty.

dom0 cases are kept off ``/keep`` (``keep`` is rewritten ``kEEp``), off
the guest's domain id, off CONTROL commands that reconfigure the server or
write files (``logfile``, ``memreport``, ``log``, ``quota set``), and
INTRODUCE only a fixed set of domain ids (each opens a socket). Guest cases
are not filtered: the server itself must keep a guest off ``/keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: python reliability/fuzz_server.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "reliability"

import pyxs
from pyxs.exceptions import NoEntryError, PyXSError
from pyxs.protocol import (
    HEADER,
    HEADER_SIZE,
    PAYLOAD_MAX,
    Decoder,
    Op,
    Packet,
    PacketTooLarge,
    XsdError,
)

from .figures import Figures
from .harness import EmbeddedServer

__all__ = ["GUEST_DOMID", "Checker", "Grammar", "fuzz_server", "run_case", "sanitize_dom0"]

GUEST_DOMID = 7
#: domain ids dom0 cases may INTRODUCE (each one opens a listening socket)
INTRODUCIBLE = frozenset({1, 2, 3, 4, 5, 6, 0xFFFF, 0x7FF0, 0xFFFFFFFF})

_OK_OPS = frozenset(
    int(op)
    for op in (
        Op.WRITE,
        Op.MKDIR,
        Op.RM,
        Op.SET_PERMS,
        Op.WATCH,
        Op.UNWATCH,
        Op.TRANSACTION_END,
        Op.INTRODUCE,
        Op.RELEASE,
        Op.RESUME,
        Op.SET_TARGET,
        Op.RESET_WATCHES,
    )
)
_ERROR_NAMES = frozenset(error.payload for error in XsdError)


# -- the grammar ---------------------------------------------------------------


class Grammar:
    """Random XenStore request streams, valid and not."""

    SEGMENTS = (
        b"a", b"b", b"c", b"fuzz", b"x-y", b"_", b"0", b"7", b"local", b"domain",
        b"tool", b"xenstored", b"data", b"vm", b"device", b"Z9",
    )  # fmt: skip
    BAD = (b".", b":", b" ", b"*", b"+", b"\xff", b"\x80", b"\x01", b"//", b"\n", b"~")
    SPECIAL = (b"@introduceDomain", b"@releaseDomain", b"@bogus", b"@", b"@releaseDomain/7")
    CONTROL = (
        b"check", b"print", b"help", b"quota", b"quota-soft", b"live-update",
        b"bogus", b"",
    )  # fmt: skip
    CONTROL_ARGS = (
        b"-a", b"-c", b"-s", b"-F", b"-t", b"10", b"-f", b"/bin/sh", b"/nonexistent",
        b"set", b"nodes", b"0", b"7", b"x", b"",
    )  # fmt: skip
    OPS = (*range(27), 0xFFFF)

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        #: in scenarios, most paths come from a handful, so that they meet
        self.narrow = False

    def segs(self, n: int) -> bytes:
        return b"/".join(self.rng.choice(self.SEGMENTS) for _ in range(n))

    def near(self) -> bytes:
        rng = self.rng
        names = b"/".join(rng.choice((b"a", b"b", b"c")) for _ in range(rng.randint(1, 3)))
        return rng.choice((b"/fuzz/", b"")) + names

    def path(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if self.narrow and r < 0.8:
            return self.near()
        if r < 0.40:
            return b"/fuzz/" + self.segs(rng.randint(1, 4))
        if r < 0.58:
            return self.segs(rng.randint(1, 3))  # relative
        if r < 0.64:
            return rng.choice(self.SPECIAL)
        if r < 0.68:
            return b"/"
        if r < 0.76:
            return b"/local/domain/%d/" % rng.choice((0, 1, 7, 9)) + self.segs(rng.randint(1, 3))
        if r < 0.86:
            base = b"/fuzz/" + self.segs(rng.randint(0, 2))
            bad = rng.choice(self.BAD)
            pos = rng.randint(0, len(base))
            return rng.choice((base[:pos] + bad + base[pos:], base + b"/", b"", bad))
        if r < 0.93:
            n = rng.choice((2046, 2047, 2048, 2049, 3071, 3072, 3073, 4000))
            return (b"/fuzz/" + b"a" * n)[:n]
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 20)))

    def value(self) -> bytes:
        rng = self.rng
        n = rng.choice((0, 1, 5, 40, 200, 2047, 2048, 2049, 4000))
        return rng.randbytes(n) if rng.random() < 0.5 else b"v" * n

    def perms(self) -> bytes:
        rng = self.rng
        entries = []
        for _ in range(rng.randint(0, 7)):
            letter = rng.choice(b"nrwbnrwbx")
            domid = rng.choice((b"0", b"1", b"7", b"9", b"65535", b"99999999999", b"-1", b""))
            entries.append(bytes([letter]) + domid)
        return b"".join(e + b"\0" for e in entries)

    def domid(self) -> bytes:
        rng = self.rng
        return rng.choice(
            (
                b"0",
                b"1",
                b"2",
                b"5",
                b"7",
                b"9",
                b"65535",
                b"32752",
                b"-1",
                b"abc",
                b"",
                b"4294967295",
            )
        )

    def payload(self, op: int) -> bytes:
        rng = self.rng
        if op in (Op.READ, Op.DIRECTORY, Op.GET_PERMS, Op.MKDIR, Op.RM):
            body = self.path() + b"\0"
        elif op == Op.WRITE:
            body = self.path() + b"\0" + self.value()
        elif op == Op.SET_PERMS:
            body = self.path() + b"\0" + self.perms()
        elif op in (Op.WATCH, Op.UNWATCH):
            token = rng.choice((b"t", b"tok", b"", b"\xff", self.segs(2)))
            body = self.path() + b"\0" + token + b"\0"
        elif op == Op.TRANSACTION_START:
            body = rng.choice((b"\0", b"", b"x\0"))
        elif op == Op.TRANSACTION_END:
            body = rng.choice((b"T\0", b"F\0", b"T", b"", b"X\0", b"T\0T\0"))
        elif op == Op.INTRODUCE:
            body = self.domid() + b"\0%d\0" % rng.randint(0, 9) + self.domid() + b"\0"
        elif op in (Op.RELEASE, Op.RESUME, Op.IS_DOMAIN_INTRODUCED, Op.GET_DOMAIN_PATH):
            body = self.domid() + b"\0"
        elif op == Op.SET_TARGET:
            body = self.domid() + b"\0" + self.domid() + b"\0"
        elif op == Op.DIRECTORY_PART:
            body = (
                self.path() + b"\0" + rng.choice((b"0", b"1", b"3", b"99999", b"-1", b"x")) + b"\0"
            )
        elif op == Op.CONTROL:
            words = [rng.choice(self.CONTROL)]
            words += [rng.choice(self.CONTROL_ARGS) for _ in range(rng.randint(0, 3))]
            body = b"".join(w + b"\0" for w in words)
        elif op == Op.RESET_WATCHES:
            body = rng.choice((b"", b"\0"))
        else:
            body = rng.randbytes(rng.randint(0, 64))
        r = rng.random()
        if r < 0.05 and body:
            body = body[:-1]  # no final NUL
        elif r < 0.10:
            body += b"\0extra\0"
        return body[:PAYLOAD_MAX]

    def packet(self, op: int | None = None, tx_id: int | None = None) -> bytes:
        rng = self.rng
        if op is None:
            op = rng.choice(self.OPS) if rng.random() < 0.9 else rng.getrandbits(32)
        if tx_id is None:
            tx_id = rng.choice((0, 0, 0, 1, 2, 3, rng.getrandbits(32)))
        payload = self.payload(op if op < 0x10000 else -1)
        return HEADER.pack(op, rng.getrandbits(32), tx_id, len(payload)) + payload

    _TX_OPS = (
        Op.WRITE, Op.WRITE, Op.READ, Op.RM, Op.MKDIR, Op.DIRECTORY, Op.SET_PERMS,
        Op.GET_PERMS, Op.DIRECTORY_PART, Op.TRANSACTION_START, Op.WATCH,
    )  # fmt: skip
    _CHANGE_OPS = (Op.WRITE, Op.WRITE, Op.MKDIR, Op.RM, Op.SET_PERMS, Op.READ)

    def scenario(self) -> bytes:
        """A transaction, or watches and the changes that fire them, on a
        handful of paths (a fresh connection's first transaction is 1)."""
        rng = self.rng
        self.narrow = True
        packets = []
        if rng.random() < 0.5:
            packets.append(self.packet(Op.TRANSACTION_START, 0))
            for _ in range(rng.randint(1, 6)):
                packets.append(self.packet(rng.choice(self._TX_OPS), rng.choice((1, 1, 1, 2, 0))))
            packets.append(self.packet(Op.TRANSACTION_END, rng.choice((1, 1, 1, 0, 2))))
            if rng.random() < 0.3:
                packets.append(self.packet(rng.choice(self._TX_OPS), 1))
        else:
            for _ in range(rng.randint(1, 2)):
                packets.append(self.packet(Op.WATCH, 0))
            for _ in range(rng.randint(1, 6)):
                packets.append(self.packet(rng.choice(self._CHANGE_OPS), 0))
            packets.append(self.packet(rng.choice((Op.UNWATCH, Op.RESET_WATCHES, Op.RM)), 0))
        self.narrow = False
        return b"".join(packets)

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            r = rng.random()
            if not buf:
                buf += rng.randbytes(rng.randint(1, 32))
            elif r < 0.25:
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
            elif r < 0.40:
                buf[rng.randrange(len(buf))] = rng.getrandbits(8)
            elif r < 0.50:
                i = rng.randrange(len(buf) + 1)
                buf[i:i] = rng.randbytes(rng.randint(1, 16))
            elif r < 0.60:
                i = rng.randrange(len(buf))
                del buf[i : i + rng.randint(1, 16)]
            elif r < 0.68:
                i = rng.randrange(len(buf))
                buf[i:i] = buf[i : i + rng.randint(1, 64)]
            elif r < 0.80:
                # a header's len field (the 4th u32 of some 16-byte window)
                i = rng.randrange(max(1, len(buf) - HEADER_SIZE + 1))
                value = rng.choice((0, 1, 4095, 4096, 4097, 65536, 0xFFFFFFFF, rng.getrandbits(12)))
                buf[i + 12 : i + 16] = value.to_bytes(4, "little")
            elif r < 0.90:
                buf += rng.randbytes(rng.randint(1, 64))
            else:
                del buf[rng.randrange(len(buf)) :]
        return bytes(buf)

    def case(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.05:
            return rng.randbytes(rng.randint(1, 300))
        if r < 0.40:
            stream = self.scenario()
        else:
            stream = b"".join(self.packet() for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.3:
            stream = self.mutate(stream)
        return stream


# -- what the server must answer -------------------------------------------------


def parse_stream(stream: bytes) -> tuple[list[tuple[int, Packet]], bool]:
    """The complete requests in ``stream`` as the server decodes them (with
    their offsets), and whether a header over 4096 bytes ends it."""
    packets: list[tuple[int, Packet]] = []
    pos = 0
    end = len(stream)
    while end - pos >= HEADER_SIZE:
        op, req_id, tx_id, size = HEADER.unpack_from(stream, pos)
        if size > PAYLOAD_MAX:
            return packets, True
        stop = pos + HEADER_SIZE + size
        if stop > end:
            break
        packets.append((pos, Packet(op, req_id, tx_id, stream[pos + HEADER_SIZE : stop])))
        pos = stop
    return packets, False


def _c_atoi(text: bytes) -> int:
    from pyxs.server.control import c_atoi

    return c_atoi(text) & 0xFFFFFFFF


_DOMAIN_OPS = frozenset(
    int(op) for op in (Op.INTRODUCE, Op.RELEASE, Op.RESUME, Op.SET_TARGET)
)  # fmt: skip
_BLOCKED_CONTROL = frozenset({b"logfile", b"memreport", b"log"})
_NEUTRAL_OP = (0xBEEF).to_bytes(4, "little")


def sanitize_dom0(stream: bytes) -> bytes:
    """Keep a dom0 case off what would end the fuzz run rather than test it
    (see the module docstring). Lengths never change, so framing stays."""
    data = bytearray(stream.replace(b"keep", b"kEEp"))
    packets, _ = parse_stream(bytes(data))
    for pos, packet in packets:
        strings = packet.payload.split(b"\0")
        blocked = False
        if packet.op == Op.CONTROL:
            blocked = strings[0] in _BLOCKED_CONTROL or (
                strings[0] in (b"quota", b"quota-soft") and b"set" in strings[1:]
            )
        elif packet.op in _DOMAIN_OPS:
            args = strings[:-1] if len(strings) > 1 else strings
            domids = [_c_atoi(s) for s in args[: 2 if packet.op == Op.SET_TARGET else 1]]
            blocked = GUEST_DOMID in domids or (
                packet.op == Op.INTRODUCE and domids[0] not in INTRODUCIBLE
            )
        if blocked:
            data[pos : pos + 4] = _NEUTRAL_OP
    return bytes(data)


class CaseResult:
    __slots__ = ("error", "events", "replies", "timed_out")

    def __init__(self) -> None:
        self.replies: list[Packet] = []
        self.events: list[Packet] = []
        self.error: str | None = None
        self.timed_out = False


def run_case(socket_path: str, stream: bytes, timeout: float = 5.0) -> CaseResult:
    """Send ``stream`` on a new connection, half-close, read until EOF."""
    result = CaseResult()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        try:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # dropped already: judged from what came back
        decoder = Decoder()
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                result.timed_out = True
                break
            if not data:
                break
            try:
                packets = decoder.feed(data)
            except PacketTooLarge as exc:
                result.error = f"the server sent an oversized packet: {exc}"
                break
            for packet in packets:
                if packet.op == Op.WATCH_EVENT:
                    result.events.append(packet)
                else:
                    result.replies.append(packet)
        if decoder.pending and result.error is None and not result.timed_out:
            result.error = f"the server's output ends in a partial packet ({decoder.pending} B)"
    finally:
        sock.close()
    return result


def judge(stream: bytes, result: CaseResult) -> list[str]:
    """Invariant violations of one case (empty: fine)."""
    problems = []
    if result.timed_out:
        problems.append("hang: the server neither answered nor closed within the timeout")
    if result.error:
        problems.append(result.error)
    packets, dropped = parse_stream(stream)
    replies = result.replies
    if len(replies) > len(packets) or (not dropped and len(replies) != len(packets)):
        problems.append(f"{len(replies)} replies to {len(packets)} requests (dropped={dropped})")
    for (_, request), reply in zip(packets, replies):
        if (reply.req_id, reply.tx_id) != (request.req_id, request.tx_id):
            problems.append(f"reply {reply!r} does not echo request {request!r}")
            break
        if reply.op == Op.ERROR:
            if reply.payload not in _ERROR_NAMES:
                problems.append(f"unknown error payload {reply.payload!r}")
        elif reply.op != request.op:
            problems.append(f"reply op {reply.op} to request op {request.op}")
        elif request.op in _OK_OPS and reply.payload != b"OK\0":
            problems.append(f"ack {reply.payload!r} to {request!r}")
    for event in result.events:
        if event.req_id or event.tx_id:
            problems.append(f"event with ids: {event!r}")
        if event.payload.count(b"\0") != 2 or not event.payload.endswith(b"\0"):
            problems.append(f"malformed event payload {event.payload!r}")
    return problems


# -- the checker -------------------------------------------------------------------


_KEEP = {
    b"/keep": (b"", [b"n0"]),
    b"/keep/a": (b"alpha", [b"n0"]),
    b"/keep/b": (bytes(range(256)) * 4, [b"n0", b"r7"]),
    b"/keep/b/c": (b"", [b"n0", b"r7"]),
    b"/keep/d": (b"x" * 2000, [b"w7", b"n0"]),
}


class Checker:
    """A dom0 connection that watches ``/keep`` and checks the server's health."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        self.client = pyxs.Client(unix_socket_path=server.socket_path, timeout=10)
        self.client.connect()
        c = self.client
        self.guest_socket = server.introduce_guest(GUEST_DOMID)
        for path, (value, perms) in _KEEP.items():
            c.write(path, value)
            c.set_perms(path, perms)
        self._guest_home()
        self.monitor = c.monitor()
        self.monitor.watch(b"/keep", b"keep")
        self.monitor.next_event(5)

    def _guest_home(self) -> None:
        home = b"/local/domain/%d" % GUEST_DOMID
        self.client.mkdir(home)
        self.client.set_perms(home, [b"n%d" % GUEST_DOMID])

    def verify(self, fig: Figures) -> None:
        if not self.server.alive():
            fig.fail("the server thread is dead", "failures")
            return
        try:
            c = self.client
            for path, (value, perms) in _KEEP.items():
                try:
                    if c.read(path) != value or c.get_perms(path) != perms:
                        fig.fail(f"{path!r} changed", "lost")
                except NoEntryError:
                    fig.fail(f"{path!r} is gone", "lost")
            if sorted(c.list(b"/keep")) != [b"a", b"b", b"d"] or c.list(b"/keep/b") != [b"c"]:
                fig.fail("/keep's children changed", "lost")
            event = self.monitor.next_event(0)
            if event is not None:
                fig.fail(f"the watch on /keep fired: {event!r}", "lost")
            problems = self.server.server.call(lambda core: core.check())
            for problem in problems:
                fig.fail(f"XenStore.check(): {problem}")
        except PyXSError as exc:
            fig.fail(f"the checker connection failed: {exc!r}")

    def cleanup(self) -> None:
        """Keep the store small: drop what the cases made outside /keep."""
        c = self.client
        with contextlib.suppress(PyXSError):
            c.set_perms(b"/", [b"n0"])
        for name in c.list(b"/"):
            if name not in (b"keep", b"tool", b"local"):
                with contextlib.suppress(PyXSError):
                    c.delete(b"/" + name)
        with contextlib.suppress(PyXSError):
            c.delete(b"/local/domain/0")
        with contextlib.suppress(PyXSError):
            self._guest_home()

    def close(self) -> None:
        self.monitor.close()
        self.client.close()


# -- the target ----------------------------------------------------------------------


def _stream_for(seed: int, index: int) -> tuple[bytes, bool]:
    rng = random.Random(seed * 1_000_003 + index)
    as_guest = rng.random() < 0.3
    stream = Grammar(rng).case()
    return (stream if as_guest else sanitize_dom0(stream)), as_guest


def fuzz_server(
    cases: int = 2000,
    *,
    seed: int = 0,
    check_every: int = 250,
    timeout: float = 5.0,
    progress: Callable[[int], None] | None = None,
) -> Figures:
    """Run ``cases`` fuzz cases against a fresh embedded server."""
    fig = Figures(f"fuzz server packets ({cases} cases, seed {seed})", "embedded")
    crashes: list[str] = []
    previous_hook = threading.excepthook

    def hook(args: Any) -> None:
        crashes.append(f"{args.thread.name if args.thread else '?'}: {args.exc_value!r}")
        previous_hook(args)

    threading.excepthook = hook
    # The server prints a traceback and drops the connection when handling a
    # request raises: catch those tracebacks (each is an internal error).
    stderr = io.StringIO()
    redirect = contextlib.redirect_stderr(stderr)
    redirect.__enter__()
    server = EmbeddedServer()
    try:
        checker = Checker(server)
        for index in range(cases):
            stream, as_guest = _stream_for(seed, index)
            path = checker.guest_socket if as_guest else server.socket_path
            result = run_case(path, stream, timeout)
            fig.ops += 1
            fig.faults += 1
            fig.errors += sum(1 for r in result.replies if r.op == Op.ERROR)
            for problem in judge(stream, result):
                kind = "hangs" if problem.startswith("hang") else "failures"
                who = "guest" if as_guest else "dom0"
                fig.fail(
                    f"case {index} ({who}, seed {seed}): {problem}; stream {stream[:64]!r}", kind
                )
            if crashes:
                break
            if stderr.tell():
                fig.fail(
                    f"case {index} ({seed=}): the server hit an internal error: "
                    f"{_last_line(stderr.getvalue())}; stream {stream[:64]!r}"
                )
                stderr.seek(0)
                stderr.truncate()
            if (index + 1) % check_every == 0:
                checker.verify(fig)
                checker.cleanup()
                if progress is not None:
                    progress(index + 1)
                if not fig.ok and fig.failures + fig.lost + fig.hangs > 50:
                    break
        checker.verify(fig)
        checker.close()
    finally:
        threading.excepthook = previous_hook
        server.close()
        redirect.__exit__(None, None, None)
    for crash in crashes:
        fig.fail(f"the server crashed: {crash}")
    return fig.done()


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def _atheris_main(argv: list[str]) -> None:  # pragma: no cover - optional engine
    """libFuzzer (atheris) mutates the byte streams, guided by the coverage of
    the server's code. Input: one flag byte (odd: send as the guest), then
    the stream. An empty (or no) corpus directory in ``argv`` is seeded
    from the grammar. Invariant violations raise AssertionError (atheris
    then stops and saves the input as ``crash-*``)."""
    import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]

    import pyxs.server.core
    import pyxs.server.store
    import pyxs.server.transaction  # noqa: F401 - loaded, to be instrumented

    atheris.instrument_all()
    server = EmbeddedServer()
    checker = Checker(server)
    count = [0]
    stderr = io.StringIO()

    def test_one_input(data: bytes) -> None:
        as_guest = bool(data[:1]) and data[0] & 1 == 1
        stream = data[1:] if as_guest else sanitize_dom0(data[1:])
        path = checker.guest_socket if as_guest else server.socket_path
        with contextlib.redirect_stderr(stderr):
            problems = judge(stream, run_case(path, stream))
        if stderr.tell():
            problems.append(f"internal error: {_last_line(stderr.getvalue())}")
        count[0] += 1
        if count[0] % 500 == 0:
            fig = Figures("atheris")
            checker.verify(fig)
            checker.cleanup()
            problems += fig.notes
        if problems:
            raise AssertionError("; ".join(problems))

    dirs = [a for a in argv[1:] if not a.startswith("-")]
    if not dirs:
        dirs = [tempfile.mkdtemp(prefix="rel-corpus-")]
        argv = [*argv, dirs[0]]
    corpus = dirs[0]
    os.makedirs(corpus, exist_ok=True)
    if not os.listdir(corpus):
        for i in range(256):
            stream, as_guest = _stream_for(0, i)
            with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
                f.write(bytes([as_guest]) + stream)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def atheris_session(runs: int = 100_000, timeout: float = 1800.0) -> Figures:
    """Run the atheris engine (``--atheris -runs=N``) in a subprocess; its
    figures: ``runs`` executions, and a failure if it found an input that
    breaks the invariant (its report is in the notes)."""
    import subprocess

    fig = Figures(f"fuzz server packets, atheris ({runs} runs)", "embedded")
    try:
        import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        fig.note("atheris is not installed (pip install pyxs[fuzz]): skipped")
        return fig.done()
    with tempfile.TemporaryDirectory(prefix="rel-atheris-") as work:
        try:
            out = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--atheris",
                    f"-runs={runs}",
                    os.path.join(work, "corpus"),
                ],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            fig.fail(f"atheris did not finish {runs} runs in {timeout} s", "hangs")
            return fig.done()
    text = out.stdout + out.stderr
    done = [line for line in text.splitlines() if line.startswith("Done ")]
    if out.returncode == 0 and done:
        fig.ops = fig.faults = int(done[-1].split()[1])
    else:
        fig.fail(f"atheris exit {out.returncode}: " + " | ".join(text.splitlines()[-15:]))
    return fig.done()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--atheris", action="store_true", help="mutate with atheris instead")
    args, rest = parser.parse_known_args(argv)
    if args.atheris:
        _atheris_main([sys.argv[0], *rest])
        return 0

    def progress(done: int) -> None:
        if done % 10_000 == 0:
            print(f"  {done} cases", file=sys.stderr, flush=True)

    fig = fuzz_server(args.cases, seed=args.seed, progress=progress)
    print(fig.explain())
    return 0 if fig.ok else 1


if __name__ == "__main__":
    sys.exit(main())
