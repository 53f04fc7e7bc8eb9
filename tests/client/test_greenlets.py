"""The client under gevent and eventlet monkey-patching, in subprocesses.

These tests need gevent and eventlet, which exist for CPython only (gevent
does not build on PyPy, eventlet needs a newer greenlet than PyPy's own):
pyproject's test extra installs them on CPython, and they are marked
``greenlets`` so that noxfile.py's PyPy session deselects them; every
CPython session runs them. Run where the library is missing, they fail
saying so.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("greenlet_script.py")

pytestmark = pytest.mark.greenlets


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_greenlets_share_a_client(library, xs_server, unique_path) -> None:
    if importlib.util.find_spec(library) is None:
        pytest.fail(
            f"{library} is not installed: it exists for CPython only"
            ' (pip install -e ".[test]" there; deselect with -m "not greenlets" elsewhere)'
        )
    result = subprocess.run(
        [sys.executable, str(SCRIPT), library, xs_server.socket_path, unique_path.decode()],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "OK"
