"""Shared fixtures: the real xenstored (../shared/realxs) and per-test paths.

The real daemon is started once per session; tests isolate themselves by
working under their own ``unique_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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
    subprocess.run([str(REALXS / "stop.sh"), str(daemon.rundir)], capture_output=True)
    shutil.rmtree(daemon.rundir, ignore_errors=True)


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
