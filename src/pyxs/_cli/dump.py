"""``pyxs dump`` and ``pyxs restore``: a subtree to a file and back, exactly.

The dump format is JSON Lines (UTF-8), one object per line::

    {"format": "pyxs-dump", "version": 1, "root": "/vm"}
    {"path": "", "value": "", "perms": ["n0"]}
    {"path": "name", "value": "guest", "perms": ["n0", "r5"]}
    {"path": "blob", "value_base64": "AAEC", "perms": ["n0"]}

The first line is the header: ``root`` is the path the dump was taken from.
Every other line is a node: ``path`` relative to the root (``""`` is the
root itself), its value (``value`` when the bytes are valid UTF-8, which
decodes and re-encodes to the same bytes; ``value_base64`` otherwise) and
its permission list, owner first. Nodes come depth first, parents before
their children and children in creation order, so writing them in file
order recreates the tree with the same child order (XenStore lists children
in creation order). Restoring therefore round-trips exactly: a dump of the
restored tree equals the original dump (``restore --replace`` to be sure
no other node is left in the way).

Both directions pipeline their requests (see :mod:`.session`); neither runs
in a transaction (xenstored limits what one transaction may touch), so a
dump of a tree that changes meanwhile is not a snapshot: a node removed
during the walk is left out. A progress bar goes to stderr when it is a
terminal.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import IO, Any

from .. import commands
from ..exceptions import NoEntryError, PyXSError
from .context import Context, UserError, exit_status, is_fatal
from .escape import from_json_value, json_value
from .walk import ListFailed, child_path, walk

__all__ = ["FORMAT", "VERSION", "cmd_dump", "cmd_restore", "read_dump"]

_PERM = re.compile(r"[nrwb][0-9]{1,10}\Z")

FORMAT = "pyxs-dump"
VERSION = 1


class Progress:
    """A one-line progress display on a terminal, redrawn at most 10 times a second."""

    def __init__(self, stream: IO[bytes] | None, label: str, total: int | None = None) -> None:
        self.stream = stream
        self.label = label
        self.total = total
        self.count = 0
        self._next = 0.0
        self._start = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self.stream is None:
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 0.1
            self._draw(now)

    def _draw(self, now: float) -> None:
        assert self.stream is not None
        rate = self.count / max(now - self._start, 1e-6)
        if self.total:
            done = self.count / self.total
            bar = ("#" * int(done * 30)).ljust(30)
            text = f"{self.label} [{bar}] {done:4.0%} {self.count}/{self.total} nodes"
        else:
            text = f"{self.label}: {self.count} nodes"
        text += f", {rate:.0f}/s"
        self.stream.write(b"\r" + text.encode() + b"\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None:
            self.stream.write(b"\r\x1b[K")
            self.stream.flush()


def _progress(ctx: Context, ns: Any, label: str, total: int | None = None) -> Progress:
    stream: IO[bytes] | None = None
    if not ns.no_progress:
        try:
            if ctx.err.isatty():
                stream = ctx.err
        except (OSError, ValueError, AttributeError):
            stream = None
    return Progress(stream, label, total)


def _relative(root: bytes, path: bytes) -> bytes:
    if path == root:
        return b""
    prefix = root if root.endswith(b"/") else root + b"/"
    return path[len(prefix) :]


def cmd_dump(ctx: Context, ns: Any) -> int:
    root = os.fsencode(ns.args[0]) if ns.args else b"/"
    session = ctx.session()
    target = ns.output
    out: IO[bytes]
    if target and target != "-":
        try:
            out = open(target, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UserError("failed", f"cannot write {target}: {exc.strerror}") from None
    else:
        out = ctx.out
    progress = _progress(ctx, ns, "dump")
    dumps = json.dumps
    try:
        header = {"format": FORMAT, "version": VERSION, "root": ctx.text(root)}
        lines = [dumps(header)]
        try:
            for node in walk(session, root, perms=True, include_root=True):
                if node.value is None or node.perms is None:
                    error = node.value_error or node.perms_error
                    if isinstance(error, NoEntryError) and node.path != root:
                        continue  # removed while we walked
                    assert error is not None
                    progress.finish()
                    ctx.error(f"could not dump path {ctx.show(node.path)}", error)
                    return exit_status(error)
                record: dict[str, Any] = {"path": ctx.text(_relative(root, node.path))}
                json_value(node.value, record)
                record["perms"] = [p.decode("ascii", "replace") for p in node.perms]
                lines.append(dumps(record, ensure_ascii=False))
                if len(lines) >= 512:
                    out.write(("\n".join(lines) + "\n").encode("utf-8"))
                    lines.clear()
                progress.advance()
        except (ListFailed, PyXSError) as exc:
            where, error = (exc.path, exc.error) if isinstance(exc, ListFailed) else (root, exc)
            if is_fatal(error):
                raise error from None
            progress.finish()
            ctx.error(f"could not dump path {ctx.show(where)}", error)
            return exit_status(error)
        if lines:
            out.write(("\n".join(lines) + "\n").encode("utf-8"))
        progress.finish()
    finally:
        if out is not ctx.out:
            out.close()
    return 0


class DumpFormatError(ValueError):
    pass


def read_dump(
    data: bytes, name: str = "dump"
) -> tuple[str, list[tuple[bytes, bytes, list[bytes]]]]:
    """Parse a dump: ``(root, [(relative path, value, perms), ...])``."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise DumpFormatError(f"{name}: empty file, not a pyxs dump")
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DumpFormatError(f"{name}:1: not a pyxs dump (no pyxs-dump header)")
    if header.get("version") != VERSION:
        raise DumpFormatError(f"{name}:1: unsupported dump version {header.get('version')!r}")
    root = header.get("root")
    if not isinstance(root, str):
        raise DumpFormatError(f"{name}:1: the header has no root path")
    nodes = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            path = obj["path"]
            perms = obj.get("perms")
            if not isinstance(path, str):
                raise ValueError("path is not a string")
            if perms is not None and (
                not isinstance(perms, list)
                or not all(isinstance(p, str) and _PERM.match(p) for p in perms)
            ):
                raise ValueError('perms is not a list such as ["n0", "r5"]')
            value = from_json_value(obj)
            nodes.append(
                (
                    path.encode("ascii"),
                    value,
                    [p.encode("ascii") for p in perms] if perms is not None else [],
                )
            )
        except (ValueError, KeyError, UnicodeEncodeError) as exc:
            reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DumpFormatError(f"{name}:{number}: bad node line ({reason})") from None
    return root, nodes


