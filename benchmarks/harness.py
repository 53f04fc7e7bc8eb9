"""Peers, pinning and statistics for ``benchmarks/run.py``.

Peers are set up here, on first use, and cached outside the repository:

- the real xenstored and libxenstore come from the test suite's harness,
  ``tests/realxs.py`` (it caches the Debian packages under
  ``~/.cache/pyxs/realxs``);
- pyxs 0.4.1 from PyPI goes into its own virtualenv under
  ``~/.cache/pyxs-bench`` (``$PYXS_BENCH_CACHE``);
- the embedded server is this project's ``python -m pyxs.server`` (or, with
  ``run.py --baseline DIR``, another checkout's, run by ``DIR/.venv/bin/python``).

Everything that is measured runs in its own process, pinned to one CPU with
``sched_setaffinity``: the orchestrator only starts processes, collects the
JSON they print and takes medians of alternating rounds.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("PYXS_BENCH_CACHE", Path.home() / ".cache" / "pyxs-bench"))


def realxs() -> ModuleType:
    """tests/realxs.py, the test suite's harness for the real xenstored."""
    if str(REPO / "tests") not in sys.path:
        sys.path.append(str(REPO / "tests"))
    return importlib.import_module("realxs")


class Unavailable(Exception):
    """A peer or a project component is missing: its benchmarks are skipped."""


class BenchError(Exception):
    """A benchmark process failed."""


# -- CPUs ------------------------------------------------------------------------


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of ``pid`` to ``cpu``."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, {cpu})
        except OSError:
            pass


def _pinned(cpu: int | None) -> Any:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


# -- running measured processes ----------------------------------------------------


