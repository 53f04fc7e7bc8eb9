"""Fuzz target (b): the clients' reply parsing.

Run it alone: ``python reliability/fuzz_client.py --cases 100000 [--seed N]``.

A fake server (a real Unix socket; faults no real server produces are its
job) answers the requests of several callers at once: threads sharing one
:class:`pyxs.Client`, then tasks sharing one :class:`pyxs.AsyncClient`.
It reads whatever requests are there, shuffles them (replies may come in
any order) and answers each; a *case* is one reply. A fraction of the
replies is broken on purpose:

- payload mutated (bits flipped, cut, extended, replaced, emptied, NULs
  removed or added), framing kept;
- op changed (to another op, to ERROR with a known, unknown or garbage
  name, to an out-of-range number);
- tx_id changed; a watch event (well-formed or not) injected before it;
- req_id changed to one never used, or the reply sent twice;
- framing broken: the header's length changed (shorter, longer, over
  4096), the reply cut short, or the connection reset in the middle.

After a reply that breaks the stream the fake closes the connection, so a
correct client can never wait forever.

Invariant
---------
Each call either returns a well-typed value (``read`` bytes, ``list`` a
list of bytes, ``exists`` a bool, ``transaction`` an int, ...) or raises a
:class:`pyxs.PyXSError` subclass; it never raises anything else and never
hangs (a call not done in ``timeout`` seconds is a hang); and it never gets
a reply meant for another caller: every value the fake holds names its own
path with a checksum, so an intact value of *another* path is caught, while
a mangled one is just bytes. After a ConnectionError the caller reconnects
and goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: python reliability/fuzz_client.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "reliability"

import pyxs
from pyxs.client import RequestTimeout
from pyxs.exceptions import ConnectionError as XsConnectionError
from pyxs.exceptions import PyXSError
from pyxs.protocol import HEADER, HEADER_SIZE, Op, Packet, encode

from .fakeserver import FakeServer, Peer, answer, is_value_for
from .figures import Figures

__all__ = ["ReplyMutator", "fuzz_client"]

_ERROR_NAMES = (b"ENOENT\0", b"EACCES\0", b"EAGAIN\0", b"E2BIG\0", b"EINVAL\0", b"EFOO\0")


class ReplyMutator:
    """Turns the right reply to a request into a broken one (or not)."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self.rng = rng
        self.rate = rate
        self.cases = 0
        self.mutated = 0

    def payload(self, payload: bytes) -> bytes:
        rng = self.rng
        buf = bytearray(payload)
        r = rng.random()
        if r < 0.3 and buf:
            for _ in range(rng.randint(1, 3)):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif r < 0.45:
            del buf[rng.randint(0, len(buf)) :]
        elif r < 0.55:
            buf += rng.randbytes(rng.randint(1, 40))
        elif r < 0.65:
            buf = bytearray(rng.randbytes(rng.randint(0, 200)))
        elif r < 0.72:
            buf = bytearray(buf.replace(b"\0", b""))
        elif r < 0.80:
            buf += b"\0" * rng.randint(1, 3)
        elif r < 0.88:
            buf = bytearray(b"\0" * rng.randint(0, 4))
        else:
            buf = bytearray(
                rng.choice((b"", b"OK", b"OK\0\0", b"T\0", b"-1\0", b"0x1\0", b"\xff\0"))
            )
        return bytes(buf[:4096])

    def reply(self, request: Packet) -> tuple[bytes, bool]:
        """The bytes to send for ``request``; True: close the stream after."""
        self.cases += 1
        good = answer(request)
        rng = self.rng
        if rng.random() >= self.rate:
            return good, False
        self.mutated += 1
        op, req_id, tx_id, size = HEADER.unpack_from(good)
        payload = good[HEADER_SIZE:]
        r = rng.random()
        if r < 0.30:
            return encode(op, req_id, tx_id, self.payload(payload)), False
        if r < 0.38:
            # not WATCH_EVENT: that would make the reply vanish (as an event)
            # and leave the call waiting for good; injected events come below
            new_op = rng.choice((*range(15), *range(16, 27), 0xFFFF, rng.getrandbits(32)))
            return encode(new_op, req_id, tx_id, payload), False
        if r < 0.50:
            name = rng.choice((*_ERROR_NAMES, self.payload(b"ENOENT\0")))
            return encode(Op.ERROR, req_id, tx_id, name), False
        if r < 0.55:
            return encode(op, req_id, rng.getrandbits(32), payload), False
        if r < 0.63:
            event = rng.choice((b"/p\0tok\0", b"/p\0", b"", b"x", self.payload(b"/a\0t\0")))
            return encode(Op.WATCH_EVENT, 0, 0, event) + good, False
        if r < 0.70:
            # req_ids the client hands out start at 1: these are never in flight
            stray = rng.randrange(1 << 31, 1 << 32)
            return encode(op, stray, tx_id, payload), True
        if r < 0.75:
            return good + good, True
        if r < 0.85:
            size = rng.choice((0, max(0, size - 1), size + 1, size + 50, 4097, 0xFFFFFFFF))
            return HEADER.pack(op, req_id, tx_id, size) + payload, True
        if r < 0.95:
            return good[: rng.randrange(len(good))], True
        return b"", True  # reset before the reply


