"""Command-line options of the server, named like cxenstored's.

Shared by ``python -m pyxs.server`` and ``pyxs serve`` / ``pyxs run``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .daemon import Server, SocketInUse
from .quotas import Quotas, SoftQuotas

__all__ = [
    "EXIT_IN_USE",
    "add_server_arguments",
    "cannot_serve",
    "serve",
    "server_from_args",
]

#: exit status of ``pyxs serve`` when a live server answers on its socket path
EXIT_IN_USE = 5


def _assignment(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.isdigit():
        raise argparse.ArgumentTypeError(f"quotas must be given as <what>=<nb>, not {text!r}")
    return name, int(value)


# Unknown names are usage errors, found while parsing (exit status 2, with
# the usage line), as argparse reports any other bad option.
def _quota_assignment(text: str) -> tuple[str, int]:
    name, value = _assignment(text)
    if not Quotas().set(name, value):
        names = ", ".join(Quotas.__slots__).replace("_", "-")
        raise argparse.ArgumentTypeError(f"unknown quota {name!r} (known: {names})")
    return name, value


def _soft_quota_assignment(text: str) -> tuple[str, int]:
    name, value = _assignment(text)
    if not SoftQuotas().set(name, value):
        raise argparse.ArgumentTypeError(f"unknown soft quota {name!r} (only 'memory')")
    return name, value


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
        type=_soft_quota_assignment,
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
    parser.add_argument(
        "--trace",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write every request, reply and watch event, decoded as by 'pyxs trace', "
        "with each connection's domain, to FILE (default: stderr)",
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
        quotas.set(name, value)  # (names checked by _quota_assignment)
    soft = SoftQuotas()
    for name, value in args.quota_soft:
        soft.set(name, value)
    return Server(
        socket_path if socket_path is not None else args.socket,
        run_dir=args.run_dir,
        quotas=quotas,
        soft_quotas=soft,
        keep_orphans=args.keep_orphans,
        logfile=args.trace_file,
        trace=getattr(args, "trace", None),
    )


def cannot_serve(server: Server, exc: OSError, prog: str) -> str:
    """The one-line message for a server that could not start."""
    message = f"{prog}: cannot serve on {server.socket_path}: {exc.strerror or exc}"
    if exc.filename is not None and os.fsdecode(exc.filename) != server.socket_path:
        message += f" ({os.fsdecode(exc.filename)})"
    return message


def serve(server: Server, *, announce: bool = True, prog: str = "pyxs") -> int:
    """Serve in the foreground until SIGINT or SIGTERM; 0 on a clean stop,
    :data:`EXIT_IN_USE` when a server already answers on the socket path, 1
    when the socket cannot be made (e.g. a file that is not a socket is in
    the way: it is left alone).

    When ready it prints ``SOCKET=<path>``, ``RUNDIR=<dir>`` and
    ``PID=<pid>`` lines (like realxs's start.sh)."""

    stop_requested: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stop_requested.append(signum)
        server.stop()

    def ready() -> None:
        if stop_requested:  # caught before the server could take a stop()
            server.stop()
        if announce:
            print(f"SOCKET={server.socket_path}", flush=True)
            print(f"RUNDIR={server.run_dir}", flush=True)
            print(f"PID={os.getpid()}", flush=True)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever(ready)
    except SocketInUse as exc:
        print(cannot_serve(server, exc, prog), file=sys.stderr)
        return EXIT_IN_USE
    except OSError as exc:
        print(cannot_serve(server, exc, prog), file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
