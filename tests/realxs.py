"""The real C xenstored (cxenstored 4.17), run without Xen, for the tests.

Theory of operation
-------------------
Debian bookworm packages Xen 4.17's user space: the daemon (``xen-utils-4.17``),
libxenstore, the ``xenstore-*`` tools and the ``xen.lowlevel.xs`` binding.
:func:`realxs_root` downloads them with ``apt-get download`` (nothing is
installed) and unpacks them with ``dpkg -x`` under the user's cache directory,
``${XDG_CACHE_HOME:-~/.cache}/pyxs/realxs`` (``$PYXS_REALXS_CACHE`` overrides
it); later runs find them there. Two processes fetching at once take turns on a
lock file, and each unpacks into a temporary directory that is renamed into
place when complete, so nobody ever sees half a tree.

The daemon needs a hypervisor; ``tests/realxs_shim.c``, compiled with the
machine's ``cc`` into the cache (the file name carries a hash of the source,
so an edited source is rebuilt), is an LD_PRELOAD library that stands in for
it: its header says how. :func:`start_real_xenstored` starts ``xenstored -N``
with it, in a fresh run directory (its socket is ``RUNDIR/socket``), and
returns once the shim says, through a pipe, that the daemon is ready: no
polling, and a daemon that dies while starting is reported with its log.
:meth:`RealXenstored.stop` stops it by its pid and removes the run directory.

When the packages cannot be had (no apt, no network, not Debian), every
function here raises :class:`Unavailable`, whose message is one line saying
what is missing and how to get it; the ``realxs`` tests then fail with it.

``python tests/realxs.py fetch`` fetches everything ahead of a run (for CI) and
prints where it is; ``python tests/realxs.py xs-wire`` prints the path of
Debian's ``xs_wire.h`` (libxen-dev), used to check the protocol constants.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIM_SOURCE = HERE / "realxs_shim.c"

#: Debian bookworm's Xen 4.17 user space: the daemons, libxenstore, the tools
#: and the libraries they load.
PACKAGES = (
    "xen-utils-4.17",
    "xenstore-utils",
    "libxenstore4",
    "libxenevtchn1",
    "libxengnttab1",
    "libxencall1",
    "libxenforeignmemory1",
    "libxentoolcore1",
    "libxentoollog1",
    "libxendevicemodel1",
    "libxenhypfs1",
    "libxenmisc4.17",
)
XENSTORED = "usr/lib/xen-4.17/bin/xenstored"
OXENSTORED = "usr/lib/xen-4.17/bin/oxenstored"
BINDING_DIR = "usr/lib/xen-4.17/lib/python"  # xen/lowlevel/xs.cpython-311-*.so
XS_WIRE = "usr/include/xen/io/xs_wire.h"

#: AF_UNIX paths are limited to 108 bytes: run directories go under /tmp.
RUNDIR_PARENT = "/tmp"
#: a hang guard only: the daemon is normally ready in milliseconds
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

__all__ = [
    "RealXenstored",
    "Unavailable",
    "binding_env",
    "binding_python",
    "run_binding_script",
    "cache_dir",
    "realxs_root",
    "shim_library",
    "start_oxenstored",
    "start_real_xenstored",
    "stop_real_xenstored",
    "xs_wire_header",
]


class Unavailable(RuntimeError):
    """The real xenstored cannot be had here; the message is one line."""


# -- fetching the Debian packages ------------------------------------------------


def cache_dir() -> Path:
    """Where the packages and the shim are kept (``$PYXS_REALXS_CACHE`` overrides)."""
    override = os.environ.get("PYXS_REALXS_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyxs" / "realxs"


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """Hold the cache's lock file (other processes fetching wait their turn)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _how_to_get(reason: str, name: str = "root") -> Unavailable:
    what = "the real xenstored" if name == "root" else f"Debian's {name}"
    return Unavailable(
        f"{what} is needed: {reason}; run on Debian/Ubuntu with apt-get "
        "(bookworm's Xen 4.17 packages), or set PYXS_REALXS_CACHE to a directory "
        f"whose {name}/ holds them unpacked"
    )