def _fake_handler(mutator: ReplyMutator, rng: random.Random) -> Callable[[Peer], None]:
    def handler(peer: Peer) -> None:
        while True:
            requests = peer.requests()
            requests += peer.requests(block=False)
            rng.shuffle(requests)
            wire = bytearray()
            close = False
            for request in requests:
                data, close = mutator.reply(request)
                wire += data
                if close:
                    break
            pos = 0
            while pos < len(wire):
                n = len(wire) if rng.random() < 0.7 else rng.randint(1, 64)
                peer.send(bytes(wire[pos : pos + n]))
                pos += n
            if close:
                if rng.random() < 0.5:
                    peer.reset()
                return

    return handler


# -- the callers ---------------------------------------------------------------------


def _is_bytes_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, bytes) for v in value)


def _typed(kind: str) -> Callable[[Any], bool]:
    return {
        "bytes": lambda v: isinstance(v, bytes),
        "none": lambda v: v is None,
        "list": _is_bytes_list,
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "walk": lambda v: (
            isinstance(v, list)
            and all(
                isinstance(t, tuple)
                and len(t) == 3
                and isinstance(t[0], bytes)
                and _is_bytes_list(t[2])
                for t in v
            )
        ),
    }[kind]


def _sync_ops(c: pyxs.Client, path: bytes) -> list[tuple[str, Callable[[], Any], str]]:
    def transaction() -> int:
        tx = c.transaction()
        try:
            c.read(path)
        finally:
            c.rollback()
        return tx

    def watch() -> None:
        m = c.monitor()
        try:
            m.watch(path, b"tok")
            m.unwatch(path, b"tok")
        finally:
            m.close()

    return [
        ("read", lambda: c.read(path), "bytes"),
        ("read", lambda: c.read(path, b"default"), "bytes"),
        ("write", lambda: c.write(path, b"value"), "none"),
        ("mkdir", lambda: c.mkdir(path), "none"),
        ("delete", lambda: c.delete(path), "none"),
        ("list", lambda: c.list(path), "list"),
        ("exists", lambda: c.exists(path), "bool"),
        ("get_perms", lambda: c.get_perms(path), "list"),
        ("set_perms", lambda: c.set_perms(path, [b"n0", b"r5"]), "none"),
        ("transaction", transaction, "int"),
        ("transact", lambda: c.transact(lambda t: t.read(path), retries=3), "bytes"),
        ("get_domain_path", lambda: c.get_domain_path(5), "bytes"),
        ("is_domain_introduced", lambda: c.is_domain_introduced(5), "bool"),
        ("control", lambda: c.control(b"print", b"x"), "bytes"),
        ("watch", watch, "none"),
        ("walk", lambda: list(c.walk(path)), "walk"),
    ]


#: bugs written up in reliability/FINDINGS.md: (id, matcher)
KNOWN_BUGS: list[tuple[str, Callable[[str, BaseException], bool]]] = [
    # (finding id, matcher): a failure a matcher recognises counts as a known
    # bug under --allow-known. Empty: F2 (an out-of-range TRANSACTION_START
    # reply used as the tx_id) is fixed and is now an ordinary failure.
]


