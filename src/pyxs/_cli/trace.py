"""``pyxs trace``: run CMD through a tracing proxy, or stand as one.

``pyxs trace [options] -- CMD...`` makes a private socket in a new
temporary directory, runs the proxy (:class:`pyxs.trace.proxy.Proxy`) on it in a
background thread and CMD with ``XENSTORED_PATH`` naming it, by
:func:`pyxs._cli.child.run_command` (the machinery of ``pyxs run``: signals, exit
status). ``pyxs trace --listen PATH`` runs the proxy in the foreground
until SIGINT or SIGTERM. Both check first that UPSTREAM answers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
from typing import IO, Callable

from ..connection import default_socket_path
from ..protocol import Op
from ..trace import Filters, Proxy, Tracer, listen_unix

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "main"]

PROG = "pyxs trace"
HELP = "show a command's XenStore traffic, decoded"
DESCRIPTION = (
    "Run CMD with XENSTORED_PATH naming a private proxy socket that forwards to "
    "UPSTREAM, and write every request, reply and watch event, decoded, one line each; "
    "or, with --listen, be a standing proxy until Ctrl-C. Exits with CMD's status; "
    "SIGTERM and SIGHUP are passed on to CMD, as by 'pyxs run'."
)


def _op_names(text: str) -> list[str]:
    names = [name.strip().upper() for name in text.split(",") if name.strip()]
    known = set(Op.__members__) - {"DEBUG"}
    for name in names:
        if name not in known:
            raise argparse.ArgumentTypeError(
                f"unknown op {name!r} (known: {', '.join(sorted(known))})"
            )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket",
        metavar="UPSTREAM",
        help="the XenStore socket to forward to (default: $XENSTORED_PATH, else "
        "$XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket); a guest's "
        "domain-<domid>.sock works too",
    )
    parser.add_argument(
        "--listen",
        metavar="PATH",
        help="no CMD: be a standing proxy at PATH until Ctrl-C (prints SOCKET=PATH when ready)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write the trace to FILE (default: stderr)"
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object a line (see docs/trace.rst)"
    )
    parser.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="PREFIX",
        help="only requests on PREFIX or below it, their replies and events (repeatable)",
    )
    parser.add_argument(
        "--op",
        action="append",
        type=_op_names,
        default=[],
        metavar="NAME[,NAME]",
        help="only these operations (READ, WRITE, WATCH_EVENT, ...) and their replies",
    )
    parser.add_argument(
        "--errors", action="store_true", help="only requests answered by an error, and the error"
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="at exit: requests per op, errors per name, the slowest requests, watches "
        "registered and fired, transactions started, committed, conflicted",
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD...",
        help="the command to run and its arguments",
    )


def _check_upstream(path: str) -> str | None:
    """None if a XenStore listens at ``path``, else the one-line error."""
    import stat

    with contextlib.suppress(OSError):
        if stat.S_ISCHR(os.stat(path).st_mode):
            return (
                f"{PROG}: {path} is a XenBus device; the proxy forwards to a XenStore "
                "socket only (give one with --socket)"
            )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as exc:
        return f"{PROG}: cannot connect to XenStore at {path}: {exc.strerror or exc}"
    finally:
        probe.close()
    return None


def _open_output(path: str | None) -> IO[str]:
    if path is None:
        return sys.stderr
    return open(path, "w", encoding="utf-8")  # (closed by main())


def main(args: argparse.Namespace) -> int:
    """``pyxs trace``; returns the exit status."""
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if bool(command) == bool(args.listen):
        print(
            f"{PROG}: give either a command (-- CMD...) or --listen PATH, not "
            + ("both" if command else "neither"),
            file=sys.stderr,
        )
        return 2
    upstream = args.socket or default_socket_path()
    error = _check_upstream(upstream)
    if error is not None:
        print(error, file=sys.stderr)
        return 1
    try:
        out = _open_output(args.output)
    except OSError as exc:
        print(f"{PROG}: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    filters = Filters(
        paths=tuple(os.fsencode(p) for p in args.path),
        ops=frozenset(name for names in args.op for name in names),
        errors=args.errors,
    )
    tracer = Tracer(out, json=args.json, filters=filters, summary=args.summary)
    try:
        if command:
            return _trace_command(command, upstream, tracer)
        return _stand(args.listen, upstream, tracer)
    finally:
        tracer.finish()
        if out is not sys.stderr:
            out.close()


def _trace_command(command: list[str], upstream: str, tracer: Tracer) -> int:
    from .child import run_command

    def start() -> tuple[dict[str, str], Callable[[], None]] | str:
        import shutil
        import tempfile

        rundir = tempfile.mkdtemp(prefix="pyxs-trace-", dir="/tmp")
        path = os.path.join(rundir, "socket")
        try:
            listener = listen_unix(path)
        except OSError as exc:
            shutil.rmtree(rundir, ignore_errors=True)
            return f"{PROG}: cannot listen on {path}: {exc.strerror or exc}"
        proxy = Proxy(listener, upstream, tracer)
        thread = threading.Thread(target=proxy.serve_forever, name="pyxs-trace", daemon=True)
        thread.start()

        def stop() -> None:
            proxy.stop()
            thread.join()
            listener.close()
            shutil.rmtree(rundir, ignore_errors=True)

        return {"XENSTORED_PATH": path}, stop

    return run_command(command, start, PROG)


def _stand(path: str, upstream: str, tracer: Tracer) -> int:
    """A standing proxy at ``path`` until SIGINT/SIGTERM; its socket file is
    removed at the end if it is still the one made here."""
    try:
        listener = listen_unix(path)
    except OSError as exc:
        print(f"{PROG}: cannot listen on {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    made = os.stat(path)
    proxy = Proxy(listener, upstream, tracer)

    def stop(signum: int, frame: object) -> None:
        proxy.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        proxy.serve_forever(lambda: print(f"SOCKET={os.path.abspath(path)}", flush=True))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()
        try:
            now = os.stat(path)
        except OSError:
            pass
        else:
            if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
                os.unlink(path)
    return 0
