"""Packets in, decoded lines out: the tracer of ``pyxs trace`` and ``Server(trace=...)``.

Theory of operation
-------------------
Whoever sees the traffic (the proxy of :mod:`.proxy`, or the embedded
server from the inside) hands every whole packet to :meth:`Tracer.packet`
with the number of its connection and which way it went: :data:`TO_SERVER`
(a request) or :data:`TO_CLIENT` (a reply, or a ``WATCH_EVENT``). Packets
come from :class:`pyxs.protocol.Decoder` (the server's output goes through
one in :meth:`Tracer.queued`); nothing here parses bytes off a wire.

Per connection the tracer remembers each request until its reply (matched by
req_id, as both xenstoreds echo it), which gives the reply its round-trip
time, the name of the operation it answers (an ``ERROR`` reply says only
the error) and whether the filters let its request through. One packet
makes one line of text (:func:`format_text`) or one JSON object
(:func:`format_json`); both are made from the same :class:`Record`.

Paths and other strings are escaped as ``xenstore-ls`` escapes values
(:func:`pyxs._cli.escape.sanitise`), values are also quoted as it quotes
them; in JSON a value is text when it is UTF-8, else base64.

Filters (``--path``, ``--op``, ``--errors``) decide on the request; its
reply follows it. With ``--errors`` a request is held back until its reply
and written only when that reply is an error. The :class:`Summary` counts
what the filters let through.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import IO, Any, Callable, NamedTuple

from .._cli.escape import json_value, sanitise
from ..protocol import Decoder, Op, Packet, split_strings

__all__ = [
    "NOTE",
    "TO_CLIENT",
    "TO_SERVER",
    "Filters",
    "Record",
    "Summary",
    "Tracer",
    "format_json",
    "format_text",
    "op_name",
]

#: which way a packet went: client to server (a request) ...
TO_SERVER = ">"
#: ... or server to client (a reply, or a watch event)
TO_CLIENT = "<"
#: a line about a connection, not a packet (opened, closed, cut mid-message)
NOTE = "-"

_WATCH_EVENT = int(Op.WATCH_EVENT)
_ERROR = int(Op.ERROR)
_WRITE = int(Op.WRITE)
_READ = int(Op.READ)
#: requests whose first string is a node path
_PATH_OPS = frozenset((
    Op.DIRECTORY, Op.READ, Op.GET_PERMS, Op.WATCH, Op.UNWATCH,
    Op.WRITE, Op.MKDIR, Op.RM, Op.SET_PERMS, Op.DIRECTORY_PART,
))  # fmt: skip
_NAMES = {int(op): op.name for op in Op if op.name != "DEBUG"}
#: how many of the slowest requests the summary lists
SLOWEST = 5


def op_name(op: int) -> str:
    """``READ`` for 2; an op XenStore does not define is its number."""
    return _NAMES.get(op, str(op))


def _text(raw: bytes) -> str:
    return sanitise(raw).decode("ascii")


class Record(NamedTuple):
    """One line of the trace, before it is formatted."""

    t: float  #: seconds since the tracer started
    conn: int
    domid: int | None
    kind: str  #: "request", "reply", "event" or "note"
    op: str  #: the operation (a reply: of its request)
    req_id: int
    tx_id: int
    path: bytes | None
    value: bytes | None
    args: list[bytes]
    error: str | None
    rtt: float | None  #: seconds from request to reply (replies)
    note: str | None


def _decode(packet: Packet, kind: str, op: int) -> tuple[bytes | None, bytes | None, list[bytes]]:
    """(path, value, other strings) of a packet's payload."""
    payload = packet.payload
    if kind == "request":
        if op == _WRITE:
            path, _, value = payload.partition(b"\0")
            return path, value, []
        if op in _PATH_OPS:
            strings = split_strings(payload)
            return (strings[0] if strings else None), None, strings[1:]
        return None, None, split_strings(payload)
    if kind == "event":
        strings = split_strings(payload)
        return (strings[0] if strings else None), None, strings[1:]
    if packet.op == _ERROR:
        return None, None, []  # (the error name is the Record's)
    if op == _READ and packet.op == _READ:
        return None, payload, []
    return None, None, split_strings(payload)