class _Tally:
    def __init__(self, fig: Figures, allow_known: bool) -> None:
        self.fig = fig
        self.allow_known = allow_known
        self.lock = threading.Lock()

    def judge(
        self, name: str, path: bytes, kind: str, value: Any, exc: BaseException | None
    ) -> bool:
        """Record one call; True if the connection must be opened again."""
        fig = self.fig
        with self.lock:
            fig.ops += 1
            if exc is not None:
                if isinstance(exc, (RequestTimeout, asyncio.TimeoutError)):
                    fig.fail(f"{name}({path!r}) hung: {exc!r}", "hangs")
                    return True
                if not isinstance(exc, PyXSError):
                    message = f"{name}({path!r}) raised {type(exc).__name__}: {exc!r}"
                    known = [bug for bug, match in KNOWN_BUGS if match(name, exc)]
                    if known and self.allow_known:
                        fig.known += 1
                        fig.note(f"known bug {known[0]}: {message}")
                    else:
                        fig.fail(message + (f" (known bug {known[0]})" if known else ""))
                    return True
                fig.errors += 1
                return isinstance(exc, XsConnectionError)
            if not _typed(kind)(value):
                fig.fail(f"{name}({path!r}) returned {value!r}, not {kind}")
            elif name == "read" and is_value_for(value, path) is False:
                fig.fail(f"read({path!r}) got another caller's reply {value!r}")
            return False


