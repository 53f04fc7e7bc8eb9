"""``pyxs trace`` as a command: real xenstore-* tools and pyxs programs as CMD,
the standing proxy, -o, --json, filters, --summary, exit status, signals,
failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from trace_support import PYXS, TIMEOUT, env_for, start_pyxs

from pyxs import Client
from pyxs.server import Server
from realxs import RealXenstored

#: a pyxs program traced as CMD: writes, reads, a watch and its events, a
#: transaction, an error
PROGRAM = r"""
import sys
from pyxs import Client
from pyxs.exceptions import NoEntryError

base = sys.argv[1].encode()
with Client() as c:
    c.write(base + b"/name", b"guest")
    print(c.read(base + b"/name").decode())
    try:
        c.read(base + b"/missing")
    except NoEntryError:
        print("missing")
    with c.monitor() as m:
        m.watch(base, b"tok")
        events = m.wait()
        next(events)  # the initial event
        c.write(base + b"/state", b"4")
        print(next(events).path.decode())
    c.transaction()
    c.write(base + b"/in-tx", b"1")
    assert c.commit()
"""


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server() as srv:
        yield srv


@pytest.fixture
def base() -> str:
    return "/trace/" + uuid.uuid4().hex[:10]


def trace(
    args: list[str], socket_path: str | None, env: dict[str, str] | None = None, cwd: Any = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYXS, "trace", *args],
        env=env if env is not None else env_for(socket_path),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def fields(line: str) -> list[str]:
    """A text line without its time."""
    return line.split(" ")[1:]


@pytest.mark.realxs
def test_tracing_the_real_xenstore_write(real_xenstored: RealXenstored, base: str) -> None:
    """libxenstore honours XENSTORED_PATH: the C tool goes through the proxy,
    its traffic is decoded on stderr, its output and status pass through."""
    env = real_xenstored.tool_env()
    write = real_xenstored.tool("xenstore-write")
    proc = trace(["--", write, f"{base}/a", "hello", f"{base}/b", "x\\ty"], None, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = [fields(line) for line in proc.stderr.splitlines()]
    # several keys: one transaction, as xenstore-write does it
    ops = [(f[1], f[2]) for f in lines if f[1] in "<>"]
    assert ops == [
        (">", "TRANSACTION_START"),
        ("<", "TRANSACTION_START"),
        (">", "WRITE"),
        ("<", "WRITE"),
        (">", "WRITE"),
        ("<", "WRITE"),
        (">", "TRANSACTION_END"),
        ("<", "TRANSACTION_END"),
    ]
    tx_id = lines[2][-2]  # the TRANSACTION_START reply carries the id
    assert lines[3][:6] == ["#1", ">", "WRITE", "req=0", f"tx={tx_id}", f"{base}/a"]
    assert lines[3][6:] == ['"hello"']
    assert lines[5][5:] == [f"{base}/b", '"x\\ty"']
    assert lines[7][2:] == ["TRANSACTION_END", "req=0", f"tx={tx_id}", "T"]
    assert lines[8][2:5] == ["TRANSACTION_END", "req=0", f"tx={tx_id}"]
    assert lines[8][5] == "OK"
    read = subprocess.run(
        [real_xenstored.tool("xenstore-read"), f"{base}/b"],
        env=env,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert read.stdout == b"x\\ty\n"  # the value went through as xenstore-write meant

    # a failing tool: its status is trace's, its error is in the trace
    proc = trace(["--", real_xenstored.tool("xenstore-read"), f"{base}/none"], None, env)
    assert proc.returncode == 1
    assert any(line.endswith(")") and "ERROR ENOENT" in line for line in proc.stderr.splitlines())
    assert "couldn't read path" in proc.stderr


def test_tracing_a_pyxs_program_as_json(server: Server, base: str, tmp_path: Path) -> None:
    out = tmp_path / "trace.jsonl"
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    proc = trace(
        ["--json", "-o", str(out), "--", sys.executable, str(prog), base], server.socket_path
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"guest\nmissing\n{base}/state\n"
    objs = [json.loads(line) for line in out.read_text().splitlines()]
    keys = {"t", "conn", "dir"}
    packet_keys = keys | {"op", "req_id", "tx_id", "args"}
    for obj in objs:
        assert isinstance(obj["t"], float) and obj["conn"] == 1
        if obj["dir"] == "note":
            assert set(obj) == keys | {"note"}
            continue
        assert packet_keys <= set(obj) <= packet_keys | {"path", "value", "error", "rtt_us"}
        assert (obj["dir"] == "reply") == ("rtt_us" in obj)
    seen = [
        (o["dir"], o["op"], o.get("path"), o.get("value"), o.get("error"))
        for o in objs
        if o["dir"] != "note"
    ]
    assert ("request", "WRITE", f"{base}/name", "guest", None) in seen
    assert ("reply", "READ", None, "guest", None) in seen
    assert ("reply", "READ", None, None, "ENOENT") in seen
    assert ("event", "WATCH_EVENT", f"{base}/state", None, None) in seen
    assert [o["op"] for o in objs if o["dir"] == "reply"][-2:] == ["WRITE", "TRANSACTION_END"]
    assert objs[0] == {"t": objs[0]["t"], "conn": 1, "dir": "note", "note": "connected"}
    assert objs[-1]["note"] == "client closed"
    with Client(server.socket_path) as c:
        assert c.read(f"{base}/in-tx".encode()) == b"1"


def test_filters_and_summary(server: Server, base: str, tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    command = ["--", sys.executable, str(prog), base]
    proc = trace(["--op", "read", "--summary", *command], server.socket_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    at = lines.index("summary:")
    assert [f[2] for f in map(fields, lines[:at]) if f[1] in "<>"] == ["READ"] * 4
    assert lines[at + 1 : at + 3] == ["  requests: 2 (READ 2)", "  errors: 1 (ENOENT 1)"]
    assert lines[at + 3].startswith("  slow: ")  # two of them, slowest first
    assert lines[-2:] == [
        "  watches: 0 registered, 0 fired",
        "  transactions: 0 started, 0 committed, 0 conflicted, 0 aborted",
    ]

    proc = trace(["--errors", *command], server.socket_path)
    assert [fields(line)[1:] for line in proc.stderr.splitlines() if " - " not in line] == [
        [">", "READ", "req=3", "tx=0", f"{base}/missing"],
        ["<", "READ", "req=3", "tx=0", "ERROR", "ENOENT", fields(proc.stderr.splitlines()[2])[-1]],
    ]

    proc = trace(["--path", f"{base}/state", "--summary", *command], server.socket_path)
    lines = [fields(line) for line in proc.stderr.splitlines() if line.startswith("0")]
    # the events a request causes come before its reply (on the embedded server)
    assert [(f[1], f[2]) for f in lines if f[1] != "-"] == [
        (">", "WRITE"),
        ("*", "WATCH_EVENT"),
        ("<", "WRITE"),
    ]
    assert "  watches: 0 registered, 1 fired" in proc.stderr
    assert "  transactions: 0 started, 0 committed, 0 conflicted, 0 aborted" in proc.stderr


def _default_sigint() -> None:
    # (a suite run as a background job inherits SIGINT ignored; this is about the default)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_standing_proxy_until_ctrl_c(server: Server, base: str, tmp_path: Path) -> None:
    path = tmp_path / "proxy.sock"
    out = tmp_path / "trace.txt"
    command = ["trace", "--listen", str(path), "--socket", server.socket_path, "-o", str(out)]
    with start_pyxs(command, env_for(None), preexec_fn=_default_sigint) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"SOCKET={path}\n"
        for value in (b"one", b"two"):  # two clients, one after the other
            with Client(str(path)) as c:
                c.write(f"{base}/v".encode(), value)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, stdout, stderr) == (0, "", "")
    assert not path.exists()  # the socket it made is removed
    lines = [fields(line) for line in out.read_text().splitlines()]
    assert [f[:3] for f in lines if f[1] == ">"] == [["#1", ">", "WRITE"], ["#2", ">", "WRITE"]]
    assert lines[-1] == ["#2", "-", "client", "closed"]


def test_listen_leaves_a_file_in_the_way_alone(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "in-the-way"
    path.write_text("not a socket")
    proc = trace(["--listen", str(path), "--socket", server.socket_path], None)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"pyxs trace: cannot listen on {path}: File exists (left alone)\n"
    assert path.read_text() == "not a socket"


def test_exit_status_is_the_commands(server: Server) -> None:
    assert trace(["--", "sh", "-c", "exit 3"], server.socket_path).returncode == 3
    killed = trace(["--", "sh", "-c", "kill -TERM $$"], server.socket_path)
    assert killed.returncode == 128 + signal.SIGTERM
    missing = trace(["--", "no-such-command-here"], server.socket_path)
    assert missing.returncode == 127
    assert missing.stderr.endswith("pyxs trace: no-such-command-here: No such file or directory\n")


CHILD = r"""
import signal, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))
print("ready", flush=True)
signal.pause()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signals_reach_the_command(server: Server, sig: int) -> None:
    """As with ``pyxs run``: SIGTERM and SIGHUP sent to ``pyxs trace`` go to CMD."""
    child = CHILD.replace("SIGTERM", signal.Signals(sig).name)
    with start_pyxs(
        ["trace", "--", sys.executable, "-c", child], env_for(server.socket_path)
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(sig)
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 7


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--", "true"], 1, "pyxs trace: cannot connect to XenStore at {missing}: "),
        (["--socket", "{missing}", "--", "true"], 1, "pyxs trace: cannot connect to XenStore at "),
        ([], 2, "pyxs trace: give either a command (-- CMD...) or --listen PATH, not neither"),
        (["--listen", "x", "--", "true"], 2, "pyxs trace: give either a command"),
        (["--op", "READ,BOGUS", "--", "true"], 2, "argument --op: unknown op 'BOGUS' (known: "),
        (["-o", "{missing}/out", "--", "true"], 1, "pyxs trace: cannot write {missing}/out: "),
        (
            ["--socket", "/dev/null", "--", "true"],
            1,
            "pyxs trace: /dev/null is a XenBus device; the proxy forwards to a XenStore socket "
            "only (give one with --socket)",
        ),
    ],
)
def test_failures_say_why_in_one_line(
    server: Server, tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    missing = str(tmp_path / "missing")
    args = [arg.replace("{missing}", missing) for arg in args]
    upstream = missing if args[:1] == ["--"] else server.socket_path
    proc = trace(args, upstream)
    assert (proc.returncode, proc.stdout) == (status, "")
    assert message.replace("{missing}", missing) in proc.stderr
    if status == 1:
        assert proc.stderr.count("\n") == 1
    assert os.listdir(tmp_path) == []  # nothing made, nothing left


def test_help() -> None:
    proc = subprocess.run([*PYXS, "trace", "--help"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith("usage: pyxs trace ")
    for option in ("--socket UPSTREAM", "--listen PATH", "-o FILE", "--json", "--path PREFIX"):
        assert option in proc.stdout
    assert "--op NAME[,NAME]" in proc.stdout and "--errors" in proc.stdout
    assert "--summary" in proc.stdout and "-- CMD..." in proc.stdout
