"""Running the pyxs command and the real xenstore-* tools as subprocesses."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from realxs import realxs_root


def _pyxs_command() -> list[str]:
    """The installed ``pyxs`` console script beside this interpreter, else ``-m pyxs``."""
    script = Path(sys.executable).parent / "pyxs"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "pyxs"]


PYXS = _pyxs_command()


class Result(NamedTuple):
    rc: int
    stdout: bytes
    stderr: bytes


@functools.cache
def _root() -> Path:
    return realxs_root()


def tool_path(name: str) -> str:
    return str(_root() / "usr" / "bin" / name)


def client_env(socket: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a client of ``socket`` (XENSTORED_PATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XENSTORED_")}
    if socket is not None:
        env["XENSTORED_PATH"] = socket
    env.update(extra or {})
    return env


def tool_env(socket: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """:func:`client_env` with libxenstore found: for the real xenstore-* tools."""
    env = client_env(socket, extra)
    env["LD_LIBRARY_PATH"] = str(_root() / "usr" / "lib" / "x86_64-linux-gnu")
    return env


def real_tool(
    name: str,
    args: list[str],
    socket: str | None,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
) -> Result:
    proc = subprocess.run(
        [tool_path(name), *args],
        env=tool_env(socket, env),
        input=stdin,
        capture_output=True,
        timeout=30,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def pyxs(
    args: list[str],
    socket: str | None,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
    command: list[str] | None = None,
) -> Result:
    proc = subprocess.run(
        [*(command or PYXS), *args],
        env=client_env(socket, env),
        input=stdin,
        capture_output=True,
        timeout=30,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_both(
    tool: str, tool_args: list[str], pyxs_args: list[str], socket: str | None
) -> tuple[Result, Result]:
    """Run a real tool and pyxs at the same time (for commands that only read)."""
    procs = [
        subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        for argv, env in (
            ([tool_path(tool), *tool_args], tool_env(socket)),
            ([*PYXS, *pyxs_args], client_env(socket)),
        )
    ]
    results = []
    for proc in procs:
        with proc:
            out, err = proc.communicate(timeout=30)
        results.append(Result(proc.returncode, out, err))
    return results[0], results[1]