class _Gate:
    """Calls wait while one thread reconnects, and it waits for the calls in
    flight to end: a reconnect never races a call (that race is
    :func:`reliability.faults.reconnect_storm`'s business, finding F1)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.active = 0
        self.reconnecting = False

    def enter(self) -> None:
        with self.cond:
            while self.reconnecting:
                self.cond.wait()
            self.active += 1

    def leave(self) -> None:
        with self.cond:
            self.active -= 1
            self.cond.notify_all()

    def reconnect(self, c: pyxs.Client) -> None:
        with self.cond:
            if self.reconnecting:
                while self.reconnecting:
                    self.cond.wait()
                return
            self.reconnecting = True
            while self.active:
                self.cond.wait()
        try:
            for _ in range(3000):  # 30 s at most: a hang guard
                try:
                    c.connect()
                    return
                except XsConnectionError:
                    time.sleep(0.01)
        finally:
            with self.cond:
                self.reconnecting = False
                self.cond.notify_all()


def _run_sync(
    fig: Figures,
    socket_path: str,
    calls: int,
    threads: int,
    seed: int,
    timeout: float,
    allow_known: bool,
) -> None:
    tally = _Tally(fig, allow_known)
    c = pyxs.Client(unix_socket_path=socket_path, timeout=timeout)
    c.connect()
    per_thread = calls // threads
    gate = _Gate()

    def work(k: int) -> None:
        rng = random.Random(seed * 31 + k)
        for i in range(per_thread):
            path = b"/c%d/%d" % (k, i)
            name, fn, kind = rng.choice(_sync_ops(c, path))
            value: Any = None
            exc: BaseException | None = None
            gate.enter()
            try:
                value = fn()
            except BaseException as e:  # noqa: BLE001 - judged
                exc = e
            finally:
                gate.leave()
            if tally.judge(name, path, kind, value, exc):
                c.tx_id = 0
                gate.reconnect(c)

    workers = [threading.Thread(target=work, args=(k,), name=f"rel-fz{k}") for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout * per_thread + 60)
    if any(t.is_alive() for t in workers):
        fig.fail("client threads still running", "hangs")
    c.close()


def _async_ops(c: pyxs.AsyncClient, path: bytes) -> list[tuple[str, Callable[[], Any], str]]:
    async def transaction() -> int:
        t = await c.transaction()
        try:
            await t.read(path)
        finally:
            await t.rollback()
        return t.tx_id

    async def watch() -> None:
        m = c.monitor()
        try:
            await m.watch(path, b"tok")
            await m.unwatch(path, b"tok")
        finally:
            await m.close()

    async def walk() -> list[Any]:
        return [x async for x in c.walk(path)]

    async def transact() -> bytes:
        async def body(t: Any) -> bytes:
            return await t.read(path)  # type: ignore[no-any-return]

        return await c.transact(body, retries=3)

    return [
        ("read", lambda: c.read(path), "bytes"),
        ("read", lambda: c.read(path, b"default"), "bytes"),
        ("write", lambda: c.write(path, b"value"), "none"),
        ("delete", lambda: c.delete(path), "none"),
        ("list", lambda: c.list(path), "list"),
        ("exists", lambda: c.exists(path), "bool"),
        ("get_perms", lambda: c.get_perms(path), "list"),
        ("set_perms", lambda: c.set_perms(path, [b"n0", b"r5"]), "none"),
        ("transaction", transaction, "int"),
        ("transact", transact, "bytes"),
        ("get_domain_path", lambda: c.get_domain_path(5), "bytes"),
        ("is_domain_introduced", lambda: c.is_domain_introduced(5), "bool"),
        ("control", lambda: c.control(b"print", b"x"), "bytes"),
        ("watch", watch, "none"),
        ("walk", walk, "walk"),
    ]


def _run_async(
    fig: Figures,
    socket_path: str,
    calls: int,
    tasks: int,
    seed: int,
    timeout: float,
    allow_known: bool,
) -> None:
    tally = _Tally(fig, allow_known)
    per_task = calls // tasks

    async def main() -> None:
        c = pyxs.AsyncClient(unix_socket_path=socket_path)
        await c.connect()

        async def work(k: int) -> None:
            rng = random.Random(seed * 37 + k)
            for i in range(per_task):
                path = b"/a%d/%d" % (k, i)
                name, fn, kind = rng.choice(_async_ops(c, path))
                value: Any = None
                exc: BaseException | None = None
                try:
                    value = await asyncio.wait_for(fn(), timeout)
                except asyncio.CancelledError:
                    raise
                except BaseException as e:  # noqa: BLE001 - judged
                    exc = e
                if tally.judge(name, path, kind, value, exc):
                    for _ in range(3000):  # 30 s at most: a hang guard
                        try:
                            await c.connect()
                            break
                        except XsConnectionError:
                            await asyncio.sleep(0.01)

        await asyncio.gather(*(work(k) for k in range(tasks)))
        await c.close()

    asyncio.run(main())


def fuzz_client(
    cases: int = 2000,
    *,
    seed: int = 0,
    rate: float = 0.3,
    threads: int = 3,
    tasks: int = 8,
    timeout: float = 10.0,
    use_async: bool = True,
    allow_known: bool = False,
) -> Figures:
    """About ``cases`` replies to the sync client (and as many to the
    asyncio client when ``use_async``), a fraction ``rate`` of them broken."""
    fig = Figures(f"fuzz client replies ({cases} calls/client, seed {seed})", "fake")
    runs: list[tuple[str, Callable[..., None], int]] = [("sync", _run_sync, threads)]
    if use_async:
        runs.append(("asyncio", _run_async, tasks))
    for label, run, callers in runs:
        rng = random.Random(f"{seed}:{label}")
        mutator = ReplyMutator(random.Random(f"{seed}:{label}:m"), rate)
        with FakeServer(_fake_handler(mutator, rng)) as fake:
            run(fig, fake.socket_path, cases, callers, seed, timeout, allow_known)
            for exc in fake.errors:
                fig.fail(f"the fake server failed: {exc!r}")
        fig.faults += mutator.mutated
        fig.note(
            f"{label}: {mutator.cases} replies, {mutator.mutated} broken, "
            f"{fake.connections} connections"
        )
    return fig.done()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="calls per client")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--allow-known", action="store_true", help="do not fail on known bugs")
    args = parser.parse_args(argv)
    fig = fuzz_client(args.cases, seed=args.seed, rate=args.rate, allow_known=args.allow_known)
    print(fig.explain())
    return 0 if fig.ok else 1


if __name__ == "__main__":
    sys.exit(main())
