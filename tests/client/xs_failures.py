"""xen.lowlevel.xs calls where the world goes wrong, run against Xen's own
binding and against ``pyxs.xs`` so that test_compat_failures.py can compare
the transcripts: no daemon, the daemon killed under a blocked ``read_watch``,
killed between calls (with and without a watch), a new handle afterwards.

``python xs_failures.py SOCKET PID`` runs it with ``xen.lowlevel.xs`` (found
on PYTHONPATH) against the daemon at SOCKET, kills PID when the script says,
and prints the transcript as JSON.

Every step's outcome is the same whenever the kill lands relative to the
threads (no sleeps): a ``read_watch`` blocked before the kill and one called
after it both end with EINVAL, and the handle with a watch is used only after
its ``read_watch`` has seen the end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any, Callable


def failures(module: Any, socket_path: str, kill: Callable[[], None]) -> list[Any]:
    """Run the steps; ``kill()`` makes the daemon at ``socket_path`` die."""
    out: list[Any] = []

    def call(name: str, fn: Any, *args: Any) -> Any:
        try:
            result = fn(*args)
        except Exception as exc:
            out.append([name, "raised", isinstance(exc, RuntimeError), list(exc.args), str(exc)])
            return None
        out.append([name, result if not isinstance(result, tuple) else list(result)])
        return result

    missing = socket_path + "-missing"
    os.environ["XENSTORED_PATH"] = missing
    call("xs() with no daemon", module.xs)
    os.environ["XENSTORED_PATH"] = socket_path

    watcher = module.xs()
    plain = module.xs()
    token = object()
    watcher.watch("/fail-w", token)
    path, got = watcher.read_watch()
    out.append(["initial event", path, got is token])
    call("write before the kill", plain.write, "", "/fail-p", b"v")

    blocked: list[Any] = []

    def read_watch() -> None:
        try:
            blocked.append(["read_watch blocked", watcher.read_watch()])
        except Exception as exc:
            blocked.append(["read_watch blocked", "raised", list(exc.args), str(exc)])

    reader = threading.Thread(target=read_watch)
    reader.start()
    kill()
    reader.join(30)
    out.append(blocked[0] if blocked else ["read_watch blocked", "still blocked"])

    call("read_watch again", watcher.read_watch)
    call("check_watch", watcher.check_watch)
    call("write with a watch", watcher.write, "", "/fail-w", b"v")
    call("read with a watch", watcher.read, "", "/fail-w")
    call("watch", watcher.watch, "/fail-q", "t")
    call("unwatch", watcher.unwatch, "/fail-w", token)
    call("close with a watch", watcher.close)

    call("read, first call after the kill", plain.read, "", "/fail-p")
    call("read again", plain.read, "", "/fail-p")
    call("write", plain.write, "", "/fail-p", b"w")
    call("ls", plain.ls, "", "/")
    call("get_permissions", plain.get_permissions, "", "/fail-p")
    call("transaction_start", plain.transaction_start)
    call("transaction_end", plain.transaction_end, "1")
    call("get_domain_path", plain.get_domain_path, 1)
    call("check_watch without a watch", plain.check_watch)
    call("close", plain.close)
    call("close again", plain.close)

    call("xs() after the kill", module.xs)
    return out


def kill_pid(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it is dead (gone, or a zombie nobody reaps)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30  # a hang guard only
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)  # polling a condition, not a synchronisation sleep
    raise TimeoutError(f"pid {pid} still alive")


if __name__ == "__main__":
    import xen.lowlevel.xs as xs_module

    pid = int(sys.argv[2])
    print(json.dumps(failures(xs_module, sys.argv[1], lambda: kill_pid(pid))))
