"""Faults: servers killed, restarted and stopped; partial writes and resets;
clients killed in the middle of a transaction.

Each scenario states its invariant in its docstring. The killable servers
are real processes (``python -m pyxs.server``, or the real xenstored from
tests/realxs.py), so "killed" means SIGKILL, "stops answering" means SIGSTOP.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import pyxs
from pyxs.client import RequestTimeout
from pyxs.connection import UnixSocketConnection
from pyxs.exceptions import ConnectionError as XsConnectionError
from pyxs.exceptions import NoEntryError, PyXSError
from pyxs.protocol import Op, encode

from .fakeserver import FakeServer, Peer, answer, value_for
from .figures import Figures
from .harness import REPO, KillableServer, Resources, unique_base, wait_until

__all__ = [
    "client_killed_mid_transaction",
    "fragmented_io",
    "reset_connections",
    "server_killed",
    "server_unresponsive",
    "fake_server_faults",
]

#: pending calls must fail within this many seconds of the kill. A hang
#: guard, not a speed target (they fail within milliseconds): a loaded
#: 2-core machine must not turn a prompt failure into a reported hang.
PROMPT = 10.0


Outcomes = list[tuple[str, "BaseException | None", float]]


def _outcome(results: Outcomes, name: str) -> Callable[..., None]:
    """A thread body recorder: run fn, record (name, exception, when)."""

    def run(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - recorded and judged
            results.append((name, exc, time.monotonic()))
        else:
            results.append((name, None, time.monotonic()))

    return run


def server_killed(kind: str, *, pending: int = 16, rounds: int = 1) -> Figures:
    """The server is SIGKILLed while calls are pending.

    Invariants: every pending call (sync threads on a shared client and on
    clients of their own, a ``Monitor.wait``, asyncio tasks) raises
    :class:`pyxs.ConnectionError` within :data:`PROMPT` seconds of the kill;
    once the clients are closed no thread and no file descriptor is left
    behind; a connect() while the server is down raises ConnectionError; the
    server restarted on the same path takes a new connect() and works.
    """
    fig = Figures(f"server killed ({pending} pending calls)", kind)
    with KillableServer(kind) as srv:
        for _ in range(rounds):
            _killed_round(srv, fig, pending)
    return fig.done()


def _killed_round(srv: KillableServer, fig: Figures, pending: int) -> None:
    base = unique_base("kill")
    before = Resources()
    shared = pyxs.Client(unix_socket_path=srv.socket_path)
    shared.connect()
    shared.write(base + b"/x", b"before")
    own = [pyxs.Client(unix_socket_path=srv.socket_path) for _ in range(4)]
    for c in own:
        c.connect()
    monitor = shared.monitor()
    monitor.watch(base, b"k")
    monitor.next_event(30)
    results: Outcomes = []
    threads = []
    calling = threading.Semaphore(0)  # released by each caller as it calls

    def announced(fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            calling.release()
            return fn()

        return call

    for i in range(pending):
        run = _outcome(results, f"shared#{i}")
        call = announced(lambda: shared.read(base + b"/x"))
        threads.append(threading.Thread(target=run, args=(call,)))
    for i, c in enumerate(own):
        run = _outcome(results, f"own#{i}")
        call = announced(lambda c=c: c.read(base + b"/x"))
        threads.append(threading.Thread(target=run, args=(call,)))
    run = _outcome(results, "monitor")
    threads.append(threading.Thread(target=run, args=(announced(lambda: list(monitor.wait())),)))
    aio_ready = threading.Event()
    # The AsyncClient connects while the server still runs; then it stops.
    aio_gate = threading.Event()

    async def gated() -> None:
        async with pyxs.AsyncClient(unix_socket_path=srv.socket_path) as ac:
            aio_ready.set()
            await asyncio.get_running_loop().run_in_executor(None, aio_gate.wait)
            calling.release()
            outcomes = await asyncio.gather(
                *(ac.read(base + b"/x") for _ in range(4)), return_exceptions=True
            )
            now = time.monotonic()
            for i, outcome in enumerate(outcomes):
                exc = outcome if isinstance(outcome, BaseException) else None
                results.append((f"asyncio#{i}", exc, now))

    aio_thread = threading.Thread(target=lambda: asyncio.run(gated()), name="rel-aio")
    aio_thread.start()
    aio_ready.wait(30)
    srv.stop_answering()
    fig.faults += 1
    for t in threads:
        t.start()
    aio_gate.set()
    # Every caller is in its call (a stopped server takes the requests into
    # its socket buffer; a call not yet sent at the kill fails the same way).
    for _ in range(len(threads) + 1):
        calling.acquire(timeout=30)
    killed = time.monotonic()
    srv.kill()
    fig.faults += 1
    for t in [*threads, aio_thread]:
        t.join(30)
    if any(t.is_alive() for t in [*threads, aio_thread]):
        fig.fail("calls still blocked 30 s after the server was killed", "hangs")
    expected = pending + len(own) + 1 + 4
    if len(results) != expected:
        fig.fail(f"{len(results)} of {expected} pending calls came back")
    for name, exc, when in results:
        fig.ops += 1
        if exc is None:
            fig.fail(f"{name}: returned although the server was stopped, then killed")
        elif not isinstance(exc, XsConnectionError):
            fig.fail(f"{name}: raised {exc!r}, not pyxs.ConnectionError")
        elif when - killed > PROMPT:
            fig.fail(f"{name}: ConnectionError {when - killed:.2f} s after the kill", "hangs")
        else:
            fig.errors += 1
    try:
        shared.connect()
    except XsConnectionError:
        fig.errors += 1
    except BaseException as exc:  # noqa: BLE001
        fig.fail(f"connect() to a dead server raised {exc!r}")
    else:
        fig.fail("connect() to a dead server succeeded")
    shared.close()
    for c in own:
        c.close()
    for problem in before.leaks():
        fig.fail(problem)
    srv.start()
    fig.faults += 1
    try:
        shared.connect()
        shared.write(base + b"/x", b"after")
        if shared.read(base + b"/x") != b"after":
            fig.fail("the restarted server gave a wrong value")
        with pyxs.Client(unix_socket_path=srv.socket_path) as fresh:
            fresh.read(base + b"/x")
        fig.ops += 3
    except PyXSError as exc:
        fig.fail(f"after the restart: {exc!r}")
    finally:
        shared.close()


def server_unresponsive(kind: str, *, timeout: float = 0.3) -> Figures:
    """The server stops answering (SIGSTOP), then resumes (SIGCONT).

    Invariants: a call with a timeout raises RequestTimeout within
    ``timeout`` + 10 s (a hang guard); ``Monitor.wait(timeout=...)`` and
    ``next_event(timeout=...)`` return; ``asyncio.wait_for`` around an
    AsyncClient call raises TimeoutError, ``AsyncMonitor.next_event(timeout)``
    returns None; a call without a timeout blocks and then completes with the
    right value once the server resumes; after the resume every client
    gives right values (the late replies of the timed-out calls are
    dropped, never handed to a later caller).
    """
    fig = Figures("server stops answering (SIGSTOP)", kind)
    # A hang guard, not a speed target: a loaded 2-core machine may take
    # seconds to run a thread whose timeout has expired.
    slack = timeout + 10.0
    base = unique_base("stop")
    with KillableServer(kind) as srv:
        c = pyxs.Client(unix_socket_path=srv.socket_path, timeout=timeout)
        c.connect()
        patient = pyxs.Client(unix_socket_path=srv.socket_path)
        patient.connect()
        watcher = pyxs.Client(unix_socket_path=srv.socket_path)
        watcher.connect()
        try:
            c.write(base + b"/a", b"A")
            monitor = watcher.monitor()
            monitor.watch(base, b"s")
            monitor.next_event(30)

            async def aio_part(ready: threading.Event, go: threading.Event) -> None:
                async with pyxs.AsyncClient(unix_socket_path=srv.socket_path) as ac:
                    am = ac.monitor()
                    await am.watch(base, b"as")
                    await am.next_event(30)
                    ready.set()
                    await asyncio.get_running_loop().run_in_executor(None, go.wait)
                    start = time.monotonic()
                    try:
                        await asyncio.wait_for(ac.read(base + b"/a"), timeout)
                        fig.fail("asyncio read answered by a stopped server")
                    except asyncio.TimeoutError:
                        fig.errors += 1
                    if time.monotonic() - start > slack:
                        fig.fail("asyncio wait_for took too long", "hangs")
                    start = time.monotonic()
                    if await am.next_event(timeout) is not None:
                        fig.fail("AsyncMonitor.next_event gave an event from a stopped server")
                    if time.monotonic() - start > slack:
                        fig.fail("AsyncMonitor.next_event(timeout) took too long", "hangs")
                    await asyncio.get_running_loop().run_in_executor(None, resumed.wait)
                    got = await asyncio.wait_for(ac.read(base + b"/b"), 10)
                    if got != b"B":
                        fig.fail(f"asyncio read after the resume gave {got!r}")
                    fig.ops += 3

            ready, go, resumed = threading.Event(), threading.Event(), threading.Event()
            aio = threading.Thread(target=lambda: asyncio.run(aio_part(ready, go)))
            aio.start()
            ready.wait(30)
            blocked: list[Any] = []

            def patient_call() -> None:
                try:
                    blocked.append(patient.read(base + b"/a"))
                except BaseException as exc:  # noqa: BLE001
                    blocked.append(exc)

            srv.stop_answering()
            fig.faults += 1
            go.set()
            waiting = threading.Thread(target=patient_call)
            waiting.start()
            start = time.monotonic()
            try:
                c.read(base + b"/a")
                fig.fail("a read was answered by a stopped server")
            except RequestTimeout:
                fig.errors += 1
            if time.monotonic() - start > slack:
                fig.fail("RequestTimeout came late", "hangs")
            start = time.monotonic()
            if list(monitor.wait(timeout=timeout)):
                fig.fail("Monitor.wait gave events from a stopped server")
            if monitor.next_event(timeout=timeout) is not None:
                fig.fail("Monitor.next_event gave an event from a stopped server")
            if time.monotonic() - start > 2 * slack:
                fig.fail("Monitor.wait/next_event(timeout) took too long", "hangs")
            # Not a synchronisation: a chance for a wrong early return to show.
            time.sleep(timeout)
            if blocked:
                fig.fail(f"a call without a timeout returned {blocked!r} while stopped")
            srv.resume()
            waiting.join(30)
            if blocked != [b"A"]:
                fig.fail(f"the call without a timeout gave {blocked!r} after the resume")
            for i in range(20):
                c.write(base + b"/b", b"B")
                got = c.read(base + b"/b")
                if got != b"B":
                    fig.fail(f"read #{i} after the resume gave {got!r}")
                fig.ops += 2
            resumed.set()
            aio.join(30)
            if aio.is_alive():
                fig.fail("the asyncio part did not finish", "hangs")
            event = monitor.next_event(30)
            if event is None or not event.path.startswith(base):
                fig.fail(f"no event after the resume: {event!r}")
            monitor.close()
        finally:
            srv.resume()
            for client in (c, patient, watcher):
                client.close()
    return fig.done()


class _Fragmenting(UnixSocketConnection):
    """Sends every request in random pieces of 1-7 bytes with tiny pauses,
    and never reads more than a few bytes at a time."""

    def __init__(self, path: str, seed: int) -> None:
        super().__init__(path)
        self._rng = random.Random(seed)

    def send(self, data: Any) -> None:
        data = bytes(data) if not isinstance(data, bytes) else data
        view = memoryview(data)
        rng = self._rng
        while view:
            n = rng.randint(1, 7)
            super().send(bytes(view[:n]))
            view = view[n:]
            if rng.random() < 0.05:
                time.sleep(0.0005)

    def recv(self, size: int | None = None) -> Any:
        if size is None:
            return super().recv()
        return super().recv(min(size, self._rng.randint(1, 9)))


def fragmented_io(server: Any, *, threads: int = 4, ops: int = 100) -> Figures:
    """Requests written in 1-7 byte pieces, replies read in 1-9 byte pieces.

    Invariant: the server reassembles requests and the client replies; every
    answer is right (the concurrency workload's checks, with its event and
    durability checks).
    """
    from . import workloads

    fig = workloads.concurrency(
        server,
        threads=threads,
        ops=ops,
        shared=True,
        router_factory=lambda path: pyxs.Router(_Fragmenting(path, 7)),
    )
    fig.scenario = f"fragmented requests/replies {threads}x{ops}"
    return fig


def _rst(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def reset_connections(server: Any, *, resets: int = 50, seed: int = 3) -> Figures:
    """Connections that die mid-packet while another client works.

    Raw connections send half a request, a request and a reset, a burst of
    requests without reading a reply, then vanish (close or SO_LINGER 0).
    Invariant: the server drops only those connections: a client working
    alongside sees no error and every value right, and the server answers
    afterwards.
    """
    fig = Figures(f"client connections reset ({resets})", server.name)
    rng = random.Random(seed)
    base = unique_base("rst")
    stop = threading.Event()
    problems: list[str] = []
    done = [0]

    def steady() -> None:
        with pyxs.Client(unix_socket_path=server.socket_path, timeout=30) as c:
            while not stop.is_set():
                value = b"%d" % done[0]
                c.write(base + b"/steady", value)
                got = c.read(base + b"/steady")
                if got != value:
                    problems.append(f"steady read gave {got!r}, expected {value!r}")
                done[0] += 1

    worker = threading.Thread(target=steady)
    worker.start()
    try:
        for i in range(resets):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(server.socket_path)
            request = encode(Op.WRITE, 1, 0, base + b"/r/%d\0" % i + b"x" * rng.randint(0, 3000))
            style = i % 4
            if style == 0:
                sock.sendall(request[: rng.randint(1, len(request) - 1)])
            elif style == 1:
                sock.sendall(request)
            elif style == 2:
                burst = encode(Op.READ, 2, 0, base + b"/steady\0") * 200
                with contextlib.suppress(OSError):
                    sock.sendall(burst)
            else:
                sock.sendall(request[:7])  # half a header
            if rng.random() < 0.5:
                _rst(sock)
            else:
                sock.close()
            fig.faults += 1
    finally:
        # The steady client works on while the server handles the last
        # resets: two more of its rounds, then it stops.
        mark = done[0]
        wait_until(lambda: done[0] >= mark + 2 or not worker.is_alive(), 30)
        stop.set()
        worker.join(30)
    if worker.is_alive():
        fig.fail("the steady client is stuck", "hangs")
    for message in problems:
        fig.fail(message)
    fig.ops = done[0] * 2 + resets
    try:
        with pyxs.Client(unix_socket_path=server.socket_path, timeout=10) as c:
            c.read(base + b"/steady")
            c.delete(base)
    except PyXSError as exc:
        fig.fail(f"the server does not answer after the resets: {exc!r}")
    return fig.done()


def fake_server_faults(*, rounds: int = 50, seed: int = 5) -> Figures:
    """Faults only a fake server produces: replies split at every byte with
    pauses, several replies in one write, replies out of order, and a reset
    in the middle of a reply.

    Invariants: split, joined and reordered replies reach the right callers
    with the right values; a reset fails every pending call with
    ConnectionError within :data:`PROMPT` seconds, and a new connect()
    works.
    """
    fig = Figures(f"fake server: split/reordered replies, resets ({rounds})", "fake")
    rng = random.Random(seed)
    plan: list[str] = []
    reset_at = [0.0]

    def handler(peer: Peer) -> None:
        while True:
            requests = peer.requests()
            time.sleep(0.001)
            requests += peer.requests(block=False)
            mode = plan.pop(0) if plan else "split"
            rng.shuffle(requests)
            wire = b"".join(answer(r) for r in requests)
            if mode == "reset":
                peer.send(wire[: max(1, len(wire) // 2)])
                reset_at[0] = time.monotonic()
                peer.reset()
                return
            if mode == "split":
                pos = 0
                while pos < len(wire):
                    n = rng.randint(1, 40)
                    peer.send(wire[pos : pos + n])
                    pos += n
                    if rng.random() < 0.1:
                        time.sleep(0.0005)
            else:
                peer.send(wire)

    with FakeServer(handler) as fake:
        c = pyxs.Client(unix_socket_path=fake.socket_path, timeout=10)
        c.connect()
        try:
            for r in range(rounds):
                mode = ("split", "joined", "reset")[r % 3]
                plan[:] = [mode] * 100
                results: list[tuple[int, Any, float]] = []

                def call(i: int, r: int, results: list[tuple[int, Any, float]]) -> None:
                    path = b"/f/%d/%d" % (r, i)
                    try:
                        results.append((i, c.read(path) == value_for(path), time.monotonic()))
                    except BaseException as exc:  # noqa: BLE001
                        results.append((i, exc, time.monotonic()))

                threads = [threading.Thread(target=call, args=(i, r, results)) for i in range(6)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                if any(t.is_alive() for t in threads):
                    fig.fail(f"round {r} ({mode}): calls stuck", "hangs")
                    continue
                for i, outcome, when in results:
                    fig.ops += 1
                    if mode == "reset" and isinstance(outcome, XsConnectionError):
                        fig.errors += 1
                        if when - reset_at[0] > PROMPT:
                            fig.fail(f"round {r}: ConnectionError came late", "hangs")
                    elif outcome is not True:
                        fig.fail(f"round {r} ({mode}) call {i}: {outcome!r}")
                if mode == "reset":
                    fig.faults += 1
                    wait_until(lambda: not c.router.is_connected, 30)
                    c.close()
                    c.connect()
        finally:
            c.close()
        for exc in fake.errors:
            fig.fail(f"fake server: {exc!r}")
    return fig.done()


_CHILD = r"""
import sys, time
import pyxs
path, base, count = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
c = pyxs.Client(unix_socket_path=path)
c.connect()
tx = c.transaction()
value = int(c.read(base + b"/counter", b"0"))
c.write(base + b"/counter", b"%d" % (value + 1000))
for i in range(count):
    c.write(base + b"/tx/%d" % i, b"never")
