"""The ``memory`` quota, side by side with the real cxenstored 4.17 (both
servers started with a small quota; scripts and transcripts as in
test_vs_real.py).

What the real daemon does, and the embedded server with it: a guest's
accounted memory (its nodes, watches, transaction copies) may not reach the
quota: a write that would get there is EIO (in a transaction, the
transaction fails: its commit is ENOMEM); a reply that would get there while
queued is ENOMEM.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_vs_real import Step, Target, check, server_pair

from pyxs.protocol import Op

pytestmark = pytest.mark.realxs

MEMORY = 7000
W, R, D, TS, TE = Op.WRITE, Op.READ, Op.DIRECTORY, Op.TRANSACTION_START, Op.TRANSACTION_END


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Target, Target]]:
    with server_pair({"memory": MEMORY}) as both:
        yield both


def test_writes_and_replies_at_the_memory_quota(pair: tuple[Target, Target]) -> None:
    big = b"x" * 1500
    script: list[Step] = [
        ("connect", "a"),
        ("connect", "g", 74),
        ("a", Op.MKDIR, b"/local/domain/74\0"),
        ("a", Op.SET_PERMS, b"/local/domain/74\0n74\0"),
        ("g", W, b"a\0" + big),
        ("g", W, b"b\0" + big),
        ("g", W, b"c\0" + big),
        ("g", W, b"d\0" + big),
        ("a", Op.CONTROL, b"quota\x0074\0"),
        ("g", W, b"e\0" + big),  # would reach the quota: EIO
        ("g", W, b"e\0" + b"x" * 400),
        ("a", Op.CONTROL, b"quota\x0074\0"),
        ("g", W, b"e\0" + b"x" * 420),  # a bigger value for an existing node
        ("g", W, b"e\0" + b"x" * 380),
        ("g", R, b"a\0"),  # the reply would reach the quota: ENOMEM
        ("g", R, b"e\0"),
        ("g", D, b"/local/domain/74\0"),
        ("g", Op.GET_PERMS, b"a\0"),
        ("g", Op.RM, b"b\0"),
        ("a", Op.CONTROL, b"quota\x0074\0"),
        ("g", R, b"a\0"),
        ("g", TS, b"\0"),
        ("g", W, b"t\0" + big, 1),
        ("g", W, b"u\0" + b"x" * 600, 1),  # in a transaction: EIO, the transaction fails
        ("g", W, b"v\0v", 1),
        ("g", TE, b"T\0", 1),
        ("g", TS, b"\0"),
        ("g", W, b"t\0" + b"x" * 200, 2),
        ("a", Op.CONTROL, b"quota\x0074\0"),
        ("g", TE, b"T\0", 2),
        ("g", Op.MKDIR, b"deep/er/still\0"),
        ("a", Op.CONTROL, b"quota\x0074\0"),
        ("a", W, b"/local/domain/74/a\0" + big),  # dom0 is not held to it
        ("a", Op.RM, b"/local/domain/74/a\0"),
        ("a", Op.CONTROL, b"quota\x0074\0"),
        ("g", W, b"f\0" + big),
        ("a", Op.CONTROL, b"quota\x0074\0"),
        ("g", Op.WATCH, b"f\0" + b"t" * 800 + b"\0"),  # a watch counts its path and token
        ("g", Op.WATCH, b"f\0" + b"u" * 1200 + b"\0"),
        ("a", Op.CONTROL, b"quota\x0074\0"),
        ("g", Op.UNWATCH, b"f\0" + b"t" * 800 + b"\0"),
        ("g", R, b"f\0"),
    ]
    lines = check(pair, script)
    errors = [line.split(" b'")[1] for line in lines if " <- ERROR " in line]
    assert errors.count("EIO\\x00'") == 2  # a plain write, a write in a transaction
    assert errors.count("ENOMEM\\x00'") == 5  # three replies, the failed commit, a watch
