"""The protocol core: constants checked against the real xs_wire.h, the codec, routing."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxs import exceptions
from pyxs.protocol import (
    HEADER,
    PAYLOAD_MAX,
    ClientProtocol,
    Decoder,
    Op,
    Packet,
    PacketTooLarge,
    WatchEvent,
    XsdError,
    encode,
    split_strings,
)
from realxs import xs_wire_header


@pytest.fixture(scope="module")
def xs_wire_values() -> dict[str, int]:
    """Compile a C program against Debian's xs_wire.h (Xen 4.17) and read its constants."""
    header = xs_wire_header()
    ops = [
        op.name
        for op in Op
        if op.name not in {"GET_FEATURE", "SET_FEATURE", "GET_QUOTA", "SET_QUOTA"}
    ] + ["DEBUG"]
    lines = [f'printf("op {name} %d\\n", (int)XS_{name});' for name in ops]
    source = (
        "#include <stdio.h>\n#include <stdint.h>\n#include <errno.h>\n"
        f'#include "{header}"\n'
        "int main(void) {\n" + "\n".join(lines) + "\n"
        "for (unsigned i = 0; i < sizeof(xsd_errors)/sizeof(xsd_errors[0]); i++)\n"
        '  printf("err %s %d %u\\n", xsd_errors[i].errstring, xsd_errors[i].errnum, i);\n'
        'printf("payload_max %d\\n", XENSTORE_PAYLOAD_MAX);\n'
        'printf("abs_max %d\\n", XENSTORE_ABS_PATH_MAX);\n'
        'printf("rel_max %d\\n", XENSTORE_REL_PATH_MAX);\n'
        'printf("header %zu\\n", sizeof(struct xsd_sockmsg));\n'
        "return 0; }\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "wire.c")
        src.write_text(source)
        exe = Path(tmp, "wire")
        subprocess.run([os.environ.get("CC", "cc"), "-o", str(exe), str(src)], check=True)
        out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    values: dict[str, int] = {}
    for line in out.splitlines():
        kind, *rest = line.split()
        if kind == "op":
            values["op " + rest[0]] = int(rest[1])
        elif kind == "err":
            values["err " + rest[0]] = int(rest[1])
            values["errpos " + rest[0]] = int(rest[2])
        else:
            values[kind] = int(rest[0])
    return values


@pytest.mark.realxs  # Debian's libxen-dev
def test_ops_match_xs_wire_h(xs_wire_values: dict[str, int]) -> None:
    checked = 0
    for key, value in xs_wire_values.items():
        if key.startswith("op "):
            assert Op[key[3:]] == value, key
            checked += 1
    assert checked >= 23


@pytest.mark.realxs  # Debian's libxen-dev
def test_errors_match_xs_wire_h_in_order(xs_wire_values: dict[str, int]) -> None:
    names = [k[4:] for k in xs_wire_values if k.startswith("err ")]
    assert names == [e.name for e in XsdError]
    for error in XsdError:
        assert xs_wire_values["err " + error.name] == error.value
        assert exceptions.error_from_payload(error.payload).errno == error.value


@pytest.mark.realxs  # Debian's libxen-dev
def test_limits_match_xs_wire_h(xs_wire_values: dict[str, int]) -> None:
    from pyxs import protocol

    assert xs_wire_values["payload_max"] == protocol.PAYLOAD_MAX
    assert xs_wire_values["abs_max"] == protocol.ABS_PATH_MAX
    assert xs_wire_values["rel_max"] == protocol.REL_PATH_MAX
    assert xs_wire_values["header"] == protocol.HEADER_SIZE


def test_encode_layout() -> None:
    data = encode(Op.READ, 7, 3, b"/a\0")
    assert data == b"\x02\0\0\0\x07\0\0\0\x03\0\0\0\x03\0\0\0/a\0"


def test_encode_rejects_oversized_payload() -> None:
    encode(Op.WRITE, 1, 0, b"x" * PAYLOAD_MAX)
    with pytest.raises(exceptions.InvalidPayload):
        encode(Op.WRITE, 1, 0, b"x" * (PAYLOAD_MAX + 1))


packets = st.builds(
    Packet,
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=PAYLOAD_MAX),
)


