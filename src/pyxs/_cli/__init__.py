"""The xenstore-utils side of the ``pyxs`` command (read, write, ls, ...).

:mod:`pyxs.cli` hands any command line whose first word is in
:data:`COMMANDS` to :func:`main` before argparse sees it: these subcommands
parse their arguments as the xenstore-* tools do (GNU getopt_long, see
:mod:`.options`), and start-up stays lean (this package imports nothing
heavy until a subcommand runs).

Modules: :mod:`.options` (parsing, help), :mod:`.specs` (options and help
of each subcommand), :mod:`.context` (output, messages, exit statuses),
:mod:`.session` (transport choice, pipelined requests), :mod:`.walk` (the
pipelined tree walk), :mod:`.escape` (xenstore-utils escaping, JSON values),
:mod:`.tools` (the xenstore-utils subcommands), :mod:`.dump` (dump/restore).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import argparse

__all__ = ["COMMANDS", "add_subparsers", "main"]

#: The subcommands handled here, in help order.
COMMANDS = (
    "read",
    "write",
    "ls",
    "list",
    "rm",
    "exists",
    "chmod",
    "watch",
    "mkdir",
    "perms",
    "dump",
    "restore",
)

_MODULE = {"dump": "dump", "restore": "dump"}


def _function(name: str) -> Callable[[Any, Any], int]:
    module = _MODULE.get(name, "tools")
    if module == "dump":
        from . import dump as mod
    else:
        from . import tools as mod  # type: ignore[no-redef]
    func: Callable[[Any, Any], int] = getattr(mod, f"cmd_{name}")
    return func


def _usage_error(prog: str, spec: Any, message: str) -> int:
    from .context import USAGE
    from .options import usage_line

    err = sys.stderr
    err.write(f"{prog} {spec.name}: {message}\n{usage_line(prog, spec)}\n")
    err.write(f"Try '{prog} {spec.name} --help' for more information.\n")
    err.flush()
    return USAGE


def main(argv: Sequence[str], prog: str = "pyxs") -> int:
    """Run ``argv`` (``["read", "/vm/name"]``); return the exit status."""
    from .context import EXIT_STATUS_HELP, Context, UserError
    from .options import UsageError, format_help, parse
    from .specs import SPECS

    name = argv[0]
    spec = SPECS[name]
    try:
        ns = parse(spec, list(argv[1:]))
    except UsageError as exc:
        return _usage_error(prog, spec, str(exc))
    if ns.help:
        sys.stdout.write(format_help(prog, spec, EXIT_STATUS_HELP))
        sys.stdout.flush()
        return 0
    ctx = Context(prog, ns)
    try:
        try:
            status = _function(name)(ctx, ns)
        finally:
            ctx.close()
        ctx.out.flush()
        return status
    except UserError as exc:
        if exc.kind == "usage":
            return _usage_error(prog, spec, exc.message)
        ctx.error(exc.message, None)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except OSError as exc:  # a local file or terminal, not XenStore
        _silence_stdout_flush(ctx)
        ctx.error(exc.strerror or str(exc), None)
        return 1
    except Exception as exc:
        from ..exceptions import ConnectionError

        if not isinstance(exc, ConnectionError):
            raise
        from .session import CannotConnect

        _silence_stdout_flush(ctx)
        if isinstance(exc, CannotConnect):
            ctx.error(str(exc), None)
        else:
            ctx.error(f"lost the connection to XenStore ({exc})", None)
        return 4


def _silence_stdout_flush(ctx: Any) -> None:
    try:
        ctx.out.flush()
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the exit-time flush is quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def add_subparsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """List these subcommands in ``pyxs --help`` (they never parse through argparse)."""
    from .specs import SPECS

    for name in COMMANDS:
        subparsers.add_parser(name, help=SPECS[name].summary, add_help=False)
