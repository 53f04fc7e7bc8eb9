"""CONTROL (op 0) subcommands, answered as cxenstored 4.17 answers them.

``check``, ``log on|off``, ``logfile <file>``, ``memreport [<file>]``,
``print <string>``, ``quota [set <name> <val>|<domid>]``,
``quota-soft [set <name> <val>]``, ``help``, and ``live-update`` (which
this server does not do: it answers like the real daemon when no update is
in progress and refuses to start one).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Protocol

from ..protocol import XsdError
from .payload import c_atoi
from .quotas import Quotas, SoftQuotas
from .store import Fail, Store

__all__ = ["HELP", "control"]

OK = b"OK\0"

#: ``CONTROL help``, byte for byte.
HELP = (
    b"check\t\n"
    b"log\ton|off\n"
    b"live-update\t[-c <cmdline>] [-F] [-t <timeout>] <file>\n"
    b"    Default timeout is 60 seconds.\n"
    b"logfile\t<file>\n"
    b"memreport\t[<file>]\n"
    b"print\t<string>\n"
    b"quota\t[set <name> <val>|<domid>]\n"
    b"quota-soft\t[set <name> <val>]\n"
    b"help\t\n\0"
)


if TYPE_CHECKING:  # for annotations only: no class at run time

    class ControlTarget(Protocol):
        """What CONTROL reads and changes (:class:`~pyxs.server.core.XenStore`)."""

        store: Store
        quotas: Quotas
        soft_quotas: SoftQuotas
        logfile: str | None
        logging_enabled: bool

        def log(self, message: str) -> None: ...

        def set_logfile(self, path: str) -> None: ...

        def memreport(self) -> str: ...

        def domain_report(self, domid: int) -> bytes: ...


def _table(title: bytes, quotas: tuple[tuple[str, str], ...], get: Callable[[str], int]) -> bytes:
    lines = [title]
    for name, descr in quotas:
        lines.append(b"%-17s: %8d %s\n" % (name.encode(), get(name), descr.encode()))
    return b"".join(lines) + b"\0"


def _quota(core: ControlTarget, args: list[bytes]) -> bytes:
    quotas = core.quotas
    if not args:
        return _table(b"Quota settings:\n", quotas.DESCRIPTIONS, quotas.get)
    if args[0] == b"set":
        if len(args) != 3:
            raise Fail(XsdError.EINVAL)
        value = c_atoi(args[2])
        if value < 1:
            raise Fail(XsdError.EINVAL)
        name = args[1].decode("latin-1")
        if name not in dict(quotas.DESCRIPTIONS) or not quotas.set(name, value):
            raise Fail(XsdError.EINVAL)
        return OK
    if len(args) != 1:
        raise Fail(XsdError.EINVAL)
    return core.domain_report(c_atoi(args[0]) & 0xFFFFFFFF)


def _quota_soft(core: ControlTarget, args: list[bytes]) -> bytes:
    soft = core.soft_quotas
    if not args:
        return _table(b"Quota settings:\n", soft.DESCRIPTIONS, soft.get)
    if args[0] == b"set" and len(args) == 3:
        value = c_atoi(args[2])
        if value < 1 or not soft.set(args[1].decode("latin-1"), value):
            raise Fail(XsdError.EINVAL)
        return OK
    raise Fail(XsdError.EINVAL)


def _live_update(args: list[bytes]) -> bytes:
    if not args:
        raise Fail(XsdError.EINVAL)
    flag = args[0]
    if flag == b"-a":
        if len(args) != 1:
            raise Fail(XsdError.EINVAL)
        return b"No live-update session active.\0"
    if flag == b"-c":
        if len(args) != 2:
            raise Fail(XsdError.EINVAL)
        return b"Not in live-update session.\0"
    if flag == b"-s":
        i = 1
        while i < len(args):
            if args[i] == b"-F":
                i += 1
            elif args[i] == b"-t" and i < len(args) - 1:
                i += 2
            else:
                raise Fail(XsdError.EINVAL)
        return b"Not in live-update session.\0"
    if flag == b"-f" and len(args) == 2:
        try:
            mode = os.stat(args[1]).st_mode
        except OSError:
            return b"File not accessible.\0"
        if not mode & 0o111:
            return b"File not executable.\0"
        return b"Live update is not supported by this server.\0"
    raise Fail(XsdError.EINVAL)


def control(core: ControlTarget, payload: bytes) -> bytes:
    """Answer a CONTROL request (the caller checked it is privileged)."""
    nul = payload.find(b"\0")
    if nul < 0:
        raise Fail(XsdError.EINVAL)
    command = payload[:nul]
    strings = payload.split(b"\0")[:-1]
    if command == b"live-update":
        strings = strings[:5]
    args = strings[1:]
    if command == b"check":
        if args:
            raise Fail(XsdError.EINVAL)
        for problem in core.store.check():
            core.log(f"check_store: {problem}")
        return OK
    if command == b"log":
        if len(args) != 1 or args[0] not in (b"on", b"off"):
            raise Fail(XsdError.EINVAL)
        core.logging_enabled = args[0] == b"on"
        return OK
    if command == b"live-update":
        return _live_update(args)
    if command == b"logfile":
        if len(args) != 1:
            raise Fail(XsdError.EINVAL)
        core.set_logfile(os.fsdecode(args[0]))
        return OK
    if command == b"memreport":
        if len(args) > 1:
            raise Fail(XsdError.EINVAL)
        target = os.fsdecode(args[0]) if args else core.logfile
        if target is None:
            raise Fail(XsdError.EINVAL)
        try:
            with open(target, "a") as out:
                out.write(core.memreport())
        except OSError:
            raise Fail(XsdError.EINVAL) from None
        return OK
    if command == b"print":
        if len(args) != 1:
            raise Fail(XsdError.EINVAL)
        core.log("control: " + args[0].decode("utf-8", "replace"))
        return OK
    if command == b"quota":
        return _quota(core, args)
    if command == b"quota-soft":
        return _quota_soft(core, args)
    if command == b"help":
        if args:
            raise Fail(XsdError.EINVAL)
        return HELP
    raise Fail(XsdError.EINVAL)
