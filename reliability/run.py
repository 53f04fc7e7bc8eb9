"""Run the whole reliability suite and print what it survived.

    python reliability/run.py            # short mode (the default; always in CI)
    python reliability/run.py --long     # long mode: 16 threads x 10,000 ops,
                                         # 100,000 fuzz cases per target, ...
    python reliability/run.py --only fuzz --seed 7 --json figures.json

Short mode is what tests/reliability/ runs under pytest (slightly bigger
here). Long mode is for outside CI: with ``CI=true`` in the environment the
short mode runs even when ``--long`` is given.

The table at the end lists, per scenario and server: operations done,
faults injected, errors seen (expected ones), failures (invariant
violations), updates lost and hangs. The exit status is 0 only when
failures, lost and hangs are all zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # python reliability/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "reliability"

from . import attack, clients, faults, fuzz_client, fuzz_server, limits, workloads
from .figures import Figures, format_table, totals
from .harness import KINDS, EmbeddedServer, RealServer

__all__ = ["SIZES", "main", "scenarios"]

#: the numbers of each mode
SIZES: dict[str, dict[str, int]] = {
    "short": {
        "threads": 16,
        "ops": 500,
        "contention_workers": 8,
        "increments": 50,
        "kill_rounds": 1,
        "resets": 50,
        "client_kills": 3,
        "fake_rounds": 30,
        "storm_resets": 100,
        "fuzz_server": 3000,
        "fuzz_client": 2000,
        "fragment_ops": 100,
        "atheris_runs": 0,
        "error_replies": 2_000,
        "unread_writes": 20_000,
        "reuse_rounds": 50,
        "pipelined_reads": 3_000,
        "rm_nodes": 50_000,
        "rm_rounds": 3,
        "one_rule_cases": 60,
    },
    "long": {
        "threads": 16,
        "ops": 10_000,
        "contention_workers": 16,
        "increments": 500,
        "kill_rounds": 5,
        "resets": 1000,
        "client_kills": 20,
        "fake_rounds": 300,
        "storm_resets": 1000,
        "fuzz_server": 100_000,
        "fuzz_client": 100_000,
        "fragment_ops": 2000,
        "atheris_runs": 100_000,  # when atheris is installed (pip install pyxs[fuzz])
        "error_replies": 100_000,
        "unread_writes": 1_000_000,
        "reuse_rounds": 1_000,
        "pipelined_reads": 30_000,
        "rm_nodes": 200_000,
        "rm_rounds": 1,  # the real daemon takes minutes to make them
        "one_rule_cases": 1_000,
    },
}

Scenario = tuple[str, Callable[[], Figures]]


def scenarios(mode: str, servers: dict[str, Any], seed: int, allow_known: bool) -> list[Scenario]:
    """Every scenario of the suite, with the sizes of ``mode``."""
    n = SIZES[mode]
    out: list[Scenario] = []
    domids = iter(range(3000, 3100))
    for kind in KINDS:
        srv = servers[kind]
        out += [
            (
                f"concurrency shared {kind}",
                lambda s=srv: workloads.concurrency(
                    s, threads=n["threads"], ops=n["ops"], shared=True, seed=seed
                ),
            ),
            (
                f"concurrency separate {kind}",
                lambda s=srv: workloads.concurrency(
                    s, threads=n["threads"], ops=n["ops"], shared=False, seed=seed
                ),
            ),
            (
                f"concurrency asyncio {kind}",
                lambda s=srv: workloads.concurrency_async(
                    s, tasks=n["threads"], ops=n["ops"], seed=seed
                ),
            ),
            (
                f"contention {kind}",
                lambda s=srv: workloads.contention(
                    s, workers=n["contention_workers"], increments=n["increments"]
                ),
            ),
            (
                f"contention asyncio {kind}",
                lambda s=srv: workloads.contention_async(
                    s, tasks=n["contention_workers"], increments=n["increments"]
                ),
            ),
        ]
    for kind in KINDS:
        srv = servers[kind]
        out += [
            (
                f"faults server killed {kind}",
                lambda k=kind: faults.server_killed(k, rounds=n["kill_rounds"]),
            ),
            (f"faults server stopped {kind}", lambda k=kind: faults.server_unresponsive(k)),
            (
                f"faults fragmented io {kind}",
                lambda s=srv: faults.fragmented_io(s, ops=n["fragment_ops"]),
            ),
            (
                f"faults resets {kind}",
                lambda s=srv: faults.reset_connections(s, resets=n["resets"], seed=seed),
            ),
            (
                f"faults client killed {kind}",
                lambda s=srv: faults.client_killed_mid_transaction(s, rounds=n["client_kills"]),
            ),
        ]
    out += [
        (
            "faults fake server",
            lambda: faults.fake_server_faults(rounds=n["fake_rounds"], seed=seed),
        ),
        (
            "faults reconnect storm",
            lambda: faults.reconnect_storm(resets=n["storm_resets"], seed=seed),
        ),
        (
            "clients one rule",
            lambda: clients.one_rule(n["one_rule_cases"], seed=seed),
        ),
        (
            "fuzz server",
            lambda: fuzz_server.fuzz_server(n["fuzz_server"], seed=seed, progress=_progress),
        ),
        (
            "fuzz client",
            lambda: fuzz_client.fuzz_client(n["fuzz_client"], seed=seed, allow_known=allow_known),
        ),
    ]
    if n["atheris_runs"]:
        out.append(("fuzz server atheris", lambda: fuzz_server.atheris_session(n["atheris_runs"])))
    out += [
        ("limits socket modes", lambda: limits.socket_modes()),
        ("limits socket modes real", lambda: limits.socket_modes(servers["real"])),
    ]
    for kind in KINDS:
        srv = servers[kind]
        first, second = next(domids), next(domids)
        out += [
            (f"limits quotas {kind}", lambda k=kind: limits.quotas(k)),
            (f"limits payloads {kind}", lambda s=srv: limits.payload_limits(s)),
            (
                f"limits isolation {kind}",
                lambda s=srv, a=first, b=second: limits.guest_isolation(s, a, b),
            ),
        ]
    out += [
        ("attack error replies", lambda: attack.error_replies(n["error_replies"])),
        ("attack unread events", lambda: attack.unread_events(n["unread_writes"])),
        ("attack fd exhaustion", lambda: attack.fd_exhaustion()),
        ("attack socket path", lambda: attack.socket_path()),
        ("attack stale permissions", lambda: attack.stale_permissions(n["reuse_rounds"])),
        ("attack outstanding", lambda: attack.outstanding(n["pipelined_reads"])),
        ("attack rm subtree", lambda: attack.rm_subtree(n["rm_nodes"], n["rm_rounds"])),
    ]
    for kind in KINDS:
        out.append((f"attack memory quota {kind}", lambda k=kind: attack.memory_quota(k)))
    return out


def _progress(done: int) -> None:
    if done % 20_000 == 0:
        print(f"    ... {done} cases", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python reliability/run.py", description="pyxs reliability suite"
    )
    parser.add_argument("--long", action="store_true", help="long mode (ignored when CI=true)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run the scenarios whose name contains TEXT (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed (default: time-based)")
    parser.add_argument(
        "--allow-known",
        action="store_true",
        help="count hits of written-up bugs apart instead of as failures",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)

    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    mode = "long" if args.long and not in_ci else "short"
    if args.long and in_ci:
        print("CI=true: running the short mode", flush=True)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    print(f"pyxs reliability suite: {mode} mode, seed {seed}", flush=True)
    n = SIZES[mode]
    print(
        f"  concurrency: {n['threads']} threads x {n['ops']} ops; fuzz: {n['fuzz_server']} "
        f"server cases, {n['fuzz_client']} client calls per client",
        flush=True,
    )

    rows: list[Figures] = []
    with ExitStack() as stack:
        servers: dict[str, Any] = {}
        if not args.list:
            embedded = EmbeddedServer()
            stack.callback(embedded.close)
            real = RealServer()
            stack.callback(real.close)
            servers = {"embedded": embedded, "real": real}
        else:
            servers = {kind: None for kind in KINDS}
        selected = [
            (name, run)
            for name, run in scenarios(mode, servers, seed, args.allow_known)
            if not args.only or any(text in name for text in args.only)
        ]
        if args.list:
            for name, _ in selected:
                print(name)
            return 0
        for name, run in selected:
            print(f"  {name} ...", flush=True)
            try:
                fig = run()
            except BaseException as exc:  # a scenario that blew up is a failure
                if isinstance(exc, KeyboardInterrupt):
                    raise
                fig = Figures(name, "-")
                fig.fail(f"the scenario raised {exc!r}")
                fig.done()
            rows.append(fig)
            status = "ok" if fig.ok else "FAILED"
            print(f"    {status}: {fig.summary()}", flush=True)
            if not fig.ok or name.startswith(("attack", "clients")):  # their figures
                for note in fig.notes:
                    print(f"      {note}", flush=True)

    total = totals(rows)
    print()
    print(format_table(rows))
    print()
    print(
        f"operations done: {total.ops}   faults injected: {total.faults}   "
        f"errors seen: {total.errors}   failures: {total.failures}   "
        f"updates lost: {total.lost}   hangs: {total.hangs}"
        + (f"   known bugs hit: {total.known}" if total.known else "")
    )
    failed = [f"{r.scenario} [{r.server}]" for r in rows if not r.ok]
    print("RESULT: " + ("PASS" if not failed else f"FAIL ({len(failed)}: {', '.join(failed)})"))
    if args.json:
        data = {
            "mode": mode,
            "seed": seed,
            "scenarios": [
                {k: v for k, v in vars(r).items() if not k.startswith("_")} for r in rows
            ],
            "total": {k: v for k, v in vars(total).items() if not k.startswith("_")},
        }
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
