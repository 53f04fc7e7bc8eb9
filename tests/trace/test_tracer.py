"""The tracer as a module: packets in, lines and JSON objects out (no sockets)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from pyxs.protocol import Op, Packet
from pyxs.trace import TO_CLIENT, TO_SERVER, Filters, Tracer


class Clock:
    """Time stands still until a test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracer(**options: Any) -> tuple[Tracer, io.StringIO, Clock]:
    out = io.StringIO()
    clock = Clock()
    return Tracer(out, clock=clock, **options), out, clock


def req(op: Op, req_id: int, payload: bytes, tx_id: int = 0) -> Packet:
    return Packet(int(op), req_id, tx_id, payload)


def err(req_id: int, name: str, tx_id: int = 0) -> Packet:
    return Packet(int(Op.ERROR), req_id, tx_id, name.encode() + b"\0")


def test_one_line_per_packet_with_round_trip_times() -> None:
    t, out, clock = tracer()
    clock.now += 0.001
    t.packet(1, TO_SERVER, req(Op.WRITE, 7, b"/vm/a\0new\tline\\"))
    t.packet(1, TO_SERVER, req(Op.READ, 8, b"/vm/none\0"))
    clock.now += 0.000250
    t.packet(1, TO_CLIENT, req(Op.WRITE, 7, b"OK\0"))
    clock.now += 0.000100
    t.packet(1, TO_CLIENT, err(8, "ENOENT"))
    t.packet(2, TO_CLIENT, req(Op.WATCH_EVENT, 0, b"/vm/a\0tok\0"), domid=5)
    t.note(2, "client closed", domid=5)
    assert out.getvalue().splitlines() == [
        '0.001000 #1 > WRITE req=7 tx=0 /vm/a "new\\tline\\\\"',
        "0.001000 #1 > READ req=8 tx=0 /vm/none",
        "0.001250 #1 < WRITE req=7 tx=0 OK (250us)",
        "0.001350 #1 < READ req=8 tx=0 ERROR ENOENT (350us)",
        "0.001350 #2/dom5 * WATCH_EVENT req=0 tx=0 /vm/a tok",
        "0.001350 #2/dom5 - client closed",
    ]


def test_payload_fields_by_op() -> None:
    """Paths first, other strings after; READ's reply and WRITE's value
    quoted and escaped as xenstore-ls does (octal below 8, hex above 0x7e)."""
    t, out, _ = tracer()
    t.packet(1, TO_SERVER, req(Op.SET_PERMS, 1, b"/a\0n0\0r5\0"))
    t.packet(1, TO_SERVER, req(Op.TRANSACTION_END, 2, b"T\0", tx_id=3))
    t.packet(1, TO_SERVER, req(Op.READ, 3, b"/bin\0"))
    t.packet(1, TO_CLIENT, req(Op.READ, 3, b'\x01\xff"x'))
    t.packet(1, TO_SERVER, req(Op.DIRECTORY, 4, b"/\0"))
    t.packet(1, TO_CLIENT, req(Op.DIRECTORY, 4, b"tool\0vm\0"))
    t.packet(1, TO_SERVER, Packet(20, 5, 0, b""))  # an op XenStore does not define
    lines = [line.split(" ", 2)[2] for line in out.getvalue().splitlines()]
    assert lines == [
        "> SET_PERMS req=1 tx=0 /a n0 r5",
        "> TRANSACTION_END req=2 tx=3 T",
        "> READ req=3 tx=0 /bin",
        '< READ req=3 tx=0 "\\001\\xff"x" (0us)',
        "> DIRECTORY req=4 tx=0 /",
        "< DIRECTORY req=4 tx=0 tool vm (0us)",
        "> 20 req=5 tx=0",
    ]


