"""Seeded-random differential suite: the embedded server against the real xenstored.

Each sequence runs on a FRESH embedded server and a FRESH real xenstored
(tests/interop/xsdiff.py explains the lockstep and stream comparison); every
reply and every watch event must be equal byte for byte, req_id and tx_id
included. A failure prints the seed and the steps.

- ``PYXS_DIFF_ROUNDS`` (default 200): sequences per run; ``PYXS_DIFF_STEPS``
  (default 120): steps per sequence; ``PYXS_DIFF_EXAMPLES`` (default 20): hypothesis
  examples. CI keeps the defaults (about 40 s on two busy cores).
- ``PYXS_DIFF_SEED``: replay one seed (the failure message gives it);
  ``PYXS_DIFF_BASE`` changes the base of the seed range (default 0: the
  same sequences in every CI run; use e.g. ``$RANDOM`` locally for new ones).
"""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xsdiff import DrawChooser, RandomChooser, real_alive, run_sequence

from pyxs.protocol import Decoder, Op, Packet, encode
from realxs import start_real_xenstored, stop_real_xenstored
from servers import EmbeddedXsServer, RealXsServer

ROUNDS = int(os.environ.get("PYXS_DIFF_ROUNDS", "200"))
STEPS = int(os.environ.get("PYXS_DIFF_STEPS", "120"))
BASE = int(os.environ.get("PYXS_DIFF_BASE", "0"))
SEEDS = (
    [int(os.environ["PYXS_DIFF_SEED"])]
    if "PYXS_DIFF_SEED" in os.environ
    else list(range(BASE, BASE + ROUNDS))
)


def make_real() -> RealXsServer:
    daemon = start_real_xenstored()
    return RealXsServer(daemon, stop=lambda: stop_real_xenstored(daemon))


def how_to_replay(seed: int) -> str:
    return (
        f"seed {seed}: replay with PYXS_DIFF_SEED={seed} "
        f"PYXS_DIFF_STEPS={STEPS} pytest tests/interop/test_differential.py -k seeded; "
        f"minimise with python tests/interop/xsdiff.py {seed} {STEPS}"
    )


@pytest.mark.realxs
@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_sequence(seed: int) -> None:
    run_sequence(
        RandomChooser(seed),
        make_real,
        EmbeddedXsServer,
        STEPS,
        how_to_replay(seed),
        ref_alive=real_alive,
    )


@pytest.mark.realxs
@pytest.mark.parametrize("seed", [1001, 1002, 1003])
def test_real_against_real_is_deterministic(seed: int) -> None:
    """The harness itself: two fresh real daemons give identical streams.

    If this fails, the comparison depends on timing (a harness bug), and the
    embedded-vs-real results above cannot be trusted.
    """
    run_sequence(
        RandomChooser(seed), make_real, make_real, STEPS, how_to_replay(seed), ref_alive=real_alive
    )


@pytest.mark.realxs
@settings(
    max_examples=int(os.environ.get("PYXS_DIFF_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(st.data())
def test_hypothesis_sequences(data: st.DataObject) -> None:
    """The same generator driven by hypothesis, which shrinks a failing sequence."""
    run_sequence(
        DrawChooser(data.draw),
        make_real,
        EmbeddedXsServer,
        40,
        "hypothesis example (see the draws above)",
        ref_alive=real_alive,
    )


# -- what the real daemon cannot be asked: the embedded server alone ----------


def _roundtrip(path: str, op: int, payload: bytes, tx_id: int = 0) -> Packet:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.settimeout(5)
        sock.sendall(encode(op, 77, tx_id, payload))
        decoder = Decoder()
        while True:
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            for packet in decoder.feed(data):
                if packet.op != Op.WATCH_EVENT:
                    return packet


@pytest.mark.parametrize("op", [Op.READ, Op.DIRECTORY, Op.GET_PERMS, Op.MKDIR, Op.RM])
@pytest.mark.parametrize("payload", [b"/tool", b"/tool\0extra", b"", b"/tool\0/a\0"])
def test_embedded_malformed_one_argument_payload_is_einval(op: Op, payload: bytes) -> None:
    """tests/REALXS.md's "Known defect": the real daemon answers a stale errno
    or aborts; a reimplementation answers EINVAL (and keeps the connection)."""
    server = EmbeddedXsServer()
    try:
        reply = _roundtrip(server.socket_path, op, payload)
        assert reply == Packet(Op.ERROR, 77, 0, b"EINVAL\0")
        assert _roundtrip(server.socket_path, Op.READ, b"/tool\0").op == Op.READ
    finally:
        server.close()