def run_json(
    cmd: Sequence[str],
    cpu: int | None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> dict[str, Any]:
    """Run ``cmd`` pinned to ``cpu``; return the JSON object it printed last."""
    proc = subprocess.run(
        list(cmd),
        capture_output=True,
        env=env,
        preexec_fn=_pinned(cpu),
        timeout=timeout,
        check=False,
    )
    out = proc.stdout.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not out:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        tail = " | ".join(err[-3:]) if err else f"exit status {proc.returncode}"
        raise BenchError(tail)
    result: dict[str, Any] = json.loads(out[-1])
    return result


def base_env() -> dict[str, str]:
    """The environment for measured processes: no PYTHONPATH leaking in."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONSTARTUP", None)
    return env


# -- servers ---------------------------------------------------------------------


def wait_for_socket(path: str, proc_alive: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc_alive():
            raise BenchError(f"server exited before listening on {path}")
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.02)
    raise BenchError(f"nothing listening on {path} after {timeout}s")


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by every live thread of ``pid`` (schedstat, ns)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just exited
    return total / 1e9


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of a live process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise BenchError(f"no VmHWM for pid {pid}")


class Server:
    """A XenStore server process serving a Unix socket."""

    name = "server"
    label = "server"
    pid = 0
    socket_path = ""

    def start(self, cpu: int) -> Server:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RealXenstored(Server):
    """The real C xenstored 4.17, started by tests/realxs.py.

    Started without ``-V``: the verbose log writes a line per message and is
    not how the daemon runs in production.
    """

    name = "real"
    label = "real xenstored"

    def __init__(self) -> None:
        self.daemon: Any = None  # a realxs.RealXenstored

    def start(self, cpu: int) -> RealXenstored:
        harness = realxs()
        try:
            self.daemon = harness.start_real_xenstored(verbose=False, cpu=cpu)
        except harness.Unavailable as exc:
            raise Unavailable(str(exc)) from None
        except RuntimeError as exc:
            raise BenchError(str(exc)[-300:]) from None
        self.socket_path = self.daemon.socket_path
        self.pid = self.daemon.pid
        pin(self.pid, cpu)
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None


class EmbeddedServer(Server):
    """This project's server as its own process: ``python -m pyxs.server``.

    ``python`` is the interpreter that imports the pyxs to measure (a
    baseline checkout's own). It starts in its temporary directory, so that
    ``-m`` (which puts the working directory first on ``sys.path``) cannot
    pick up a ``pyxs`` from wherever the benchmarks were started.
    """

    name = "pyxs"
    label = "pyxs.server"

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmpdir = ""
        self.stderr_path = ""

    def start(self, cpu: int) -> EmbeddedServer:
        self.tmpdir = tempfile.mkdtemp(prefix="pxb-", dir="/tmp")
        self.socket_path = os.path.join(self.tmpdir, "socket")
        self.stderr_path = os.path.join(self.tmpdir, "stderr")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [self.python, "-m", "pyxs.server", "--socket", self.socket_path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=self.tmpdir,
                env=base_env(),
                preexec_fn=_pinned(cpu),
            )
        self.pid = self.proc.pid
        proc = self.proc
        try:
            wait_for_socket(self.socket_path, lambda: proc.poll() is None)
        except BenchError as exc:
            with open(self.stderr_path, errors="replace") as f:
                tail = f.read()[-400:]
            self.stop()
            raise BenchError(f"{exc}: {tail}") from None
        pin(self.pid, cpu)  # threads it may have started
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = ""


# -- peers set up on first use ----------------------------------------------------------


def xen_root() -> Path:
    """The unpacked Xen 4.17 debs (libxenstore, xenstore-* tools)."""
    harness = realxs()
    try:
        root: Path = harness.realxs_root()
    except harness.Unavailable as exc:
        raise Unavailable(str(exc)) from None
    return root


def pyxs041_python() -> str:
    """The interpreter of a virtualenv holding pyxs 0.4.1 from PyPI."""
    venv = CACHE / "venv-pyxs041"
    python = venv / "bin" / "python"
    check = [
        str(python),
        "-c",
        "import sys, pyxs, importlib.metadata as m; sys.exit(m.version('pyxs') != '0.4.1')",
    ]

    def ok() -> bool:
        return python.exists() and subprocess.run(check, capture_output=True).returncode == 0

    if ok():
        return str(python)
    CACHE.mkdir(parents=True, exist_ok=True)
    # a plain interpreter, not the project's venv: base_prefix is the real install
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    interpreter = str(base) if base.exists() else sys.executable
    steps = [
        [interpreter, "-m", "venv", "--clear", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "pyxs==0.4.1",
        ],
    ]
    for step in steps:
        proc = subprocess.run(step, capture_output=True)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise Unavailable(f"could not set up pyxs 0.4.1 ({' '.join(step[:3])}): {err[-300:]}")
    if not ok():
        raise Unavailable("pyxs 0.4.1 virtualenv does not import pyxs 0.4.1")
    return str(python)


def byte_compile_package(python: str, package: str = "pyxs", root: Path = REPO) -> str:
    """Byte-compile ``package`` where ``python`` imports it from, as an install does.

    ``pip install`` writes ``__pycache__/*.pyc`` next to the modules; an
    editable install or a checkout has none until something imports it with
    bytecode writing on. Returns the package directory, relative to the
    checkout ``root`` when it is in it (results are committed: no machine's paths);
    raises BenchError if any module did not compile or its ``.pyc`` is not
    where the import system looks for it.
    """
    code = (
        "import compileall, importlib, importlib.util, os, sys\n"
        f"pkg = os.path.dirname(importlib.import_module({package!r}).__file__)\n"
        "ok = compileall.compile_dir(pkg, quiet=1)\n"
        "missing = [os.path.join(d, f) for d, _, fs in os.walk(pkg) for f in fs\n"
        "           if f.endswith('.py')\n"
        "           and not os.path.exists(importlib.util.cache_from_source(os.path.join(d, f)))]\n"
        "print(pkg)\n"
        "sys.exit(0 if ok and not missing else 'not compiled: ' + ' '.join(missing))\n"
    )
    env = base_env()
    env.pop("PYTHONPYCACHEPREFIX", None)
    proc = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        env=env,
        cwd=tempfile.gettempdir(),
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise BenchError(f"could not byte-compile {package}: {err[-300:]}")
    where = Path(proc.stdout.decode().strip().splitlines()[-1])
    try:
        return str(where.resolve().relative_to(root.resolve()))
    except ValueError:  # installed elsewhere: the part from site-packages on
        parts = where.parts
        return (
            str(Path(*parts[parts.index("site-packages") :]))
            if "site-packages" in parts
            else where.name
        )


def probe(code: str, timeout: float = 60, python: str = sys.executable) -> str | None:
    """Run ``code`` in ``python`` (the project's interpreter); None if it worked, else why not."""
    proc = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        env=base_env(),
        cwd=tempfile.gettempdir(),
        timeout=timeout,
        check=False,
    )
    if proc.returncode == 0:
        return None
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def pyxs_file(python: str) -> Path:
    """Where ``python`` imports pyxs from (its ``__init__.py``), resolved."""
    proc = subprocess.run(
        [python, "-c", "import pyxs; print(pyxs.__file__)"],
        capture_output=True,
        env=base_env(),
        cwd=tempfile.gettempdir(),
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BenchError(f"{python} cannot import pyxs: {err[-1] if err else proc.returncode}")
    return Path(proc.stdout.decode().strip()).resolve()


def git_commit(repo: Path = REPO) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, check=False
    )
    sha = proc.stdout.decode().strip() or "unknown"
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "src"],
        capture_output=True,
        check=False,
    ).stdout.strip()
    return sha + ("+dirty" if dirty else "")


# -- statistics --------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> float:
    """Half the interquartile-ish range relative to the median (0.05 = ±5%)."""
    if len(values) < 2:
        return 0.0
    ordered = sorted(values)
    lo = ordered[len(ordered) // 4]
    hi = ordered[-1 - len(ordered) // 4]
    m = median(values)
    return (hi - lo) / 2 / m if m else 0.0


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