def _apt_download(packages: tuple[str, ...], into: Path, name: str) -> None:
    """``apt-get download`` into ``into``; ``apt-get update`` once if that fails."""
    command = ["apt-get", "download", *packages]
    try:
        first = subprocess.run(command, cwd=into, capture_output=True, text=True)
        if first.returncode == 0:
            return
        subprocess.run(["apt-get", "update"], cwd=into, capture_output=True)
        again = subprocess.run(command, cwd=into, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise _how_to_get(f"{exc.filename} is not installed", name) from None
    if again.returncode != 0:
        lines = (again.stderr or again.stdout).strip().splitlines() or ["no output"]
        raise _how_to_get(f"apt-get download failed ({lines[-1].strip()})", name)


def _unpacked(name: str, packages: tuple[str, ...], marker: str) -> Path:
    """``cache/name``: ``packages`` unpacked, fetched on first use (``marker`` proves it)."""
    cache = cache_dir()
    root = cache / name
    if (root / marker).exists():
        return root
    with _locked(cache):
        if (root / marker).exists():  # another process fetched it meanwhile
            return root
        if root.exists():
            raise _how_to_get(f"{root} exists but has no {marker}", name)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
        try:
            debs = work / "debs"
            debs.mkdir()
            _apt_download(packages, debs, name)
            tree = work / "root"
            for deb in sorted(debs.glob("*.deb")):
                try:
                    subprocess.run(
                        ["dpkg", "-x", str(deb), str(tree)], check=True, capture_output=True
                    )
                except FileNotFoundError:
                    raise _how_to_get("dpkg is not installed", name) from None
                except subprocess.CalledProcessError as exc:
                    error = exc.stderr.decode(errors="replace").strip()
                    raise _how_to_get(f"dpkg -x {deb.name} failed ({error})", name) from None
            if not (tree / marker).exists():
                raise _how_to_get(f"the packages hold no {marker}", name)
            tree.rename(root)  # complete, or not there at all
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return root


_failure: Unavailable | None = None  # fetching failed once: don't ask apt again


def realxs_root() -> Path:
    """The unpacked Xen 4.17 packages (fetched on first use)."""
    global _failure
    if _failure is not None:
        raise _failure
    try:
        return _unpacked("root", PACKAGES, XENSTORED)
    except Unavailable as exc:
        _failure = exc
        raise


def xs_wire_header() -> Path:
    """Debian's ``xen/io/xs_wire.h`` (libxen-dev 4.17), fetched on first use."""
    return _unpacked("libxen-dev", ("libxen-dev",), XS_WIRE) / XS_WIRE


def binding_python() -> str:
    """A CPython 3.11 to run Xen's ``xen.lowlevel.xs`` (Debian builds it for
    3.11 alone), whatever Python runs the suite (PyPy, 3.9, 3.13...)."""
    if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11):
        return sys.executable
    from interpreters import find_python

    python = find_python("cpython", 3, 11)
    if python is None:
        raise Unavailable(
            "no CPython 3.11 for Xen's xen.lowlevel.xs (a CPython 3.11 extension):"
            " put python3.11 on PATH or install it with pyenv"
        )
    return python


def binding_env(root: Path, socket_path: str) -> dict[str, str]:
    """The environment in which ``binding_python()`` imports Xen's
    ``xen.lowlevel.xs`` and talks to the server at ``socket_path``."""
    env = dict(os.environ)
    env["XENSTORED_PATH"] = socket_path
    env["LD_LIBRARY_PATH"] = str(lib_dir(root))
    env["PYTHONPATH"] = str(root / BINDING_DIR)
    return env


