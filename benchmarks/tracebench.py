#!/usr/bin/env python3
"""What ``pyxs trace`` costs: microseconds it adds to a round trip.

    python benchmarks/tracebench.py            # this section alone, about 1 minute
    python benchmarks/tracebench.py --quick

A bare-socket client (clientbench.py's ``bare`` READ loop, the fastest
Python client, so the proxy's share is not hidden) makes sequential READ
round trips to the real xenstored, directly and through standing proxies
(``pyxs trace --listen``) that write their trace to /dev/null: as text,
as JSON, and with a filter that shows nothing (``--op INTRODUCE``: the
forwarding and decoding alone). Rounds alternate as in run.py. Everything
runs on one CPU, so every microsecond of the proxy's work is on the round
trip; the report gives each one's median and the microseconds it adds to
the direct round trip.

``run.py`` runs it as its ``trace`` section (``section_trace =
tracebench.section`` in its ``Run``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import BenchError

HERE = Path(__file__).resolve().parent

#: the standing proxies measured, by impl name: their extra options
PROXIES = {
    "proxy-text": [],
    "proxy-json": ["--json"],
    "proxy-quiet": ["--op", "INTRODUCE"],
}
IMPLS = {
    "direct": "bare socket -> xenstored",
    "proxy-text": "... through pyxs trace",
    "proxy-json": "... through pyxs trace --json",
    "proxy-quiet": "... through pyxs trace, nothing shown",
}


def _pyxs() -> str:
    return str(Path(sys.executable).parent / "pyxs")


class StandingProxy:
    """``pyxs trace --listen`` pinned to ``cpu``, ready once it printed SOCKET=."""

    def __init__(self, upstream: str, options: list[str], cpu: int, env: dict[str, str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="pyxs-tb-", dir="/tmp")
        self.path = f"{self.dir}/proxy.sock"
        command = [_pyxs(), "trace", "--listen", self.path, "--socket", upstream]
        command += ["-o", "/dev/null", *options]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=harness._pinned(cpu),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line != f"SOCKET={self.path}\n":
            self.stop()
            raise BenchError(f"pyxs trace --listen did not start: {line!r}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=30)
        Path(self.dir).rmdir()


def section(run: Any) -> None:
    """The ``trace`` section of run.py (``run`` is its ``Run``)."""
    from run import Measure

    cpu = run.server_cpu
    run.log(f"== trace: round trips through pyxs trace, all on CPU {cpu} ==")
    why = run.project_component("cli")
    if why is not None:
        raise BenchError(why)
    cmds = {"bare": [run.py, str(HERE / "clientbench.py")]}
    m = Measure(
        "trace.read",
        "sequential READ round trips of a bare socket, direct and through pyxs trace",
        "ops/s",
        True,
        IMPLS,
        f"xenstored, proxy and client on CPU {cpu}",
    )
    with harness.RealXenstored().start(cpu) as server:
        run.prepare_store(server.socket_path)
        proxies: dict[str, StandingProxy] = {}
        try:
            for name, options in PROXIES.items():
                proxies[name] = StandingProxy(server.socket_path, options, cpu, run.worker_env)
            paths = {"direct": server.socket_path, **{k: p.path for k, p in proxies.items()}}
            runners: dict[str, Callable[[], Any]] = {
                impl: run.client_runner(cmds, "bare", "read", path, cpu)
                for impl, path in paths.items()
            }
            run.measure(m, runners, run.sizes.rounds)
        finally:
            for proxy in proxies.values():
                proxy.stop()
    direct = m.median("direct")
    if direct:
        for impl in PROXIES:
            ops = m.median(impl)
            if ops:
                added = 1e6 / ops - 1e6 / direct
                m.notes.append(f"{IMPLS[impl]}: +{added:.1f} us per round trip")
                run.log(f"  {IMPLS[impl]}: +{added:.1f} us per round trip")


def main(argv: list[str] | None = None) -> int:
    import run as run_module

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--server-cpu", type=int, default=None)
    args = parser.parse_args(argv)
    args.other_cpu = None
    args.only = "trace"
    run = run_module.Run(args)
    try:
        section(run)
    except (harness.Unavailable, BenchError) as exc:
        run.skipped["trace"] = str(exc)
    run.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
