"""``pyxs.xs`` where the world goes wrong, side by side with Xen's binding.

xs_failures.py runs with the real ``xen.lowlevel.xs`` (over libxenstore)
against a real xenstored that it kills on the way, and with ``pyxs.xs``
against another real xenstored (and the embedded server) killed at the same
step: every call's outcome, errno and message must match.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from xs_failures import failures, kill_pid

import pyxs
from pyxs import compat
from realxs import run_binding_script, start_real_xenstored, stop_real_xenstored

HERE = Path(__file__).parent


@pytest.fixture
def binding_transcript():
    daemon = start_real_xenstored()
    try:
        yield run_binding_script(
            HERE / "xs_failures.py", daemon.socket_path, daemon.socket_path, str(daemon.pid)
        )
    finally:
        stop_real_xenstored(daemon)


def test_failures_match_the_binding_real_daemon(binding_transcript, monkeypatch) -> None:
    daemon = start_real_xenstored()
    monkeypatch.setenv("XENSTORED_PATH", daemon.socket_path)
    try:
        got = failures(compat, daemon.socket_path, lambda: kill_pid(daemon.pid))
    finally:
        stop_real_xenstored(daemon)
    assert got == binding_transcript
    # and what the binding does is what the brief says libxenstore does
    outcome = {step[0]: step for step in got}
    assert outcome["xs() with no daemon"][3] == [errno.ENOENT, os.strerror(errno.ENOENT)]
    assert outcome["read_watch blocked"][2][0] == errno.EINVAL
    assert outcome["read, first call after the kill"][3][0] == errno.EPIPE
    assert outcome["read again"][3][0] == errno.EBADF
    assert outcome["write with a watch"][3][0] == errno.EBADF
    assert outcome["xs() after the kill"][3][0] == errno.ECONNREFUSED


def test_failures_match_the_binding_embedded_server(
    binding_transcript, monkeypatch, tmp_path
) -> None:
    from servers import EmbeddedXsServer

    server = EmbeddedXsServer()
    monkeypatch.setenv("XENSTORED_PATH", server.socket_path)
    got = failures(compat, server.socket_path, server.close)
    # The embedded server removes its socket when it stops, so a new handle
    # finds no socket (ENOENT) where the killed daemon left a dead one.
    assert got[-1][3][0] == errno.ENOENT and binding_transcript[-1][3][0] == errno.ECONNREFUSED
    assert got[:-1] == binding_transcript[:-1]


def test_every_error_has_errno_args(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XENSTORED_PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(RuntimeError) as info:
        pyxs.xs()
    assert info.value.args == (errno.ENOENT, os.strerror(errno.ENOENT))
    assert str(info.value) == str((errno.ENOENT, os.strerror(errno.ENOENT)))
    assert isinstance(info.value, pyxs.ConnectionError)  # and still pyxs's own
    assert info.value.__cause__ is None  # printed once