def run_binding_script(script: Path, socket_path: str, *args: str) -> object:
    """Run ``script ARGS`` with Xen's ``xen.lowlevel.xs`` against the server
    at ``socket_path``; what it prints is JSON, returned decoded."""
    result = subprocess.run(
        [binding_python(), str(script), *args],
        env=binding_env(realxs_root(), socket_path),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    if result.returncode != 0:
        raise AssertionError(f"{script.name} failed under xen.lowlevel.xs:\n{result.stderr}")
    return json.loads(result.stdout)


def lib_dir(root: Path) -> Path:
    """The multiarch library directory holding libxenstore.so.4."""
    for candidate in sorted((root / "usr" / "lib").glob("*-linux-gnu")):
        if (candidate / "libxenstore.so.4").exists():
            return candidate
    raise _how_to_get(f"no libxenstore.so.4 under {root}/usr/lib")


def shim_library() -> Path:
    """tests/realxs_shim.c compiled into the cache (again when the source changes)."""
    source = SHIM_SOURCE.read_bytes()
    cache = cache_dir()
    out = cache / f"realxs-shim-{hashlib.sha256(source).hexdigest()[:16]}.so"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    compiler = os.environ.get("CC", "cc")
    partial = Path(tempfile.mkstemp(prefix=".shim-", suffix=".so", dir=cache)[1])
    command = [compiler, "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-shared", "-fPIC"]
    try:
        proc = subprocess.run(
            [*command, "-o", str(partial), str(SHIM_SOURCE), "-ldl"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise _how_to_get(f"{compiler} failed on {SHIM_SOURCE.name}: {proc.stderr.strip()}")
        partial.rename(out)  # atomic: a concurrent build renames the same bytes
    except FileNotFoundError:
        raise _how_to_get(f"no C compiler ({compiler}) to build {SHIM_SOURCE.name}") from None
    finally:
        partial.unlink(missing_ok=True)
    return out


# -- the daemon ----------------------------------------------------------------------


@dataclass
class RealXenstored:
    """A running real xenstored; ``root`` is the unpacked packages."""

    rundir: Path
    socket_path: str
    proc: subprocess.Popen[bytes]
    root: Path
    log: Path
    owns_rundir: bool = True  # made by start_*: stop() removes it

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def lib_dir(self) -> Path:
        return lib_dir(self.root)

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

    def introduce_guest(self, domid: int) -> str:
        """INTRODUCE ``domid``; a socket path whose connections act as that guest."""
        from realxs_guest import guests_for

        return guests_for(self.rundir, self.socket_path).introduce(domid)

    def set_domain_state(self, domid: int, state: str) -> None:
        """running/shutdown/crashed/dying/gone via RUNDIR/domains + VIRQ_DOM_EXC."""
        from realxs_guest import guests_for

        guests_for(self.rundir, self.socket_path).set_domain_state(domid, state)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM by pid (SIGKILL if it hangs), reap it; remove the run directory
        if the harness made it."""
        from realxs_guest import close_guests

        close_guests(self.rundir)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.owns_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)


def _new_rundir(rundir: Path | str | None) -> Path:
    if rundir is None:
        return Path(tempfile.mkdtemp(prefix="rxs", dir=RUNDIR_PARENT))
    path = Path(rundir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clear_rundir(rundir: Path) -> None:
    """Remove what a previous daemon in ``rundir`` left (a restart on the same socket)."""
    for pattern in ("socket", "ring-*", "port-*", "evtchn", "domains"):
        for leftover in rundir.glob(pattern):
            leftover.unlink()


def _wait_ready(ready: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Block until the shim writes to the pipe; EOF means the daemon died."""
    try:
        readable, _, _ = select.select([ready], [], [], START_TIMEOUT)
        data = os.read(ready, 64) if readable else None
    finally:
        os.close(ready)
    if data and data.startswith(b"ready"):
        return
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    state = "did not come up" if data is None else f"exited with {proc.returncode}"
    raise RuntimeError(f"{what} {state}; its log:\n{tail}")


def _launch(
    argv: list[str], rundir: Path, env: dict[str, str], what: str, cpu: int | None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with the shim, logging to RUNDIR/<what>.log; return once ready."""
    read_end, write_end = os.pipe()
    env = {**env, "XENSTORED_RUNDIR": str(rundir), "REALXS_READY_FD": str(write_end)}
    log = rundir / f"{what}.log"
    preexec = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                pass_fds=(write_end,),
                start_new_session=True,  # a ^C to the tests is not for the daemon
                preexec_fn=preexec,
            )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    _wait_ready(read_end, proc, log, what)
    return proc


def start_real_xenstored(
    *options: str,
    rundir: Path | str | None = None,
    verbose: bool = True,
    trace: bool = False,
    domains: str | None = None,
    cpu: int | None = None,
) -> RealXenstored:
    """Start cxenstored (``xenstored -N``) with its socket at ``RUNDIR/socket``.

    ``options`` go to xenstored (quotas, ``-E``, ``-W``; never ``-D``, without
    which it crashes on the first request). ``verbose`` adds ``-V`` (a log line
    per message), ``trace`` ``-T RUNDIR/trace``; ``domains`` ("1-10,42", "all")
    are domids the shim reports as existing; ``cpu`` pins the daemon. A new
    run directory under /tmp (removed by ``stop()``) unless ``rundir`` is given
    (a restart on the same socket path; the caller removes it).
    """
    root = realxs_root()
    shim = shim_library()
    path = _new_rundir(rundir)
    socket_path = str(path / "socket")
    if len(socket_path.encode()) >= 108:
        raise ValueError(f"socket path too long for AF_UNIX: {socket_path}")
    _clear_rundir(path)
    argv = [str(root / XENSTORED), "-N"]
    argv += ["-V"] if verbose else []
    argv += ["-T", str(path / "trace")] if trace else []
    argv += options
    env = dict(os.environ)
    env.update(
        XENSTORED_PATH=socket_path,  # the daemon binds xs_daemon_socket(), i.e. this
        LD_LIBRARY_PATH=str(lib_dir(root)),
        LD_PRELOAD=str(shim),
    )
    if domains is not None:
        env["REALXS_DOMAINS"] = domains
    try:
        proc = _launch(argv, path, env, "xenstored", cpu)
    except BaseException:
        if rundir is None:  # its log is in the error
            shutil.rmtree(path, ignore_errors=True)
        raise
    return RealXenstored(path, socket_path, proc, root, path / "xenstored.log", rundir is None)


def stop_real_xenstored(daemon: RealXenstored) -> None:
    daemon.stop()


OXENSTORED_CONF = """\
merge-activate = true
perms-activate = true
perms-watch-activate = true
quota-activate = true
persistent = false
xenstored-kva = {rundir}/ring-0
xenstored-port = {rundir}/xsd_port
xenstored-log-file = {rundir}/oxenstored.log
xenstored-log-level = debug
access-log-file = {rundir}/access.log
"""

# oxenstored's socket path is compiled in (/run/xenstored/socket): in a private
# mount namespace, RUNDIR/sock is bind-mounted there.
_OXENSTORED_INNER = (
    'mkdir -p /run/xenstored && mount --bind "$1" /run/xenstored && '
    'exec "$2" --no-fork --config-file "$3"'
)


def start_oxenstored(rundir: Path | str | None = None) -> RealXenstored:
    """Start the OCaml oxenstored from the same packages (a second opinion).

    It needs root (``unshare -m``) for the private mount namespace; its socket
    is ``RUNDIR/sock/socket``. Not used by the suite.
    """
    root = realxs_root()
    shim = shim_library()
    path = _new_rundir(rundir)
    _clear_rundir(path)
    sock_dir = path / "sock"
    sock_dir.mkdir(exist_ok=True)
    (path / "xsd_port").write_text("1")  # no newline: oxenstored's int_of_string
    with open(path / "ring-0", "wb") as ring:
        ring.truncate(4096)
    conf = path / "oxenstored.conf"
    conf.write_text(OXENSTORED_CONF.format(rundir=path))
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", _OXENSTORED_INNER]
    argv += ["oxenstored", str(sock_dir), str(root / OXENSTORED), str(conf)]
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib_dir(root)), LD_PRELOAD=str(shim))
    proc = _launch(argv, path, env, "oxenstored", None)
    socket_path = sock_dir / "socket"
    daemon = RealXenstored(
        path, str(socket_path), proc, root, path / "oxenstored.log", rundir is None
    )
    if not socket_path.is_socket():
        daemon.owns_rundir = False  # keep its log
        daemon.stop()
        raise RuntimeError(f"oxenstored is up but has no socket at {socket_path}")
    return daemon


def main(argv: list[str]) -> int:
    """``fetch``: fetch and build everything, print where; ``xs-wire``: the header."""
    if argv == ["fetch"]:
        try:
            root = realxs_root()
            print(f"root {root}")
            print(f"shim {shim_library()}")
            print(f"xs_wire.h {xs_wire_header()}")
        except Unavailable as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if argv == ["xs-wire"]:
        try:
            print(xs_wire_header())
        except Unavailable as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    print("usage: python tests/realxs.py fetch|xs-wire", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
