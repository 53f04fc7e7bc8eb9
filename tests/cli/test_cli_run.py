"""``pyxs run`` and ``pyxs serve`` as commands: the environment CMD gets,
and the help of the argparse-side subcommands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_support import PYXS

# Runs as CMD under "pyxs run": finds the dom0 socket and the guest sockets
# only through the environment, after leaving the directory it started in.
GUEST_SCRIPT = r"""
import json, os
from pyxs import Client
from pyxs.exceptions import PermissionDeniedError

env = {k: os.environ.get(k) for k in ("XENSTORED_PATH", "XENSTORED_RUNDIR")}
os.chdir("/")
with Client() as dom0:  # $XENSTORED_PATH
    dom0.write(b"/shared", b"for five")
    dom0.write(b"/private", b"dom0 only")
    dom0.introduce_domain(5, 5, 1)
    dom0.set_perms(b"/shared", [b"n0", b"r5"])
    guest_socket = os.path.join(os.environ["XENSTORED_RUNDIR"], "domain-5.sock")
    with Client(unix_socket_path=guest_socket) as guest:
        shared = guest.read(b"/shared").decode()
        try:
            guest.read(b"/private")
            private = "read"
        except PermissionDeniedError:
            private = "denied"
del os.environ["XENSTORED_PATH"]
with Client() as again:  # now $XENSTORED_RUNDIR/socket, as libxenstore
    private_again = again.read(b"/private").decode()
print(json.dumps(
    {"env": env, "shared": shared, "private": private, "again": private_again}
))
"""


def pyxs_run(args: list[str], cwd: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XENSTORED_")}
    proc = subprocess.run(
        [*PYXS, "run", *args, "--", sys.executable, "-c", GUEST_SCRIPT],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_run_exports_the_run_dir(tmp_path: Path) -> None:
    """--run-dir (relative here): CMD gets both paths absolute, finds a guest's
    socket under $XENSTORED_RUNDIR, and $XENSTORED_RUNDIR/socket is the socket."""
    result = pyxs_run(["--run-dir", "rd"], tmp_path)
    rundir = str(tmp_path / "rd")
    assert result["env"] == {
        "XENSTORED_PATH": os.path.join(rundir, "socket"),
        "XENSTORED_RUNDIR": rundir,
    }
    assert (result["shared"], result["private"]) == ("for five", "denied")
    assert result["again"] == "dom0 only"
    assert not (tmp_path / "rd" / "socket").exists()  # removed when CMD exited


def test_run_default_layout(tmp_path: Path) -> None:
    """No options: a temporary run dir holding the socket, gone afterwards."""
    result = pyxs_run([], tmp_path)
    env = result["env"]
    assert env["XENSTORED_PATH"] == os.path.join(env["XENSTORED_RUNDIR"], "socket")
    assert result["again"] == "dom0 only"
    assert not os.path.exists(env["XENSTORED_PATH"])


def test_run_socket_elsewhere(tmp_path: Path) -> None:
    """--socket and --run-dir apart: XENSTORED_PATH names the socket (and wins,
    as with libxenstore); XENSTORED_RUNDIR still names where guests connect."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XENSTORED_")}
    script = (
        "import json, os; print(json.dumps("
        "[os.environ['XENSTORED_PATH'], os.environ['XENSTORED_RUNDIR']]))"
    )
    command = [sys.executable, "-c", script]
    proc = subprocess.run(
        [*PYXS, "run", "--socket", "xs.sock", "--run-dir", "guests", "--", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [str(tmp_path / "xs.sock"), str(tmp_path / "guests")]


@pytest.mark.parametrize("name", ["serve", "run"])
def test_argparse_subcommand_help(name: str) -> None:
    proc = subprocess.run([*PYXS, name, "--help"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == b""
    out = proc.stdout.decode()
    assert out.startswith(f"usage: pyxs {name} ")
    assert "--socket PATH" in out and "--run-dir DIR" in out
    if name == "run":
        assert "XENSTORED_RUNDIR" in out
        assert re.search(r"^  -- CMD\.\.\.\s+the command to run", out, re.M), out


def test_top_level_help_points_at_command_help() -> None:
    proc = subprocess.run([*PYXS, "--help"], capture_output=True, timeout=60)
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "pyxs COMMAND --help" in out
    assert "(xenstore-\n" not in out  # summaries are not broken at a hyphen


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-Q", "bogus=1"], "argument -Q/--quota: unknown quota 'bogus' (known: "),
        (["-q", "nodes=1"], "argument -q/--quota-soft: unknown soft quota 'nodes'"),
        (["-Q", "nodes"], "argument -Q/--quota: quotas must be given as <what>=<nb>"),
        (["-E", "many"], "argument -E/--entry-nb: invalid int value: 'many'"),
    ],
)
@pytest.mark.parametrize("name", ["serve", "run"])
def test_server_option_errors_are_usage_errors(name: str, args: list[str], message: str) -> None:
    """Reported while parsing, like any other bad option: status 2, the usage
    line, then ``pyxs NAME: error: ...``; no server is started."""
    proc = subprocess.run(
        [*PYXS, name, *args, *(["--", "true"] if name == "run" else [])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith(f"usage: pyxs {name} ")
    assert f"\npyxs {name}: error: {message}" in proc.stderr


@pytest.mark.parametrize("name", ["serve", "run"])
def test_cannot_serve_says_why_in_words(tmp_path: Path, name: str) -> None:
    sock = tmp_path / "missing-dir" / "socket"
    (tmp_path / "missing-dir").write_text("a file, not a directory")
    command = [*PYXS, name, "--socket", str(sock), *(["--", "true"] if name == "run" else [])]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        f"pyxs {name}: cannot serve on {sock}: File exists ({tmp_path / 'missing-dir'})\n"
    )
    assert (tmp_path / "missing-dir").read_text() == "a file, not a directory"


def test_run_puts_the_environment_of_pyxs_first_on_path(tmp_path: Path) -> None:
    """From a virtual environment, CMD's ``python`` is that environment's (as
    if it were activated), so ``pyxs run -- python examples/x.py`` imports
    pyxs; outside one, CMD's PATH is left alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XENSTORED_")}
    env["PATH"] = "/usr/bin:/bin"
    in_venv = sys.prefix != sys.base_prefix
    script = (
        'echo "$PATH"; python -c "import sys, pyxs; print(sys.prefix)"'
        if in_venv
        else ('echo "$PATH"')
    )
    proc = subprocess.run(
        [*PYXS, "run", "--", "sh", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    if in_venv:  # (the suite runs from one, as the README's second command)
        bindir = os.path.dirname(sys.executable)
        assert proc.stdout.splitlines() == [f"{bindir}:/usr/bin:/bin", sys.prefix]
    else:
        assert proc.stdout.splitlines() == ["/usr/bin:/bin"]
