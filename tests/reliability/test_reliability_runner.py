"""The one command: ``python reliability/run.py`` runs, prints the figures
and says PASS or FAIL (here on a small selection, to stay fast)."""

from __future__ import annotations

import os
import subprocess
import sys

import _relpath  # the repository root on sys.path
import pytest

from reliability import run


def test_runner_lists_every_scenario(capsys) -> None:
    assert run.main(["--list"]) == 0
    names = capsys.readouterr().out.splitlines()
    for expected in (
        "concurrency shared real",
        "contention embedded",
        "faults server killed real",
        "faults client killed embedded",
        "fuzz server",
        "fuzz client",
        "limits quotas real",
        "limits isolation embedded",
    ):
        assert expected in names


@pytest.mark.realxs  # the scenarios run on both servers
def test_runner_prints_the_figures() -> None:
    out = subprocess.run(
        [sys.executable, "reliability/run.py", "--only", "payloads", "--only", "socket modes"],
        cwd=_relpath.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CI": "true"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "short mode" in out.stdout
    for label in ("operations done:", "faults injected:", "errors seen:", "updates lost: 0"):
        assert label in out.stdout
    assert "RESULT: PASS" in out.stdout