def cmd_restore(ctx: Context, ns: Any) -> int:
    source = ns.args[0]
    try:
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as file:
                data = file.read()
    except OSError as exc:
        raise UserError("failed", f"cannot read {source}: {exc.strerror}") from None
    try:
        root_text, nodes = read_dump(data, "<stdin>" if source == "-" else source)
    except DumpFormatError as exc:
        raise UserError("failed", str(exc)) from None
    dest = os.fsencode(ns.args[1]) if len(ns.args) > 1 else root_text.encode("ascii", "replace")
    session = ctx.session()
    if ns.replace:
        if dest == b"/":
            raise UserError("failed", "refusing to remove / (--replace with destination /)")
        try:
            session.call(commands.rm(dest))
        except NoEntryError:
            pass  # its parent is missing too: nothing to remove
        except PyXSError as exc:
            if is_fatal(exc):
                raise
            ctx.error(f"could not remove path {ctx.show(dest)}", exc)
            return exit_status(exc)
    progress = _progress(ctx, ns, "restore", len(nodes))
    failure: list[tuple[bytes, BaseException]] = []

    def done(path: bytes, last: bool) -> Any:
        def callback(result: Any, error: BaseException | None) -> None:
            if error is not None and not failure:
                failure.append((path, error))
            if last:
                progress.advance()

        return callback

    set_perms = not ns.no_perms
    for rel, value, perms in nodes:
        if failure:
            break
        path = dest if not rel else child_path(dest, rel)
        try:
            write = commands.write(path, value)
            perms_command = commands.set_perms(path, perms) if set_perms and perms else None
        except PyXSError as exc:
            failure.append((path, exc))
            break
        session.submit(write, done(path, perms_command is None))
        if perms_command is not None:
            session.submit(perms_command, done(path, True))
        while session.queued >= session.window:
            session.step()
    session.drain()
    progress.finish()
    if failure:
        path, error = failure[0]
        ctx.error(f"could not restore path {ctx.show(path)}", error, always_reason=True)
        return exit_status(error)
    return 0
