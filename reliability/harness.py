"""Servers to run the scenarios against, and resource accounting.

Server handles all have ``name`` ("embedded" or "real"), ``socket_path``
(the dom0 socket), ``introduce_guest(domid) -> str`` (a socket path whose
connections act as that unprivileged domain) and ``close()``; the
``xs_server`` fixtures of tests/conftest.py are such handles too.

- :class:`EmbeddedServer`: ``pyxs.server.Server`` in this process (quotas
  configurable);
- :class:`RealServer`: a real cxenstored of its own (xenstored options
  passed through, e.g. quotas; ``verbose=False`` without ``-V``);
- :func:`killable` -> :class:`KillableServer`: a server in another process
  that can be SIGKILLed, SIGSTOPped, SIGCONTed and restarted on the same
  socket path: ``python -m pyxs.server`` for "embedded", cxenstored for "real".

The real daemon comes from tests/realxs.py (``start_real_xenstored``) and
tests/realxs_guest.py (guests over the shared ring); tests/ is put on
``sys.path`` for that.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

__all__ = [
    "KINDS",
    "EmbeddedServer",
    "KillableServer",
    "RealServer",
    "Resources",
    "killable",
    "open_server",
    "unique_base",
    "wait_until",
]

#: the two servers every scenario runs against
KINDS = ("embedded", "real")


def _tests_on_path() -> None:
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))


def tests_module(name: str) -> ModuleType:
    """A helper module of tests/ (realxs_guest, servers) by its unique name."""
    _tests_on_path()
    return importlib.import_module(name)


def unique_base(prefix: str = "rel") -> bytes:
    """A fresh absolute path for one scenario: ``/rel/<hex>``."""
    return b"/%s/%s" % (prefix.encode(), uuid.uuid4().hex[:12].encode())


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


# -- servers in this process ---------------------------------------------------


class EmbeddedServer:
    """``pyxs.server.Server`` serving from a thread of this process."""

    name = "embedded"

    def __init__(self, quotas: Mapping[str, int] | None = None) -> None:
        from pyxs.server import Server

        self.server = Server(quotas=quotas)
        self.server.__enter__()
        self.socket_path: str = self.server.socket_path

    def introduce_guest(self, domid: int) -> str:
        _introduce(self.socket_path, domid)
        return self.server.guest_socket_path(domid)

    def alive(self) -> bool:
        thread = self.server._thread
        return thread is not None and thread.is_alive()

    def close(self) -> None:
        self.server.__exit__(None, None, None)


def _introduce(socket_path: str, domid: int) -> None:
    realxs_guest = tests_module("realxs_guest")
    from pyxs.protocol import Op

    reply = realxs_guest.dom0_request(
        socket_path, Op.INTRODUCE, realxs_guest.introduce_payload(domid)
    )
    if reply.op != Op.INTRODUCE:
        raise OSError(f"INTRODUCE {domid} failed: {reply.payload!r}")


class RealServer:
    """A real cxenstored of its own; ``options`` go to xenstored (-E 50 ...)."""

    name = "real"

    def __init__(self, *options: str, verbose: bool = True) -> None:
        # verbose: -V, a log line per message; production runs without it,
        # and so does a scenario that measures time
        self.daemon = tests_module("realxs").start_real_xenstored(*options, verbose=verbose)
        self.socket_path: str = self.daemon.socket_path

    def introduce_guest(self, domid: int) -> str:
        return str(self.daemon.introduce_guest(domid))

    def alive(self) -> bool:
        return bool(self.daemon.alive())

    def close(self) -> None:
        self.daemon.stop()


@contextlib.contextmanager
def open_server(
    kind: str, quotas: Mapping[str, int] | None = None, real_options: tuple[str, ...] = ()
) -> Iterator[Any]:
    """A fresh server of ``kind`` for the block."""
    server: EmbeddedServer | RealServer
    server = EmbeddedServer(quotas) if kind == "embedded" else RealServer(*real_options)
    try:
        yield server
    finally:
        server.close()


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


# -- servers in another process (to be killed) ----------------------------------


class KillableServer:
    """A XenStore server in its own process, on a fixed socket path."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(kind)
        self.name = kind
        self.rundir = tempfile.mkdtemp(prefix="rlk", dir="/tmp")
        self.socket_path = os.path.join(self.rundir, "socket")
        self.pid = 0
        self._proc: subprocess.Popen[str] | None = None
        self._daemon: Any = None  # a realxs.RealXenstored
        self._guests: Any = None
        self.start()

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Start (or start again, after a kill) on the same socket path."""
        if self.name == "embedded":
            proc = subprocess.Popen(
                [sys.executable, "-m", "pyxs.server", "--socket", self.socket_path],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=self.rundir,
            )
            assert proc.stdout is not None
            values: dict[str, str] = {}
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            while ready and "PID" not in values:
                line = proc.stdout.readline()
                if not line:
                    break
                key, _, value = line.strip().partition("=")
                values[key] = value
            if "PID" not in values:
                proc.kill()
                proc.wait()
                raise RuntimeError("python -m pyxs.server did not come up")
            self._proc = proc
            self.pid = proc.pid
        else:
            realxs = tests_module("realxs")
            self._daemon = realxs.start_real_xenstored(rundir=self.rundir)
            self.pid = self._daemon.pid
            self._guests = None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def stop_answering(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, no clean-up of any kind; wait until it is gone."""
        self._forget_guests()
        self.signal(signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._daemon is not None:
            self._daemon.proc.wait()
            self._daemon = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def alive(self) -> bool:
        return _pid_alive(self.pid)

    def introduce_guest(self, domid: int) -> str:
        if self.name == "embedded":
            _introduce(self.socket_path, domid)
            return os.path.join(self.rundir, f"domain-{domid}.sock")
        realxs_guest = tests_module("realxs_guest")
        self._guests = realxs_guest.guests_for(self.rundir, self.socket_path)
        return str(self._guests.introduce(domid))

    def _forget_guests(self) -> None:
        if self.name == "real":
            realxs_guest = tests_module("realxs_guest")
            realxs_guest.close_guests(self.rundir)

    def close(self) -> None:
        self.resume()
        self.kill()
        shutil.rmtree(self.rundir, ignore_errors=True)

    def __enter__(self) -> KillableServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def killable(kind: str) -> KillableServer:
    return KillableServer(kind)


# -- resources -------------------------------------------------------------------


class Resources:
    """Threads and file descriptors of this process, before and after."""

    def __init__(self) -> None:
        self.threads = threading.active_count()
        self.fds = self._fds()

    @staticmethod
    def _fds() -> set[int]:
        return {int(name) for name in os.listdir("/proc/self/fd")}

    def leaks(self, timeout: float = 2.0) -> list[str]:
        """What is still there that was not before (after waiting a little)."""
        wait_until(
            lambda: threading.active_count() <= self.threads and self._fds() <= self.fds,
            timeout,
        )
        problems = []
        threads = threading.active_count()
        if threads > self.threads:
            names = sorted(t.name for t in threading.enumerate())
            problems.append(f"{threads - self.threads} thread(s) leaked: {names}")
        extra = self._fds() - self.fds
        if extra:
            described = []
            for fd in sorted(extra):
                try:
                    described.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
                except OSError:
                    described.append(str(fd))
            problems.append(f"{len(extra)} fd(s) leaked: {described}")
        return problems
