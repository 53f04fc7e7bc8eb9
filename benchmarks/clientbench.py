"""One client benchmark, one implementation, one round; run by ``run.py``.

    python clientbench.py '{"impl": "pyxs", "bench": "read", "socket": "...", "seconds": 0.3}'

prints one JSON object: ``{"value": ..., "unit": ...}``.

Implementations (``impl``):

- ``pyxs``: this project's :class:`pyxs.Client` (0.4-compatible API);
- ``pyxs041``: the original pyxs 0.4.1, the same code run by the interpreter
  of its own virtualenv (``run.py`` picks the interpreter);
- ``libxenstore``: the C library through ctypes (``XS_LIBDIR`` names the
  directory holding ``libxenstore.so.4``);
- ``bare``: a bare Python socket loop, the floor for any Python client;
- ``aio``: this project's :class:`pyxs.AsyncClient`.

Every loop is written the way a user would write it (bound methods hoisted,
nothing else), runs for a fixed time after a warm-up, and checks its results
so that a broken client cannot look fast. Only the standard library is
imported at module level: this file also runs under pyxs 0.4.1's virtualenv.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
import time
from typing import Any, Callable

from harness import process_cpu  # stdlib only, beside this file

# Nodes that run.py creates before the client benchmarks run.
READ_PATH = b"/bench/client/r"
READ_VALUE = b"0123456789abcdef"
DIR_PATH = b"/bench/dir100"
DIR_CHILDREN = 100
TX_READS = [b"/bench/tx/r%d" % i for i in range(5)]
TX_VALUE = b"tx-value"
WRITE_VALUE = b"some-value-0123"


#: The server whose CPU time the measured window also reads (``window_pid``
#: in the arguments; 0: none), and what that window used: ``cpu_s`` (this
#: process, every thread) and ``server_cpu_s``. main() adds them to the
#: result. Time spent by other processes is in neither, so the CPU per
#: operation holds still on a busy machine when the elapsed time does not.
WINDOW_PID = 0
WINDOW: dict[str, float] = {}


def window_start() -> tuple[float, float]:
    return time.process_time(), (process_cpu(WINDOW_PID) if WINDOW_PID else 0.0)


def window_end(start: tuple[float, float]) -> None:
    if WINDOW_PID:
        WINDOW["cpu_s"] = time.process_time() - start[0]
        WINDOW["server_cpu_s"] = process_cpu(WINDOW_PID) - start[1]


def timed(step: Callable[[], None], seconds: float, batch: int, warmup: int) -> tuple[int, float]:
    """Call ``step`` (``batch`` operations per call) for ``seconds``; (ops, elapsed)."""
    for _ in range(warmup):
        step()
    ops = 0
    perf = time.perf_counter
    window = window_start()
    t0 = perf()
    deadline = t0 + seconds
    now = t0
    while now < deadline:
        step()
        ops += batch
        now = perf()
    window_end(window)
    return ops, now - t0


def rate(ops: int, elapsed: float, unit: str = "ops/s") -> dict[str, Any]:
    return {"value": ops / elapsed, "unit": unit, "ops": ops, "seconds": elapsed}


def latency(ops: int, elapsed: float) -> dict[str, Any]:
    return {"value": elapsed / ops * 1e6, "unit": "us", "ops": ops, "seconds": elapsed}


def write_path(tag: str) -> bytes:
    return b"/bench/client/w-%s-%d" % (tag.encode(), os.getpid())


# -- pyxs Client (this project's, or 0.4.1 under its own interpreter) -----------------


def client(sock: str) -> Any:
    from pyxs import Client

    return Client(unix_socket_path=sock)


def client_read(sock: str, seconds: float, batch: int = 100) -> dict[str, Any]:
    with client(sock) as c:
        read = c.read
        path = READ_PATH
        assert read(path) == READ_VALUE

        def step() -> None:
            for _ in range(batch):
                read(path)

        return rate(*timed(step, seconds, batch, 3))


def client_write(sock: str, seconds: float, batch: int = 100) -> dict[str, Any]:
    with client(sock) as c:
        write = c.write
        path, value = write_path("c"), WRITE_VALUE

        def step() -> None:
            for _ in range(batch):
                write(path, value)

        result = rate(*timed(step, seconds, batch, 3))
        assert c.read(path) == value
        return result


def client_tx(sock: str, seconds: float, batch: int = 10) -> dict[str, Any]:
    """A transaction of 5 READs and 5 WRITEs, committed; transactions/s."""
    with client(sock) as c:
        base = write_path("t")
        wpaths = [base + b"/w%d" % i for i in range(5)]
        reads = TX_READS
        failed = [0]

        def step() -> None:
            for _ in range(batch):
                c.transaction()
                for p in reads:
                    c.read(p)
                for p in wpaths:
                    c.write(p, TX_VALUE)
                if not c.commit():
                    failed[0] += 1

        result = rate(*timed(step, seconds, batch, 1), unit="tx/s")
        assert c.read(wpaths[-1]) == TX_VALUE
        result["conflicts"] = failed[0]
        return result


def client_dir(sock: str, seconds: float, batch: int = 50) -> dict[str, Any]:
    with client(sock) as c:
        list_ = c.list
        path = DIR_PATH
        assert len(list_(path)) == DIR_CHILDREN

        def step() -> None:
            for _ in range(batch):
                list_(path)

        return rate(*timed(step, seconds, batch, 3))


def client_watch(sock: str, seconds: float, batch: int = 20) -> dict[str, Any]:
    """WRITE on one connection until the event arrives on another; us per event."""
    with client(sock) as watcher, client(sock) as writer:
        path = write_path("watch")
        writer.write(path, b"0")
        m = watcher.monitor()
        m.watch(path, b"tok")
        events = m.wait()
        first = next(events)
        assert first[0] == path, first
        write = writer.write
        counter = [0]

        def step() -> None:
            for _ in range(batch):
                counter[0] += 1
                write(path, b"%d" % counter[0])
                event = next(events)
                if event[0] != path:
                    raise AssertionError(f"unexpected event {event!r}")

        return latency(*timed(step, seconds, batch, 1))


def client_threads(
    sock: str, seconds: float, threads: int, batch: int = 50, server_pid: int = 0
) -> dict[str, Any]:
    """``threads`` threads sharing one client, READs; total reads/s."""
    with client(sock) as c:
        assert c.read(READ_PATH) == READ_VALUE
        read = c.read
        return run_threads(lambda: read(READ_PATH), seconds, threads, batch, READ_VALUE, server_pid)


def own_cpu() -> float:
    """CPU seconds used so far by this process, exited threads included."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_threads(
    op: Callable[[], Any],
    seconds: float,
    threads: int,
    batch: int,
    expect: Any,
    server_pid: int = 0,
) -> dict[str, Any]:
    """Run ``op`` in ``threads`` threads for ``seconds``; total ops/s.

    Every thread warms up (its first calls set up per-thread state) before
    the clock starts, all start together, and the last result of each batch
    must be ``expect``. Ops finished after the stop flag are counted with
    the time they took: the clock stops when the last thread has stopped.

    With ``server_pid`` (a server on this process's one CPU), the result also
    says how the CPU was spent: ``busy`` is the CPU time of this process and
    of the server over the elapsed time. On one CPU with nothing else
    running it is close to 1; well below, something else took the CPU.
    """
    counts = [0] * threads
    errors: list[BaseException] = []
    ready = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(i: int) -> None:
        try:
            for _ in range(batch):
                op()
            ready.wait()
            n = 0
            while not stop.is_set():
                for _ in range(batch - 1):
                    op()
                value = op()
                if value != expect:
                    raise AssertionError(f"unexpected result {value!r}")
                n += batch
            counts[i] = n
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)
            stop.set()
            ready.abort()

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    server0 = process_cpu(server_pid) if server_pid else 0.0
    own0 = own_cpu()
    t0 = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    for t in pool:
        t.join(30)
    elapsed = time.perf_counter() - t0
    own = own_cpu() - own0
    server = process_cpu(server_pid) - server0 if server_pid else 0.0
    if errors:
        raise errors[0]
    ops = sum(counts)
    result = rate(ops, elapsed)
    result["threads"] = threads
    if server_pid and ops:
        result["busy"] = (own + server) / elapsed
        result["client_us_per_op"] = own / ops * 1e6
        result["server_us_per_op"] = server / ops * 1e6
    # run.py checks that the whole process (every thread) ran on one CPU
    result["cpus"] = sorted(os.sched_getaffinity(0))
    return result


