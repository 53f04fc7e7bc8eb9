"""Command-line options of the server, named like cxenstored's.

Shared by ``python -m pyxs.server`` and ``pyxs serve`` / ``pyxs run``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .daemon import Server, SocketInUse
from .domains import Quotas, SoftQuotas

__all__ = ["EXIT_IN_USE", "add_server_arguments", "serve", "server_from_args"]

#: exit status of ``pyxs serve`` when a live server answers on its socket path
EXIT_IN_USE = 5


def _quota_assignment(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.isdigit():
        raise argparse.ArgumentTypeError(f"quotas must be given as <what>=<nb>, not {text!r}")
    return name, int(value)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--socket``, ``--run-dir`` and the xenstored quota options."""
    parser.add_argument("--socket", metavar="PATH", help="the dom0 socket (default: a temp dir)")
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where guest sockets domain-<domid>.sock, the 'domains' file and the "
        "'evtchn' FIFO live (default: the socket's directory)",
    )
    q = parser.add_argument_group("quotas (unprivileged domains; as xenstored's options)")
    q.add_argument("-E", "--entry-nb", type=int, metavar="NB", help="nodes per domain")
    q.add_argument("-S", "--entry-size", type=int, metavar="SIZE", help="max. size of a node")
    q.add_argument("-W", "--watch-nb", type=int, metavar="NB", help="watches per domain")
    q.add_argument("-t", "--transaction", type=int, metavar="NB", help="transactions per domain")
    q.add_argument("-A", "--perm-nb", type=int, metavar="NB", help="permissions per node")
    q.add_argument("-M", "--path-max", type=int, metavar="CHARS", help="max. node path length")
    q.add_argument(
        "-Q",
        "--quota",
        type=_quota_assignment,
        action="append",
        default=[],
        metavar="WHAT=NB",
        help="any quota by its CONTROL name: nodes, watches, transactions, outstanding, "
        "transaction-nodes, memory, node-size, path-max, permissions",
    )
    q.add_argument(
        "-q",
        "--quota-soft",
        type=_quota_assignment,
        action="append",
        default=[],
        metavar="WHAT=NB",
        help="soft quota (only 'memory')",
    )
    parser.add_argument(
        "-K", "--keep-orphans", action="store_true", help="give a dead domain's nodes to dom0"
    )
    parser.add_argument(
        "-T", "--trace-file", metavar="FILE", help="log file (CONTROL print, check, ...)"
    )


def server_from_args(args: argparse.Namespace, socket_path: str | None = None) -> Server:
    """A :class:`Server` configured from :func:`add_server_arguments` options."""
    quotas = Quotas()
    for attr, name in (
        ("entry_nb", "nodes"),
        ("entry_size", "node-size"),
        ("watch_nb", "watches"),
        ("transaction", "transactions"),
        ("perm_nb", "permissions"),
    ):
        value = getattr(args, attr, None)
        if value is not None:
            quotas.set(name, value)
    if getattr(args, "path_max", None) is not None:
        quotas.path_max = min(2048, args.path_max)
    for name, value in args.quota:
        if not quotas.set(name, value):
            raise SystemExit(f"unknown quota {name!r}")
    soft = SoftQuotas()
    for name, value in args.quota_soft:
        if not soft.set(name, value):
            raise SystemExit(f"unknown soft quota {name!r}")
    return Server(
        socket_path if socket_path is not None else args.socket,
        run_dir=args.run_dir,
        quotas=quotas,
        soft_quotas=soft,
        keep_orphans=args.keep_orphans,
        logfile=args.trace_file,
    )


def serve(server: Server, *, announce: bool = True) -> int:
    """Serve in the foreground until SIGINT or SIGTERM; 0 on a clean stop,
    :data:`EXIT_IN_USE` when a server already answers on the socket path, 1
    when the socket cannot be made (e.g. a file that is not a socket is in
    the way: it is left alone).

    When ready it prints ``SOCKET=<path>``, ``RUNDIR=<dir>`` and
    ``PID=<pid>`` lines (like realxs's start.sh)."""

    def stop(signum: int, frame: object) -> None:
        server.stop()

    def ready() -> None:
        if announce:
            print(f"SOCKET={server.socket_path}", flush=True)
            print(f"RUNDIR={server.run_dir}", flush=True)
            print(f"PID={os.getpid()}", flush=True)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever(ready)
    except SocketInUse as exc:
        print(f"pyxs: cannot serve on {server.socket_path}: {exc.strerror}", file=sys.stderr)
        return EXIT_IN_USE
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"pyxs: cannot serve on {server.socket_path}: {reason}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