@given(st.lists(packets, max_size=8), st.lists(st.integers(1, 5000), max_size=20))
def test_decoder_reassembles_any_chunking(items: list[Packet], cuts: list[int]) -> None:
    stream = b"".join(encode(*p) for p in items)
    decoder = Decoder()
    out: list[Packet] = []
    pos = 0
    for cut in cuts:
        out += decoder.feed(stream[pos : pos + cut])
        pos += cut
    out += decoder.feed(stream[pos:])
    assert out == items
    assert decoder.pending == 0


@given(st.integers(PAYLOAD_MAX + 1, 2**32 - 1), st.binary(max_size=64))
def test_decoder_refuses_oversized_header(size: int, junk: bytes) -> None:
    with pytest.raises(PacketTooLarge):
        Decoder().feed(HEADER.pack(Op.READ, 1, 0, size) + junk)


def test_split_strings() -> None:
    assert split_strings(b"") == []
    assert split_strings(b"a\0bc\0") == [b"a", b"bc"]
    assert split_strings(b"a\0\0") == [b"a", b""]


def test_client_protocol_routes_replies_and_events() -> None:
    proto = ClientProtocol()
    first, wire = proto.request(Op.READ, b"/a\0")
    second, _ = proto.request(Op.READ, b"/b\0", tx_id=5)
    assert wire[4:8] == first.to_bytes(4, "little") and first != second
    stream = (
        encode(Op.WATCH_EVENT, 0, 0, b"/w\0tok\0")
        + encode(Op.READ, second, 5, b"B")
        + encode(Op.READ, first, 0, b"A")
    )
    replies, events = proto.receive(stream)
    assert events == [WatchEvent(b"/w", b"tok")]
    assert [(r.req_id, r.payload) for r in replies] == [(second, b"B"), (first, b"A")]
    assert not proto.pending
    with pytest.raises(exceptions.UnexpectedPacket):
        proto.receive(encode(Op.READ, first, 0, b"again"))


def test_client_protocol_drops_abandoned_replies() -> None:
    proto = ClientProtocol()
    req_id, _ = proto.request(Op.READ, b"/a\0")
    proto.abandon(req_id)
    assert proto.receive(encode(Op.READ, req_id, 0, b"late")) == ([], [])
    assert not proto.pending


def test_req_ids_wrap_at_32_bits_and_skip_ids_in_flight() -> None:
    proto = ClientProtocol()
    proto._next_id = 2**32 - 2  # a connection that has lived long
    a, _ = proto.request(Op.READ, b"/a\0")
    b, _ = proto.request(Op.READ, b"/a\0")
    c, _ = proto.request(Op.READ, b"/a\0")
    assert (a, b, c) == (2**32 - 2, 2**32 - 1, 1)  # 0 is skipped
    proto._next_id = 2**32 - 2
    d, _ = proto.request(Op.READ, b"/a\0")
    assert d == 2  # the ids still in flight are skipped
    for req_id in (a, b, c, d):
        proto.forget(req_id)


def test_errors_carry_errno_and_old_args() -> None:
    err = exceptions.error_from_payload(b"ENOENT\0")
    assert isinstance(err, exceptions.NoEntryError)
    assert isinstance(err, exceptions.PyXSError)
    assert err.errno == errno.ENOENT and err.args[0] == errno.ENOENT
    assert exceptions.error_from_payload(b"EWHATEVER\0").errno == errno.EINVAL


def test_one_error_table_both_ways() -> None:
    # XsdError is the one list of error names: every name decodes to the
    # exception class of its errno, which prints that name and encodes back.
    for error in XsdError:
        exc = exceptions.error_from_payload(error.payload)
        assert exc.errno == error.value and exc.name == error.name
        assert type(exceptions.error_for_errno(error.value)) is type(exc)
        assert str(exc).startswith(f"[{error.name}] ")
    # An errno that XenStore never sends keeps the C library's name.
    assert exceptions.XenStoreError(errno.EPIPE).name == "EPIPE"
    assert XsdError.ENOENT.payload == b"ENOENT\0"