def test_json_objects_have_the_documented_fields() -> None:
    t, out, clock = tracer(json=True)
    t.packet(3, TO_SERVER, req(Op.WRITE, 1, b"/a\0\xff\xfe"), domid=2)
    clock.now += 0.0005
    t.packet(3, TO_CLIENT, err(1, "EACCES"), domid=2)
    t.packet(3, TO_SERVER, req(Op.READ, 2, b"/b\0"))
    t.packet(3, TO_CLIENT, req(Op.READ, 2, b"caf\xc3\xa9"))
    t.packet(3, TO_CLIENT, req(Op.WATCH_EVENT, 0, b"/b\0tok\0"))
    t.note(3, "upstream closed")
    objs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert objs == [
        {
            "t": 0.0,
            "conn": 3,
            "dom": 2,
            "dir": "request",
            "op": "WRITE",
            "req_id": 1,
            "tx_id": 0,
            "path": "/a",
            "value_base64": "//4=",
            "args": [],
        },
        {
            "t": 0.0005,
            "conn": 3,
            "dom": 2,
            "dir": "reply",
            "op": "WRITE",
            "req_id": 1,
            "tx_id": 0,
            "args": [],
            "error": "EACCES",
            "rtt_us": 500.0,
        },
        {
            "t": 0.0005,
            "conn": 3,
            "dir": "request",
            "op": "READ",
            "req_id": 2,
            "tx_id": 0,
            "path": "/b",
            "args": [],
        },
        {
            "t": 0.0005,
            "conn": 3,
            "dir": "reply",
            "op": "READ",
            "req_id": 2,
            "tx_id": 0,
            "value": "café",
            "args": [],
            "rtt_us": 0.0,
        },
        {
            "t": 0.0005,
            "conn": 3,
            "dir": "event",
            "op": "WATCH_EVENT",
            "req_id": 0,
            "tx_id": 0,
            "path": "/b",
            "args": ["tok"],
        },
        {"t": 0.0005, "conn": 3, "dir": "note", "note": "upstream closed"},
    ]


def test_replies_are_matched_per_connection_and_req_id() -> None:
    """Two connections may use the same req_id; an unmatched reply is shown
    with its own op and no round-trip time."""
    t, out, clock = tracer()
    t.packet(1, TO_SERVER, req(Op.READ, 1, b"/a\0"))
    clock.now += 0.001
    t.packet(2, TO_SERVER, req(Op.MKDIR, 1, b"/b\0"))
    clock.now += 0.001
    t.packet(2, TO_CLIENT, req(Op.MKDIR, 1, b"OK\0"))
    t.packet(1, TO_CLIENT, req(Op.READ, 1, b"x"))
    t.closed(1)
    t.packet(1, TO_CLIENT, req(Op.READ, 9, b"stray"))
    lines = out.getvalue().splitlines()
    assert lines[2].endswith("#2 < MKDIR req=1 tx=0 OK (1000us)")
    assert lines[3].endswith('#1 < READ req=1 tx=0 "x" (2000us)')
    assert lines[4].endswith('#1 < READ req=9 tx=0 "stray"')


