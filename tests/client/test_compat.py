"""``pyxs.xs``: the xen.lowlevel.xs interface.

The same script of calls (xs_scenario.py) runs with Xen's own binding (the
real ``xen.lowlevel.xs`` from the Xen 4.17 packages, over libxenstore) and
with ``pyxs.xs``, against the same server; the transcripts must match.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from xs_scenario import scenario

import pyxs
from pyxs import compat

HERE = Path(__file__).parent


def run_real_binding(root: Path, socket_path: str, base: str, domid: int) -> list:
    env = dict(os.environ)
    env["XENSTORED_PATH"] = socket_path
    env["LD_LIBRARY_PATH"] = str(root / "usr" / "lib" / "x86_64-linux-gnu")
    env["PYTHONPATH"] = str(root / "usr" / "lib" / "xen-4.17" / "lib" / "python")
    result = subprocess.run(
        [sys.executable, str(HERE / "xs_scenario.py"), base, str(domid)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_same_transcript_as_xen_lowlevel_xs(
    xs_server, real_xenstored, unique_path, monkeypatch
) -> None:
    base = unique_path.decode()
    expected = run_real_binding(real_xenstored.root, xs_server.socket_path, base + "-libxs", 0x7000)
    monkeypatch.setenv("XENSTORED_PATH", xs_server.socket_path)
    got = json.loads(json.dumps(scenario(compat, base + "-pyxs", 0x7001)))
    # Transaction ids are counted per connection: both runs see the same.
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        assert mine == theirs


def test_errors_are_pyxs_errors_and_runtime_errors(xs_server, monkeypatch) -> None:
    monkeypatch.setenv("XENSTORED_PATH", xs_server.socket_path)
    x = pyxs.xs()
    with pytest.raises(pyxs.NoEntryError) as info:
        x.get_permissions("", "/no/such/node")
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value, pyxs.Error)  # pyxs 0.4's name for the base
    assert info.value.args == (2, "No such file or directory")
    assert info.value.errno == 2
    with pytest.raises(RuntimeError) as info2:
        x.read("", "bad path")
    assert info2.value.args[0] == 22
    x.close()


def test_constructor_and_repr(xs_server) -> None:
    x = pyxs.xs(unix_socket_path=xs_server.socket_path)
    assert repr(x) == f"xs(UnixSocketConnection({xs_server.socket_path!r}))"
    x.close()
    with pytest.raises(RuntimeError) as info:
        pyxs.xs(unix_socket_path="/nonexistent/socket")
    assert isinstance(info.value, pyxs.ConnectionError)


def test_transaction_handles(xs_server, unique_path) -> None:
    x = pyxs.xs(unix_socket_path=xs_server.socket_path)
    path = unique_path.decode()
    handles = [x.transaction_start() for _ in range(12)]
    # hex, upper case, as xs.c's "%lX"
    assert all(isinstance(h, str) and h == f"{int(h, 16):X}" for h in handles)
    assert any(int(h, 16) >= 10 for h in handles)
    for h in handles:
        assert x.transaction_end(h, abort=1) is True
    t = x.transaction_start()
    x.write(t, path, b"v")
    assert x.read("", path) is None
    assert x.read(t.lower(), path) == b"v"  # parsed as strtoul(t, NULL, 16)
    assert x.read("0x" + t, path) == b"v"
    assert x.transaction_end(transaction=t) is True
    assert x.read("", path) == b"v"
    x.close()


def test_watch_tokens_keep_identity_and_threads(xs_server, unique_path) -> None:
    import threading

    x = pyxs.xs(unix_socket_path=xs_server.socket_path)
    path = unique_path.decode()
    tokens = [object(), ("a", 1), "plain"]
    for i, token in enumerate(tokens):
        x.watch(f"{path}/{i}", token)
    initial = [x.read_watch() for _ in tokens]
    assert sorted(p for p, _ in initial) == [f"{path}/{i}" for i in range(3)]
    for p, token in initial:
        assert token is tokens[int(p.rsplit("/", 1)[1])]
    got = []
    reader = threading.Thread(target=lambda: got.append(x.read_watch()))
    reader.start()
    x.write("", f"{path}/1/child", b"")  # requests while read_watch blocks
    reader.join(5)
    assert got == [(f"{path}/1/child", tokens[1])]
    assert got[0][1] is tokens[1]
    x.close()
