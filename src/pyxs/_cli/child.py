"""Running a command beside a service: ``pyxs run``'s server, ``pyxs trace``'s proxy.

:func:`run_command` starts the service, runs CMD with the variables that
point it there, forwards signals and returns CMD's exit status as the
command's own.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

__all__ = ["run_command"]


def run_command(
    command: list[str],
    start: Callable[[], tuple[dict[str, str], Callable[[], None]] | str],
    prog: str,
) -> int:
    """Run CMD beside a service (``pyxs run``'s server, ``pyxs trace``'s
    proxy); return CMD's exit status as the command's own.

    ``start()`` starts the service and returns the variables CMD's
    environment gets and the function that stops the service once CMD has
    exited; or a one-line message saying why it could not start (the
    status is then 1).

    Signals, at any moment: SIGTERM and SIGHUP are caught before anything
    else is set up, so none of them can kill the command and leave CMD
    orphaned and the service behind. One that arrives once CMD exists
    is passed on to it; one that arrives before means CMD is never started,
    and the run ends with status 128+signal, as if CMD had been killed by
    it. SIGINT is left to reach CMD from the terminal (it is caught, not
    ignored: an ignored signal would stay ignored in CMD); before CMD exists
    it ends the run as SIGTERM does. ``start()`` runs with these signals
    blocked, so the threads it starts inherit that, and the kernel delivers
    them to the main thread, which waits for CMD and forwards them.
    """
    import signal
    import subprocess

    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print(f"{prog}: no command given ({prog} [options] -- CMD...)", file=sys.stderr)
        return 2
    forwarded = (signal.SIGTERM, signal.SIGHUP)
    child: subprocess.Popen[bytes] | None = None
    early: list[int] = []  # signals that arrived before CMD existed

    def forward(signum: int, frame: object) -> None:
        if child is None:
            early.append(signum)
        else:
            child.send_signal(signum)

    def leave_to_terminal(signum: int, frame: object) -> None:
        if child is None:  # Ctrl-C before CMD exists: the run ends
            early.append(signum)

    previous = {sig: signal.signal(sig, forward) for sig in forwarded}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, leave_to_terminal)
    try:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [*forwarded, signal.SIGINT])
        try:
            started = start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if isinstance(started, str):
            print(started, file=sys.stderr)
            return 1
        variables, stop = started
        try:
            env = dict(os.environ)
            env.update(variables)
            _prepend_own_scripts(env)
            if early:
                return 128 + early[0]
            try:
                child = subprocess.Popen(command, env=env)
            except OSError as exc:
                print(f"{prog}: {command[0]}: {exc.strerror}", file=sys.stderr)
                return 127
            # A signal caught between the fork and the assignment to child.
            while early:
                child.send_signal(early.pop(0))
            status = child.wait()
        finally:
            stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - status if status < 0 else status


def _prepend_own_scripts(env: dict[str, str]) -> None:
    """When pyxs runs from a virtual environment, put that environment's
    scripts directory first on CMD's PATH, as activating it would.

    So ``.venv/bin/pyxs run -- python x.py`` runs the environment's
    ``python``, the one pyxs is installed in, not whatever ``python`` the
    shell would find. Outside a virtual environment PATH is left alone."""
    if sys.prefix == sys.base_prefix:
        return
    scripts = os.path.dirname(sys.executable)
    path = env.get("PATH", os.defpath)
    if scripts and path.split(os.pathsep)[:1] != [scripts]:
        env["PATH"] = os.pathsep.join([scripts, path]) if path else scripts
