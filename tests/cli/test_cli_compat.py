"""``pyxs read|write|ls|...`` against the real xenstore-* tools (xenstore-utils 4.17).

Every case runs the same command line through the real tool and through the
installed ``pyxs`` command, on the same server (the embedded one and the
real xenstored, see ``xs_server``), and asserts the same stdout, the same
stderr (``xenstore-read:`` read as ``pyxs:``) and the same exit status.
Each test works under a path of its own.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
import uuid
from typing import Any

import pytest
from cli_support import PYXS, Result, pyxs, real_tool, run_both, tool_env, tool_path

pytestmark = pytest.mark.realxs  # every case runs a real xenstore-* tool

# Values for the escaping round trips: what xenstore-write unescapes (with
# glibc's sscanf quirks) and what xenstore-read escapes.
TRICKY_VALUES = [
    "plain",
    "",
    "a\\001b\\x1f\\x7f\\xff\\t\\n\\r\\\\z\\0q",
    "\\x 4",
    "\\x-1",
    "\\x+f",
    "\\x-",
    "\\x0x4",
    "\\x0xg",
    "\\x\t5",
    "\\x4",
    "\\xg",
    "\\x",
    "\\xfff",
    "\\377\\400\\777",
    "\\08",
    "\\a\\b\\e\\8\\9\\q",
    "\\xA",
    "\\x-f1",
    "\\x  41",
    "\\x+",
    "trailing\\",
    "\\0101\\1x",
    "caf\u00e9 \u2603",
    "sp ace and \"quotes\" and 'single'",
]


def compare(tool: str, args: list[str], socket: str, env: dict[str, str] | None = None) -> Result:
    """Run ``xenstore-<tool> args`` and ``pyxs <tool> args``; assert they agree.

    Both run at once unless the command changes the store.
    """
    if tool in ("write", "rm", "chmod") or env:
        expected = real_tool(f"xenstore-{tool}", args, socket, env=env)
        got = pyxs([tool, *args], socket, env=env)
    else:
        expected, got = run_both(f"xenstore-{tool}", args, [tool, *args], socket)
    want_err = expected.stderr.replace(f"xenstore-{tool}:".encode(), b"pyxs:")
    assert (got.rc, got.stdout, got.stderr) == (expected.rc, expected.stdout, want_err), (
        f"{tool} {args}:\nreal: {expected}\npyxs: {got}"
    )
    return got


def twin(tool: str, args: list[str], base: str, socket: str) -> Result:
    """A command that changes the store: the real tool works on ``{base}/c``,
    pyxs on ``{base}/p`` (set up alike); ``{p}`` in ``args`` stands for each."""
    c, p = f"{base}/c", f"{base}/p"
    expected = real_tool(f"xenstore-{tool}", [a.replace("{p}", c) for a in args], socket)
    got = pyxs([tool, *(a.replace("{p}", p) for a in args)], socket)

    def norm(data: bytes, prefix: str) -> bytes:
        return data.replace(prefix.encode(), b"{p}").replace(prefix[1:].encode(), b"{p}")

    want = (expected.rc, norm(expected.stdout, c), norm(expected.stderr, c))
    want = (want[0], want[1], want[2].replace(f"xenstore-{tool}:".encode(), b"pyxs:"))
    assert (got.rc, norm(got.stdout, p), norm(got.stderr, p)) == want, (
        f"{tool} {args}:\nreal: {expected}\npyxs: {got}"
    )
    return got


def same_trees(base: str, socket: str) -> None:
    """``{base}/c`` and ``{base}/p`` hold the same nodes, values and permissions."""
    c = pyxs(["ls", "-fp", f"{base}/c"], socket)
    p = pyxs(["ls", "-fp", f"{base}/p"], socket)
    assert c.rc == p.rc
    c_out = c.stdout.replace(f"{base}/c".encode(), b"{p}")
    assert c_out == p.stdout.replace(f"{base}/p".encode(), b"{p}")


@pytest.fixture
def base(xs_server: Any) -> str:
    return "/test/cli" + uuid.uuid4().hex[:10]


def setup_tree(socket: str, base: str) -> None:
    r = real_tool(
        "xenstore-write",
        [
            f"{base}/a",
            "hello",
            f"{base}/b/c",
            "world",
            f"{base}/bin",
            "a\\001b\\x1f\\x7f\\xff\\t\\n\\r\\\\z\\0q",
            f"{base}/empty",
            "",
            f"{base}/long",
            "x" * 120,
            f"{base}/{'N' * 90}",
            "v",
            f"{base}/mid",
            "y" * 55,
            f"{base}/b/c/d/e",
            "deep",
        ],
        socket,
    )
    assert r.rc == 0, r


def test_read(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    setup_tree(s, base)
    for args in (
        [f"{base}/a"],
        [f"{base}/a", f"{base}/b/c"],
        ["-p", f"{base}/a", f"{base}/bin"],
        [f"{base}/a", "-p"],  # options after operands, as getopt permutes
        ["--prefix", f"{base}/a"],
        ["--pre", f"{base}/a"],  # an abbreviated long option
        [f"{base}/bin"],
        ["-R", f"{base}/bin", f"{base}/a"],
        ["-Rp", f"{base}/bin"],
        ["-s", f"{base}/a"],
        [f"{base}/empty"],
        [f"{base}/b"],
        [f"{base}/nope"],
        [f"{base}/a", f"{base}/nope", f"{base}/b/c"],
        ["bad path"],
        [f"{base}/a/"],
        ["--", f"{base}/a"],
        ["/"],
    ):
        compare("read", args, s)


def test_relative_paths(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    rel = base[1:]  # relative to /local/domain/0
    twin("write", ["{p}/x", "rel", "{p}/y/z", "deep"], rel, s)
    compare("read", ["-p", f"{rel}/c/x"], s)
    compare("read", [f"/local/domain/0/{rel}/c/x"], s)
    compare("ls", [f"{rel}/c"], s)
    compare("list", ["-p", f"{rel}/c"], s)
    twin("rm", ["-t", "{p}/y/z"], rel, s)
    twin("chmod", ["-r", "{p}", "n0", "r2"], rel, s)
    compare("exists", [f"{rel}/c/y"], s)
    same_trees("/local/domain/0/" + rel, s)


def test_write_escapes(xs_server: Any, base: str) -> None:
    """pyxs write stores the same bytes as xenstore-write; reads escape alike."""
    s = xs_server.socket_path
    values = TRICKY_VALUES
    pairs_c = [a for i, v in enumerate(values) for a in (f"{base}/c{i}", v)]
    pairs_p = [a for i, v in enumerate(values) for a in (f"{base}/p{i}", v)]
    assert real_tool("xenstore-write", pairs_c, s).rc == 0
    assert pyxs(["write", *pairs_p], s).rc == 0
    paths = [f"{base}/{side}{i}" for side in "cp" for i in range(len(values))]
    records = json.loads(pyxs(["read", "--json", *paths], s).stdout)
    stored = [r.get("value", r.get("value_base64")) for r in records]
    assert stored[: len(values)] == stored[len(values) :]
    compare("read", paths, s)
    # -R writes the argument as it is
    compare("write", ["-R", f"{base}/raw", "a\\tb\\x41"], s)
    compare("read", [f"{base}/raw"], s)


def test_write_errors(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    compare("write", ["bad path", "v"], s)
    twin("write", ["{p}/ok", "1", "bad path", "v"], base, s)  # one transaction:
    compare("exists", [f"{base}/c/ok"], s)  # nothing was written
    compare("exists", [f"{base}/p/ok"], s)
    compare("write", [f"{base}/a/", "v"], s)
    # an odd number of arguments is a usage error: both exit 1
    r = pyxs(["write", f"{base}/odd"], s)
    assert r.rc == 1 and b"usage: pyxs write" in r.stderr and r.stdout == b""
    assert real_tool("xenstore-write", [f"{base}/odd"], s).rc == 1


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("read", []),
        ("write", []),
        ("write", ["/k"]),
        ("write", ["/k", "v", "/j"]),
        ("rm", []),
        ("exists", []),
        ("list", []),
        ("chmod", []),
        ("watch", []),
        ("watch", ["-n"]),
    ],
)
def test_usage_errors_exit_as_xenstore_utils(tool: str, args: list[str]) -> None:
    """Scripts test $?: a usage error exits 1 as the real tool does, prints
    nothing on stdout and a usage line on stderr (pyxs says what is wrong
    first). ls has no usage error in 4.17 (no key lists /); unknown options
    are warnings there, usage errors in pyxs; pyxs has no control command."""
    expected = real_tool(f"xenstore-{tool}", args, None)
    got = pyxs([tool, *args], None)
    assert (got.rc, got.stdout) == (expected.rc, expected.stdout) == (1, b""), (expected, got)
    assert expected.stderr.decode().splitlines()[-1].startswith(f"xenstore-{tool}: Usage: ")
    lines = got.stderr.decode().splitlines()
    assert lines[0].startswith(f"pyxs {tool}: "), lines
    assert lines[1].startswith(f"usage: pyxs {tool} "), lines


def test_ls(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    setup_tree(s, base)
    assert real_tool("xenstore-chmod", [f"{base}/a", "n0", "r7"], s).rc == 0
    for args in (
        [base],
        ["-f", base],
        ["-p", base],
        ["-fp", base],
        ["-f", "-p", f"{base}/b"],
        ["--flat", base],
        [f"{base}/b", f"{base}/a", base],
        [f"{base}/a"],
        [f"{base}/nope"],
        [f"{base}/"],
        ["bad path"],
        [f"{base}/nope", base],
    ):
        compare("ls", args, s)


def test_ls_whole_store(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    setup_tree(s, base)
    compare("ls", [], s)
    compare("ls", ["-p", "/"], s)


def test_ls_big_directory(xs_server: Any, base: str) -> None:
    """More child names than one DIRECTORY reply holds (E2BIG, DIRECTORY_PART)."""
    s = xs_server.socket_path
    args = [a for i in range(300) for a in (f"{base}/big/child-{i:04d}-xxxxxxxxxx", f"v{i}")]
    assert pyxs(["write", *args], s).rc == 0
    assert pyxs(["write", f"{base}/big/child-0007-xxxxxxxxxx/sub", "s"], s).rc == 0
    compare("ls", [f"{base}/big"], s)
    compare("ls", ["-fp", base], s)
    compare("list", [f"{base}/big"], s)


def test_list(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    setup_tree(s, base)
    for args in (
        [base],
        ["-p", base],
        ["-p", base, f"{base}/b"],
        [f"{base}/a"],
        [f"{base}/nope"],
        [base, f"{base}/nope"],
        ["-p", "/"],
        ["bad path"],
    ):
        compare("list", args, s)


def test_exists(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    setup_tree(s, base)
    for args in (
        [f"{base}/a"],
        [f"{base}/nope"],
        [f"{base}/a", f"{base}/b/c"],
        [f"{base}/a", f"{base}/nope"],
        ["bad path"],
    ):
        compare("exists", args, s)


def test_rm(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    for side in "cp":
        setup_tree(s, f"{base}/{side}")
        assert pyxs(["write", f"{base}/{side}/t1/t2/t3", "x", f"{base}/{side}/k/t", "y"], s).rc == 0
        assert pyxs(["write", f"{base}/{side}/k/keep", "1"], s).rc == 0
    twin("rm", ["{p}/nope"], base, s)
    twin("rm", ["{p}/nope/deeper"], base, s)
    twin("rm", ["bad path"], base, s)
    twin("rm", ["{p}/a", "{p}/nope/deeper"], base, s)  # one transaction, aborted
    twin("rm", ["{p}/b/c/d", "{p}/empty"], base, s)
    twin("rm", ["-t", "{p}/t1/t2/t3"], base, s)  # t1, t2 go too
    twin("rm", ["--tidy", "{p}/k/t"], base, s)  # k stays: it has a child
    same_trees(base, s)
    twin("rm", ["{p}"], base, s)
    compare("exists", [f"{base}/p"], s)


def test_chmod(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    for side in "cp":
        setup_tree(s, f"{base}/{side}")
    twin("chmod", ["{p}/a", "n0", "r1", "w2", "b3"], base, s)
    twin("chmod", ["{p}/empty", "r"], base, s)  # "r" is r0
    twin("chmod", ["-r", "{p}/b", "b0", "r4"], base, s)
    twin("chmod", ["--recurse", "{p}/mid", "w0"], base, s)
    twin("chmod", ["{p}/a", "x1"], base, s)
    twin("chmod", ["{p}/nope", "n0"], base, s)
    twin("chmod", ["{p}/a"], base, s)  # no mode: EINVAL from the server
    twin("chmod", ["{p}/a", "n4242"], base, s)  # the owner must exist: ENOENT
    twin("chmod", ["bad path", "n0"], base, s)
    same_trees(base, s)
    compare("ls", ["-p", f"{base}/c"], s)


def test_chmod_upto(xs_server: Any) -> None:
    """-u sets every parent too (up to, not including, "/"): use a top-level path."""
    s = xs_server.socket_path
    top = "/clitest" + uuid.uuid4().hex[:10]
    try:
        for tool in ("c", "p"):
            assert pyxs(["write", f"{top}/{tool}/x/y", "v"], s).rc == 0
        args_c = ["-u", f"{top}/c/x/y", "n0", "r9"]
        args_p = ["-u", f"{top}/p/x/y", "n0", "r9"]
        assert real_tool("xenstore-chmod", args_c, s).rc == 0
        assert pyxs(["chmod", *args_p], s).rc == 0
        lines = pyxs(["ls", "-fp", top], s).stdout.decode().splitlines()
        assert len(lines) == 6 and all(line.endswith("(n0,r9)") for line in lines), lines
        assert [x.replace(f"{top}/c", "X") for x in lines[:3]] == [
            x.replace(f"{top}/p", "X") for x in lines[3:]
        ]
        assert pyxs(["perms", top], s).stdout == b"n0 r9\n"  # the top itself too
        # -u on a relative path fails when it runs out of "/" (4.17's message);
        # the transaction is dropped, so nothing changes
        name = top[1:]
        compare("write", [f"{name}/r", "v"], s)
        compare("chmod", ["-u", f"{name}/r", "n0", "r3"], s)
        compare("ls", ["-p", name], s)
        compare("rm", [name], s)
    finally:
        pyxs(["rm", top], s)


def _watch(argv: list[str], env: dict[str, str], trigger: list[str] | None, socket: str) -> Result:
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        try:
            first = b""
            if trigger is not None:
                # wait for the initial event, then make a change
                ready, _, _ = select.select([proc.stdout], [], [], 10)
                assert ready, "no initial watch event"
                first = proc.stdout.readline()
                assert pyxs(trigger, socket).rc == 0
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
    return Result(proc.returncode, first + out, err)


def test_watch(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    env = tool_env(s)
    tool = tool_path("xenstore-watch")
    cases: list[tuple[list[str], list[str] | None]] = [
        (["-n", "1", f"{base}/w"], None),
        (["-n1", f"{base}/w", f"{base}/w2"], None),
        (["-n", "2", f"{base}/w", f"{base}/w2"], None),
        (["--number", "2", f"{base}/w"], ["write", f"{base}/w/x", "1"]),
        (["-n", "2", f"{base}/w"], ["rm", f"{base}/w"]),
        (["-n", "0", f"{base}/w"], None),
    ]
    for args, trigger in cases:
        if trigger is not None and trigger[0] == "rm":
            assert pyxs(["write", f"{base}/w/a", "1"], s).rc == 0
        expected = _watch([tool, *args], env, trigger, s)
        if trigger is not None and trigger[0] == "rm":
            assert pyxs(["write", f"{base}/w/a", "1"], s).rc == 0
        got = _watch([*PYXS, "watch", *args], env, trigger, s)
        assert (got.rc, got.stdout, got.stderr) == (expected.rc, expected.stdout, b""), (
            args,
            expected,
            got,
        )
    # an invalid path: 4.17 prints its message and a blank line, pyxs one line
    expected = _watch([tool, "-n", "1", "bad path"], env, None, s)
    got = _watch([*PYXS, "watch", "-n", "1", "bad path"], env, None, s)
    assert got.rc == expected.rc == 1
    assert got.stderr == expected.stderr.replace(b"xenstore-watch:", b"pyxs:").rstrip(b"\n") + b"\n"


def test_unreachable_daemon_compat_message(tmp_path: Any) -> None:
    """4.17 says "xs_open: <reason>" with status 1; pyxs names the path, status 4."""
    missing = str(tmp_path / "nothing-here")
    expected = real_tool("xenstore-read", ["/a"], missing)
    got = pyxs(["read", "/a"], missing)
    assert expected.rc == 1 and b"No such file or directory" in expected.stderr
    assert got.rc == 4
    assert got.stderr == (
        f"pyxs: cannot connect to XenStore at {missing}: No such file or directory\n".encode()
    )


def test_terminal_width(xs_server: Any, base: str) -> None:
    """On a terminal, ls cuts lines at its width minus 2, as xenstore-ls does."""
    import fcntl
    import pty
    import struct
    import termios

    s = xs_server.socket_path
    setup_tree(s, base)
    outputs = []
    for argv in ([tool_path("xenstore-ls"), "-p", base], [*PYXS, "ls", "-p", base]):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 50, 0, 0))
        proc = subprocess.Popen(argv, env=tool_env(s), stdout=slave, stderr=subprocess.DEVNULL)
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=10)
        os.close(master)
        outputs.append(b"".join(chunks))
    assert outputs[0] == outputs[1]
    assert re.search(rb"\\\.\.\.\"", outputs[1])  # something was cut


def test_as_a_guest(xs_server: Any, base: str, unique_domid: int) -> None:
    """An unprivileged domain: unreadable nodes. Same output; where 4.17 exits
    1 on EACCES, pyxs exits 3 (and ls/chmod already name the reason)."""
    s = xs_server.socket_path
    guest = xs_server.introduce_guest(unique_domid)
    dom = unique_domid
    assert pyxs(["write", f"{base}/top/a/b", "hidden", f"{base}/top/c", "seen"], s).rc == 0
    assert pyxs(["chmod", "-r", f"{base}/top", "n0", f"r{dom}"], s).rc == 0
    assert pyxs(["chmod", f"{base}/top/a", "n0"], s).rc == 0
    for tool, args in (
        ("ls", [f"{base}/top"]),  # "a:" then xs_directory (.../a): Permission denied
        ("ls", ["-p", f"{base}/top"]),  # and "could not access permissions for a"
        ("ls", ["-p", f"{base}/top/c"]),
        ("read", [f"{base}/top/c"]),
        ("list", [f"{base}/top"]),
        ("ls", ["-f", f"{base}/top/c", f"{base}/top/a"]),
    ):
        expected, got = run_both(f"xenstore-{tool}", args, [tool, *args], guest)
        want_err = expected.stderr.replace(f"xenstore-{tool}:".encode(), b"pyxs:")
        want_rc = 3 if b"Permission denied" in want_err else expected.rc
        assert (got.rc, got.stdout, got.stderr) == (want_rc, expected.stdout, want_err), (
            tool,
            args,
            expected,
            got,
        )