print("READY", tx, flush=True)
time.sleep(120)
"""


def client_killed_mid_transaction(server: Any, *, rounds: int = 3, writes: int = 20) -> Figures:
    """A client process holding a transaction is SIGKILLed.

    The child starts a transaction, adds 1000 to a counter that workers are
    incrementing through ``transact`` and writes ``writes`` new nodes in it,
    then is killed without committing. Invariants: the transaction's writes
    never appear (before or after the kill); the workers go on, none fails,
    and the counter ends at exactly the number of increments they made; on
    the embedded server, the killed client's connection (and so its
    transaction) is gone from the server's state.
    """
    fig = Figures(f"client killed mid-transaction ({rounds} rounds)", server.name)
    base = unique_base("ckill")
    stop = threading.Event()
    committed = [0, 0]  # per worker: a shared += could lose a count between threads
    problems: list[str] = []

    def increment(c: pyxs.Client) -> None:
        value = int(c.read(base + b"/counter", b"0")) + 1
        c.write(base + b"/counter", b"%d" % value)

    connected = [threading.Event(), threading.Event()]

    def worker(index: int) -> None:
        try:
            with pyxs.Client(unix_socket_path=server.socket_path, timeout=30) as c:
                c.exists(base)  # a reply: the server has this connection
                connected[index].set()
                while not stop.is_set():
                    c.transact(increment, retries=10_000)
                    committed[index] += 1
        except BaseException as exc:  # noqa: BLE001
            problems.append(f"worker: {exc!r}")

    embedded = getattr(server, "server", None)  # a pyxs.server.Server: look inside

    def connections() -> int:
        return int(embedded.call(lambda core: len(core.conns)))

    with pyxs.Client(unix_socket_path=server.socket_path, timeout=30) as checker:
        checker.write(base + b"/counter", b"0")
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
        for t in workers:
            t.start()
        try:
            # The count of connections before each child is taken once every
            # worker's connection is in it, or a worker connecting late would
            # look like the killed child's connection still being held.
            for index, event in enumerate(connected):
                if not event.wait(30):
                    fig.fail(f"worker {index} did not connect", "hangs")
            for _ in range(rounds):
                before = connections() if embedded is not None else 0
                child = subprocess.Popen(
                    [sys.executable, "-c", _CHILD, server.socket_path, base.decode(), str(writes)],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=str(REPO),
                )
                try:
                    assert child.stdout is not None
                    line = child.stdout.readline()
                    if not line.startswith("READY"):
                        fig.fail(f"the child did not start its transaction: {line!r}")
                        continue
                    if checker.exists(base + b"/tx"):
                        fig.fail("a transaction's writes are visible before its commit")
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                    fig.faults += 1
                finally:
                    if child.poll() is None:
                        child.kill()
                        child.wait()
                    if child.stdout is not None:
                        child.stdout.close()
                # (30 s: a hang guard; the embedded server drops the
                # connection well under a millisecond after the kill.)
                if embedded is not None and not wait_until(lambda b=before: connections() <= b, 30):
                    fig.fail("the server still holds the killed client's connection")
                if checker.exists(base + b"/tx"):
                    fig.fail("a killed client's transaction was applied", "lost")
        finally:
            stop.set()
            for t in workers:
                t.join(30)
        if any(t.is_alive() for t in workers):
            fig.fail("workers stuck", "hangs")
        for message in problems:
            fig.fail(message)
        final = int(checker.read(base + b"/counter"))
        if final != sum(committed):
            fig.fail(f"counter {final}, {sum(committed)} increments committed", "lost")
        with contextlib.suppress(NoEntryError):
            checker.read(base + b"/tx/0")
            fig.fail("a killed client's write appeared", "lost")
        fig.ops = sum(committed)
        fig.note(f"{sum(committed)} increments committed around the kills")
        checker.delete(base)
    return fig.done()


def reconnect_storm(*, resets: int = 100, threads: int = 4, seed: int = 11) -> Figures:
    """Threads share one client; the (fake) server resets the connection
    every few replies; whichever thread sees the ConnectionError calls
    connect() at once, while the others are still sending.

    Invariants: every connect() returns within :data:`PROMPT` seconds; every
    read returns its own path's value or raises ConnectionError (never a
    reply sent on the old connection, never another caller's value); the
    run ends (stops at the first slow connect()).
    """
    fig = Figures(f"reconnect storm ({threads} threads, {resets} resets)", "fake")
    rng = random.Random(seed)
    stop = threading.Event()
    lock = threading.Lock()

    def handler(peer: Peer) -> None:
        budget = rng.randint(1, 12)
        while True:
            for request in peer.requests():
                peer.send(answer(request))
                budget -= 1
                if budget <= 0:
                    with lock:
                        fig.faults += 1
                        if fig.faults >= resets:
                            stop.set()
                    peer.reset()
                    return

    with FakeServer(handler) as fake:
        c = pyxs.Client(unix_socket_path=fake.socket_path, timeout=10)
        c.connect()

        def work(k: int) -> None:
            i = 0
            while not stop.is_set():
                path = b"/s%d/%d" % (k, i)
                i += 1
                try:
                    got = c.read(path)
                except XsConnectionError:
                    with lock:
                        fig.errors += 1
                    start = time.monotonic()
                    try:
                        c.connect()
                    except XsConnectionError:
                        continue
                    took = time.monotonic() - start
                    if took > PROMPT:
                        with lock:
                            fig.fail(f"connect() took {took:.1f} s", "hangs")
                        stop.set()
                    continue
                except BaseException as exc:  # noqa: BLE001
                    with lock:
                        fig.fail(f"read raised {exc!r}")
                    continue
                with lock:
                    fig.ops += 1
                    if got != value_for(path):
                        fig.fail(f"read({path!r}) gave {got!r}")

        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
        if any(t.is_alive() for t in workers):
            fig.fail("threads stuck", "hangs")
            stop.set()
        c.close()
    return fig.done()