def format_text(rec: Record) -> str:
    """``0.000213 #1 > WRITE req=1 tx=0 /vm/a "x"``: see docs/trace.rst."""
    conn = f"#{rec.conn}" if rec.domid is None else f"#{rec.conn}/dom{rec.domid}"
    if rec.kind == "note":
        return f"{rec.t:.6f} {conn} {NOTE} {rec.note}"
    arrow = {"request": TO_SERVER, "reply": TO_CLIENT, "event": "*"}[rec.kind]
    parts = [f"{rec.t:.6f}", conn, arrow, rec.op, f"req={rec.req_id}", f"tx={rec.tx_id}"]
    if rec.path is not None:
        parts.append(_text(rec.path))
    if rec.value is not None:
        parts.append(f'"{_text(rec.value)}"')
    parts.extend(_text(arg) or '""' for arg in rec.args)
    if rec.error is not None:
        parts.append(f"ERROR {rec.error}")
    if rec.rtt is not None:
        parts.append(f"({rec.rtt * 1e6:.0f}us)")
    return " ".join(parts)


def format_json(rec: Record) -> str:
    """One JSON object; its fields are listed in docs/trace.rst."""
    obj: dict[str, Any] = {"t": round(rec.t, 6), "conn": rec.conn}
    if rec.domid is not None:
        obj["dom"] = rec.domid
    obj["dir"] = rec.kind
    if rec.kind == "note":
        obj["note"] = rec.note
        return json.dumps(obj)
    obj.update(op=rec.op, req_id=rec.req_id, tx_id=rec.tx_id)
    if rec.path is not None:
        obj["path"] = _text(rec.path)
    if rec.value is not None:
        json_value(rec.value, obj)
    obj["args"] = [_text(arg) for arg in rec.args]
    if rec.error is not None:
        obj["error"] = rec.error
    if rec.rtt is not None:
        obj["rtt_us"] = round(rec.rtt * 1e6, 1)
    return json.dumps(obj)


class Filters(NamedTuple):
    """What to show: requests under one of ``paths``, of one of ``ops``,
    answered by an error (``errors``); empty means no condition."""

    paths: tuple[bytes, ...] = ()
    ops: frozenset[str] = frozenset()
    errors: bool = False

    def admits(self, op: str, path: bytes | None) -> bool:
        """Whether a request (or an event, ``op`` ``WATCH_EVENT``) passes
        ``paths`` and ``ops``."""
        if self.ops and op not in self.ops:
            return False
        if self.paths:
            if path is None:
                return False
            return any(
                path == prefix or path.startswith(prefix.rstrip(b"/") + b"/")
                for prefix in self.paths
            )
        return True


