"""Concurrency and contention: many callers, one store, nothing lost.

Concurrency (:func:`concurrency`, :func:`concurrency_async`)
---------------------------------------------------------------
``threads`` workers each run ``ops`` mixed operations (write, read,
exists, list, get_perms, delete, a read-and-write transaction through the
retry helper, a write to a path of its own that is never written again),
either all on one shared :class:`pyxs.Client` or each on its own client
(``shared=False``); the asyncio variant runs them as tasks on one
:class:`pyxs.AsyncClient`. A worker only touches paths of its own, and every
value it writes is unique (``b"<worker>:<op>"``), so it knows what every
read must return: a reply handed to the wrong caller shows up as a wrong
value. A monitor watches the whole subtree (on the shared client itself
when it is shared) and records every event.

Invariants, checked after the workers finish:

- no wrong answer, no exception other than the expected NoEntryError
  (``failures``);
- no worker still running after ``deadline`` seconds (``hangs``);
- every committed write is readable, from a fresh connection, with its
  last value (``lost``);
- every write to the watched subtree is followed by its event (``lost``):
  exactly, for the paths written once and never touched again (about 15% of
  the operations: an event naming such a path can only come from that
  write); at least one event per path for the paths written, deleted and
  rewritten many times (XenStore may coalesce identical queued events).
  Events are all in once a sentinel write's event has arrived: a
  connection's events come in the order the server fired them.

Contention (:func:`contention`, :func:`contention_async`)
------------------------------------------------------------
``workers`` callers (threads on clients of their own and on one shared
client; or tasks on one AsyncClient) each add 1 to one counter
``increments`` times through ``transact`` (read, add, write; retried on
EAGAIN). Invariant: the final value is exactly ``workers * increments``;
``errors`` counts the retries the conflicts caused.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Generator
from typing import Any, Callable

import pyxs
from pyxs.client import RequestTimeout
from pyxs.exceptions import NoEntryError, PyXSError

from .figures import Figures
from .harness import unique_base

__all__ = ["concurrency", "concurrency_async", "contention", "contention_async"]

#: a call that has not returned after this long counts as a hang
CALL_TIMEOUT = 60.0

Call = tuple[str, tuple[Any, ...]]
Script = Generator[Call, Any, None]


class _Worker:
    """The state of one worker: what it wrote, what went wrong."""

    def __init__(self, index: int, base: bytes, seed: int) -> None:
        self.index = index
        self.home = base + b"/t%d" % index
        self.hot = [self.home + b"/h/%d" % j for j in range(4)]
        self.rng = random.Random(seed * 7919 + index)
        #: path -> last value written (absent: deleted or never written)
        self.model: dict[bytes, bytes] = {}
        self.uniques: list[tuple[bytes, bytes]] = []
        #: every path this worker modified (and so must have had an event)
        self.touched: set[bytes] = set()
        self.hot_dir_made = False
        self.ops = 0
        self.errors = 0
        self.failures: list[str] = []
        self.hung = False

    def wrong(self, what: str) -> None:
        self.failures.append(f"worker {self.index}: {what}")


def _script(w: _Worker, ops: int) -> Script:
    """The worker's operations, as (name, args) to run; checks each result."""
    rng = w.rng
    model = w.model
    for i in range(ops):
        value = b"%d:%d" % (w.index, i)
        path = rng.choice(w.hot)
        r = rng.random()
        if r < 0.22:
            yield ("write", (path, value))
            model[path] = value
            w.touched.add(path)
            w.hot_dir_made = True
        elif r < 0.37:
            upath = w.home + b"/u/%d/%d" % (i // 50, i % 50)
            yield ("write", (upath, b"u" + value))
            w.uniques.append((upath, b"u" + value))
        elif r < 0.60:
            got = yield ("read", (path, b"-missing-"))
            want = model.get(path, b"-missing-")
            if got != want:
                w.wrong(f"read {path!r} gave {got!r}, expected {want!r}")
        elif r < 0.66:
            got = yield ("exists", (path,))
            if got is not (path in model):
                w.wrong(f"exists {path!r} gave {got!r}")
        elif r < 0.72:
            try:
                got = yield ("list", (w.home + b"/h",))
            except NoEntryError:
                if w.hot_dir_made:
                    w.wrong("list of the hot directory: ENOENT")
                w.errors += 1
            else:
                want = sorted(p.rsplit(b"/", 1)[1] for p in model if p in w.hot)
                if not isinstance(got, list) or sorted(got) != want:
                    w.wrong(f"list gave {got!r}, expected {want!r}")
        elif r < 0.77:
            try:
                got = yield ("get_perms", (path,))
            except NoEntryError:
                if path in model:
                    w.wrong(f"get_perms {path!r}: ENOENT")
                w.errors += 1
            else:
                if path not in model or got != [b"n0"]:
                    w.wrong(f"get_perms {path!r} gave {got!r}")
        elif r < 0.83:
            try:
                yield ("delete", (path,))
            except NoEntryError:
                # RM of a missing node whose parent is missing too
                if w.hot_dir_made:
                    w.wrong(f"delete {path!r}: ENOENT")
                w.errors += 1
            if path in model:
                w.touched.add(path)
            model.pop(path, None)
        else:
            old = yield ("swap", (path, value))
            want = model.get(path, b"-missing-")
            if old != want:
                w.wrong(f"transaction read {path!r} gave {old!r}, expected {want!r}")
            model[path] = value
            w.touched.add(path)
            w.hot_dir_made = True
        w.ops += 1


# -- drivers -------------------------------------------------------------------


def _swap(c: pyxs.Client, path: bytes, value: bytes) -> bytes:
    def body(t: pyxs.Client) -> bytes:
        old = t.read(path, b"-missing-")
        t.write(path, value)
        return old

    return c.transact(body)


_SYNC_OPS: dict[str, Callable[..., Any]] = {
    "write": pyxs.Client.write,
    "read": pyxs.Client.read,
    "exists": pyxs.Client.exists,
    "list": pyxs.Client.list,
    "get_perms": pyxs.Client.get_perms,
    "delete": pyxs.Client.delete,
    "swap": _swap,
}


def _drive_sync(w: _Worker, c: pyxs.Client, ops: int) -> None:
    script = _script(w, ops)
    try:
        call = next(script)
        while True:
            name, args = call
            try:
                result = _SYNC_OPS[name](c, *args)
            except NoEntryError as exc:
                call = script.throw(exc)
            else:
                call = script.send(result)
    except StopIteration:
        pass
    except RequestTimeout as exc:
        w.hung = True
        w.wrong(f"call timed out: {exc!r}")
    except BaseException as exc:  # noqa: BLE001 - every other exception is a failure
        w.wrong(f"raised {exc!r}")


async def _aswap(c: pyxs.AsyncClient, path: bytes, value: bytes) -> bytes:
    async def body(t: Any) -> bytes:
        old: bytes = await t.read(path, b"-missing-")
        await t.write(path, value)
        return old

    return await c.transact(body)


_ASYNC_OPS: dict[str, Callable[..., Any]] = {
    "write": pyxs.AsyncClient.write,
    "read": pyxs.AsyncClient.read,
    "exists": pyxs.AsyncClient.exists,
    "list": pyxs.AsyncClient.list,
    "get_perms": pyxs.AsyncClient.get_perms,
    "delete": pyxs.AsyncClient.delete,
    "swap": _aswap,
}


async def _drive_async(w: _Worker, c: pyxs.AsyncClient, ops: int) -> None:
    script = _script(w, ops)
    try:
        call = next(script)
        while True:
            name, args = call
            try:
                result = await asyncio.wait_for(_ASYNC_OPS[name](c, *args), CALL_TIMEOUT)
            except NoEntryError as exc:
                call = script.throw(exc)
            else:
                call = script.send(result)
    except StopIteration:
        pass
    except asyncio.TimeoutError as exc:
        w.hung = True
        w.wrong(f"call timed out: {exc!r}")
    except BaseException as exc:  # noqa: BLE001
        w.wrong(f"raised {exc!r}")


# -- checks ----------------------------------------------------------------------


class _EventLog:
    """The paths of every event a monitor received."""

    def __init__(self, sentinel: bytes) -> None:
        self.paths: set[bytes] = set()
        self.count = 0
        self.sentinel = sentinel
        self.sentinel_seen = threading.Event()
        self.error: BaseException | None = None

    def add(self, path: bytes) -> None:
        self.paths.add(path)
        self.count += 1
        if path == self.sentinel:
            self.sentinel_seen.set()


def _consume(monitor: pyxs.Monitor, log: _EventLog) -> None:
    try:
        for event in monitor.wait():
            log.add(event.path)
    except BaseException as exc:  # noqa: BLE001 - reported by the checker
        log.error = exc
        log.sentinel_seen.set()


def _verify(fig: Figures, workers: list[_Worker], log: _EventLog | None, socket_path: str) -> None:
    """Every committed write readable from a fresh connection; every write evented."""
    for w in workers:
        fig.ops += w.ops
        fig.errors += w.errors
        for message in w.failures:
            fig.fail(message, "hangs" if w.hung else "failures")
    with pyxs.Client(unix_socket_path=socket_path, timeout=CALL_TIMEOUT) as checker:
        for w in workers:
            for path in w.hot:
                got = checker.read(path, b"-missing-")
                want = w.model.get(path, b"-missing-")
                if got != want:
                    fig.fail(f"{path!r} is {got!r}, last committed {want!r}", "lost")
            for path, value in w.uniques:
                got = checker.read(path, b"-missing-")
                if got != value:
                    fig.fail(f"{path!r} is {got!r}, committed {value!r}", "lost")
    if log is None:
        return
    if log.error is not None:
        fig.fail(f"the monitor raised {log.error!r}")
    for w in workers:
        for path in w.touched:
            if path not in log.paths:
                fig.fail(f"no event for the write to {path!r}", "lost")
        for path, _ in w.uniques:
            if path not in log.paths:
                fig.fail(f"no event for the write to {path!r}", "lost")
    fig.note(f"{log.count} events received")


def _sentinel(socket_path: str, path: bytes, log: _EventLog, fig: Figures) -> None:
    with pyxs.Client(unix_socket_path=socket_path, timeout=CALL_TIMEOUT) as c:
        c.write(path, b"end")
    if not log.sentinel_seen.wait(CALL_TIMEOUT):
        fig.fail("the sentinel's event never came", "hangs")


# -- scenarios -----------------------------------------------------------------


def concurrency(
    server: Any,
    *,
    threads: int = 16,
    ops: int = 500,
    shared: bool = True,
    seed: int = 1,
    deadline: float = 600.0,
    router_factory: Callable[[str], pyxs.Router] | None = None,
) -> Figures:
    """``threads`` x ``ops`` mixed operations on one shared client (or one each).

    ``router_factory(socket_path)`` builds the workers' connections (a
    fault-injecting transport); by default plain Unix sockets.
    """
    mode = "shared client" if shared else "separate clients"
    fig = Figures(f"concurrency {threads}x{ops} {mode}", server.name)
    base = unique_base("conc")
    path = server.socket_path

    def new_client() -> pyxs.Client:
        if router_factory is None:
            return pyxs.Client(unix_socket_path=path, timeout=CALL_TIMEOUT)
        return pyxs.Client(router=router_factory(path), timeout=CALL_TIMEOUT)

    main = new_client()
    main.connect()
    clients = [main]
    try:
        main.mkdir(base)
        watcher = main if shared else new_client()
        if watcher is not main:
            watcher.connect()
            clients.append(watcher)
        monitor = watcher.monitor()
        monitor.watch(base, b"conc")
        log = _EventLog(base + b"/sentinel")
        consumer = threading.Thread(target=_consume, args=(monitor, log), name="rel-events")
        consumer.start()
        workers = [_Worker(k, base, seed) for k in range(threads)]
        own: list[pyxs.Client] = []
        for _ in workers:
            if shared:
                own.append(main)
            else:
                c = new_client()
                c.connect()
                clients.append(c)
                own.append(c)
        runners = [
            threading.Thread(target=_drive_sync, args=(w, c, ops), name=f"rel-w{w.index}")
            for w, c in zip(workers, own)
        ]
        for t in runners:
            t.start()
        for t in runners:
            t.join(deadline)
        stuck = [t.name for t in runners if t.is_alive()]
        if stuck:
            fig.fail(f"workers still running after {deadline} s: {stuck}", "hangs")
            return fig.done()
        _sentinel(path, log.sentinel, log, fig)
        monitor.close()
        consumer.join(10)
        if consumer.is_alive():
            fig.fail("the event consumer did not stop after Monitor.close()", "hangs")
        _verify(fig, workers, log, path)
        session = main.router._session
        if session.slots or session.protocol.pending:
            fig.fail(f"requests left pending: {sorted(session.protocol.pending)[:5]}")
        main.delete(base)
    finally:
        for c in clients:
            c.close()
    return fig.done()


def concurrency_async(
    server: Any, *, tasks: int = 16, ops: int = 500, seed: int = 1, deadline: float = 600.0
) -> Figures:
    """``tasks`` x ``ops`` mixed operations as tasks on one AsyncClient."""
    fig = Figures(f"concurrency {tasks}x{ops} asyncio tasks", server.name)

    async def main() -> None:
        base = unique_base("conca")
        async with pyxs.AsyncClient(unix_socket_path=server.socket_path) as c:
            await c.mkdir(base)
            log = _EventLog(base + b"/sentinel")
            monitor = c.monitor()
            await monitor.watch(base, b"conc")

            async def consume() -> None:
                try:
                    async for event in monitor:
                        log.add(event.path)
                except BaseException as exc:  # noqa: BLE001
                    log.error = exc
                    log.sentinel_seen.set()

            consumer = asyncio.ensure_future(consume())
            workers = [_Worker(k, base, seed) for k in range(tasks)]
            runs = [asyncio.ensure_future(_drive_async(w, c, ops)) for w in workers]
            _, pending = await asyncio.wait(runs, timeout=deadline)
            if pending:
                fig.fail(f"{len(pending)} tasks still running after {deadline} s", "hangs")
                for task in pending:
                    task.cancel()
                return
            await c.write(log.sentinel, b"end")
            for _ in range(int(CALL_TIMEOUT * 100)):
                if log.sentinel_seen.is_set():
                    break
                await asyncio.sleep(0.01)
            else:
                fig.fail("the sentinel's event never came", "hangs")
            await monitor.close()
            await asyncio.wait_for(consumer, 10)
            await c.exists(base)  # replies come in order: the UNWATCH's is in
            if c._protocol.pending:
                fig.fail(f"requests left pending: {sorted(c._protocol.pending)[:5]}")
        await asyncio.get_running_loop().run_in_executor(
            None, _verify, fig, workers, log, server.socket_path
        )
        with pyxs.Client(unix_socket_path=server.socket_path) as cleaner:
            cleaner.delete(base)

    asyncio.run(main())
    return fig.done()


def _increment(c: Any, path: bytes, calls: list[int]) -> int:
    calls[0] += 1
    value = int(c.read(path, b"0")) + 1
    c.write(path, b"%d" % value)
    return value


def contention(
    server: Any, *, workers: int = 8, increments: int = 50, deadline: float = 600.0
) -> Figures:
    """Workers add 1 to one counter through ``Client.transact``; exact total."""
    fig = Figures(f"contention {workers}x{increments} transact", server.name)
    counter = unique_base("cont") + b"/counter"
    path = server.socket_path
    shared = pyxs.Client(unix_socket_path=path, timeout=CALL_TIMEOUT)
    shared.connect()
    clients = [shared]
    shared.write(counter, b"0")
    calls = [[0] for _ in range(workers)]
    done = [0] * workers
    problems: list[str] = []

    def work(k: int, c: pyxs.Client) -> None:
        try:
            for _ in range(increments):
                c.transact(_increment, counter, calls[k], retries=100_000)
                done[k] += 1
        except BaseException as exc:  # noqa: BLE001
            problems.append(f"worker {k}: {exc!r}")

    try:
        threads = []
        for k in range(workers):
            # half the workers share one client (thread-local transactions)
            if k % 2:
                c = shared
            else:
                c = pyxs.Client(unix_socket_path=path, timeout=CALL_TIMEOUT)
                c.connect()
                clients.append(c)
            threads.append(threading.Thread(target=work, args=(k, c)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(deadline)
        if any(t.is_alive() for t in threads):
            fig.fail("workers still running", "hangs")
            return fig.done()
        for message in problems:
            fig.fail(message)
        final = int(shared.read(counter))
        expected = sum(done)
        fig.ops = sum(c[0] for c in calls)
        fig.errors = fig.ops - expected  # retries after EAGAIN
        if expected != workers * increments:
            fig.fail(f"only {expected} of {workers * increments} increments committed")
        if final != expected:
            fig.fail(f"counter is {final}, expected {expected}", "lost", abs(expected - final))
        fig.note(f"{fig.errors} retries after conflicts")
        shared.delete(counter.rsplit(b"/", 1)[0])
    finally:
        for c in clients:
            c.close()
    return fig.done()


def contention_async(
    server: Any, *, tasks: int = 8, increments: int = 50, deadline: float = 600.0
) -> Figures:
    """Tasks on one AsyncClient add 1 to one counter through ``transact``."""
    fig = Figures(f"contention {tasks}x{increments} async transact", server.name)
    counter = unique_base("conta") + b"/counter"

    async def increment(t: Any, calls: list[int]) -> None:
        calls[0] += 1
        value = int(await t.read(counter, b"0")) + 1
        await t.write(counter, b"%d" % value)

    async def main() -> None:
        async with pyxs.AsyncClient(unix_socket_path=server.socket_path) as c:
            await c.write(counter, b"0")
            calls = [0]
            committed = [0]

            async def work() -> None:
                for _ in range(increments):
                    await c.transact(increment, calls, retries=100_000)
                    committed[0] += 1

            results = await asyncio.wait_for(
                asyncio.gather(*(work() for _ in range(tasks)), return_exceptions=True),
                deadline,
            )
            for result in results:
                if isinstance(result, BaseException):
                    fig.fail(f"task raised {result!r}")
            final = int(await c.read(counter))
            fig.ops = calls[0]
            fig.errors = calls[0] - committed[0]
            if final != committed[0]:
                fig.fail(f"counter is {final}, expected {committed[0]}", "lost")
            if committed[0] != tasks * increments:
                fig.fail(f"only {committed[0]} of {tasks * increments} committed")
            await c.delete(counter.rsplit(b"/", 1)[0])

    try:
        asyncio.run(main())
    except asyncio.TimeoutError:
        fig.fail(f"not done after {deadline} s", "hangs")
    except PyXSError as exc:
        fig.fail(f"raised {exc!r}")
    return fig.done()
