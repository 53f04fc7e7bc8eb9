"""Real libxenstore clients (xenstore-* 4.17) against the embedded server and the real daemon.

Each scenario runs the same tool invocations, with the same setup, against a
fresh real xenstored and a fresh embedded server, and asserts that every
invocation prints the same stdout and stderr and exits with the same code.
Commands marked ``GUEST`` run as domain 5: ``XENSTORED_PATH`` points at the
server's guest socket (tests/servers.py ``introduce_guest``).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Union

import pytest

from realxs import realxs_root, start_real_xenstored, stop_real_xenstored
from servers import EmbeddedXsServer, RealXsServer

GUEST = 5


@dataclass(frozen=True)
class Run:
    """One tool invocation: ``argv[0]`` is a tool name."""

    argv: tuple[str, ...]
    guest: bool = False
    stdin: bytes = b""


@dataclass(frozen=True)
class Watch2:
    """``xenstore-watch -n 2 path`` while ``trigger`` runs after the first event."""

    path: str
    trigger: Run


Cmd = Union[Run, Watch2]


def r(*argv: str) -> Run:
    return Run(tuple(argv))


def g(*argv: str) -> Run:
    return Run(tuple(argv), guest=True)


SETUP = r("xenstore-write", "/cli/a", "hello", "/cli/b/c", "world")
MANY = r("xenstore-write", *[a for i in range(300) for a in (f"/big/child-{i:04d}-xxxxxx", "v")])

SCENARIOS: dict[str, list[Cmd]] = {
    "write-read": [
        SETUP,
        r("xenstore-read", "/cli/a"),
        r("xenstore-read", "/cli/a", "/cli/b/c"),
        r("xenstore-read", "/cli/nope"),
        r("xenstore-read", "/cli/a", "/cli/nope"),
        r("xenstore-read", "/cli/b"),
        r("xenstore-write", "/cli/x", "a\\x01b\\n\\x7f"),
        r("xenstore-read", "/cli/x"),
        r("xenstore-read", "-R", "/cli/x"),
        r("xenstore-read", "-s", "/cli/x"),
        r("xenstore-write", "/cli/odd"),
        r("xenstore-write", "bad path", "v"),
        r("xenstore-read", "/cli/a/"),
        r("xenstore-write", "rel", "relative"),
        r("xenstore-read", "rel"),
        r("xenstore-read", "/local/domain/0/rel"),
        r("xenstore-read", "/"),
    ],
    "ls": [
        SETUP,
        r("xenstore-write", "/cli/long", "x" * 200, "/cli/esc", "tab\\x09nl\\n"),
        r("xenstore-ls", "/cli"),
        r("xenstore-ls", "-f", "/cli"),
        r("xenstore-ls", "-p", "/cli"),
        r("xenstore-ls", "-f", "-p", "/cli"),
        r("xenstore-ls", "-s", "/cli"),
        r("xenstore-ls"),
        r("xenstore-ls", "-f"),
        r("xenstore-ls", "/nope"),
        r("xenstore-ls", "/cli/a"),
    ],
    "ls-directory-part": [MANY, r("xenstore-ls", "/big"), r("xenstore-list", "/big")],
    "list": [
        SETUP,
        r("xenstore-list", "/cli"),
        r("xenstore-list", "/cli/a"),
        r("xenstore-list", "/cli/nope"),
        r("xenstore-list", "/"),
        r("xenstore-list", "/cli", "/cli/b"),
    ],
    "rm": [
        SETUP,
        r("xenstore-rm", "/cli/a"),
        r("xenstore-exists", "/cli/a"),
        r("xenstore-rm", "/cli/a"),
        r("xenstore-rm", "/cli/nope/deeper"),
        r("xenstore-write", "/t/x/y/z", "1"),
        r("xenstore-rm", "-t", "/t/x/y/z"),
        r("xenstore-ls", "-f"),
        r("xenstore-rm", "/cli/b"),
        r("xenstore-list", "/cli"),
        r("xenstore-rm", "/"),
    ],
    "exists": [
        SETUP,
        r("xenstore-exists", "/cli/a"),
        r("xenstore-exists", "/cli/nope"),
        r("xenstore-exists", "/cli/a", "/cli/nope"),
        r("xenstore-exists", "/"),
        r("xenstore-exists", "bad path"),
    ],
    "chmod": [
        SETUP,
        r("xenstore-chmod", "/cli/a", "n0", "r1"),
        r("xenstore-ls", "-p", "/cli"),
        r("xenstore-chmod", "-r", "/cli", "b0", "w3"),
        r("xenstore-ls", "-p", "/cli"),
        r("xenstore-chmod", "/cli/a", "x0"),
        r("xenstore-chmod", "/cli/nope", "n0"),
        r("xenstore-chmod", "/cli/a", "n4242"),
        r("xenstore-chmod", "/cli/a"),
        r("xenstore-write", "/cli/a/new", "inherits"),
        r("xenstore-ls", "-p", "/cli/a"),
    ],
    "watch": [
        SETUP,
        r("xenstore-watch", "-n", "1", "/cliw"),
        r("xenstore-watch", "-n", "1", "@introduceDomain"),
        r("xenstore-watch", "-n", "1", "rel"),
        Watch2("/cli", r("xenstore-write", "/cli/b/c", "again")),
        Watch2("/cli/a", r("xenstore-rm", "/cli")),
        r("xenstore-watch", "-n", "1", "bad path"),
    ],
    "control": [
        r("xenstore-control", "print", "hello from a test"),
        r("xenstore-control", "check"),
        r("xenstore-control", "help"),
        r("xenstore-control", "bogus"),
        r("xenstore-control", "print"),
        r("xenstore-control"),
    ],
    "multicall-and-usage": [
        SETUP,
        r("xenstore", "read", "/cli/a"),
        r("xenstore", "ls", "/cli"),
        r("xenstore", "-h"),
        r("xenstore-read"),
        r("xenstore-ls", "-x"),
        r("xenstore-watch"),
    ],
    "flags": [
        SETUP,
        r("xenstore-read", "-p", "/cli/a", "/cli/b/c"),
        r("xenstore-list", "-p", "/cli"),
        r("xenstore-exists", "-p", "/cli/a"),
        r("xenstore-write", "-R", "/cli/raw", "a\\x41\\n"),
        r("xenstore-read", "-R", "/cli/raw"),
        r("xenstore-write", "-s", "/cli/s", "via -s"),
        r("xenstore-read", "-s", "/cli/s"),
        r("xenstore-rm", "-s", "/cli/s", "/cli/raw"),
        r("xenstore-write", "/cli/u/v/w", "x"),
        r("xenstore-chmod", "-u", "/cli/u/v/w", "n0", "r2"),
        r("xenstore-ls", "-f", "-p", "/cli/u"),
        r("xenstore-chmod", "-u", "-r", "/cli/u/v", "b0"),
        r("xenstore-ls", "-f", "-p", "/cli"),
        r("xenstore-rm", "/cli/a", "/cli/b"),
        r("xenstore-ls", "-f"),
        r("xenstore-read", "-x", "/cli/a"),
        r("xenstore-write", "/cli/only-key"),
    ],
    "guest": [
        SETUP,
        r("xenstore-write", "/local/domain/5/data", "mine"),
        r("xenstore-chmod", "-r", "/local/domain/5", "n5"),
        r("xenstore-chmod", "/cli/b", "n0", "r5"),
        g("xenstore-read", "/cli/a"),
        g("xenstore-read", "/cli/b"),
        g("xenstore-read", "/cli/b/c"),
        g("xenstore-read", "/cli/b/nope"),
        g("xenstore-read", "data"),
        g("xenstore-write", "data", "changed", "more/deep", "x"),
        g("xenstore-ls", "-f", "/local/domain/5"),
        g("xenstore-ls", "-p", "/local/domain/5"),
        g("xenstore-write", "/cli/a", "nope"),
        g("xenstore-list", "/cli"),
        g("xenstore-rm", "/cli/a"),
        g("xenstore-chmod", "data", "n0"),
        g("xenstore-chmod", "data", "n5", "r0"),
        g("xenstore-exists", "/cli/a"),
        g("xenstore-watch", "-n", "1", "/cli/a"),
        g("xenstore-control", "check"),
        r("xenstore-ls", "-f", "-p", "/local/domain/5"),
    ],
}


class Pair:
    """A fresh server of one kind plus the environment to run tools on it."""

    def __init__(self, server: Any, root: Any) -> None:
        self.server = server
        self.root = root
        self.guest_path: str | None = None

    def env(self, guest: bool) -> dict[str, str]:
        env = dict(os.environ)
        if guest:
            if self.guest_path is None:
                self.guest_path = self.server.introduce_guest(GUEST)
            env["XENSTORED_PATH"] = self.guest_path
        else:
            env["XENSTORED_PATH"] = self.server.socket_path
        env["LD_LIBRARY_PATH"] = str(self.root / "usr" / "lib" / "x86_64-linux-gnu")
        env.pop("COLUMNS", None)
        return env

    def tool(self, name: str) -> str:
        for base in (self.root / "usr" / "bin", self.root / "usr" / "lib" / "xen-4.17" / "bin"):
            if (base / name).exists():
                return str(base / name)
        raise FileNotFoundError(name)

    def run(self, cmd: Run) -> tuple[Any, ...]:
        proc = subprocess.run(
            [self.tool(cmd.argv[0]), *cmd.argv[1:]],
            input=cmd.stdin,
            capture_output=True,
            env=self.env(cmd.guest),
            timeout=20,
        )
        return (cmd.argv, proc.returncode, proc.stdout, proc.stderr)

    def watch2(self, cmd: Watch2) -> tuple[Any, ...]:
        proc = subprocess.Popen(
            [self.tool("xenstore-watch"), "-n", "2", cmd.path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(False),
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # the initial event: the watch is set
            trigger = self.run(cmd.trigger)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return (("watch -n 2", cmd.path), trigger, proc.returncode, first + out, err)

    def run_all(self, cmds: list[Cmd]) -> list[tuple[Any, ...]]:
        if any(isinstance(c, Run) and c.guest for c in cmds):
            self.env(True)  # introduce the guest before the setup refers to it
        return [self.run(c) if isinstance(c, Run) else self.watch2(c) for c in cmds]


def _real() -> tuple[Any, Callable[[], None]]:
    daemon = start_real_xenstored()
    return RealXsServer(daemon), lambda: stop_real_xenstored(daemon)


def _embedded() -> tuple[Any, Callable[[], None]]:
    server = EmbeddedXsServer()
    return server, server.close


def run_scenario(make: Callable[[], tuple[Any, Callable[[], None]]], cmds: list[Cmd]) -> list[Any]:
    server, stop = make()
    try:
        return Pair(server, realxs_root()).run_all(cmds)
    finally:
        stop()


@pytest.fixture(scope="module")
def real_results() -> dict[str, list[Any]]:
    """Every scenario on its own fresh real xenstored (the reference)."""
    return {name: run_scenario(_real, cmds) for name, cmds in SCENARIOS.items()}


@pytest.mark.realxs
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_tools_print_the_same(scenario: str, real_results: dict[str, list[Any]]) -> None:
    expected = real_results[scenario]
    got = run_scenario(_embedded, SCENARIOS[scenario])
    for want, have in zip(expected, got):
        assert have == want, f"{scenario}: embedded differs from the real xenstored"
    assert len(got) == len(expected)


@pytest.mark.realxs
def test_reference_outputs_are_meaningful(real_results: dict[str, list[Any]]) -> None:
    """Guards the scenarios themselves against silently testing nothing."""
    rw = {r[0]: r[1:] for r in real_results["write-read"]}
    assert rw[("xenstore-read", "/cli/a")] == (0, b"hello\n", b"")
    assert rw[("xenstore-read", "/cli/nope")] == (
        1,
        b"",
        b"xenstore-read: couldn't read path /cli/nope\n",
    )
    ls = {r[0]: r[1:] for r in real_results["ls"]}
    assert ls[("xenstore-ls", "-p", "/cli")][1].startswith(b'a = "hello"')
    guest = {r[0]: r[1:] for r in real_results["guest"]}
    assert guest[("xenstore-read", "data")] == (0, b"mine\n", b"")
    assert guest[("xenstore-read", "/cli/a")][0] == 1
    watch = real_results["watch"]
    assert watch[4][3] == b"/cli\n/cli/b/c\n"
