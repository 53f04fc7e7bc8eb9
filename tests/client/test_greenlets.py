"""The client under gevent and eventlet monkey-patching, in subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("greenlet_script.py")


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_greenlets_share_a_client(library, xs_server, unique_path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), library, xs_server.socket_path, unique_path.decode()],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "OK"