# -- libxenstore through ctypes ------------------------------------------------------


class LibXenstore:
    def __init__(self, sock: str) -> None:
        import ctypes

        os.environ["XENSTORED_PATH"] = sock
        libdir = os.environ["XS_LIBDIR"]
        # libxenstore.so.4 needs libxentoolcore.so.1, which is not on the
        # loader's path: load it first, globally.
        ctypes.CDLL(os.path.join(libdir, "libxentoolcore.so.1"), mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(os.path.join(libdir, "libxenstore.so.4"))
        libc = ctypes.CDLL(None)
        vp, u32, cp, uint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint
        puint = ctypes.POINTER(uint)
        lib.xs_open.restype, lib.xs_open.argtypes = vp, [ctypes.c_ulong]
        lib.xs_close.restype, lib.xs_close.argtypes = None, [vp]
        lib.xs_read.restype, lib.xs_read.argtypes = vp, [vp, u32, cp, puint]
        lib.xs_write.restype, lib.xs_write.argtypes = ctypes.c_bool, [vp, u32, cp, cp, uint]
        lib.xs_directory.restype, lib.xs_directory.argtypes = vp, [vp, u32, cp, puint]
        lib.xs_transaction_start.restype, lib.xs_transaction_start.argtypes = u32, [vp]
        lib.xs_transaction_end.restype = ctypes.c_bool
        lib.xs_transaction_end.argtypes = [vp, u32, ctypes.c_bool]
        lib.xs_watch.restype, lib.xs_watch.argtypes = ctypes.c_bool, [vp, cp, cp]
        lib.xs_read_watch.restype = ctypes.POINTER(ctypes.c_char_p)
        lib.xs_read_watch.argtypes = [vp, puint]
        libc.free.restype, libc.free.argtypes = None, [vp]
        self.ctypes = ctypes
        self.lib, self.free = lib, libc.free
        self.len = uint()
        self.plen = ctypes.byref(self.len)

    def open(self) -> int:
        h = self.lib.xs_open(0)
        if not h:
            raise OSError(f"xs_open failed (XENSTORED_PATH={os.environ['XENSTORED_PATH']})")
        return int(h)

    def read(self, h: int, path: bytes, t: int = 0) -> bytes:
        p = self.lib.xs_read(h, t, path, self.plen)
        if not p:
            raise OSError(self.ctypes.get_errno(), f"xs_read {path!r} failed")
        value = self.ctypes.string_at(p, self.len.value)
        self.free(p)
        return value


def libxs_read(sock: str, seconds: float, batch: int = 100) -> dict[str, Any]:
    x = LibXenstore(sock)
    h = x.open()
    assert x.read(h, READ_PATH) == READ_VALUE
    xs_read, free, plen, path = x.lib.xs_read, x.free, x.plen, READ_PATH

    def step() -> None:
        for _ in range(batch):
            free(xs_read(h, 0, path, plen))

    return rate(*timed(step, seconds, batch, 3))


def libxs_write(sock: str, seconds: float, batch: int = 100) -> dict[str, Any]:
    x = LibXenstore(sock)
    h = x.open()
    xs_write, path, value, n = x.lib.xs_write, write_path("x"), WRITE_VALUE, len(WRITE_VALUE)

    def step() -> None:
        for _ in range(batch):
            if not xs_write(h, 0, path, value, n):
                raise OSError("xs_write failed")

    result = rate(*timed(step, seconds, batch, 3))
    assert x.read(h, path) == value
    return result


def libxs_tx(sock: str, seconds: float, batch: int = 10) -> dict[str, Any]:
    x = LibXenstore(sock)
    h = x.open()
    lib, free, plen = x.lib, x.free, x.plen
    start, end, xs_read, xs_write = (
        lib.xs_transaction_start,
        lib.xs_transaction_end,
        lib.xs_read,
        lib.xs_write,
    )
    base = write_path("xt")
    wpaths = [base + b"/w%d" % i for i in range(5)]
    reads, value, n = TX_READS, TX_VALUE, len(TX_VALUE)
    failed = [0]

    def step() -> None:
        for _ in range(batch):
            t = start(h)
            if not t:
                raise OSError("xs_transaction_start failed")
            for p in reads:
                free(xs_read(h, t, p, plen))
            for p in wpaths:
                xs_write(h, t, p, value, n)
            if not end(h, t, False):
                failed[0] += 1

    result = rate(*timed(step, seconds, batch, 1), unit="tx/s")
    assert x.read(h, wpaths[-1]) == TX_VALUE
    result["conflicts"] = failed[0]
    return result


def libxs_dir(sock: str, seconds: float, batch: int = 50) -> dict[str, Any]:
    x = LibXenstore(sock)
    h = x.open()
    xs_directory, free, plen, path = x.lib.xs_directory, x.free, x.plen, DIR_PATH
    p = xs_directory(h, 0, path, plen)
    assert p and x.len.value == DIR_CHILDREN, x.len.value
    free(p)

    def step() -> None:
        for _ in range(batch):
            free(xs_directory(h, 0, path, plen))

    return rate(*timed(step, seconds, batch, 3))


def libxs_watch(sock: str, seconds: float, batch: int = 20) -> dict[str, Any]:
    x = LibXenstore(sock)
    hw, h = x.open(), x.open()
    lib, free, plen = x.lib, x.free, x.plen
    path = write_path("xwatch")
    lib.xs_write(h, 0, path, b"0", 1)
    if not lib.xs_watch(hw, path, b"tok"):
        raise OSError("xs_watch failed")
    read_watch, xs_write = lib.xs_read_watch, lib.xs_write
    vec = read_watch(hw, plen)  # the initial event
    assert vec[0] == path, vec[0]
    free(vec)
    counter = [0]

    def step() -> None:
        for _ in range(batch):
            counter[0] += 1
            data = b"%d" % counter[0]
            xs_write(h, 0, path, data, len(data))
            vec = read_watch(hw, plen)
            if vec[0] != path:
                raise AssertionError(f"unexpected event {vec[0]!r}")
            free(vec)

    return latency(*timed(step, seconds, batch, 1))


def libxs_threads(
    sock: str, seconds: float, threads: int, batch: int = 50, server_pid: int = 0
) -> dict[str, Any]:
    x = LibXenstore(sock)
    h = x.open()
    xs_read, free, path = x.lib.xs_read, x.free, READ_PATH
    ctypes = x.ctypes
    local = threading.local()

    def op() -> bool:
        # one length cell per thread: libxenstore writes it outside its lock
        try:
            plen = local.plen
        except AttributeError:
            local.cell = ctypes.c_uint()
            plen = local.plen = ctypes.byref(local.cell)
        p = xs_read(h, 0, path, plen)
        free(p)
        return p is not None

    return run_threads(op, seconds, threads, batch, True, server_pid)


# -- a bare Python socket loop ----------------------------------------------------------

HEADER = struct.Struct("<IIII")


class Bare:
    """The least a Python client can do: pack, send, recv, unpack the header."""

    def __init__(self, sock: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock)
        self.req_id = 0
        self.buf = b""

    def recv_packet(self) -> tuple[int, int, int, bytes]:
        buf = self.buf
        recv = self.sock.recv
        while len(buf) < 16:
            more = recv(65536)
            if not more:
                raise ConnectionError("closed")
            buf += more
        op, req_id, tx_id, size = HEADER.unpack_from(buf)
        end = 16 + size
        while len(buf) < end:
            more = recv(65536)
            if not more:
                raise ConnectionError("closed")
            buf += more
        self.buf = buf[end:]
        return op, req_id, tx_id, buf[16:end]

    def call(self, op: int, payload: bytes, tx_id: int = 0) -> bytes:
        self.req_id += 1
        self.sock.sendall(HEADER.pack(op, self.req_id, tx_id, len(payload)) + payload)
        rop, _, _, body = self.recv_packet()
        if rop != op:
            raise OSError(f"op {op} failed: {rop} {body!r}")
        return body


def bare_read(sock: str, seconds: float, batch: int = 100) -> dict[str, Any]:
    b = Bare(sock)
    call, payload = b.call, READ_PATH + b"\0"
    assert call(2, payload) == READ_VALUE

    def step() -> None:
        for _ in range(batch):
            call(2, payload)

    return rate(*timed(step, seconds, batch, 3))


def bare_write(sock: str, seconds: float, batch: int = 100) -> dict[str, Any]:
    b = Bare(sock)
    call, payload = b.call, write_path("b") + b"\0" + WRITE_VALUE

    def step() -> None:
        for _ in range(batch):
            call(11, payload)

    return rate(*timed(step, seconds, batch, 3))


def bare_tx(sock: str, seconds: float, batch: int = 10) -> dict[str, Any]:
    b = Bare(sock)
    call = b.call
    base = write_path("bt")
    reads = [p + b"\0" for p in TX_READS]
    writes = [base + b"/w%d\0" % i + TX_VALUE for i in range(5)]

    def step() -> None:
        for _ in range(batch):
            t = int(call(6, b"\0")[:-1])
            for p in reads:
                call(2, p, t)
            for p in writes:
                call(11, p, t)
            call(7, b"T\0", t)

    return rate(*timed(step, seconds, batch, 1), unit="tx/s")


def bare_dir(sock: str, seconds: float, batch: int = 50) -> dict[str, Any]:
    b = Bare(sock)
    call, payload = b.call, DIR_PATH + b"\0"
    assert len(call(1, payload)[:-1].split(b"\0")) == DIR_CHILDREN

    def step() -> None:
        for _ in range(batch):
            call(1, payload)[:-1].split(b"\0")

    return rate(*timed(step, seconds, batch, 3))


def bare_watch(sock: str, seconds: float, batch: int = 20) -> dict[str, Any]:
    w, b = Bare(sock), Bare(sock)
    path = write_path("bwatch")
    b.call(11, path + b"\0" + b"0")
    w.call(4, path + b"\0tok\0")
    assert w.recv_packet()[0] == 15  # the initial event
    call, recv_event = b.call, w.recv_packet
    counter = [0]

    def step() -> None:
        for _ in range(batch):
            counter[0] += 1
            call(11, path + b"\0%d" % counter[0])
            if recv_event()[0] != 15:
                raise AssertionError("expected a WATCH_EVENT")

    return latency(*timed(step, seconds, batch, 1))


# -- pyxs.AsyncClient -------------------------------------------------------------------


def aio_client(sock: str) -> Any:
    from pyxs import AsyncClient

    return AsyncClient(unix_socket_path=sock)


def aio_run(coro_fn: Callable[[], Any]) -> Any:
    import asyncio

    return asyncio.run(coro_fn())


def aio_read(sock: str, seconds: float, concurrency: int = 1) -> dict[str, Any]:
    """Batches of ``concurrency`` concurrent READs (gather); reads/s."""
    import asyncio

    async def main() -> dict[str, Any]:
        async with aio_client(sock) as c:
            assert await c.read(READ_PATH) == READ_VALUE
            read, path, gather = c.read, READ_PATH, asyncio.gather

            async def batch() -> None:
                if concurrency == 1:
                    for _ in range(100):
                        await read(path)
                    return
                values = await gather(*[read(path) for _ in range(concurrency)])
                if values[-1] != READ_VALUE:
                    raise AssertionError(values[-1])

            per_batch = 100 if concurrency == 1 else concurrency
            await batch()
            window = window_start()
            ops, t0 = 0, time.perf_counter()
            deadline = t0 + seconds
            now = t0
            while now < deadline:
                await batch()
                ops += per_batch
                now = time.perf_counter()
            window_end(window)
            return rate(ops, now - t0)

    result: dict[str, Any] = aio_run(main)
    result["concurrency"] = concurrency
    return result


async def aio_transaction(c: Any, reads: list[bytes], wpaths: list[bytes]) -> bool:
    """One transaction of 5 READs and 5 WRITEs; False if it conflicted."""
    from pyxs.exceptions import TransactionConflictError

    try:
        async with c.transaction() as t:
            for p in reads:
                await t.read(p)
            for p in wpaths:
                await t.write(p, TX_VALUE)
    except TransactionConflictError:
        return False
    return True


def aio_tx(sock: str, seconds: float, concurrency: int = 1) -> dict[str, Any]:
    """``concurrency`` transactions at a time, each on its own nodes; committed tx/s.

    The nodes exist before the clock starts: creating a node inside a
    transaction changes its parent, and concurrent transactions changing the
    same parent conflict (EAGAIN), which is not what this measures.
    """
    import asyncio

    async def main() -> dict[str, Any]:
        async with aio_client(sock) as c:
            base = write_path("atx")
            wpaths = [[base + b"/%d/w%d" % (k, i) for i in range(5)] for k in range(concurrency)]
            for group in wpaths:
                for p in group:
                    await c.write(p, b"")
            reads = TX_READS
            conflicts = 0

            async def batch() -> int:
                if concurrency == 1:
                    done = 0
                    for _ in range(10):
                        done += await aio_transaction(c, reads, wpaths[0])
                    return done
                results = await asyncio.gather(*[aio_transaction(c, reads, w) for w in wpaths])
                return sum(results)

            per_batch = 10 if concurrency == 1 else concurrency
            await batch()
            window = window_start()
            ops, t0 = 0, time.perf_counter()
            deadline = t0 + seconds
            now = t0
            while now < deadline:
                done = await batch()
                ops += done
                conflicts += per_batch - done
                now = time.perf_counter()
            window_end(window)
            assert await c.read(wpaths[-1][-1]) == TX_VALUE
            # Leave the store as it was: nodes piling up round after round
            # (500 a round) slow the daemon down, a later round more than an
            # earlier one, and the pipelined client (mostly daemon time) most.
            await c.delete(base)
            result = rate(ops, now - t0, unit="tx/s")
            result["conflicts"] = conflicts
            return result

    result: dict[str, Any] = aio_run(main)
    result["concurrency"] = concurrency
    return result


BENCHES: dict[str, Callable[..., dict[str, Any]]] = {
    "pyxs.read": client_read,
    "pyxs.write": client_write,
    "pyxs.tx": client_tx,
    "pyxs.dir": client_dir,
    "pyxs.watch": client_watch,
    "pyxs.threads": client_threads,
    "libxenstore.read": libxs_read,
    "libxenstore.write": libxs_write,
    "libxenstore.tx": libxs_tx,
    "libxenstore.dir": libxs_dir,
    "libxenstore.watch": libxs_watch,
    "libxenstore.threads": libxs_threads,
    "bare.read": bare_read,
    "bare.write": bare_write,
    "bare.tx": bare_tx,
    "bare.dir": bare_dir,
    "bare.watch": bare_watch,
    "aio.read": aio_read,
    "aio.tx": aio_tx,
}
# pyxs 0.4.1 has the same API: the same functions, another interpreter.
BENCHES.update(
    {
        k.replace("pyxs.", "pyxs041.", 1): v
        for k, v in list(BENCHES.items())
        if k.startswith("pyxs.")
    }
)


def main(argv: list[str]) -> int:
    global WINDOW_PID
    args = json.loads(argv[1])
    fn = BENCHES[f"{args.pop('impl')}.{args.pop('bench')}"]
    WINDOW_PID = args.pop("window_pid", 0)
    result = fn(args.pop("socket"), **args)
    if WINDOW and result.get("ops"):
        result.update(WINDOW)
        result["cpu_us_per_op"] = (WINDOW["cpu_s"] + WINDOW["server_cpu_s"]) / result["ops"] * 1e6
    # Which pyxs ran: run.py checks that a baseline checkout's rows ran its own.
    module = sys.modules.get("pyxs")
    if module is not None:
        result["pyxs_file"] = module.__file__
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
