"""The xenstore-utils subcommands: read, write, rm, exists, list, ls, chmod, watch,
plus mkdir and perms.

Each ``cmd_<name>(ctx, ns) -> int`` does what the xenstore-* tool of 4.17
does (see ``tools/xenstore/xenstore_client.c``): the same output bytes, the
same messages on stderr (with ``pyxs`` for the program name), and the same
all-or-nothing transaction wherever a command makes several requests. What
4.17 gets wrong in ways no script can want (a stack buffer of 256 bytes for
``chmod -r`` paths, ``//child`` under ``/``, a blank line after a watch
error) is done right; everything else, quirks included, is kept. Where 4.17
exits with 1, pyxs may say why more precisely (see :mod:`.context` for the
exit statuses) and adds the reason to a message when it is not "no such
node" or "invalid argument".

Requests go out pipelined through the :class:`~.session.Session`; several
paths cost one round trip, not one each.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

from .. import commands
from ..exceptions import NoEntryError, PyXSError
from ..paths import validate_path
from .context import Context, UserError, describe, exit_status, is_fatal
from .escape import json_value, sanitise, unsanitise
from .session import Session
from .walk import ListFailed, Node, walk

__all__ = [
    "cmd_chmod",
    "cmd_exists",
    "cmd_list",
    "cmd_ls",
    "cmd_mkdir",
    "cmd_perms",
    "cmd_read",
    "cmd_rm",
    "cmd_watch",
    "cmd_write",
]

fsencode = os.fsencode
X = TypeVar("X")


def _build(
    session: Session,
    items: Sequence[X],
    build: Callable[[X], commands.Operation[Any]],
    tx: int,
) -> list[Any]:
    """Build ``build(item)`` for each item and run them pipelined; results or
    exceptions, in order.

    A local error (a bad path) stands for its operation's result, and stops
    the building there: the C tools would not get past it either.
    """
    operations: list[commands.Operation[Any]] = []
    local: PyXSError | None = None
    for item in items:
        try:
            operations.append(build(item))
        except PyXSError as exc:
            local = exc
            break
    results = session.call_many(operations, tx)
    if local is not None:
        results.append(local)
    return results


def _maybe_transaction(ctx: Context, needed: bool, body: Callable[[int], int]) -> int:
    if not needed:
        return body(0)
    session: Session = ctx.session()
    return session.transaction(body)


def _failed(ctx: Context, message: str, error: BaseException) -> int:
    """Print ``message`` (plus the reason when it adds something); the status."""
    ctx.error(message, error)
    return exit_status(error)


# -- read ---------------------------------------------------------------------


def cmd_read(ctx: Context, ns: Any) -> int:
    return _per_path(
        ctx,
        ns,
        commands.read,
        "couldn't read path",
        lambda path, value: json_value(value, {"path": ctx.text(path)}),
        lambda path, value: _prefix(ns, path) + (value if ns.raw else sanitise(value) + b"\n"),
    )


def _per_path(
    ctx: Context,
    ns: Any,
    make: Callable[[bytes], commands.Operation[Any]],
    failure: str,
    record: Callable[[bytes, Any], dict[str, Any]],
    lines: Callable[[bytes, Any], bytes],
) -> int:
    """``read``, ``list`` and ``perms``: one operation per path (in one
    transaction when there are several), each result printed as
    ``lines(path, result)`` or collected as ``record(path, result)`` for
    ``--json``; the first failure ends the command with ``failure``."""
    paths = [fsencode(p) for p in ns.args]
    out: list[bytes] = []
    records: list[dict[str, Any]] = []

    def body(tx: int) -> int:
        out.clear()
        records.clear()
        results = _build(ctx.session(), paths, make, tx)
        for path, result in zip(paths, results):
            if isinstance(result, BaseException):
                return _failed(ctx, f"{failure} {ctx.show(path)}", result)
            if ns.json:
                records.append(record(path, result))
                continue
            out.append(lines(path, result))
        return 0

    status = _maybe_transaction(ctx, len(paths) > 1, body)
    if ns.json:
        if status == 0:
            ctx.write_json(records)
    else:
        ctx.write(b"".join(out))
    return status


def _prefix(ns: Any, path: bytes) -> bytes:
    """``KEY: `` before a value with ``--prefix``."""
    return path + b": " if ns.prefix else b""


# -- write --------------------------------------------------------------------


def cmd_write(ctx: Context, ns: Any) -> int:
    args = [fsencode(a) for a in ns.args]
    if len(args) % 2:
        raise UserError("usage", "every key needs a value: key value [key value ...]")
    pairs = [
        (args[i], args[i + 1] if ns.raw else unsanitise(args[i + 1]))
        for i in range(0, len(args), 2)
    ]

    def body(tx: int) -> int:
        results = _build(ctx.session(), pairs, lambda pair: commands.write(*pair), tx)
        for (path, _), result in zip(pairs, results):
            if isinstance(result, BaseException):
                return _failed(ctx, f"could not write path {ctx.show(path)}", result)
        return 0

    return _maybe_transaction(ctx, len(pairs) > 1, body)


# -- mkdir ----------------------------------------------------------------------


def cmd_mkdir(ctx: Context, ns: Any) -> int:
    paths = [fsencode(p) for p in ns.args]

    def body(tx: int) -> int:
        results = _build(ctx.session(), paths, commands.mkdir, tx)
        for path, result in zip(paths, results):
            if isinstance(result, BaseException):
                return _failed(ctx, f"could not create path {ctx.show(path)}", result)
        return 0

    return _maybe_transaction(ctx, len(paths) > 1, body)


# -- rm -------------------------------------------------------------------------


def _call(
    session: Session, build: Callable[[bytes], commands.Operation[Any]], path: bytes, tx: int
) -> Any:
    """One operation; its result or the exception (local or from the server)."""
    try:
        return session.call(build(path), tx)
    except PyXSError as exc:
        if is_fatal(exc):
            raise
        return exc


def cmd_rm(ctx: Context, ns: Any) -> int:
    paths = [fsencode(p) for p in ns.args]

    def tidy(tx: int, path: bytes) -> int:
        # xenstore-rm -t: remove, then remove each parent that is left with
        # an empty value and no children, up to the root.
        session = ctx.session()
        while True:
            result = _call(session, commands.rm, path, tx)
            if isinstance(result, BaseException):
                return _failed(ctx, f"could not remove path {ctx.show(path)}", result)
            slash = path.rfind(b"/")
            if slash < 0:
                return 0
            path = path[:slash]
            value = _call(session, commands.read, path, tx)
            if isinstance(value, BaseException) or value != b"":
                return 0
            children = _call(session, commands.directory, path, tx)
            if isinstance(children, BaseException) or children:
                return 0

    def body(tx: int) -> int:
        if ns.tidy:
            for path in paths:
                status = tidy(tx, path)
                if status:
                    return status
            return 0
        results = _build(ctx.session(), paths, commands.rm, tx)
        for path, result in zip(paths, results):
            if isinstance(result, BaseException):
                return _failed(ctx, f"could not remove path {ctx.show(path)}", result)
        return 0

    return _maybe_transaction(ctx, len(paths) > 1 or ns.tidy, body)


# -- exists ---------------------------------------------------------------------


def cmd_exists(ctx: Context, ns: Any) -> int:
    paths = [fsencode(p) for p in ns.args]

    def body(tx: int) -> int:
        results = _build(ctx.session(), paths, commands.read, tx)
        for path, result in zip(paths, results):
            if isinstance(result, BaseException):
                status = exit_status(result)
                if status != 1:  # not "missing" but "cannot tell"
                    ctx.error(f"cannot tell whether {ctx.show(path)} exists", result)
                return status
        return 0

    return _maybe_transaction(ctx, len(paths) > 1, body)


# -- list -------------------------------------------------------------------------


def cmd_list(ctx: Context, ns: Any) -> int:
    # 4.17 prints "<key>/<child>" even for "/" (giving "//tool").
    return _per_path(
        ctx,
        ns,
        commands.list_children,
        "could not list path",
        lambda path, names: {"path": ctx.text(path), "children": [ctx.text(n) for n in names]},
        lambda path, names: b"".join(
            (path + b"/" if ns.prefix else b"") + name + b"\n" for name in names
        ),
    )


# -- ls -----------------------------------------------------------------------------

_TAG_LEN = len(' = "..."')
_INT_MAX = 2**31 - 1


def _ls_widths(full: bool, stdout_fd: int) -> tuple[int, int]:
    """xenstore-ls's (max_width, desired_width): 80/60, -f lifts them, a
    terminal's width minus 2 then overrides max_width (even with -f)."""
    max_width, desired_width = (_INT_MAX // 2, 0) if full else (80, 60)
    try:
        columns = os.get_terminal_size(stdout_fd).columns
    except (OSError, ValueError):
        return max_width, desired_width
    return columns - 2, desired_width


#: ' ' at even positions, '.' at odd ones: xenstore-ls -p's leader dots
_DOTS = b" ." * 64


def ls_line(node: Node, full: bool, show_perms: bool, max_width: int, desired: int) -> bytes:
    """One line of ``xenstore-ls`` (do_ls() in xenstore_client.c)."""
    value = node.value
    if not full and not show_perms and value is not None:
        # the common case, with nothing to cut: indent, name, value
        depth = node.depth
        name = node.name
        if depth + len(name) + len(value) + _TAG_LEN <= max_width:
            return b'%s%s = "%s"\n' % (b" " * depth, name, sanitise(value))
    if full:
        parts = [node.path]
        width = 0
    else:
        depth = node.depth
        precision = max_width - _TAG_LEN - depth
        name = node.name if precision < 0 else node.name[:precision]
        parts = [b" " * depth, name]
        width = depth + len(name)
    if value is None:
        parts.append(b":\n")
    else:
        text = sanitise(value)
        if 0 <= max_width < width + len(value) + _TAG_LEN:
            precision = max_width - _TAG_LEN - width
            parts += (b' = "', text if precision < 0 else text[:precision], b'\\..."')
        else:
            parts += (b' = "', text, b'"')
            width += len(text) + 5
            if show_perms:
                width += 1
                limit = min(desired, max_width)
                dots = _DOTS[width:limit] if width < limit else b""
                parts += (b" ", dots)
    if show_perms and node.perms is not None:
        parts += (b"  (", b",".join(node.perms), b")")
    parts.append(b"\n")
    return b"".join(parts)


#: ``ls`` writes its lines in chunks of about this many bytes: one write per
#: line is a system call per line when stdout is unbuffered (``python -u``,
#: ``PYTHONUNBUFFERED``), which on a large tree costs more than the walk.
_LS_CHUNK = 64 * 1024


def cmd_ls(ctx: Context, ns: Any) -> int:
    paths = [fsencode(p) for p in ns.args] or [b"/"]
    session = ctx.session()
    out = ctx.out
    if ns.json:
        return _ls_json(ctx, ns, paths)
    max_width, desired = _ls_widths(ns.flat, ctx.stdout_fd)
    full, show_perms = bool(ns.flat), bool(ns.prefix)
    pending: list[bytes] = []

    def write_pending() -> None:
        out.write(b"".join(pending))
        pending.clear()

    size = 0
    try:
        for path in paths:
            try:
                for node in walk(session, path, perms=show_perms):
                    if show_perms and node.perms is None:
                        write_pending()
                        size = 0
                        out.flush()
                        ctx.warn(
                            f"\ncould not access permissions for {ctx.show(node.name)}",
                            node.perms_error,
                        )
                    line = ls_line(node, full, show_perms, max_width, desired)
                    pending.append(line)
                    size += len(line)
                    if size >= _LS_CHUNK:
                        write_pending()
                        size = 0
            except (ListFailed, PyXSError) as exc:
                write_pending()
                return _list_failed(ctx, path, exc)
    finally:
        if pending:
            write_pending()
    return 0


def _list_failed(ctx: Context, path: bytes, exc: BaseException) -> int:
    """xenstore-ls's ``err(1, "xs_directory (%s)", path)``, with our statuses."""
    if isinstance(exc, ListFailed):
        path, exc = exc.path, exc.error
    if is_fatal(exc):
        raise exc
    ctx.out.flush()
    ctx.error(f"xs_directory ({ctx.show(path)})", exc, always_reason=True)
    return exit_status(exc)


def _ls_json(ctx: Context, ns: Any, paths: list[bytes]) -> int:
    session = ctx.session()
    records: list[dict[str, Any]] = []
    for path in paths:
        try:
            for node in walk(session, path, perms=bool(ns.prefix)):
                records.append(_node_record(ctx, node))
        except (ListFailed, PyXSError) as exc:
            return _list_failed(ctx, path, exc)
    ctx.write_json(records)
    return 0


def _node_record(ctx: Context, node: Node) -> dict[str, Any]:
    record: dict[str, Any] = {"path": ctx.text(node.path)}
    if node.value is not None:
        json_value(node.value, record)
    elif node.value_error is not None:
        record["value"] = None
        record["error"] = describe(node.value_error)
    if node.perms is not None:
        record["perms"] = [ctx.text(p) for p in node.perms]
    elif node.perms_error is not None:
        record["perms"] = None
        record["perms_error"] = describe(node.perms_error)
    return record


# -- chmod --------------------------------------------------------------------------


def parse_mode(spec: str) -> bytes:
    """A chmod mode argument, ``r5``: letter ``n r w b`` and a domain id
    (``r`` alone is ``r0``, as atoi("") is 0 in the C tool)."""
    raw = fsencode(spec)
    letter, digits = raw[:1], raw[1:]
    if letter not in (b"n", b"r", b"w", b"b") or not letter:
        shown = spec[:1] if spec else ""
        raise UserError("failed", f"Invalid permission specification: '{shown}'")
    if digits and (not digits.isdigit() or int(digits) > 0xFFFFFFFF):
        raise UserError("failed", f"Invalid permission specification: '{spec}'")
    return letter + b"%d" % int(digits or b"0")


def cmd_chmod(ctx: Context, ns: Any) -> int:
    path = fsencode(ns.args[0])
    modes = [parse_mode(m) for m in ns.args[1:]]
    msg = "Error occurred setting permissions on '%s'"

    def body(tx: int) -> int:
        session = ctx.session()
        targets = [path]
        if ns.upto:  # the parents, up to (not including) "/"
            parent = path
            while True:
                slash = parent.rfind(b"/")
                if slash < 0:
                    # set what came before, as 4.17 does, then fail: the
                    # transaction is abandoned, so nothing is applied
                    session.call_many(
                        [commands.set_perms(p, modes) for p in targets if _valid(p)], tx
                    )
                    ctx.error(f"Unable to locate path separator '/' in '{ctx.show(parent)}'", None)
                    return 1
                parent = parent[:slash]
                if not parent:
                    break
                targets.append(parent)
        results = _build(session, targets, lambda p: commands.set_perms(p, modes), tx)
        for target, result in zip(targets, results):
            if isinstance(result, BaseException):
                ctx.error(msg % ctx.show(target), result, always_reason=True)
                return exit_status(result)
        if ns.recurse:
            failure: list[tuple[bytes, BaseException]] = []

            def done(node: Node) -> Callable[[Any, BaseException | None], None]:
                def callback(result: Any, error: BaseException | None) -> None:
                    if error is not None and not failure:
                        failure.append((node.path, error))

                return callback

            try:
                for node in walk(session, path, values=False, tx=tx):
                    if failure:
                        break
                    session.submit(commands.set_perms(node.path, modes), done(node), tx)
            except ListFailed:
                pass  # 4.17 does not recurse where it cannot list
            session.drain()
            if failure:
                target, error = failure[0]
                ctx.error(msg % ctx.show(target), error, always_reason=True)
                return exit_status(error)
        return 0

    return _maybe_transaction(ctx, bool(ns.upto or ns.recurse), body)


def _valid(path: bytes) -> bool:
    try:
        validate_path(path)
    except PyXSError:
        return False
    return True


# -- perms ------------------------------------------------------------------------------


def cmd_perms(ctx: Context, ns: Any) -> int:
    return _per_path(
        ctx,
        ns,
        commands.get_perms,
        "could not get permissions of path",
        lambda path, perms: {"path": ctx.text(path), "perms": [ctx.text(p) for p in perms]},
        lambda path, perms: _prefix(ns, path) + b" ".join(perms) + b"\n",
    )


# -- watch --------------------------------------------------------------------------------


def cmd_watch(ctx: Context, ns: Any) -> int:
    paths = [fsencode(p) for p in ns.args]
    count = ns.number if ns.number is not None else -1
    session = ctx.session()
    for path in paths:
        try:
            session.call(commands.watch(path, path))
        except PyXSError as exc:
            if is_fatal(exc):
                raise
            return _failed(ctx, f"Unable to add watch on {ctx.show(path)}", exc)
    stamp: Callable[[], str] | None = None
    if ns.timestamp:
        from datetime import datetime

        def stamp() -> str:
            return datetime.now().astimezone().isoformat(timespec="microseconds")

    seen = 0
    out = ctx.out
    while count < 0 or seen < count:
        event = session.next_event()
        seen += 1
        value: Any = None
        if ns.value or ns.json:
            value = _watch_value(session, event.path) if ns.value else None
        if ns.json:
            record: dict[str, Any] = {"path": ctx.text(event.path), "token": ctx.text(event.token)}
            if stamp is not None:
                record["time"] = stamp()
            if ns.value:
                if isinstance(value, bytes):
                    json_value(value, record)
                else:
                    record["value"] = None
                    if value is not None:
                        record["error"] = describe(value)
            ctx.write_json_line(record)
            continue
        parts = []
        if stamp is not None:
            parts.append(stamp().encode() + b" ")
        parts.append(event.path)
        if ns.value:
            if isinstance(value, bytes):
                parts += (b' = "', sanitise(value), b'"')
            elif isinstance(value, NoEntryError):
                parts.append(b" (deleted)")
            elif value is not None:
                parts.append(b" (" + describe(value).encode() + b")")
        parts.append(b"\n")
        out.write(b"".join(parts))
        out.flush()
    return 0


def _watch_value(session: Session, path: bytes) -> bytes | BaseException | None:
    """The value of an event's node now: bytes, the error, or None (@ paths)."""
    if path.startswith(b"@"):
        return None
    try:
        value: bytes = session.call(commands.read(path))
    except PyXSError as exc:
        if is_fatal(exc):
            raise
        return exc
    return value