def workload(t: Tracer) -> None:
    """Traffic on two connections, for the filters and the summary."""
    t.packet(1, TO_SERVER, req(Op.WRITE, 1, b"/vm/1/name\0a"))
    t.packet(1, TO_CLIENT, req(Op.WRITE, 1, b"OK\0"))
    t.packet(1, TO_SERVER, req(Op.READ, 2, b"/vm/10\0"))
    t.packet(1, TO_CLIENT, err(2, "ENOENT"))
    t.packet(1, TO_SERVER, req(Op.WATCH, 3, b"/vm/1\0w\0"))
    t.packet(1, TO_CLIENT, req(Op.WATCH, 3, b"OK\0"))
    t.packet(1, TO_CLIENT, req(Op.WATCH_EVENT, 0, b"/vm/1\0w\0"))
    t.packet(2, TO_SERVER, req(Op.READ, 1, b"/local/x\0"))
    t.packet(2, TO_CLIENT, err(1, "EACCES"))
    t.packet(2, TO_SERVER, req(Op.TRANSACTION_START, 2, b"\0"))
    t.packet(2, TO_CLIENT, req(Op.TRANSACTION_START, 2, b"4\0"))
    t.packet(2, TO_SERVER, req(Op.TRANSACTION_END, 3, b"T\0", tx_id=4))
    t.packet(2, TO_CLIENT, err(3, "EAGAIN", tx_id=4))
    t.packet(2, TO_SERVER, req(Op.TRANSACTION_START, 4, b"\0"))
    t.packet(2, TO_CLIENT, req(Op.TRANSACTION_START, 4, b"5\0"))
    t.packet(2, TO_SERVER, req(Op.TRANSACTION_END, 5, b"T\0", tx_id=5))
    t.packet(2, TO_CLIENT, req(Op.TRANSACTION_END, 5, b"OK\0", tx_id=5))
    t.packet(2, TO_SERVER, req(Op.TRANSACTION_START, 6, b"\0"))
    t.packet(2, TO_CLIENT, req(Op.TRANSACTION_START, 6, b"6\0"))
    t.packet(2, TO_SERVER, req(Op.TRANSACTION_END, 7, b"F\0", tx_id=6))
    t.packet(2, TO_CLIENT, req(Op.TRANSACTION_END, 7, b"OK\0", tx_id=6))


def shown(filters: Filters) -> list[str]:
    t, out, _ = tracer(filters=filters)
    workload(t)
    return [" ".join(line.split()[1:5]) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (
            Filters(paths=(b"/vm/1",)),  # /vm/10 is not below /vm/1
            [
                "#1 > WRITE req=1",
                "#1 < WRITE req=1",
                "#1 > WATCH req=3",
                "#1 < WATCH req=3",
                "#1 * WATCH_EVENT req=0",
            ],
        ),
        (
            Filters(ops=frozenset({"READ", "WATCH_EVENT"})),
            [
                "#1 > READ req=2",
                "#1 < READ req=2",
                "#1 * WATCH_EVENT req=0",
                "#2 > READ req=1",
                "#2 < READ req=1",
            ],
        ),
        (
            Filters(errors=True),
            [
                "#1 > READ req=2",
                "#1 < READ req=2",
                "#2 > READ req=1",
                "#2 < READ req=1",
                "#2 > TRANSACTION_END req=3",
                "#2 < TRANSACTION_END req=3",
            ],
        ),
        (
            Filters(paths=(b"/local/",), errors=True),
            ["#2 > READ req=1", "#2 < READ req=1"],
        ),
    ],
)
def test_filters(filters: Filters, expected: list[str]) -> None:
    assert shown(filters) == expected


def test_summary_text_and_json() -> None:
    t, out, _ = tracer(summary=True)
    workload(t)
    t.finish()
    lines = out.getvalue().splitlines()
    at = lines.index("summary:")
    assert lines[at:] == [
        "summary:",
        "  requests: 10 (READ 2, TRANSACTION_END 3, TRANSACTION_START 3, WATCH 1, WRITE 1)",
        "  errors: 3 (EACCES 1, EAGAIN 1, ENOENT 1)",
        *[line for line in lines if line.startswith("  slow: ")],
        "  watches: 1 registered, 1 fired",
        "  transactions: 3 started, 1 committed, 1 conflicted, 1 aborted",
    ]
    assert len([line for line in lines if line.startswith("  slow: ")]) == 5

    t, out, _ = tracer(summary=True, json=True, filters=Filters(errors=True))
    workload(t)
    t.finish()
    summary = json.loads(out.getvalue().splitlines()[-1])["summary"]
    assert summary["ops"] == {"READ": 2, "TRANSACTION_END": 1}
    assert summary["errors"] == {"EACCES": 1, "EAGAIN": 1, "ENOENT": 1}
    assert summary["transactions"] == {
        "started": 0,
        "committed": 0,
        "conflicted": 1,
        "aborted": 0,
    }
    assert {entry["path"] for entry in summary["slowest"]} == {"/vm/10", "/local/x", None}
    assert set(summary["slowest"][0]) == {"conn", "op", "req_id", "path", "rtt_us", "error"}
