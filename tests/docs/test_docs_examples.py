"""Every program in examples/ runs under ``pyxs run --`` and prints what it should."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from docs_support import DOCS, EXAMPLES, REPO, console_env

import pyxs

PYXS = [sys.executable, "-m", "pyxs"]


def pyxs_run(*command: str, options: tuple[str, ...] = (), timeout: float = 90) -> str:
    """``pyxs run [options] -- command``: its stdout; it must exit 0, quietly."""
    result = subprocess.run(
        [*PYXS, "run", *options, "--", *command],
        cwd=REPO,
        env=console_env("/nonexistent/unused"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return result.stdout


def example(name: str) -> str:
    return str(EXAMPLES / name)


def test_helloworld() -> None:
    # The README's first command runs this one.
    assert pyxs_run(sys.executable, example("helloworld.py")).splitlines() == [
        "Hello, XenStore!",
        "children of /hello: [b'greeting']",
        "initial event: Event(path=b'/hello', token=b'my-token')",
        "change event: Event(path=b'/hello/greeting', token=b'my-token')",
        "exists after delete: False",
    ]


def test_ls_prints_like_xenstore_ls() -> None:
    script = (
        "pyxs write /vm/demo/name guest /vm/demo/memory 512 /vm/demo/raw '\\x01\\x7f' && "
        f"{sys.executable} {example('ls.py')} /vm && echo --- && "
        f"{sys.executable} {example('ls.py')} -p /vm/demo && echo --- && "
        "pyxs ls /vm"
    )
    ours, with_perms, reference = pyxs_run("sh", "-c", script).split("---\n")
    assert ours.splitlines() == [
        'demo = ""',
        ' name = "guest"',
        ' memory = "512"',
        ' raw = "\\001\\x7f"',
    ]
    assert ours == reference  # the same lines as pyxs ls (itself checked against xenstore-ls)
    assert with_perms.splitlines()[0] == 'name = "guest"  (n0)'


def test_ls_of_a_missing_node_fails() -> None:
    result = subprocess.run(
        [*PYXS, "run", "--", sys.executable, example("ls.py"), "/nope"],
        env=console_env("/unused"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == "/nope: no such node\n"


def test_monitor_demo() -> None:
    assert pyxs_run(sys.executable, example("monitor.py"), "--demo").splitlines() == [
        "watching /vm",
        "/vm",
        "/vm/demo/name",
        "/vm/demo/memory",
        "/vm/demo/memory",
        "/vm/demo",
    ]


def test_monitor_sees_another_program(tmp_path: Path) -> None:
    # Watch from the example while this test writes, through the same server.
    socket_path = str(tmp_path / "xs.sock")
    with open(tmp_path / "stderr", "w+") as stderr:
        monitor = subprocess.Popen(
            [
                *(*PYXS, "run", "--socket", socket_path, "--"),
                *(sys.executable, example("monitor.py"), "-n", "2", "-v", "/vm/guest"),
            ],
            env=console_env("/unused"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert monitor.stdout is not None
            # Printed once the watch is set; the initial event may follow at once.
            assert monitor.stdout.readline() == "watching /vm/guest\n"
            with pyxs.Client(socket_path) as c:
                c[b"/vm/guest/state"] = b"running"
            out = monitor.stdout.read()  # (the same buffered reader as readline)
            assert monitor.wait(timeout=60) == 0, (tmp_path / "stderr").read_text()
        finally:
            if monitor.poll() is None:
                monitor.kill()
                monitor.wait()
            if monitor.stdout is not None:
                monitor.stdout.close()
    assert out.splitlines()[-1] == "/vm/guest/state = b'running'"
    # The initial event: read before or after the write, as it happens.
    assert out.splitlines()[:-1] in (["/vm/guest (removed)"], ["/vm/guest = b''"])


def test_transaction_with_retries() -> None:
    out = pyxs_run(sys.executable, example("transaction.py"))
    lines = out.splitlines()
    assert lines[0] == "transact(): counter = 200 (expected 200)"
    assert re.fullmatch(r"transact\(\): \d+ conflicts retried", lines[1])
    assert lines[2] == "by hand: counter = 200 (expected 200)"
    assert re.fullmatch(r"by hand: \d+ conflicts retried", lines[3])
    assert len(lines) == 4


def test_async_watch() -> None:
    assert pyxs_run(sys.executable, example("async_watch.py")).splitlines() == [
        "alpha: running after 3 state changes",
        "beta: running after 3 state changes",
        "gamma: running after 3 state changes",
        "all 3 guests are running",
    ]


SPLIT_DRIVER = """\
toolstack: domain 5 introduced, vif 0 set up
toolstack:   frontend /local/domain/5/device/vif/0
toolstack:   backend  /local/domain/0/backend/vif/5/0
backend:  frontend is Initialising; -> InitWait
frontend: backend is InitWait; publishes ring 8 and event channel 15; -> Initialised
backend:  frontend is Initialised; maps ring 8, binds event channel 15; -> Connected
frontend: backend is Connected; -> Connected
backend:  frontend is Connected: vif5.0 is up
toolstack: vif 0 of domain 5 is connected; unplugging it
backend:  unplugged; -> Closing
frontend: backend is Closing; -> Closed
backend:  frontend is Closed; -> Closed
toolstack: backend is Closed; removes the device and releases the domain
toolstack: domain 5 introduced: False
"""


def test_split_driver_handshake() -> None:
    assert pyxs_run(sys.executable, example("split_driver.py")) == SPLIT_DRIVER


def test_split_driver_with_a_separate_run_dir(tmp_path: Path) -> None:
    # The guest socket is found next to the dom0 socket; with --socket in a
    # directory of its own, the run dir is that directory.
    socket_path = str(tmp_path / "dom0.sock")
    out = pyxs_run(sys.executable, example("split_driver.py"), options=("--socket", socket_path))
    assert out == SPLIT_DRIVER
    assert not os.path.exists(tmp_path / "domain-5.sock")  # released: gone


@pytest.mark.greenlets  # gevent and eventlet: CPython only (see tests/client/test_greenlets.py)
@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_greenlets(library: str) -> None:
    assert pyxs_run(sys.executable, example("greenlets.py"), library).splitlines() == [
        f"{library}: 100 greenlets shared one client",
        f"{library}: 100 nodes written, 100 events seen",
    ]


def test_the_pytest_example(tmp_path: Path) -> None:
    # Its own pytest run, with the pyxs plugin's fixtures; outside this repo's config.
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("--rootdir", str(tmp_path), example("test_with_pyxs.py")),
        ],
        cwd=tmp_path,
        env=console_env("/unused"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^7 passed", result.stdout, re.M), result.stdout


def test_every_example_is_tested_and_shown() -> None:
    tested = set(re.findall(r'example\("([a-z_]+\.py)"\)', Path(__file__).read_text()))
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested
    shown = set()
    for page in DOCS.rglob("*.rst"):
        shown |= set(re.findall(r"literalinclude:: \.\./examples/([a-z_]+\.py)", page.read_text()))
    assert shown == tested


def test_an_example_that_fails_is_noticed() -> None:
    # pyxs run passes the exit status through; the helper above asserts on it.
    with pytest.raises(AssertionError):
        pyxs_run(sys.executable, "-c", "import sys; sys.exit(3)")
