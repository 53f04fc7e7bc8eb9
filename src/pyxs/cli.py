"""The ``pyxs`` command.

One ``cmd_<name>(args) -> int`` function per subcommand; :func:`build_parser`
registers each with its options. To add a subcommand, write its
``cmd_<name>`` and an ``_add_<name>(subparsers)`` and list it in
:data:`SUBCOMMANDS`.

``pyxs serve``
    Run an embedded XenStore server in the foreground (SIGINT/SIGTERM stop
    it and remove its socket). It prints ``SOCKET=``, ``RUNDIR=`` and
    ``PID=`` lines when ready.
``pyxs run [--socket PATH] [--run-dir DIR] -- CMD...``
    Run CMD against a throwaway server; the server stops when CMD exits;
    CMD's exit status is passed through. CMD gets ``XENSTORED_PATH`` (the
    dom0 socket) and ``XENSTORED_RUNDIR`` (the run dir, where the guest
    sockets ``domain-<domid>.sock`` appear), both absolute. As with
    libxenstore, ``XENSTORED_PATH`` wins over ``$XENSTORED_RUNDIR/socket``;
    the two name the same socket unless ``--socket`` puts it elsewhere.
    From a virtual environment, its ``bin`` directory comes first on CMD's
    ``PATH``. SIGTERM/SIGHUP are forwarded to CMD whenever they arrive (see
    :func:`cmd_run`).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Callable

# argparse, signal and subprocess are imported where used: every run of a
# short-lived command such as "pyxs read" would pay for them otherwise.
if TYPE_CHECKING:
    import argparse

__all__ = [
    "SUBCOMMANDS",
    "build_parser",
    "cmd_run",
    "cmd_serve",
    "cmd_trace",
    "console_main",
    "main",
]


def cmd_serve(args: argparse.Namespace) -> int:
    """``pyxs serve``: an embedded server in the foreground."""
    from .server.options import serve, server_from_args

    return serve(server_from_args(args), prog="pyxs serve")


def cmd_run(args: argparse.Namespace) -> int:
    """``pyxs run -- CMD...``: CMD against a throwaway server (see
    :func:`pyxs._cli.child.run_command` for signals and the exit status)."""
    from .server.options import cannot_serve, server_from_args

    def start() -> tuple[dict[str, str], Callable[[], None]] | str:
        server = server_from_args(args)
        try:
            server.__enter__()  # its thread inherits the blocked signals
        except OSError as exc:
            return cannot_serve(server, exc, "pyxs run")
        # Absolute: CMD may change directory before it connects.
        env = {
            "XENSTORED_PATH": os.path.abspath(server.socket_path),
            "XENSTORED_RUNDIR": os.path.abspath(server.run_dir),
        }
        return env, lambda: server.__exit__(None, None, None)

    from ._cli.child import run_command

    return run_command(args.command, start, "pyxs run")


def cmd_trace(args: argparse.Namespace) -> int:
    """``pyxs trace``: see :mod:`pyxs._cli.trace`."""
    from ._cli.trace import main as trace_main

    return trace_main(args)


def _add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .server.options import add_server_arguments

    parser = subparsers.add_parser(
        "serve",
        help="run an embedded XenStore server in the foreground",
        description="Run an embedded XenStore server that answers like cxenstored 4.17.",
    )
    add_server_arguments(parser)
    parser.set_defaults(func=cmd_serve)


def _add_run(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    import argparse

    from .server.options import add_server_arguments

    parser = subparsers.add_parser(
        "run",
        help="run a command against a throwaway XenStore server",
        description="Start a XenStore server, run CMD with XENSTORED_PATH set to its "
        "socket and XENSTORED_RUNDIR to its run dir (where the guest sockets "
        "domain-<domid>.sock appear once a domain is introduced), stop the server "
        "when CMD exits; exit with CMD's status. As with libxenstore, XENSTORED_PATH "
        "wins over $XENSTORED_RUNDIR/socket; they name the same socket unless "
        "--socket puts it elsewhere. Run from a virtual environment, its bin directory "
        "comes first on CMD's PATH (so 'python' is the one pyxs is installed in). "
        "SIGTERM and SIGHUP are passed on to CMD.",
    )
    add_server_arguments(parser)
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD...",
        help="the command to run and its arguments",
    )
    parser.set_defaults(func=cmd_run)


def _add_trace(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._cli import trace

    parser = subparsers.add_parser("trace", help=trace.HELP, description=trace.DESCRIPTION)
    trace.add_arguments(parser)
    parser.set_defaults(func=cmd_trace)


#: (name, registration function) of every subcommand, in help order.
SUBCOMMANDS: list[
    tuple[str, Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]
] = [
    ("serve", _add_serve),
    ("run", _add_run),
    ("trace", _add_trace),
]


def _help_formatter() -> type[argparse.HelpFormatter]:
    import argparse
    import textwrap

    class HelpFormatter(argparse.HelpFormatter):
        """Wraps lines without breaking "xenstore-watch" at its hyphen."""

        def _split_lines(self, text: str, width: int) -> list[str]:
            return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    return HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="pyxs",
        description="XenStore access the Python way.",
        epilog="Run 'pyxs COMMAND --help' for the options of a command.",
        formatter_class=_help_formatter(),
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"pyxs {__version__}")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    for _name, add in SUBCOMMANDS:
        add(subparsers)
    from ._cli import add_subparsers as add_xenstore_utils

    add_xenstore_utils(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pyxs`` command; returns the exit status."""
    if argv is None:
        argv = sys.argv[1:]
    # read, write, ls, ... parse their own arguments, as xenstore-utils do.
    from ._cli import COMMANDS as XENSTORE_UTILS

    if argv and argv[0] in XENSTORE_UTILS:
        from ._cli import main as xenstore_utils_main

        return xenstore_utils_main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return func(args)


def console_main() -> None:
    """The ``pyxs`` console script (and ``python -m pyxs``): :func:`main`,
    whose status is the exit status; the interpreter then shuts down as
    usual (atexit handlers run, logging is flushed). In-process callers use
    :func:`main`."""
    sys.exit(main())


if __name__ == "__main__":
    console_main()
