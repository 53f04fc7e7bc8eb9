"""What ``pyxs`` adds to xenstore-utils: JSON, dump/restore, watch extras,
connection choice, error statuses, help, progress; plus the escaping and
option-parsing rules it shares with the C tools, checked directly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cli_support import PYXS, Result, client_env, pyxs, real_tool, run_both
from hypothesis import given
from hypothesis import strategies as st

from pyxs._cli import COMMANDS, main
from pyxs._cli.escape import sanitise, unsanitise
from pyxs._cli.options import UsageError, parse
from pyxs._cli.specs import SPECS
from realxs import start_real_xenstored, stop_real_xenstored


@pytest.fixture
def base(xs_server: Any) -> str:
    return "/test/clx" + uuid.uuid4().hex[:10]


def ok(result: Result) -> bytes:
    assert result.rc == 0 and result.stderr == b"", result
    return result.stdout


# -- help and usage (in-process: these never connect) ---------------------------


@pytest.mark.parametrize("name", COMMANDS)
def test_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: pyxs {name} [-h]")
    assert "--socket PATH" in out and "--xenbus[=PATH]" in out
    assert "exit status:" in out and "3    permission denied" in out
    for option in SPECS[name].options:
        assert (option.long and f"--{option.long}" in out) or f"-{option.short}" in out


def test_top_level_help_lists_every_subcommand() -> None:
    out = ok(pyxs(["--help"], None)).decode()
    for name in ("serve", "run", *COMMANDS):
        assert re.search(rf"^\s+{name}\s+\S", out, re.M), name


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["read"], "missing operand"),
        (["read", "-x", "/a"], "invalid option -- 'x'"),
        (["read", "--bogus", "/a"], "unrecognized option '--bogus'"),
        (["read", "--raw=1", "/a"], "option '--raw' doesn't allow an argument"),
        (["watch", "-n"], "option requires an argument -- 'n'"),
        (["watch", "-n", "two", "/a"], "invalid argument for -n: 'two' (not a whole number)"),
        (["restore", "--no", "f"], "option '--no' is ambiguous"),
        (["write", "/a"], "too few operands"),
        (["write", "/a", "b", "/c"], "every key needs a value"),
        (["dump", "/a", "/b"], "extra operand '/b'"),
        (["exists", "-p", "/a"], "invalid option -- 'p'"),
        (["ls", "--socket"], "option '--socket' requires an argument"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1  # as xenstore-utils
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == f"pyxs {argv[0]}: {message}" or lines[0].startswith(
        f"pyxs {argv[0]}: {message}"
    )
    assert lines[1].startswith(f"usage: pyxs {argv[0]} ")
    assert lines[2] == f"Try 'pyxs {argv[0]} --help' for more information."


def test_option_parsing_rules() -> None:
    """getopt_long's rules: permutation, clusters, attached arguments, '--'."""
    spec = SPECS["watch"]
    ns = parse(spec, ["/a", "-Tn3", "/b", "--val", "--", "-c", "-"])
    assert (ns.args, ns.number, ns.timestamp, ns.value) == (["/a", "/b", "-c", "-"], 3, True, True)
    ns = parse(spec, ["--number=5", "-n", "7", "-s", "/a"])
    assert (ns.number, ns.compat_s, ns.args) == (7, True, ["/a"])
    ns = parse(SPECS["read"], ["--xenbus", "/local/domain/0/name"])
    assert ns.xenbus is True and ns.args == ["/local/domain/0/name"]  # not a device
    ns = parse(SPECS["read"], ["--xenbus=/dev/null", "/a"])
    assert ns.xenbus == "/dev/null"
    ns = parse(SPECS["read"], ["--xenbus", "/dev/null", "/a"])  # a character device
    assert ns.xenbus == "/dev/null" and ns.args == ["/a"]
    ns = parse(SPECS["ls"], [])
    assert ns.args == [] and not ns.flat
    with pytest.raises(UsageError):
        parse(SPECS["chmod"], [])


# -- escaping -------------------------------------------------------------------


