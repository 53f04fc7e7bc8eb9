"""Real programs, run unchanged on Xen's binding and on pyxs's shim.

Three programs in the styles real users write for ``xen.lowlevel.xs``
(domain_watcher.py, device_script.py, guest_agent.py) run as processes,
once with Xen's own binding (Xen 4.17's, over libxenstore) and once with
``shim/`` on PYTHONPATH (``xen.lowlevel.xs`` from pyxs), against the embedded
server and the real xenstored. Their outputs must be the same, on the normal
path and where the world goes wrong: no daemon, the daemon killed while
``read_watch`` blocks, killed between two calls, and inside a guest.

The programs print ``READY``/``PAUSED`` when they are where the test acts
next; the test reads that line before acting (no sleeps).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pyxs
from realxs import (
    binding_env,
    binding_python,
    realxs_root,
    start_real_xenstored,
    stop_real_xenstored,
)

HERE = Path(__file__).parent
IMPLS = ["binding", "pyxs"]
HANG_GUARD = 60


def start(program: str, impl: str, socket_path: str, *args: str) -> subprocess.Popen:
    if impl == "binding":
        python = binding_python()
        env = binding_env(realxs_root(), socket_path)
    else:
        python = sys.executable
        env = dict(os.environ, XENSTORED_PATH=socket_path, PYTHONPATH=str(HERE / "shim"))
    return subprocess.Popen(
        [python, str(HERE / program), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, line: str) -> list[str]:
    """The lines the program prints up to ``line`` (which it must print)."""
    seen = []
    while True:
        got = proc.stdout.readline()
        assert got, f"exited before {line!r}: {seen} {proc.stderr.read()}"
        seen.append(got.rstrip("\n"))
        if seen[-1] == line:
            return seen


def finish(proc: subprocess.Popen, stdin: str = "") -> tuple[int, list[str]]:
    out, err = proc.communicate(stdin, timeout=HANG_GUARD)
    assert "Traceback" not in err, err
    return proc.returncode, out.splitlines()


def run(program: str, impl: str, socket_path: str, *args: str) -> tuple[int, list[str]]:
    return finish(start(program, impl, socket_path, *args))


def normalise(lines: list[str], **names: object) -> list[str]:
    out = []
    for line in lines:
        for name, value in names.items():
            line = line.replace(str(value), name)
        out.append(line)
    return out


# -- the normal path -----------------------------------------------------------


def test_device_script(xs_server, unique_domid) -> None:
    outputs = []
    with pyxs.Client(unix_socket_path=xs_server.socket_path) as dom0:
        for n, impl in enumerate(IMPLS):
            devid = unique_domid * 10 + n
            backend = b"/local/domain/0/backend/vif/%d" % devid
            dom0[backend + b"/state"] = b"2"
            dom0[backend + b"/mac"] = b"00:16:3e:00:00:01"
            added = run("device_script.py", impl, xs_server.socket_path, "add", str(devid))
            assert dom0[backend + b"/state"] == b"4"
            removed = run("device_script.py", impl, xs_server.socket_path, "remove", str(devid))
            assert not dom0.exists(backend)
            outputs.append([normalise(lines, DEV=devid) for lines in (added[1], removed[1])])
            assert added[0] == removed[0] == 0, (added, removed)
    binding, shim = outputs
    assert shim == binding
    assert binding[0][1] == "add DEV b'2' b'00:16:3e:00:00:01' ['state', 'mac', 'hotplug-status']"


def test_domain_watcher(fresh_xs_server) -> None:
    server = fresh_xs_server
    outputs = []
    with pyxs.Client(unix_socket_path=server.socket_path) as dom0:
        for n, impl in enumerate(IMPLS):
            first = 100 + 10 * n
            watcher = start("domain_watcher.py", impl, server.socket_path, str(first), "3")
            wait_for(watcher, "READY")
            lines = []
            for domid in (first, first + 1):
                home = b"/local/domain/%d" % domid
                dom0[home + b"/name"] = b"guest-%d" % domid
                dom0[home + b"/memory/target"] = b"524288"
                server.introduce_guest(domid)
                lines.append(watcher.stdout.readline().rstrip("\n"))
            dom0.delete(b"/local/domain/%d" % first)
            dom0.release_domain(first)
            code, rest = finish(watcher)
            assert code == 0, rest
            outputs.append(normalise(lines + rest, A=first, B=first + 1))
    binding, shim = outputs
    assert shim == binding
    assert binding == [
        "intro @introduceDomain A:guest-A:524288",
        "intro @introduceDomain A:guest-A:524288 B:guest-B:524288",
        "release @releaseDomain B:guest-B:524288",
        "fired 2 1",
    ]


def test_guest_agent(xs_server, unique_domid) -> None:
    outputs = []
    with pyxs.Client(unix_socket_path=xs_server.socket_path) as dom0:
        for n, impl in enumerate(IMPLS):
            domid = unique_domid + n * 7
            home = b"/local/domain/%d" % domid
            guest = xs_server.introduce_guest(domid)  # the owner must exist
            dom0.mkdir(home)
            dom0.set_perms(home, [b"n%d" % domid])
            dom0[home + b"/name"] = b"guest"
            dom0[home + b"/memory/target"] = b"524288"
            dom0.mkdir(home + b"/control")
            agent = start("guest_agent.py", impl, guest)
            lines = wait_for(agent, "READY")
            dom0[home + b"/control/shutdown"] = b"poweroff"
            code, rest = finish(agent)
            assert code == 0, lines + rest
            assert dom0[home + b"/data/agent-version"] == b"1.0"
            assert dom0[home + b"/control/shutdown"] == b""
            outputs.append(normalise(lines + rest, DOMID=domid))
    binding, shim = outputs
    assert shim == binding
    assert "refused 13 Permission denied" in binding
    assert binding[-1] == "done poweroff"


# -- where the world goes wrong ------------------------------------------------


@pytest.mark.parametrize(
    "program, args",
    [
        ("domain_watcher.py", ["1", "1"]),
        ("device_script.py", ["add", "1"]),
        ("guest_agent.py", []),
    ],
)
def test_no_daemon(tmp_path, program, args) -> None:
    missing = str(tmp_path / "no-socket")
    results = [run(program, impl, missing, *args) for impl in IMPLS]
    assert results[0] == results[1] == (3, ["ERROR 2 No such file or directory"])


@pytest.fixture
def binding_daemon():
    """A real xenstored of the binding's own, for it to lose."""
    daemon = start_real_xenstored()
    yield daemon
    stop_real_xenstored(daemon)


