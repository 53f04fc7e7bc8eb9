"""Concurrency and contention, short mode.

The issue asks for 16 threads x 10,000 mixed operations; here it is scaled
down to 16 x 500 per configuration (``python reliability/run.py --long``
does the full 16 x 10,000). Invariants: see reliability/workloads.py (no
wrong reply, no hang, every committed write readable, every write to a
watched path followed by its event; an exact counter under contention).
"""

from __future__ import annotations

import _relpath  # noqa: F401  (the repository root on sys.path)
import pytest

from reliability import workloads

THREADS = 16
OPS = 500  # x 10,000 in the long mode


@pytest.mark.parametrize("shared", [True, False], ids=["shared-client", "separate-clients"])
def test_threads_mixed_operations(xs_server, shared) -> None:
    fig = workloads.concurrency(xs_server, threads=THREADS, ops=OPS, shared=shared, seed=7)
    assert fig.ok, fig.explain()
    assert fig.ops == THREADS * OPS


def test_asyncio_tasks_mixed_operations(xs_server) -> None:
    fig = workloads.concurrency_async(xs_server, tasks=THREADS, ops=300, seed=8)
    assert fig.ok, fig.explain()
    assert fig.ops == THREADS * 300


def test_counter_through_transact(xs_server) -> None:
    fig = workloads.contention(xs_server, workers=8, increments=40)
    assert fig.ok, fig.explain()
    assert fig.errors > 0, "no conflict at all: the workers did not contend"


def test_counter_through_async_transact(xs_server) -> None:
    fig = workloads.contention_async(xs_server, tasks=8, increments=40)
    assert fig.ok, fig.explain()
    assert fig.errors > 0, "no conflict at all: the tasks did not contend"