@given(st.binary(max_size=64))
def test_unsanitise_inverts_sanitise(value: bytes) -> None:
    escaped = sanitise(value)
    assert all(0x20 <= c <= 0x7E for c in escaped)
    assert unsanitise(escaped) == value


@pytest.mark.realxs  # a real xenstore-* tool or daemon
def test_every_byte_escapes_as_xenstore_read(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    value = "".join(f"\\x{c:02x}" for c in range(256))
    ok(pyxs(["write", f"{base}/all", value], s))
    expected, got = run_both("xenstore-read", [f"{base}/all"], ["read", f"{base}/all"], s)
    assert got == expected
    raw = ok(pyxs(["read", "-R", f"{base}/all"], s))
    assert raw == bytes(range(256))
    assert got.stdout == sanitise(raw) + b"\n"


# -- JSON -------------------------------------------------------------------------


def test_json_outputs(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    ok(pyxs(["write", f"{base}/t", "caf\u00e9", f"{base}/b", "\\x00\\xff", f"{base}/d/e", ""], s))
    ok(pyxs(["chmod", f"{base}/t", "n0", "r5"], s))
    assert json.loads(ok(pyxs(["read", "--json", f"{base}/t", f"{base}/b"], s))) == [
        {"path": f"{base}/t", "value": "caf\u00e9"},
        {"path": f"{base}/b", "value_base64": "AP8="},
    ]
    assert json.loads(ok(pyxs(["list", "--json", base, f"{base}/d/e"], s))) == [
        {"path": base, "children": ["t", "b", "d"]},
        {"path": f"{base}/d/e", "children": []},
    ]
    assert json.loads(ok(pyxs(["ls", "--json", base], s))) == [
        {"path": f"{base}/t", "value": "caf\u00e9"},
        {"path": f"{base}/b", "value_base64": "AP8="},
        {"path": f"{base}/d", "value": ""},
        {"path": f"{base}/d/e", "value": ""},
    ]
    records = json.loads(ok(pyxs(["ls", "-p", "--json", base], s)))
    assert [r["perms"] for r in records] == [["n0", "r5"], ["n0"], ["n0"], ["n0"]]
    assert json.loads(ok(pyxs(["perms", "--json", f"{base}/t"], s))) == [
        {"path": f"{base}/t", "perms": ["n0", "r5"]}
    ]
    assert ok(pyxs(["perms", f"{base}/t", f"{base}/b"], s)) == b"n0 r5\nn0\n"
    assert ok(pyxs(["perms", "-p", f"{base}/t"], s)) == f"{base}/t: n0 r5\n".encode()
    # errors: nothing on stdout, the usual message
    r = pyxs(["read", "--json", f"{base}/t", f"{base}/nope"], s)
    assert (r.rc, r.stdout, r.stderr) == (
        1,
        b"",
        f"pyxs: couldn't read path {base}/nope\n".encode(),
    )
    r = pyxs(["ls", "--json", f"{base}/nope"], s)
    assert r.rc == 1 and r.stdout == b""
    assert (
        ok(pyxs(["list", "--json", f"{base}/t"], s))
        == f'[\n{{"path": "{base}/t", "children": []}}\n]\n'.encode()
    )


def test_ls_json_help_matches_output(xs_server: Any, base: str) -> None:
    """Permissions come with -p only, in the help as in the output."""
    s = xs_server.socket_path
    ok(pyxs(["write", f"{base}/a", "1", f"{base}/a/b", "2"], s))
    epilog = SPECS["ls"].epilog
    assert epilog.startswith('JSON output: [{"path": PATH, "value": ...}, ...], depth first;')
    assert 'each also has "perms": [...]' in epilog
    plain = json.loads(ok(pyxs(["ls", "--json", base], s)))
    with_perms = json.loads(ok(pyxs(["ls", "--json", "-p", base], s)))
    assert [sorted(r) for r in plain] == [["path", "value"]] * 2
    assert [sorted(r) for r in with_perms] == [["path", "perms", "value"]] * 2


def test_ls_json_records_of_failed_reads() -> None:
    """What the help promises for a node whose READ or GET_PERMS failed (a node
    removed between DIRECTORY and READ; a race no server reproduces on demand)."""
    from pyxs._cli.context import Context
    from pyxs._cli.tools import _node_record
    from pyxs._cli.walk import Node
    from pyxs.exceptions import NoEntryError, error_from_payload

    gone = error_from_payload(b"ENOENT\0")
    assert isinstance(gone, NoEntryError)
    node = Node(None, b"/gone", b"gone", 0, 0)  # type: ignore[arg-type]
    node.value_error = gone
    node.perms_error = gone
    ctx = Context("pyxs", None)
    assert _node_record(ctx, node) == {
        "path": "/gone",
        "value": None,
        "error": "No such file or directory",
        "perms": None,
        "perms_error": "No such file or directory",
    }


def test_mkdir(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    ok(pyxs(["write", f"{base}/keep", "value"], s))
    ok(pyxs(["mkdir", f"{base}/keep", f"{base}/new/deep"], s))
    assert ok(pyxs(["ls", "-f", base], s)) == (
        f'{base}/keep = "value"\n{base}/new = ""\n{base}/new/deep = ""\n'.encode()
    )
    r = pyxs(["mkdir", "bad path"], s)
    assert (r.rc, r.stderr) == (1, b"pyxs: could not create path bad path\n")


# -- dump and restore ------------------------------------------------------------------


def _build_tree(s: str, top: str) -> None:
    ok(
        pyxs(
            [
                "write",
                f"{top}/zeta",
                "last letter, first child",
                f"{top}/alpha/bin",
                "\\x00\\x01\\xff\\xfe binary",
                f"{top}/alpha/empty",
                "",
                f"{top}/alpha/utf8",
                "\u00e9t\u00e9 \u2603",
                f"{top}/mid/deep/deeper/deepest",
                "\\n\\t",
                f"{top}/mid/x",
                "x" * 3000,
            ],
            s,
        )
    )
    ok(pyxs(["chmod", f"{top}/alpha", "n0", "r3", "w4"], s))
    ok(pyxs(["chmod", "-r", f"{top}/mid/deep", "b0", "r8"], s))
    ok(pyxs(["chmod", f"{top}", "r0"], s))


@pytest.mark.realxs  # a real xenstore-* tool or daemon
def test_dump_restore_round_trip(xs_server: Any, base: str, tmp_path: Path) -> None:
    s = xs_server.socket_path
    top = f"{base}/orig"
    _build_tree(s, top)
    dump1 = ok(pyxs(["dump", top], s))
    lines = [json.loads(line) for line in dump1.splitlines()]
    assert lines[0] == {"format": "pyxs-dump", "version": 1, "root": top}
    assert [n["path"] for n in lines[1:]] == [
        "",
        "zeta",
        "alpha",
        "alpha/bin",
        "alpha/empty",
        "alpha/utf8",
        "mid",
        "mid/deep",
        "mid/deep/deeper",
        "mid/deep/deeper/deepest",
        "mid/x",
    ]
    assert lines[4] == {"path": "alpha/bin", "value_base64": "AAH//iBiaW5hcnk=", "perms": ["n0"]}
    assert lines[3] == {"path": "alpha", "value": "", "perms": ["n0", "r3", "w4"]}
    assert lines[1]["perms"] == ["r0"] and lines[8]["perms"] == ["b0", "r8"]
    # to a file, restore elsewhere, dump again: the same nodes
    path = tmp_path / "tree.jsonl"
    ok(pyxs(["dump", "-o", str(path), top], s))
    assert path.read_bytes() == dump1
    ok(pyxs(["restore", str(path), f"{base}/copy"], s))
    dump2 = ok(pyxs(["dump", f"{base}/copy"], s))
    assert dump2.splitlines()[1:] == dump1.splitlines()[1:]
    expected, got = run_both("xenstore-ls", ["-p", top], ["ls", "-p", f"{base}/copy"], s)
    assert got == expected
    # --replace: whatever was there goes; from stdin
    ok(pyxs(["write", f"{base}/copy/extra", "1", f"{base}/copy/zeta", "changed"], s))
    ok(pyxs(["restore", "--replace", "-", f"{base}/copy"], s, stdin=dump1))
    assert ok(pyxs(["dump", f"{base}/copy"], s)).splitlines()[1:] == dump1.splitlines()[1:]
    # without --replace: merged; --no-perms: nodes keep or inherit permissions
    ok(pyxs(["write", f"{base}/copy/extra", "1"], s))
    ok(pyxs(["restore", "--no-perms", str(path), f"{base}/copy"], s))
    assert ok(pyxs(["read", f"{base}/copy/extra", f"{base}/copy/zeta"], s)) == (
        b"1\nlast letter, first child\n"
    )
    # the default destination is the root the dump was taken from
    ok(pyxs(["rm", top], s))
    ok(pyxs(["restore", str(path)], s))
    assert ok(pyxs(["dump", top], s)) == dump1


def test_dump_of_the_whole_store_and_a_missing_path(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    _build_tree(s, base)
    lines = ok(pyxs(["dump"], s)).splitlines()
    assert json.loads(lines[0])["root"] == "/"
    assert json.loads(lines[1]) == {
        "path": "",
        "value": json.loads(lines[1])["value"],
        "perms": json.loads(lines[1])["perms"],
    }
    assert any(json.loads(line)["path"] == base[1:] + "/alpha/bin" for line in lines[2:])
    r = pyxs(["dump", f"{base}/nope"], s)
    assert (r.rc, r.stdout, r.stderr) == (
        1,
        b"",
        f"pyxs: could not dump path {base}/nope\n".encode(),
    )


HEADER = b'{"format": "pyxs-dump", "version": 1, "root": "/x"}\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file, not a pyxs dump"),
        (b"hello\n", ":1: not a pyxs dump (no pyxs-dump header)"),
        (
            b'{"format": "pyxs-dump", "version": 9, "root": "/x"}\n',
            ":1: unsupported dump version 9",
        ),
        (
            b'{"format": "pyxs-dump", "version": 1, "root": "/x"}\n{"path": "a"}\n',
            ":2: bad node line (missing 'value')",
        ),
        (
            HEADER + b'{"path": "a", "value": "", "perms": ["q1"]}\n',
            ":2: bad node line (perms is not a list",
        ),
        (
            HEADER + b'{"path": "a", "value_base64": "@@"}\n',
            ":2: bad node line (bad base64 value",
        ),
    ],
)
def test_restore_rejects_bad_files(
    xs_server: Any, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    r = pyxs(["restore", str(path), "/test/never"], xs_server.socket_path)
    assert r.rc == 1 and r.stdout == b""
    assert r.stderr.startswith(f"pyxs: {path}".encode()) and message.encode() in r.stderr, r
    r = pyxs(["restore", str(tmp_path / "missing"), "/x"], xs_server.socket_path)
    assert (r.rc, r.stderr) == (
        1,
        f"pyxs: cannot read {tmp_path / 'missing'}: No such file or directory\n".encode(),
    )


def test_restore_stops_at_the_first_refusal(xs_server: Any, base: str) -> None:
    dump = (
        b'{"format": "pyxs-dump", "version": 1, "root": "/x"}\n'
        b'{"path": "", "value": "", "perms": ["n0"]}\n'
        b'{"path": "a", "value": "1", "perms": ["n4242"]}\n'
    )
    r = pyxs(["restore", "-", base], xs_server.socket_path, stdin=dump)
    assert (r.rc, r.stdout) == (1, b"")
    assert (
        r.stderr == f"pyxs: could not restore path {base}/a: No such file or directory\n".encode()
    )


def _run_with_tty_stderr(
    argv: list[str], env: dict[str, str], stdin: bytes = b""
) -> tuple[int, bytes, bytes]:
    master, slave = pty.openpty()
    with subprocess.Popen(
        argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave
    ) as proc:
        os.close(slave)
        out, _ = proc.communicate(stdin, timeout=30)
    chunks = []
    while select.select([master], [], [], 0.2)[0]:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.returncode, out, b"".join(chunks)


def test_progress_only_on_a_terminal(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    ok(pyxs(["write", *[a for i in range(50) for a in (f"{base}/n{i}", "v")]], s))
    # stderr a pipe: no progress at all
    dump = ok(pyxs(["dump", base], s))
    # stderr a terminal: a progress line, cleared at the end
    rc, out, err = _run_with_tty_stderr([*PYXS, "dump", base], client_env(s))
    assert rc == 0 and out == dump
    assert b"\rdump: " in err and b" nodes" in err and err.endswith(b"\r\x1b[K")
    rc, out, err = _run_with_tty_stderr(
        [*PYXS, "restore", "-", f"{base}-copy"], client_env(s), dump
    )
    assert rc == 0 and out == b""
    assert b"\rrestore [" in err and b"/51 nodes" in err and err.endswith(b"\r\x1b[K")
    rc, out, err = _run_with_tty_stderr([*PYXS, "dump", "--no-progress", base], client_env(s))
    assert (rc, out, err) == (0, dump, b"")
    ok(pyxs(["rm", f"{base}-copy"], s))


# -- watch extras ------------------------------------------------------------------------


def _watch_lines(argv: list[str], s: str, triggers: list[list[str]], count: int) -> list[str]:
    """The ``count`` lines of a watch: the initial ones, then one per trigger.

    Each trigger runs only after the line of the one before it is out: with
    -V the watch reads the value after the event, and must not race the next
    trigger (a ``rm`` would turn the value into "(deleted)").
    """
    with subprocess.Popen(
        [*PYXS, *argv], env=client_env(s), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(count - len(triggers))]
        for trigger in triggers:
            ok(pyxs(trigger, s))
            lines.append(proc.stdout.readline())
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and err == b"", err
    result = [line.decode() for line in lines + out.splitlines(keepends=True)]
    assert len(result) == count, result
    return [line.rstrip("\n") for line in result]


def test_watch_value_timestamp_json(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    w = f"{base}/w"
    ok(pyxs(["write", w, "start"], s))
    lines = _watch_lines(
        ["watch", "-V", "-n", "3", w], s, [["write", f"{w}/x", "\\x01"], ["rm", w]], 3
    )
    assert lines[0] == f'{w} = "start"'
    assert lines[1] == f'{w}/x = "\\001"'
    assert lines[2] == f"{w} (deleted)"
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d"
    lines = _watch_lines(["watch", "--timestamp", "-n", "2", w], s, [["write", w, "x"]], 2)
    assert all(re.fullmatch(iso + " " + re.escape(w), line) for line in lines), lines
    lines = _watch_lines(
        ["watch", "--json", "-TV", "-n", "3", w, "@releaseDomain"], s, [["write", w, "\\xff"]], 3
    )
    records = [json.loads(line) for line in lines]
    assert [r["path"] for r in records] == [w, "@releaseDomain", w]
    assert [r["token"] for r in records] == [w, "@releaseDomain", w]
    assert records[0]["value"] == "x" and records[2]["value_base64"] == "/w=="
    assert "value" in records[1] and records[1]["value"] is None
    assert all(re.fullmatch(iso, r["time"]) for r in records)


def _default_sigint() -> None:
    # A process started with SIGINT ignored (a background job of a
    # non-interactive shell, as CI may run the suite) keeps it ignored, as it
    # should: Ctrl-C is then not for it. This test is about the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_watch_interrupted(xs_server: Any, base: str) -> None:
    with subprocess.Popen(
        [*PYXS, "watch", base],
        env=client_env(xs_server.socket_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"{base}\n".encode()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (130, b"", b"")


# -- connections and failures ------------------------------------------------------------


@pytest.mark.realxs  # a real xenstore-* tool or daemon
def test_connection_choice(xs_server: Any, base: str, tmp_path: Path) -> None:
    s = xs_server.socket_path
    ok(pyxs(["write", f"{base}/a", "here"], s))
    # $XENSTORED_RUNDIR/socket when $XENSTORED_PATH is unset
    assert (
        ok(pyxs(["read", f"{base}/a"], None, env={"XENSTORED_RUNDIR": os.path.dirname(s)}))
        == b"here\n"
    )
    if os.path.basename(s) == "socket":
        expected = real_tool(
            "xenstore-read", [f"{base}/a"], None, env={"XENSTORED_RUNDIR": os.path.dirname(s)}
        )
        assert expected.stdout == b"here\n"
    # --socket wins over the environment
    env = {"XENSTORED_PATH": str(tmp_path / "nowhere")}
    assert ok(pyxs(["read", "--socket", s, f"{base}/a"], None, env=env)) == b"here\n"
    assert ok(pyxs(["read", f"{base}/a", f"--socket={s}"], None, env=env)) == b"here\n"
    # --xenbus refuses a socket, and anything that is not a character device
    r = pyxs(["read", f"--xenbus={s}", f"{base}/a"], None)
    assert (r.rc, r.stderr) == (
        4,
        f"pyxs: cannot open XenBus device {s}: a socket, not a XenBus device "
        "(use --socket)\n".encode(),
    )
    r = pyxs(["read", "--xenbus=/nonexistent/xenbus", "/a"], None)
    assert (r.rc, r.stderr) == (
        4,
        b"pyxs: cannot open XenBus device /nonexistent/xenbus: No such file or directory\n",
    )


def test_default_xenbus_device_is_named_as_libxenstore_finds_it() -> None:
    """--xenbus alone: /dev/xen/xenbus, else /proc/xen/xenbus (xs_domain_dev());
    when neither exists the message names /dev/xen/xenbus first."""
    r = pyxs(["read", "--xenbus", "/a"], None)
    if os.path.exists("/dev/xen/xenbus"):
        assert r.rc == 0 or b"/dev/xen/xenbus" in r.stderr, r
    elif os.path.exists("/proc/xen/xenbus"):
        assert r.rc == 0 or b"/proc/xen/xenbus" in r.stderr, r
    else:
        assert (r.rc, r.stderr) == (
            4,
            b"pyxs: cannot open XenBus device /dev/xen/xenbus: No such file or directory "
            b"(nor /proc/xen/xenbus)\n",
        )


def test_unreachable_names_the_path_where_something_is(tmp_path: Path) -> None:
    """As xs_open, a socket that refuses is followed by the XenBus device; when
    that is missing too, the message is about the socket (the path where
    something is), not the missing device."""
    import socket

    stale = tmp_path / "socket"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(stale))
    listener.close()  # the file stays: connect() is refused
    r = pyxs(["read", "/a"], None, env={"XENSTORED_RUNDIR": str(tmp_path)})
    if os.path.exists("/dev/xen/xenbus") or os.path.exists("/proc/xen/xenbus"):
        assert r.rc == 0 or b"xenbus" in r.stderr, r  # a Xen host: its device answers
    else:
        assert (r.rc, r.stderr) == (
            4,
            f"pyxs: cannot connect to XenStore at {stale}: Connection refused\n".encode(),
        )


def test_never_writes_into_a_regular_file(tmp_path: Path) -> None:
    """libxenstore opens any non-socket $XENSTORED_PATH as a device and writes
    requests into it; pyxs refuses."""
    victim = tmp_path / "passwd"
    victim.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    r = pyxs(["write", "/a", "b"], str(victim))
    assert r.rc == 4
    assert (
        r.stderr
        == f"pyxs: cannot connect to XenStore at {victim}: "
        "not a socket or a character device\n".encode()
    )
    r = pyxs(["read", f"--xenbus={victim}", "/a"], None)
    assert r.rc == 4 and b"not a socket or a character device" in r.stderr
    assert victim.read_bytes() == b"root:x:0:0:root:/root:/bin/bash\n"


def test_over_a_xenbus_device(xs_server: Any, base: str) -> None:
    """--xenbus and $XENSTORED_PATH naming a character device: XenBus, one
    request at a time (a raw pty bridged to the server stands in for it)."""
    spec = importlib.util.spec_from_file_location(
        "xenbus_standin", Path(__file__).parent.parent / "client" / "xenbus_standin.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    s = xs_server.socket_path
    _build_tree(s, base)
    expected = ok(pyxs(["ls", "-p", base], s))
    with module.XenBusStandIn(s) as device:
        dev = device.device_path
        assert ok(pyxs(["ls", "-p", "--xenbus", dev, base], None)) == expected
        assert ok(pyxs(["ls", "-p", base], dev)) == expected  # via $XENSTORED_PATH
        ok(pyxs(["write", f"--xenbus={dev}", f"{base}/viabus", "1", f"{base}/v2", "2"], None))
        assert ok(pyxs(["read", f"{base}/viabus", f"{base}/v2"], s)) == b"1\n2\n"
        assert ok(pyxs(["watch", "-n", "1", f"{base}/v2"], dev)) == f"{base}/v2\n".encode()
        assert ok(pyxs(["dump", base], dev)) == ok(pyxs(["dump", base], s))


@pytest.mark.realxs  # a real xenstore-* tool or daemon
def test_permission_denied(xs_server: Any, base: str, unique_domid: int) -> None:
    """A guest reading dom0's n0 nodes: EACCES, status 3, the reason said."""
    s = xs_server.socket_path
    ok(pyxs(["write", f"{base}/secret", "s", f"{base}/mine", "m"], s))
    guest = xs_server.introduce_guest(unique_domid)
    ok(pyxs(["chmod", f"{base}/mine", f"n{unique_domid}"], s))
    r = pyxs(["read", f"{base}/secret"], guest)
    assert (r.rc, r.stdout) == (3, b"")
    assert r.stderr == f"pyxs: couldn't read path {base}/secret: Permission denied\n".encode()
    c = real_tool("xenstore-read", [f"{base}/secret"], guest)
    assert (c.rc, c.stderr) == (1, f"xenstore-read: couldn't read path {base}/secret\n".encode())
    assert pyxs(["read", f"{base}/mine"], guest).stdout == b"m\n"
    r = pyxs(["exists", f"{base}/secret"], guest)
    assert (r.rc, r.stderr) == (
        3,
        f"pyxs: cannot tell whether {base}/secret exists: Permission denied\n".encode(),
    )
    r = pyxs(["ls", base], guest)
    assert (r.rc, r.stderr) == (3, f"pyxs: xs_directory ({base}): Permission denied\n".encode())
    r = pyxs(["write", f"{base}/secret", "x"], guest)
    assert (r.rc, r.stderr) == (
        3,
        f"pyxs: could not write path {base}/secret: Permission denied\n".encode(),
    )
    r = pyxs(["chmod", f"{base}/mine", "n0"], guest)  # giving it away: EPERM
    assert (r.rc, r.stderr) == (
        3,
        f"pyxs: Error occurred setting permissions on '{base}/mine': "
        "Operation not permitted\n".encode(),
    )
    # a missing node under a readable one is still just missing
    r = pyxs(["read", f"{base}/mine/nope"], guest)
    assert (r.rc, r.stderr) == (1, f"pyxs: couldn't read path {base}/mine/nope\n".encode())


@pytest.mark.realxs  # a real xenstore-* tool or daemon
def test_daemon_going_away() -> None:
    """The daemon stops while pyxs waits for events: one line, status 4."""
    daemon = start_real_xenstored()
    try:
        with subprocess.Popen(
            [*PYXS, "watch", "/w"],
            env=client_env(daemon.socket_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"/w\n"
            stop_real_xenstored(daemon)
            out, err = proc.communicate(timeout=10)
    finally:
        stop_real_xenstored(daemon)
    assert proc.returncode == 4 and out == b""
    assert err == b"pyxs: lost the connection to XenStore (XenStore closed the connection)\n"


def test_closed_pipe_is_quiet(xs_server: Any, base: str) -> None:
    """``pyxs ls | head -1``: no traceback when the reader goes away."""
    s = xs_server.socket_path
    ok(pyxs(["write", *[a for i in range(1500) for a in (f"{base}/n{i:04d}", "v" * 40)]], s))
    with subprocess.Popen(
        [*PYXS, "ls", base], env=client_env(s), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"n0000 = ")
        proc.stdout.close()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert err == b"" and proc.returncode in (141, -signal.SIGPIPE)


def test_python_dash_m(xs_server: Any, base: str) -> None:
    s = xs_server.socket_path
    ok(pyxs(["write", f"{base}/m", "dash m"], s))
    r = pyxs(["read", f"{base}/m"], s, command=[sys.executable, "-m", "pyxs"])
    assert (r.rc, r.stdout) == (0, b"dash m\n")


def test_startup_stays_lean() -> None:
    """The xenstore-utils subcommands import neither asyncio nor argparse."""
    code = (
        "import sys; from pyxs.cli import main; main(['read', '--help']); "
        "loaded = [m for m in ('asyncio', 'argparse', 'threading', 'json') if m in sys.modules]; "
        "print(' '.join(loaded), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stderr == b"\n", proc.stderr


@pytest.mark.realxs  # a real xenstore-* tool or daemon
def test_request_too_big(xs_server: Any, base: str) -> None:
    """Over XenStore's 4096-byte payload: refused before sending (E2BIG), as
    libxenstore does; xenstore-write says just "could not write path"."""
    s = xs_server.socket_path
    big = "x" * 5000
    r = pyxs(["write", f"{base}/big", big, f"{base}/ok", "1"], s)
    assert (r.rc, r.stdout) == (1, b"")
    assert r.stderr == f"pyxs: could not write path {base}/big: Argument list too long\n".encode()
    c = real_tool("xenstore-write", [f"{base}/big", big], s)
    assert (c.rc, c.stderr) == (1, f"xenstore-write: could not write path {base}/big\n".encode())
    assert pyxs(["exists", f"{base}/ok"], s).rc == 1  # one transaction: nothing written


@pytest.mark.realxs  # a real xenstore-* tool or daemon
def test_large_ls_output_is_whole_through_a_pipe(xs_server: Any, base: str) -> None:
    """More than one 64 KiB chunk of ``ls`` output, unbuffered or not, all
    of it delivered before the console script's quick exit; the same lines
    as the real xenstore-ls."""
    from pyxs import Client

    value = b"v" * 40
    with Client(unix_socket_path=xs_server.socket_path) as c:
        for i in range(20):
            for j in range(100):
                c.write(f"{base}/big/d{i}/n{j}".encode(), value)
    expected = real_tool("xenstore-ls", [f"{base}/big"], xs_server.socket_path)
    assert expected.rc == 0 and len(expected.stdout) > 64 * 1024
    for env in ({}, {"PYTHONUNBUFFERED": "1"}):
        result = pyxs(["ls", f"{base}/big"], xs_server.socket_path, env=env)
        assert (result.rc, result.stderr) == (0, b"")
        assert result.stdout == expected.stdout
    via_module = pyxs(
        ["ls", f"{base}/big"], xs_server.socket_path, command=[sys.executable, "-m", "pyxs"]
    )
    assert (via_module.rc, via_module.stdout) == (0, expected.stdout)


# -- the walk ----------------------------------------------------------------------------


def test_walk_holds_a_few_windows_of_nodes(xs_server: Any, unique_path: bytes) -> None:
    """A walk makes a node when its requests go out and lets it go once yielded,
    and sends in yield order: 40 directories of 30 leaves never have more than a
    few windows' worth of nodes alive (listing the first window of directories
    at once made all their children: 960 here), and come out depth first."""
    import gc

    import pyxs
    from pyxs._cli.session import WINDOW, Session, connect
    from pyxs._cli.walk import Node, walk

    expected = []
    with pyxs.Client(unix_socket_path=xs_server.socket_path) as client:
        for d in range(40):
            expected.append(unique_path + b"/d%d" % d)
            for n in range(30):
                path = unique_path + b"/d%d/n%d" % (d, n)
                client.write(path, b"%d" % n)
                expected.append(path)
    most = 0
    seen = []
    with Session(connect(xs_server.socket_path)) as session:
        for count, node in enumerate(walk(session, unique_path)):
            seen.append(node.path)
            if count % 50 == 0:
                most = max(most, sum(1 for o in gc.get_objects() if type(o) is Node))
    assert seen == expected
    assert 0 < most <= 2 * WINDOW