class Summary:
    """Counts for ``--summary``: requests per op, errors per name, the
    slowest requests, watches, transactions."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.slowest: list[tuple[float, Record, Record]] = []
        self.watches = {"registered": 0, "fired": 0}
        self.transactions = {"started": 0, "committed": 0, "conflicted": 0, "aborted": 0}

    def count(self, rec: Record, request: Record | None) -> None:
        if rec.kind == "request":
            self.ops[rec.op] += 1
        elif rec.kind == "event":
            self.watches["fired"] += 1
        elif rec.kind == "reply":
            if rec.error is not None:
                self.errors[rec.error] += 1
            if request is not None and rec.rtt is not None:
                self._slow(rec.rtt, request, rec)
            self._outcome(rec, request)

    def _slow(self, rtt: float, request: Record, reply: Record) -> None:
        slowest = self.slowest
        if len(slowest) < SLOWEST or rtt > slowest[-1][0]:
            slowest.append((rtt, request, reply))
            slowest.sort(key=lambda item: -item[0])
            del slowest[SLOWEST:]

    def _outcome(self, rec: Record, request: Record | None) -> None:
        if rec.op == "WATCH" and rec.error is None:
            self.watches["registered"] += 1
        elif rec.op == "TRANSACTION_START" and rec.error is None:
            self.transactions["started"] += 1
        elif rec.op == "TRANSACTION_END":
            if rec.error == "EAGAIN":
                self.transactions["conflicted"] += 1
            elif rec.error is None and request is not None:
                commit = request.args[:1] == [b"T"]
                self.transactions["committed" if commit else "aborted"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "ops": dict(sorted(self.ops.items())),
            "errors": dict(sorted(self.errors.items())),
            "slowest": [
                {
                    "conn": req.conn,
                    "op": req.op,
                    "req_id": req.req_id,
                    "path": None if req.path is None else _text(req.path),
                    "rtt_us": round(rtt * 1e6, 1),
                    "error": reply.error,
                }
                for rtt, req, reply in self.slowest
            ],
            "watches": dict(self.watches),
            "transactions": dict(self.transactions),
        }

    def lines(self) -> list[str]:
        """The summary as text lines."""
        total = sum(self.ops.values())
        ops = ", ".join(f"{name} {n}" for name, n in sorted(self.ops.items()))
        errors = ", ".join(f"{name} {n}" for name, n in sorted(self.errors.items()))
        lines = [
            "summary:",
            f"  requests: {total}" + (f" ({ops})" if ops else ""),
            f"  errors: {sum(self.errors.values())}" + (f" ({errors})" if errors else ""),
        ]
        for rtt, req, reply in self.slowest:
            where = "" if req.path is None else " " + _text(req.path)
            failed = "" if reply.error is None else f" ERROR {reply.error}"
            lines.append(
                f"  slow: {rtt * 1e6:.0f}us #{req.conn} {req.op} req={req.req_id}{where}{failed}"
            )
        w, t = self.watches, self.transactions
        lines.append(f"  watches: {w['registered']} registered, {w['fired']} fired")
        lines.append(
            f"  transactions: {t['started']} started, {t['committed']} committed, "
            f"{t['conflicted']} conflicted, {t['aborted']} aborted"
        )
        return lines


class _Pending(NamedTuple):
    record: Record
    shown: bool  #: passed the filters
    op: int


class Tracer:
    """Writes the decoded traffic of many connections to ``out``.

    :param out: a text file, flushed by :meth:`flush`; closed only by the
        :meth:`finish` of a tracer :meth:`to_file` opened it for.
    :param json: one JSON object a line instead of text.
    :param filters: what to show (:class:`Filters`).
    :param summary: keep a :class:`Summary`, written by :meth:`finish`.
    :param autoflush: flush after every line (the embedded server's trace,
        whose loop has no moment of its own for it); else the caller calls
        :meth:`flush` (the proxy: after each batch of reads).

    Not thread-safe: one loop (the proxy's, the server's) calls it.
    """

    @classmethod
    def to_file(cls, target: str, **options: Any) -> Tracer:
        """A tracer writing to the file ``target`` (``-``: stderr), flushed
        line by line; :meth:`finish` closes a file it opened."""
        import sys

        if target == "-":
            return cls(sys.stderr, autoflush=True, **options)
        tracer = cls(open(target, "w", encoding="utf-8"), autoflush=True, **options)  # noqa: SIM115
        tracer._owned = True
        return tracer

    def __init__(
        self,
        out: IO[str],
        *,
        json: bool = False,
        filters: Filters | None = None,
        summary: bool = False,
        autoflush: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.out = out
        self.autoflush = autoflush
        self._owned = False  #: out was opened by to_file(): finish() closes it
        self.json = json
        self.filters = filters or Filters()
        self.summary = Summary() if summary else None
        self._clock = clock
        self._start = clock()
        self._format = format_json if json else format_text
        #: requests waiting for their replies: (conn, req_id) -> _Pending
        self._pending: dict[tuple[int, int], _Pending] = {}

    # -- the entry points ----------------------------------------------------
    def packet(self, conn: int, direction: str, packet: Packet, domid: int | None = None) -> None:
        """Trace one whole packet that went ``direction`` on connection ``conn``."""
        now = self._clock() - self._start
        op = packet.op
        if direction == TO_SERVER:
            self._request(now, conn, domid, packet)
        elif op == _WATCH_EVENT:
            self._event(now, conn, domid, packet)
        else:
            self._reply(now, conn, domid, packet)

    def queued(self, conn: int, domid: int | None, encoded: bytes) -> None:
        """Trace a packet the embedded server queued for a client, as bytes."""
        for packet in Decoder(frame_oversized=True).feed(encoded):
            self.packet(conn, TO_CLIENT, packet, domid)

    def note(self, conn: int, text: str, domid: int | None = None) -> None:
        """A line about connection ``conn`` (opened, closed, cut short)."""
        now = self._clock() - self._start
        rec = Record(now, conn, domid, "note", "", 0, 0, None, None, [], None, None, text)
        self._emit(rec, None)

    def closed(self, conn: int) -> None:
        """Forget the unanswered requests of a connection that went away."""
        for key in [key for key in self._pending if key[0] == conn]:
            del self._pending[key]

    def flush(self) -> None:
        self.out.flush()

    def finish(self) -> None:
        """Write the summary (if kept) and flush (close a file of :meth:`to_file`)."""
        if self.summary is not None:
            if self.json:
                self.out.write(json.dumps({"summary": self.summary.as_dict()}) + "\n")
            else:
                self.out.write("\n".join(self.summary.lines()) + "\n")
        self.flush()
        if self._owned:
            self._owned = False
            self.out.close()

    # -- one packet --------------------------------------------------------------
    def _request(self, now: float, conn: int, domid: int | None, packet: Packet) -> None:
        op = packet.op
        path, value, args = _decode(packet, "request", op)
        name = op_name(op)
        rec = Record(
            now, conn, domid, "request", name, packet.req_id, packet.tx_id,
            path, value, args, None, None, None,
        )  # fmt: skip
        shown = self.filters.admits(name, path)
        self._pending[(conn, packet.req_id)] = _Pending(rec, shown, op)
        if shown and not self.filters.errors:
            self._emit(rec, None)

    def _reply(self, now: float, conn: int, domid: int | None, packet: Packet) -> None:
        pending = self._pending.pop((conn, packet.req_id), None)
        if pending is not None:
            request: Record | None = pending.record
            op, name, rtt = pending.op, pending.record.op, now - pending.record.t
        else:
            request, op, name, rtt = None, packet.op, op_name(packet.op), None
        error = None
        if packet.op == _ERROR:
            error = packet.payload.rstrip(b"\0").decode("ascii", "replace")
        path, value, args = _decode(packet, "reply", op)
        rec = Record(
            now, conn, domid, "reply", name, packet.req_id, packet.tx_id,
            path, value, args, error, rtt, None,
        )  # fmt: skip
        filters = self.filters
        # a reply to nothing seen is shown unless filtered by path or op
        shown = pending.shown if pending is not None else not filters.paths and not filters.ops
        if not shown or (filters.errors and error is None):
            return
        if filters.errors and request is not None:
            self._emit(request, None)
        self._emit(rec, request)

    def _event(self, now: float, conn: int, domid: int | None, packet: Packet) -> None:
        path, _, args = _decode(packet, "event", _WATCH_EVENT)
        rec = Record(
            now, conn, domid, "event", "WATCH_EVENT", packet.req_id, packet.tx_id,
            path, None, args, None, None, None,
        )  # fmt: skip
        if self.filters.errors or not self.filters.admits(rec.op, path):
            return
        self._emit(rec, None)

    def _emit(self, rec: Record, request: Record | None) -> None:
        self.out.write(self._format(rec) + "\n")
        if self.summary is not None:
            self.summary.count(rec, request)
        if self.autoflush:
            self.out.flush()
