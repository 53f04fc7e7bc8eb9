"""What every subcommand shares: output, messages, exit statuses, the session.

Exit statuses (documented in ``pyxs --help`` and the docs)::

    0    success (for ``exists``: every path exists)
    1    the operation failed: no such node, an invalid path or value, any
         other error XenStore reported; for ``exists``: a path does not exist;
         or a usage error (bad option, missing operand), as xenstore-utils
    3    permission denied (EACCES or EPERM from XenStore)
    4    XenStore unreachable: cannot connect, or the connection was lost
    130  interrupted (Ctrl-C)

xenstore-utils 4.17 exits with 1 for all of 1, 3 and 4; scripts that only
test for zero/non-zero see no difference. A usage error is 1, as with
xenstore-utils (``xenstore-write KEY`` prints its usage line and exits 1),
not argparse's 2: scripts moving from ``xenstore-write`` to ``pyxs write``
may test ``$?``. (``pyxs serve`` and ``pyxs run``, which have no
xenstore-utils counterpart, parse with argparse and exit 2.)
"""

from __future__ import annotations

import errno
import os
import sys
from typing import IO, Any

from ..exceptions import ConnectionError, PyXSError, XenStoreError

__all__ = [
    "DENIED",
    "FAILED",
    "INTERRUPTED",
    "OK",
    "UNREACHABLE",
    "USAGE",
    "Context",
    "UserError",
    "describe",
    "exit_status",
    "is_fatal",
]

OK = 0
FAILED = 1
USAGE = 1  # as xenstore-utils
DENIED = 3
UNREACHABLE = 4
INTERRUPTED = 130

EXIT_STATUS_HELP = """\
exit status:
  0    success
  1    failed: no such node, invalid path or value, another XenStore error;
       or a usage error (as xenstore-utils)
  3    permission denied by XenStore (EACCES, EPERM)
  4    XenStore unreachable (cannot connect, connection lost)
  130  interrupted
"""


class UserError(Exception):
    """A failure found by the command itself: ``kind`` is usage or failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def is_fatal(exc: BaseException) -> bool:
    """Connection trouble ends the whole run; other errors belong to one operation."""
    return isinstance(exc, ConnectionError) or not isinstance(exc, PyXSError)


def exit_status(exc: BaseException | None) -> int:
    if isinstance(exc, XenStoreError):
        if exc.errno in (errno.EACCES, errno.EPERM):
            return DENIED
        return FAILED
    if isinstance(exc, ConnectionError):
        return UNREACHABLE
    return FAILED


def describe(exc: BaseException) -> str:
    """The reason, as strerror() would give it."""
    if isinstance(exc, XenStoreError):
        return os.strerror(exc.errno)
    if isinstance(exc, ValueError):  # a local InvalidPath etc.: the server's EINVAL
        return os.strerror(errno.EINVAL)
    return str(exc)


def _plain(exc: BaseException) -> bool:
    """Errors the xenstore-utils message already says (a missing or bad path)."""
    if isinstance(exc, XenStoreError):
        return exc.errno in (errno.ENOENT, errno.EINVAL)
    return isinstance(exc, ValueError)


class Context:
    """One run of a subcommand."""

    def __init__(
        self,
        prog: str,
        options: Any,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> None:
        self.prog = prog
        self.options = options
        self.out: IO[bytes] = stdout if stdout is not None else sys.stdout.buffer
        self.err: IO[bytes] = stderr if stderr is not None else sys.stderr.buffer
        self._session: Any = None

    @property
    def stdout_fd(self) -> int:
        try:
            return self.out.fileno()
        except (OSError, ValueError, AttributeError):
            return -1

    def session(self) -> Any:
        """The session, connected on first use."""
        if self._session is None:
            from .session import Session, connect

            options = self.options
            self._session = Session(connect(options.socket, options.xenbus))
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- text -------------------------------------------------------------

    @staticmethod
    def show(path: bytes) -> str:
        return os.fsdecode(path)

    @staticmethod
    def text(data: bytes) -> str:
        return data.decode("utf-8", "replace")

    def _line(self, text: str) -> None:
        self.out.flush()
        self.err.write(os.fsencode(text) + b"\n")
        self.err.flush()

    def error(
        self, message: str, exc: BaseException | None, *, always_reason: bool = False
    ) -> None:
        """``pyxs: <message>[: <reason>]`` on stderr."""
        if exc is not None and (always_reason or not _plain(exc)):
            message = f"{message}: {describe(exc)}"
        self._line(f"{self.prog}: {message}")

    def warn(self, message: str, exc: BaseException | None) -> None:
        """As C's warn(): the reason always follows."""
        if exc is not None:
            message = f"{message}: {describe(exc)}"
        self._line(f"{self.prog}: {message}")

    # -- output -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if data:
            self.out.write(data)

    def write_json(self, records: list[Any]) -> None:
        """A JSON array, one element per line."""
        import json

        if not records:
            self.out.write(b"[]\n")
            return
        dumps = json.dumps
        body = ",\n".join(dumps(r, ensure_ascii=False) for r in records)
        self.out.write(b"[\n" + body.encode("utf-8") + b"\n]\n")

    def write_json_line(self, record: Any) -> None:
        import json

        self.out.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        self.out.flush()
