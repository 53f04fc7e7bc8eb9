"""The embedded server traces from the inside: ``Server(trace=...)`` and
``pyxs serve --trace[=FILE]``, in the format of ``pyxs trace``, each
connection with its domain."""

from __future__ import annotations

import asyncio
import io
import json
import signal
from pathlib import Path

from trace_support import TIMEOUT, env_for, start_pyxs

from pyxs import AsyncClient, Client
from pyxs.exceptions import PermissionDeniedError
from pyxs.server import Server
from pyxs.trace import Tracer


def untimed(text: str) -> list[str]:
    """The lines without their times and round-trip times."""
    return [line.split(" ", 1)[1].rsplit(" (", 1)[0] for line in text.splitlines()]


def test_every_request_reply_and_event_with_its_domain() -> None:
    out = io.StringIO()
    with Server(trace=Tracer(out)) as server, Client(server.socket_path) as dom0:
        dom0.write(b"/shared", b"x")
        dom0.introduce_domain(5, 5, 1)
        dom0.set_perms(b"/shared", [b"n0", b"r5"])
        with dom0.monitor() as m:
            m.watch(b"/shared", b"tok")
            next(m.wait())
            with Client(server.guest_socket_path(5)) as guest:
                assert guest.read(b"/shared") == b"x"
                try:
                    guest.write(b"/shared", b"y")
                except PermissionDeniedError:
                    pass
    assert untimed(out.getvalue()) == [
        '#1/dom0 > WRITE req=1 tx=0 /shared "x"',
        "#1/dom0 < WRITE req=1 tx=0 OK",
        "#1/dom0 > INTRODUCE req=2 tx=0 5 5 1",
        "#1/dom0 < INTRODUCE req=2 tx=0 OK",
        "#1/dom0 > SET_PERMS req=3 tx=0 /shared n0 r5",
        "#1/dom0 < SET_PERMS req=3 tx=0 OK",
        "#1/dom0 > WATCH req=4 tx=0 /shared tok",
        "#1/dom0 < WATCH req=4 tx=0 OK",
        "#1/dom0 * WATCH_EVENT req=0 tx=0 /shared tok",
        "#2/dom5 > READ req=1 tx=0 /shared",
        '#2/dom5 < READ req=1 tx=0 "x"',
        '#2/dom5 > WRITE req=2 tx=0 /shared "y"',
        "#2/dom5 < WRITE req=2 tx=0 ERROR EACCES",
        "#1/dom0 > UNWATCH req=5 tx=0 /shared tok",
        "#1/dom0 < UNWATCH req=5 tx=0 OK",
    ]


def test_a_file_and_the_summary_at_stop(tmp_path: Path) -> None:
    """A file name: the trace goes there, line by line, and the file is
    closed when the server stops (the suite turns an unclosed file's
    ResourceWarning into an error); a tracer with a summary writes it then."""
    path = tmp_path / "trace.txt"
    with Server(trace=str(path)) as server, Client(server.socket_path) as c:
        c.write(b"/a", b"1")
        assert untimed(path.read_text())[-1] == "#1/dom0 < WRITE req=1 tx=0 OK"
    out = io.StringIO()
    tracer = Tracer(out, json=True, summary=True)
    with Server(trace=tracer) as server, Client(server.socket_path) as c:
        c.transaction()
        c.write(b"/b", b"2")
        c.commit()
    objs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {obj["dom"] for obj in objs[:-1]} == {0}
    assert objs[-1]["summary"]["transactions"]["committed"] == 1


def test_the_asyncio_server_traces_too() -> None:
    out = io.StringIO()

    async def main() -> None:
        server = Server(trace=Tracer(out))
        async with server, AsyncClient(unix_socket_path=server.socket_path) as c:
            await c.write(b"/aio", b"1")

    asyncio.run(main())
    assert untimed(out.getvalue()) == [
        '#1/dom0 > WRITE req=1 tx=0 /aio "1"',
        "#1/dom0 < WRITE req=1 tx=0 OK",
    ]


def test_pyxs_serve_trace(tmp_path: Path) -> None:
    out = tmp_path / "serve.trace"
    command = ["serve", "--socket", str(tmp_path / "xs.sock"), f"--trace={out}"]
    with start_pyxs(command, env_for(None)) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"SOCKET={tmp_path / 'xs.sock'}\n"
        with Client(str(tmp_path / "xs.sock")) as c:
            c.write(b"/served", b"yes")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, stderr) == (0, "")
    assert untimed(out.read_text()) == [
        '#1/dom0 > WRITE req=1 tx=0 /served "yes"',
        "#1/dom0 < WRITE req=1 tx=0 OK",
    ]
