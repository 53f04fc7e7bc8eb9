"""Shared fixtures: the real xenstored (../shared/realxs) and per-test paths.

The real daemon is started once per session; tests isolate themselves by
working under their own ``unique_path``.

Running one test against both servers (tests/servers.py, tests/realxs_guest.py)
--------------------------------------------------------------------------------
``xs_server`` is parametrized ``["embedded", "real"]`` and yields an
``XsServer``: ``.name`` ("embedded"/"real"), ``.socket_path`` (dom0 socket),
``.introduce_guest(domid) -> str`` (INTRODUCE over the wire; returns a Unix
socket path whose connections act as that unprivileged domain, i.e. the
embedded ``Server.guest_socket_path(domid)``; on the real daemon a bridge
thread moves the bytes through the guest's shared ring), and
``.set_domain_state(domid, state)`` (running/shutdown/crashed/dying/gone;
fires ``@releaseDomain`` like VIRQ_DOM_EXC; synchronous).
``xs_server`` is shared by the session (one per kind): work under
``unique_path`` and use ``unique_domid``. ``fresh_xs_server`` is a new server
of each kind for every test (initial tree, domain states, @introduceDomain).
On the real daemon a guest socket serves one connection at a time; when it
closes, the domain is re-INTRODUCEd, which resets the guest's connection
(watches, transactions) but not its transaction-id counter. INTRODUCE sends
``<domid> NUL <domid> NUL 1 NUL`` (mfn = domid, so re-introducing works). Once a
guest is released or ``dying``/``gone``, the real daemon stops serving its
ring: requests on its socket then go unanswered (the embedded server closes
it). Raw-packet differential testing: tests/interop/xsdiff.py.
``real_xenstored.introduce_guest(domid)`` and
``real_xenstored.set_domain_state(domid, state)`` do the same on the plain
session daemon.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from realxs_guest import guests_for, stop_daemon
from servers import EmbeddedXsServer, RealXsServer, XsServer

REPO = Path(__file__).resolve().parent.parent
REALXS = Path(os.environ.get("PYXS_REALXS", REPO.parent / "shared" / "realxs"))


@dataclass
class RealXenstored:
    """A running real C xenstored (cxenstored 4.17) from ../shared/realxs."""

    rundir: Path
    socket_path: str
    pid: int
    root: Path  # the unpacked Debian packages

    @property
    def lib_dir(self) -> Path:
        return self.root / "usr" / "lib" / "x86_64-linux-gnu"

    def tool(self, name: str) -> str:
        """Path of a real xenstore-* tool (xenstore-control lives elsewhere)."""
        for base in (self.root / "usr" / "bin", self.root / "usr" / "lib" / "xen-4.17" / "bin"):
            if (base / name).exists():
                return str(base / name)
        raise FileNotFoundError(name)

    def introduce_guest(self, domid: int) -> str:
        """INTRODUCE ``domid``; a socket path whose connections act as that guest."""
        return guests_for(self.rundir, self.socket_path).introduce(domid)

    def set_domain_state(self, domid: int, state: str) -> None:
        """running/shutdown/crashed/dying/gone via RUNDIR/domains + VIRQ_DOM_EXC."""
        guests_for(self.rundir, self.socket_path).set_domain_state(domid, state)

    def tool_env(self, socket_path: str | None = None) -> dict[str, str]:
        """Environment for running a real libxenstore tool against a socket."""
        env = dict(os.environ)
        env["XENSTORED_PATH"] = socket_path or self.socket_path
        env["LD_LIBRARY_PATH"] = str(self.lib_dir)
        return env


def realxs_root() -> Path:
    """Fetch (once) and return the unpacked real xenstored packages."""
    script = REALXS / "fetch-debs.sh"
    if not script.exists():
        raise RuntimeError(f"{script} is missing: ../shared/realxs must sit beside the clone")
    out = subprocess.run([str(script)], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def start_real_xenstored(*options: str) -> RealXenstored:
    """Start a real xenstored in a fresh short run directory."""
    root = realxs_root()
    rundir = Path(tempfile.mkdtemp(prefix="rxs", dir="/tmp"))
    out = subprocess.run(
        [str(REALXS / "start.sh"), str(rundir), *options],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return RealXenstored(rundir, values["SOCKET"], int(values["PID"]), root)


def stop_real_xenstored(daemon: RealXenstored) -> None:
    # stop.sh's way, without waiting seconds for init to reap the zombie
    stop_daemon(daemon.rundir, daemon.pid)


@pytest.fixture(scope="session")
def real_xenstored() -> Iterator[RealXenstored]:
    """One real xenstored for the whole session."""
    daemon = start_real_xenstored()
    try:
        yield daemon
    finally:
        stop_real_xenstored(daemon)


@pytest.fixture
def unique_path() -> bytes:
    """A fresh absolute path under which a test may do as it likes."""
    return b"/test/" + uuid.uuid4().hex[:12].encode()


#: What may lie at a XenBus device's path without being one (make_non_device).
NON_DEVICES = ["file", "empty file", "fifo", "directory"]


def make_non_device(path: Path, kind: str) -> None:
    """Put at ``path`` a ``kind`` of :data:`NON_DEVICES`; a "file" holds
    ``b"keep me"``, so that a test can see nothing was written into it."""
    if kind == "file":
        path.write_bytes(b"keep me")
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        raise ValueError(kind)


# -- one test, both servers (see the module docstring) ------------------------

_unique_domids = iter(range(100, 0x7FF0))


@pytest.fixture
def unique_domid() -> int:
    """A domid no other test of the session uses (100, 101, ...)."""
    return next(_unique_domids)


@pytest.fixture(scope="session")
def _embedded_xs_server() -> Iterator[XsServer]:
    server = EmbeddedXsServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["embedded", "real"])
def xs_server(request: pytest.FixtureRequest) -> XsServer:
    """The session's embedded server, then the session's real xenstored."""
    if request.param == "embedded":
        server: XsServer = request.getfixturevalue("_embedded_xs_server")
        return server
    return RealXsServer(request.getfixturevalue("real_xenstored"))


@pytest.fixture(params=["embedded", "real"])
def fresh_xs_server(request: pytest.FixtureRequest) -> Iterator[XsServer]:
    """A new embedded server, then a new real xenstored, for this test alone."""
    server: XsServer
    if request.param == "embedded":
        server = EmbeddedXsServer()
    else:
        daemon = start_real_xenstored()
        server = RealXsServer(daemon, stop=lambda: stop_real_xenstored(daemon))
    try:
        yield server
    finally:
        server.close()