def kill(server) -> None:
    """The server dies: SIGKILL for a real daemon, shutdown for the embedded.

    Returns once nobody answers on its socket any more.
    """
    daemon = getattr(server, "daemon", server)
    if not hasattr(daemon, "pid"):
        server.close()  # synchronous
        server.close = lambda: None
        return
    os.kill(daemon.pid, signal.SIGKILL)
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(server.socket_path)
        except OSError:
            return  # the listener is gone with the process
        finally:
            probe.close()
        time.sleep(0.01)  # polling a condition
    raise TimeoutError("the daemon still answers")


def test_daemon_killed_while_read_watch_blocks(binding_daemon, fresh_xs_server) -> None:
    results = []
    for impl, server in (("binding", binding_daemon), ("pyxs", fresh_xs_server)):
        watcher = start("domain_watcher.py", impl, server.socket_path, "1", "5")
        wait_for(watcher, "READY")  # and then it blocks in read_watch
        kill(server)
        results.append(finish(watcher))
    assert results[0] == results[1] == (3, ["ERROR 22 Invalid argument"])


def test_daemon_killed_between_calls(binding_daemon, fresh_xs_server) -> None:
    results = []
    for impl, server in (("binding", binding_daemon), ("pyxs", fresh_xs_server)):
        script = start("device_script.py", impl, server.socket_path, "add", "1", "pause")
        lines = wait_for(script, "PAUSED")
        kill(server)
        code, rest = finish(script, "go on\n")
        results.append((code, lines + rest))
    assert results[0] == results[1]
    assert results[0] == (3, ["home /local/domain/0", "PAUSED", "ERROR 32 Broken pipe"])
