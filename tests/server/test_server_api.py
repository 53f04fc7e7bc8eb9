"""The Server API, the out-of-process servers (CLI), and the pytest plugin."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from rawxs import RawConn

from pyxs.protocol import Op
from pyxs.server import Server

OK = b"OK\0"
PYTHON = sys.executable


def test_threaded_server_cleans_up() -> None:
    with Server() as srv:
        run_dir = srv.run_dir
        assert os.path.exists(srv.socket_path)
        with RawConn(srv.socket_path) as c:
            c.ok(Op.INTRODUCE, b"5\x000\x007\0")
            assert os.path.exists(srv.guest_socket_path(5))
    assert not os.path.exists(run_dir)


def test_explicit_socket_path(tmp_path: Path) -> None:
    path = tmp_path / "xs.sock"
    with Server(path) as srv:
        assert srv.socket_path == str(path)
        assert srv.run_dir == str(tmp_path)
        assert srv.guest_socket_path(3) == str(tmp_path / "domain-3.sock")
        with RawConn(str(path)) as c:
            assert c.ok(Op.READ, b"/\0") == b""
    assert not path.exists()
    assert tmp_path.exists()


def test_run_dir(tmp_path: Path) -> None:
    with Server(run_dir=tmp_path) as srv:
        assert srv.socket_path == str(tmp_path / "socket")
        assert (tmp_path / "evtchn").exists()


def test_async_server() -> None:
    async def main() -> tuple[Any, ...]:
        async with Server() as srv:
            loop = asyncio.get_running_loop()

            def client() -> tuple[Any, ...]:
                with RawConn(srv.socket_path) as c:
                    c.ok(Op.WATCH, b"@releaseDomain\0r\0")
                    c.take_events()
                    c.ok(Op.INTRODUCE, b"5\x000\x007\0")
                    with RawConn(srv.guest_socket_path(5)) as g:
                        denied = g.error(Op.READ, b"/\0")
                        srv.set_domain_state(5, "dying")  # from another thread: synchronous
                        closed = g.is_closed()
                    return denied, closed, [e.payload for e in c.take_events()]

            result = await loop.run_in_executor(None, client)
            srv.set_domain_state(6, "gone")  # on the loop itself
            return result

    assert asyncio.run(main()) == ("EACCES", True, [b"@releaseDomain\0r\0"])


def test_server_cannot_start_twice(tmp_path: Path) -> None:
    with Server(tmp_path / "s") as srv, pytest.raises(RuntimeError):
        srv.__enter__()


def test_call_runs_in_server_loop(srv: Server) -> None:
    assert srv.call(lambda core: core.store.generation) == 3


def _virq(run_dir: str) -> None:
    fd = os.open(os.path.join(run_dir, "evtchn"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, struct.pack("<I", 1))
    finally:
        os.close(fd)


def test_domains_file_and_virq_fifo(srv: Server, dom0: RawConn) -> None:
    dom0.ok(Op.WATCH, b"@releaseDomain\0r\0")
    dom0.ok(Op.INTRODUCE, b"7\x000\x007\0")
    dom0.take_events()
    Path(srv.run_dir, "domains").write_text("7 shutdown\n")
    _virq(srv.run_dir)
    assert [e.payload for e in dom0.take_events()] == [b"@releaseDomain\0r\0"]
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"7\0") == b"T\0"
    Path(srv.run_dir, "domains").write_text("7 dying\n")
    _virq(srv.run_dir)
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"7\0") == b"F\0"  # handled before this request
    assert [e.payload for e in dom0.take_events()] == [b"@releaseDomain\0r\0"]


def _serve(*args: str, cwd: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [PYTHON, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )
    info: dict[str, str] = {}
    assert proc.stdout is not None
    while len(info) < 3:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        key, _, value = line.strip().partition("=")
        info[key] = value
    return proc, info


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_pyxs_serve(tmp_path: Path, sig: signal.Signals) -> None:
    sock = tmp_path / "s.sock"
    proc, info = _serve(
        "pyxs.cli", "serve", "--socket", str(sock), "-E", "5", "-W", "7", cwd=tmp_path
    )
    try:
        assert info["SOCKET"] == str(sock)
        assert info["RUNDIR"] == str(tmp_path)
        assert int(info["PID"]) == proc.pid
        with RawConn(str(sock)) as c:
            table = c.ok(Op.CONTROL, b"quota\0")
            assert b"nodes            :        5 " in table
            assert b"watches          :        7 " in table
            c.ok(Op.INTRODUCE, b"4\x000\x007\0")
            with RawConn(str(tmp_path / "domain-4.sock")) as g:
                assert g.error(Op.READ, b"/\0") == "EACCES"
    finally:
        proc.send_signal(sig)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert not sock.exists()
    assert not (tmp_path / "domain-4.sock").exists()


def test_python_m_pyxs_server(tmp_path: Path) -> None:
    sock = tmp_path / "m.sock"
    proc, info = _serve(
        "pyxs.server",
        "--socket",
        str(sock),
        "-Q",
        "transaction-nodes=9",
        "-M",
        "5000",
        "-A",
        "2",
        cwd=tmp_path,
    )
    try:
        with RawConn(info["SOCKET"]) as c:
            table = c.ok(Op.CONTROL, b"quota\0")
            assert b"transaction-nodes:        9 " in table
            assert b"path-max         :     2048 " in table  # capped like xenstored's -M
            assert b"permissions      :        2 " in table
            # the domains file + evtchn FIFO work out of process too
            c.ok(Op.INTRODUCE, b"4\x000\x007\0")
            (tmp_path / "domains").write_text("4 gone\n")
            _virq(str(tmp_path))
            assert c.ok(Op.IS_DOMAIN_INTRODUCED, b"4\0") == b"F\0"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_bad_quota_option(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "pyxs.server", "--socket", str(tmp_path / "x"), "-Q", "bogus=1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2  # a usage error, as argparse reports them
    assert "python -m pyxs.server: error: argument -Q/--quota: unknown quota 'bogus'" in (
        result.stderr
    )


def test_pyxs_run(tmp_path: Path) -> None:
    here = str(Path(__file__).parent)
    script = (
        f"import os, sys; sys.path.insert(0, {here!r}); from rawxs import RawConn;"
        "from pyxs.protocol import Op; c = RawConn(os.environ['XENSTORED_PATH']);"
        "c.ok(Op.WRITE, b'/x\\0y'); assert c.ok(Op.READ, b'/x\\0') == b'y'; sys.exit(7)"
    )
    result = subprocess.run(
        [PYTHON, "-m", "pyxs.cli", "run", "--", PYTHON, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 7, result.stderr


def test_pyxs_run_signal_status_and_errors(tmp_path: Path) -> None:
    killed = subprocess.run(
        [PYTHON, "-m", "pyxs.cli", "run", "--", "sh", "-c", "kill -9 $$"], timeout=60
    )
    assert killed.returncode == 128 + 9
    missing = subprocess.run(
        [PYTHON, "-m", "pyxs.cli", "run", "--", str(tmp_path / "no-such-command")],
        capture_output=True,
        timeout=60,
    )
    assert missing.returncode == 127
    empty = subprocess.run([PYTHON, "-m", "pyxs.cli", "run"], capture_output=True, timeout=60)
    assert empty.returncode == 2


def test_cli_without_subcommand() -> None:
    from pyxs.cli import main

    assert main([]) == 2


def test_plugin_fixtures(xenstore_server: Server, xenstore_client: Any) -> None:
    xenstore_client.write(b"/plugin", b"works")
    assert xenstore_client.read(b"/plugin") == b"works"
    with RawConn(xenstore_server.socket_path) as c:
        assert c.ok(Op.READ, b"/plugin\0") == b"works"


def test_plugin_import_is_cheap() -> None:
    code = (
        "import sys, pyxs.testing; print(any(m in sys.modules for m in ('pyxs.server', 'asyncio')))"
    )
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "False", result.stderr


def test_serve_survives_many_clients(srv: Server) -> None:
    conns = [RawConn(srv.socket_path) for _ in range(50)]
    try:
        for i, c in enumerate(conns):
            c.send(Op.WRITE, b"/many/%d\0" % i)
        for c in conns:
            assert c.read_packet().payload == OK
    finally:
        for c in conns:
            c.close()
    with RawConn(srv.socket_path) as c:
        assert len(c.ok(Op.DIRECTORY, b"/many\0").split(b"\0")) == 51


def test_pyxs_run_forwards_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [PYTHON, "-m", "pyxs.cli", "run", "--", "sh", "-c", "echo ready; exec sleep 30"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.terminate()
    proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM


# The child traps the signals, tells its run dir, signals
# "pyxs run" (its parent) at once, then blocks reading stdin, which the test
# holds open: only a forwarded signal ends it early.
SIGNAL_PARENT = (
    'trap "echo forwarded; exit 3" TERM HUP; echo $XENSTORED_RUNDIR; kill -{sig} $PPID; read x'
)


@pytest.mark.parametrize("sig", ["TERM", "HUP"])
def test_pyxs_run_forwards_a_signal_sent_the_moment_cmd_starts(sig: str) -> None:
    """The signal reaches pyxs run right after it started CMD: it is
    forwarded, pyxs run exits with CMD's status, and the run dir is gone.
    (With the handlers installed after Popen, about half of these runs
    killed pyxs run and orphaned CMD.)"""
    for _ in range(8):
        proc = subprocess.Popen(
            [PYTHON, "-m", "pyxs.cli", "run", "--", "sh", "-c", SIGNAL_PARENT.format(sig=sig)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            status = proc.wait(timeout=60)
        finally:
            proc.stdin.close()  # an orphaned CMD reads EOF and exits
        run_dir = proc.stdout.readline().strip()
        rest = proc.stdout.read()
        proc.stdout.close()
        assert (status, rest) == (3, "forwarded\n")
        assert not os.path.exists(run_dir)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_pyxs_run_signalled_before_cmd_starts(tmp_path: Path, sig: signal.Signals) -> None:
    """A signal caught while the server is being set up: CMD is never
    started, the run ends with 128+signal and removes its run dir."""
    marker = tmp_path / "cmd-ran"
    script = (
        "import os, signal, sys; import pyxs.server.options as o; from pyxs import cli;"
        "made = o.server_from_args\n"
        "def early(args):\n"
        "    server = made(args); print(server.run_dir, flush=True)\n"
        f"    os.kill(os.getpid(), {int(sig)}); return server\n"
        "o.server_from_args = early\n"
        f"sys.exit(cli.main(['run', '--', 'touch', {str(marker)!r}]))"
    )
    result = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + sig, result.stderr
    assert not marker.exists()
    assert not os.path.exists(result.stdout.strip())


def test_pyxs_serve_stops_on_a_sigterm_sent_upon_the_pid_line(tmp_path: Path) -> None:
    """SIGTERM the moment the PID= line is read: every server exits (the
    serving loop used to overwrite a stop() that came before it started)."""
    for i in range(15):
        sock = tmp_path / f"s{i}.sock"
        proc = subprocess.Popen(
            [PYTHON, "-m", "pyxs.cli", "serve", "--socket", str(sock)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("PID="):
                proc.terminate()
                break
        try:
            assert proc.wait(timeout=60) == 0
        finally:
            proc.kill()
            proc.stdout.close()
        assert not sock.exists()


def test_stop_from_ready_ends_serve_forever(tmp_path: Path) -> None:
    """A stop() right after the sockets exist, before the loop runs, wins."""
    srv = Server(tmp_path / "s")
    done = threading.Event()

    def serve() -> None:
        srv.serve_forever(ready=srv.stop)
        done.set()

    threading.Thread(target=serve, daemon=True).start()
    assert done.wait(timeout=60)
    assert not (tmp_path / "s").exists()


def test_with_server_exits_at_once(tmp_path: Path) -> None:
    """Leaving ``with Server()`` before its thread has started serving."""
    done = threading.Event()

    def enter_and_leave() -> None:
        for _ in range(100):
            with Server(tmp_path / "s"):
                pass
        done.set()

    threading.Thread(target=enter_and_leave, daemon=True).start()
    assert done.wait(timeout=60)


def test_a_bug_drops_only_that_connection(
    srv: Server, dom0: RawConn, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = RawConn(srv.socket_path)
    victim_seq = max(srv.call(lambda core: list(core.conns)))
    original = srv.core.receive

    def buggy(conn: Any, data: bytes) -> bool:
        if conn.seq == victim_seq:
            raise RuntimeError("simulated bug")
        return original(conn, data)

    monkeypatch.setattr(srv.core, "receive", buggy)
    victim.send(Op.READ, b"/\0")
    assert victim.is_closed()
    victim.close()
    assert dom0.ok(Op.READ, b"/\0") == b""
