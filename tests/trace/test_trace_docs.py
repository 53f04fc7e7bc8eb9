"""The ``xenstore-write`` example of docs/trace.rst is what the real tool does.

The docs' console blocks run against the embedded server (tests/docs), where
there is no ``xenstore-write``; this runs that example's command with Xen
4.17's tools against a fresh real xenstored and compares every line, with
the times and round-trip times left out."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from trace_support import PYXS

from realxs import start_real_xenstored

PAGE = Path(__file__).resolve().parents[2] / "docs" / "trace.rst"


def example() -> tuple[list[str], list[str]]:
    """The command (its words after ``pyxs``) and the lines it prints."""
    text = PAGE.read_text()
    block = text.split(".. parsed-literal::\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("   "):
            break
        lines.append(line[3:])
    lines = [line for line in lines if line]
    command = lines[0]
    assert command.startswith("$ pyxs trace -- xenstore-write ")
    return shlex.split(command[len("$ pyxs ") :]), lines[1:]


def untimed(line: str) -> str:
    return re.sub(r"\(\d+us\)$", "(RTT)", re.sub(r"^\d+\.\d{6} ", "T ", line))


@pytest.mark.realxs
def test_the_xenstore_write_example() -> None:
    args, expected = example()
    daemon = start_real_xenstored(verbose=False)
    try:
        env = daemon.tool_env()
        tool = daemon.tool(args[2])
        proc = subprocess.run(
            [*PYXS, *args[:2], tool, *args[3:]], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        daemon.stop()
    assert (proc.returncode, proc.stdout) == (0, "")
    assert [untimed(line) for line in proc.stderr.splitlines()] == [untimed(x) for x in expected]
    assert len(expected) == 10
