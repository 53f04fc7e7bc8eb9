"""Every operation and its errors, over a real socket, as dom0 (privileged).

The expected bytes are those the real cxenstored 4.17 sends (see
tests/REALXS.md, "Behaviour reference"; test_vs_real.py checks
the same sequences against the real daemon).
"""

from __future__ import annotations

import pytest
from rawxs import RawConn

from pyxs.protocol import Op
from pyxs.server import Server
from pyxs.server.control import HELP

OK = b"OK\0"


def test_initial_tree(dom0: RawConn) -> None:
    assert dom0.ok(Op.DIRECTORY, b"/\0") == b"tool\0"
    assert dom0.ok(Op.DIRECTORY, b"/tool\0") == b"xenstored\0"
    assert dom0.ok(Op.DIRECTORY, b"/tool/xenstored\0") == b""
    for path in (b"/", b"/tool", b"/tool/xenstored"):
        assert dom0.ok(Op.READ, path + b"\0") == b""
        assert dom0.ok(Op.GET_PERMS, path + b"\0") == b"n0\0"
    assert dom0.ok(Op.DIRECTORY_PART, b"/\x000\0") == b"1\0tool\0\0"
    assert dom0.ok(Op.DIRECTORY_PART, b"/tool\x000\0") == b"2\0xenstored\0\0"
    assert dom0.ok(Op.DIRECTORY_PART, b"/tool/xenstored\x000\0") == b"3\0\0"


def test_replies_echo_req_and_tx_ids(dom0: RawConn) -> None:
    tx = int(dom0.ok(Op.TRANSACTION_START, b"\0")[:-1])
    dom0.send(Op.READ, b"/\0", tx_id=tx, req_id=0xDEADBEEF)
    reply = dom0.read_packet()
    assert reply == (Op.READ, 0xDEADBEEF, tx, b"")
    dom0.send(Op.READ, b"/nope\0", tx_id=tx, req_id=7)
    assert dom0.read_packet() == (Op.ERROR, 7, tx, b"ENOENT\0")


def test_write_read(dom0: RawConn) -> None:
    assert dom0.ok(Op.WRITE, b"/w\0hello") == OK
    assert dom0.ok(Op.READ, b"/w\0") == b"hello"
    assert dom0.ok(Op.WRITE, b"/w\0a\0b\0") == OK
    assert dom0.ok(Op.READ, b"/w\0") == b"a\0b\0"
    assert dom0.ok(Op.WRITE, b"/w\0") == OK
    assert dom0.ok(Op.READ, b"/w\0") == b""
    assert dom0.error(Op.WRITE, b"/w") == "EINVAL"
    assert dom0.error(Op.WRITE, b"") == "EINVAL"
    assert dom0.error(Op.READ, b"/nope\0") == "ENOENT"


def test_write_creates_parents(dom0: RawConn) -> None:
    assert dom0.ok(Op.WRITE, b"/p/q/r\0v") == OK
    assert dom0.ok(Op.READ, b"/p\0") == b""
    assert dom0.ok(Op.READ, b"/p/q\0") == b""
    assert dom0.ok(Op.DIRECTORY, b"/p\0") == b"q\0"


def test_payload_of_4096_bytes(dom0: RawConn) -> None:
    payload = b"/big\0" + b"x" * (4096 - 5)
    assert dom0.ok(Op.WRITE, payload) == OK
    assert dom0.ok(Op.READ, b"/big\0") == b"x" * 4091


def test_directory_order_and_removal(dom0: RawConn) -> None:
    for name in (b"one", b"two", b"three", b"four"):
        dom0.ok(Op.WRITE, b"/d/" + name + b"\0")
    assert dom0.ok(Op.DIRECTORY, b"/d\0") == b"one\0two\0three\0four\0"
    dom0.ok(Op.RM, b"/d/two\0")
    assert dom0.ok(Op.DIRECTORY, b"/d\0") == b"one\0three\0four\0"
    dom0.ok(Op.WRITE, b"/d/two\0")
    assert dom0.ok(Op.DIRECTORY, b"/d\0") == b"one\0three\0four\0two\0"
    assert dom0.error(Op.DIRECTORY, b"/nope\0") == "ENOENT"


def test_directory_e2big_and_directory_part(dom0: RawConn) -> None:
    names = [b"child-%04d-%s" % (i, b"x" * 40) for i in range(100)]
    for name in names:
        dom0.ok(Op.MKDIR, b"/big/" + name + b"\0")
    listing = b"".join(n + b"\0" for n in names)
    assert len(listing) > 4096
    assert dom0.error(Op.DIRECTORY, b"/big\0") == "E2BIG"
    got = b""
    offset = 0
    parts = 0
    while True:
        reply = dom0.ok(Op.DIRECTORY_PART, b"/big\0%d\0" % offset)
        assert len(reply) <= 4096
        gen, _, rest = reply.partition(b"\0")
        assert gen.isdigit()
        parts += 1
        if rest.endswith(b"\0\0") or rest == b"\0":
            got += rest[:-1]
            break
        got += rest
        offset += len(rest)
    assert got == listing
    assert parts == 2


def test_directory_part_byte_offsets(dom0: RawConn) -> None:
    for name in (b"one", b"two", b"three"):
        dom0.ok(Op.WRITE, b"/dp/" + name + b"\0")
    gen = dom0.ok(Op.DIRECTORY_PART, b"/dp\x000\0").split(b"\0")[0]
    assert dom0.ok(Op.DIRECTORY_PART, b"/dp\x000\0") == gen + b"\0one\0two\0three\0\0"
    assert dom0.ok(Op.DIRECTORY_PART, b"/dp\x002\0") == gen + b"\0e\0two\0three\0\0"
    assert dom0.ok(Op.DIRECTORY_PART, b"/dp\x0014\0") == gen + b"\0\0"
    assert dom0.ok(Op.DIRECTORY_PART, b"/dp\x0099\0") == gen + b"\0\0"
    assert dom0.ok(Op.DIRECTORY_PART, b"/dp\x00-1\0") == gen + b"\0\0"
    assert dom0.ok(Op.DIRECTORY_PART, b"/dp\0abc\0") == gen + b"\0one\0two\0three\0\0"
    assert dom0.error(Op.DIRECTORY_PART, b"/dp\0") == "EINVAL"
    assert dom0.error(Op.DIRECTORY_PART, b"/dp\x001") == "EINVAL"
    assert dom0.error(Op.DIRECTORY_PART, b"/dp\x001\0x\0") == "EINVAL"
    assert dom0.error(Op.DIRECTORY_PART, b"/nope\x000\0") == "ENOENT"


def test_directory_part_generation(dom0: RawConn) -> None:
    dom0.ok(Op.WRITE, b"/g/a\0")
    gen1 = int(dom0.ok(Op.DIRECTORY_PART, b"/g\x000\0").split(b"\0")[0])
    dom0.ok(Op.WRITE, b"/g/a\0new data")
    assert int(dom0.ok(Op.DIRECTORY_PART, b"/g\x000\0").split(b"\0")[0]) == gen1
    dom0.ok(Op.WRITE, b"/g/b\0")
    assert int(dom0.ok(Op.DIRECTORY_PART, b"/g\x000\0").split(b"\0")[0]) > gen1


def test_generations_like_cxenstored(dom0: RawConn) -> None:
    # Numbers observed on the real daemon for this exact sequence.
    dom0.ok(Op.WRITE, b"/a\0")
    assert dom0.ok(Op.DIRECTORY_PART, b"/\x000\0") == b"5\0tool\0a\0\0"
    dom0.ok(Op.WRITE, b"/b/c/d\0")
    gens = [
        dom0.ok(Op.DIRECTORY_PART, p + b"\x000\0").split(b"\0")[0]
        for p in (b"/", b"/b", b"/b/c", b"/b/c/d")
    ]
    assert gens == [b"9", b"8", b"7", b"6"]
    assert dom0.ok(Op.TRANSACTION_START, b"\0") == b"1\0"
    dom0.ok(Op.WRITE, b"/e\0")
    assert dom0.ok(Op.DIRECTORY_PART, b"/e\x000\0") == b"11\0\0"
    dom0.ok(Op.RM, b"/b\0")
    assert dom0.ok(Op.DIRECTORY_PART, b"/\x000\0") == b"18\0tool\0a\0e\0\0"
    dom0.ok(Op.WRITE, b"/f\0", tx_id=1)
    dom0.ok(Op.TRANSACTION_END, b"T\0", tx_id=1)
    assert dom0.ok(Op.DIRECTORY_PART, b"/\x000\0") == b"22\0tool\0a\0e\0f\0\0"
    assert dom0.ok(Op.DIRECTORY_PART, b"/f\x000\0") == b"21\0\0"


def test_mkdir(dom0: RawConn) -> None:
    assert dom0.ok(Op.MKDIR, b"/m/n\0") == OK
    assert dom0.ok(Op.READ, b"/m/n\0") == b""
    dom0.ok(Op.WRITE, b"/m/n\0data")
    assert dom0.ok(Op.MKDIR, b"/m/n\0") == OK
    assert dom0.ok(Op.READ, b"/m/n\0") == b"data"
    assert dom0.error(Op.MKDIR, b"/bad.path\0") == "EINVAL"


def test_rm(dom0: RawConn) -> None:
    dom0.ok(Op.WRITE, b"/r/a/b\0")
    dom0.ok(Op.WRITE, b"/r/c\0")
    assert dom0.ok(Op.RM, b"/r/nope\0") == OK
    assert dom0.error(Op.RM, b"/r/nope/deeper\0") == "ENOENT"
    assert dom0.error(Op.RM, b"/\0") == "EINVAL"
    assert dom0.ok(Op.RM, b"/r\0") == OK
    assert dom0.error(Op.READ, b"/r\0") == "ENOENT"
    assert dom0.error(Op.READ, b"/r/a/b\0") == "ENOENT"
    assert dom0.ok(Op.DIRECTORY, b"/\0") == b"tool\0"


@pytest.mark.parametrize(
    "path",
    [
        b"/a.b",
        b"/a:b",
        b"/a+b",
        b"/a b",
        b"/a*b",
        b"/\xc3\xa9",
        b"//a",
        b"/a//b",
        b"/a/",
        b"",
        b"@introduceDomain",
        b"/" + b"a" * 2048,
    ],
)
def test_invalid_paths(dom0: RawConn, path: bytes) -> None:
    assert dom0.error(Op.WRITE, path + b"\0v") == "EINVAL"
    assert dom0.error(Op.READ, path + b"\0") == "EINVAL"


def test_path_length_limits(dom0: RawConn) -> None:
    assert dom0.ok(Op.WRITE, b"/" + b"a" * 2047 + b"\0") == OK
    assert dom0.error(Op.WRITE, b"/" + b"b" * 2048 + b"\0") == "EINVAL"
    assert dom0.ok(Op.WRITE, b"/local/domain/1/" + b"a" * 2048 + b"\0") == OK
    assert dom0.error(Op.WRITE, b"/local/domain/1/" + b"a" * 2049 + b"\0") == "EINVAL"
    assert dom0.ok(Op.WRITE, b"/local/domain/12345/" + b"a" * 2048 + b"\0") == OK
    # %5u reads at most 5 characters: no prefix here, the whole path counts
    assert dom0.error(Op.WRITE, b"/local/domain/012345/" + b"a" * 2048 + b"\0") == "EINVAL"
    assert dom0.ok(Op.WRITE, b"/local/domain/-1/" + b"a" * 2048 + b"\0") == OK
    # relative paths count after /local/domain/0/
    assert dom0.ok(Op.WRITE, b"c" * 2048 + b"\0") == OK
    assert dom0.error(Op.WRITE, b"c" * 2049 + b"\0") == "EINVAL"


def test_relative_paths(dom0: RawConn) -> None:
    assert dom0.error(Op.RM, b"/local/domain/0/x\0") == "ENOENT"
    assert dom0.ok(Op.WRITE, b"rel/x\0v") == OK
    assert dom0.ok(Op.READ, b"/local/domain/0/rel/x\0") == b"v"
    assert dom0.ok(Op.READ, b"rel/x\0") == b"v"
    assert dom0.ok(Op.DIRECTORY, b"/local/domain/0\0") == b"rel\0"


def test_at_paths(dom0: RawConn) -> None:
    assert dom0.error(Op.READ, b"@introduceDomain\0") == "EINVAL"
    assert dom0.error(Op.GET_PERMS, b"@releaseDomain\0") == "EINVAL"
    assert dom0.ok(Op.SET_PERMS, b"@releaseDomain\0n0\0r5\0") == OK
    assert dom0.error(Op.SET_PERMS, b"@bogus\0n0\0") == "EINVAL"
    assert dom0.error(Op.SET_PERMS, b"@\0n0\0") == "EINVAL"


def test_one_argument_ops_reject_malformed_payloads(dom0: RawConn) -> None:
    # The real daemon answers these with a stale errno (or aborts).
    for op in (Op.READ, Op.DIRECTORY, Op.GET_PERMS, Op.MKDIR, Op.RM):
        for payload in (b"/tool", b"/tool\0extra", b"/tool\0extra\0", b""):
            assert dom0.error(op, payload) == "EINVAL", (op, payload)


def test_perms_get_set(dom0: RawConn) -> None:
    dom0.ok(Op.INTRODUCE, b"5\x000\x007\0")
    dom0.ok(Op.WRITE, b"/p\0")
    assert dom0.ok(Op.SET_PERMS, b"/p\0n0\0r5\0") == OK
    assert dom0.ok(Op.GET_PERMS, b"/p\0") == b"n0\0r5\0"
    dom0.ok(Op.WRITE, b"/p/c\0")
    assert dom0.ok(Op.GET_PERMS, b"/p/c\0") == b"n0\0r5\0"
    assert dom0.ok(Op.SET_PERMS, b"/p\0b5\0w0\0") == OK
    assert dom0.ok(Op.GET_PERMS, b"/p\0") == b"b5\0w0\0"
    assert dom0.ok(Op.GET_PERMS, b"/p/c\0") == b"n0\0r5\0"


@pytest.mark.parametrize(
    ("entry", "shown"),
    [
        (b"r99999", b"r99999"),
        (b"r-1", b"r-1"),
        (b"r0x10", b"r16"),
        (b"r010", b"r8"),
        (b"r 5", b"r5"),
        (b"r+5", b"r5"),
        (b"r4294967295", b"r-1"),
        (b"r4294967296", b"r0"),
        (b"r0X1f", b"r31"),
    ],
)
def test_perm_entries_parse_like_strtol(dom0: RawConn, entry: bytes, shown: bytes) -> None:
    dom0.ok(Op.WRITE, b"/pp\0")
    assert dom0.ok(Op.SET_PERMS, b"/pp\0n0\0" + entry + b"\0") == OK
    assert dom0.ok(Op.GET_PERMS, b"/pp\0") == b"n0\0" + shown + b"\0"


@pytest.mark.parametrize(
    "payload",
    [
        b"/pp\0",
        b"/pp\0n0",
        b"/pp\0x0\0",
        b"/pp\0n0\0rabc\0",
        b"/pp\0n0\0r\0",
        b"/pp\0n0\0r5x\0",
        b"/pp\0n0\0\0",
        b"/pp\0n0\0R5\0",
        b"/pp\0n0\0rw5\0",
        b"/pp\0n0\0r08\0",
        b"/pp\0n0\0r1e3\0",
        b"/pp\0n0\0r0x\0",
    ],
)
def test_set_perms_einval(dom0: RawConn, payload: bytes) -> None:
    dom0.ok(Op.WRITE, b"/pp\0")
    assert dom0.error(Op.SET_PERMS, payload) == "EINVAL"


def test_set_perms_owner_must_exist(dom0: RawConn) -> None:
    dom0.ok(Op.WRITE, b"/pp\0")
    assert dom0.error(Op.SET_PERMS, b"/pp\0n99999\0") == "ENOENT"
    assert dom0.error(Op.SET_PERMS, b"/pp\0n-1\0") == "ENOENT"
    assert dom0.error(Op.SET_PERMS, b"/pp\0n7\0") == "ENOENT"
    assert dom0.ok(Op.SET_PERMS, b"/pp\0n0x0\0") == OK
    assert dom0.ok(Op.SET_PERMS, b"/pp\0n0\0r7\0") == OK  # non-owner: accepted, ignored
    assert dom0.ok(Op.GET_PERMS, b"/pp\0") == b"n0\0r7\0"
    assert dom0.ok(Op.SET_PERMS, b"/pp\0n0\0r5\0extra") == OK  # trailing bytes ignored
    assert dom0.ok(Op.GET_PERMS, b"/pp\0") == b"n0\0r5\0"
    assert dom0.error(Op.SET_PERMS, b"/nope\0n0\0") == "ENOENT"


def test_get_domain_path(dom0: RawConn) -> None:
    assert dom0.ok(Op.GET_DOMAIN_PATH, b"5\0") == b"/local/domain/5\0"
    assert dom0.ok(Op.GET_DOMAIN_PATH, b"abc\0") == b"/local/domain/0\0"
    assert dom0.ok(Op.GET_DOMAIN_PATH, b"\0") == b"/local/domain/0\0"
    assert dom0.ok(Op.GET_DOMAIN_PATH, b"-1\0") == b"/local/domain/4294967295\0"
    assert dom0.ok(Op.GET_DOMAIN_PATH, b"12abc\0") == b"/local/domain/12\0"
    assert dom0.error(Op.GET_DOMAIN_PATH, b"5") == "EINVAL"
    assert dom0.error(Op.GET_DOMAIN_PATH, b"1\x002\0") == "EINVAL"


def test_is_domain_introduced(dom0: RawConn) -> None:
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"0\0") == b"T\0"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"32752\0") == b"T\0"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"abc\0") == b"T\0"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"5\0") == b"F\0"
    dom0.ok(Op.INTRODUCE, b"5\x000\x007\0")
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"5\0") == b"T\0"
    assert dom0.error(Op.IS_DOMAIN_INTRODUCED, b"1") == "EINVAL"
    assert dom0.error(Op.IS_DOMAIN_INTRODUCED, b"1\x002\0") == "EINVAL"


def test_introduce_release_resume_set_target(srv: Server, dom0: RawConn) -> None:
    assert dom0.error(Op.INTRODUCE, b"5\x000\0") == "EINVAL"
    assert dom0.error(Op.INTRODUCE, b"5\x000\x000\0") == "EINVAL"
    assert dom0.error(Op.INTRODUCE, b"abc\0x\0y\0") == "EINVAL"
    assert dom0.ok(Op.INTRODUCE, b"5\x000\x007\0") == OK
    assert dom0.ok(Op.INTRODUCE, b"5\x000\x008\0") == OK  # again: fine
    assert dom0.ok(Op.INTRODUCE, b"6\x000\x00-5\0") == OK  # port is unsigned
    assert dom0.ok(Op.RESUME, b"5\0") == OK
    assert dom0.error(Op.RESUME, b"0\0") == "EINVAL"
    assert dom0.error(Op.RESUME, b"abc\0") == "EINVAL"
    assert dom0.error(Op.RESUME, b"11\0") == "ENOENT"
    assert dom0.ok(Op.SET_TARGET, b"5\x006\0") == OK
    assert dom0.ok(Op.SET_TARGET, b"0\x000\0") == OK
    assert dom0.error(Op.SET_TARGET, b"11\x000\0") == "ENOENT"
    assert dom0.error(Op.SET_TARGET, b"0\0") == "EINVAL"
    assert dom0.error(Op.RELEASE, b"0\0") == "EINVAL"
    assert dom0.error(Op.RELEASE, b"11\0") == "ENOENT"
    assert dom0.error(Op.RELEASE, b"5\x002\0") == "EINVAL"
    assert dom0.ok(Op.RELEASE, b"5\0") == OK
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, b"5\0") == b"F\0"
    assert dom0.error(Op.RELEASE, b"5\0") == "ENOENT"


def test_transaction_ids(dom0: RawConn, connect: object) -> None:
    assert dom0.ok(Op.TRANSACTION_START, b"\0") == b"1\0"
    assert dom0.ok(Op.TRANSACTION_START, b"") == b"2\0"
    assert dom0.ok(Op.TRANSACTION_START, b"abc") == b"3\0"
    assert dom0.error(Op.TRANSACTION_START, b"\0", tx_id=1) == "EBUSY"
    assert dom0.error(Op.TRANSACTION_START, b"\0", tx_id=99) == "ENOENT"
    other = RawConn(dom0.path)
    try:
        assert other.ok(Op.TRANSACTION_START, b"\0") == b"1\0"
    finally:
        other.close()


def test_transaction_end(dom0: RawConn) -> None:
    tx = 1
    assert dom0.ok(Op.TRANSACTION_START, b"\0") == b"1\0"
    assert dom0.error(Op.TRANSACTION_END, b"X\0", tx_id=tx) == "EINVAL"
    assert dom0.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EINVAL"
    assert dom0.error(Op.TRANSACTION_END, b"", tx_id=tx) == "EINVAL"
    assert dom0.ok(Op.TRANSACTION_END, b"F\0", tx_id=tx) == OK  # still alive after EINVAL
    assert dom0.error(Op.TRANSACTION_END, b"F\0", tx_id=tx) == "ENOENT"
    assert dom0.error(Op.TRANSACTION_END, b"T\0", tx_id=0) == "ENOENT"
    assert dom0.error(Op.TRANSACTION_END, b"X\0", tx_id=0) == "EINVAL"
    assert dom0.error(Op.TRANSACTION_END, b"X\0", tx_id=42) == "ENOENT"
    assert dom0.error(Op.READ, b"/\0", tx_id=42) == "ENOENT"


def test_reset_watches_drops_transactions(dom0: RawConn) -> None:
    assert dom0.ok(Op.TRANSACTION_START, b"\0") == b"1\0"
    dom0.ok(Op.WATCH, b"/rw\0t\0")
    assert dom0.ok(Op.RESET_WATCHES, b"") == OK
    assert dom0.error(Op.READ, b"/\0", tx_id=1) == "ENOENT"
    assert dom0.error(Op.UNWATCH, b"/rw\0t\0") == "ENOENT"
    assert dom0.ok(Op.RESET_WATCHES, b"anything\0") == OK


@pytest.mark.parametrize("op", [20, 23, 24, 25, 26, 99, 0xFFFF, Op.WATCH_EVENT, Op.ERROR])
def test_unknown_ops_enosys(dom0: RawConn, op: int) -> None:
    assert dom0.error(op, b"/\0") == "ENOSYS"
    assert dom0.ok(Op.READ, b"/\0") == b""  # the connection stays open


def test_control(dom0: RawConn, tmp_path: object) -> None:
    assert dom0.ok(Op.CONTROL, b"check\0") == OK
    assert dom0.ok(Op.CONTROL, b"print\0hello\0") == OK
    assert dom0.ok(Op.CONTROL, b"help\0") == HELP
    assert HELP == (
        b"check\t\nlog\ton|off\nlive-update\t[-c <cmdline>] [-F] [-t <timeout>] <file>\n"
        b"    Default timeout is 60 seconds.\nlogfile\t<file>\nmemreport\t[<file>]\n"
        b"print\t<string>\nquota\t[set <name> <val>|<domid>]\nquota-soft\t[set <name> <val>]\n"
        b"help\t\n\0"
    )
    for bad in (
        b"",
        b"nope\0",
        b"print\0",
        b"print\0a\0b\0",
        b"check",
        b"Check\0",
        b"check\0x\0",
        b"help\0x\0",
        b"log\0",
        b"log\0maybe\0",
        b"memreport\0",
    ):
        assert dom0.error(Op.CONTROL, bad) == "EINVAL", bad
    assert dom0.ok(Op.CONTROL, b"log\0on\0") == OK
    assert dom0.ok(Op.CONTROL, b"log\0off\0") == OK


def test_control_logfile_memreport(dom0: RawConn, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    log = tmp_path / "log"
    report = tmp_path / "report"
    assert dom0.ok(Op.CONTROL, b"logfile\0" + bytes(log) + b"\0") == OK
    assert dom0.ok(Op.CONTROL, b"print\0marker-123\0") == OK
    assert "control: marker-123" in log.read_text()
    assert dom0.ok(Op.CONTROL, b"memreport\0" + bytes(report) + b"\0") == OK
    assert report.read_text()
    assert dom0.ok(Op.CONTROL, b"memreport\0") == OK  # the log file now


def test_control_quota(dom0: RawConn) -> None:
    table = dom0.ok(Op.CONTROL, b"quota\0")
    assert table == (
        b"Quota settings:\n"
        b"nodes            :     1000 Nodes per domain\n"
        b"watches          :      128 Watches per domain\n"
        b"transactions     :       10 Transactions per domain\n"
        b"outstanding      :       20 Outstanding requests per domain\n"
        b"transaction-nodes:     1024 Max. number of accessed nodes per transaction\n"
        b"memory           :  2621440 Total Xenstore memory per domain (error level)\n"
        b"node-size        :     2048 Max. size of a node\n"
        b"path-max         :     2048 Max. length of a node path\n"
        b"permissions      :        5 Max. number of permissions per node\n\0"
    )
    assert dom0.ok(Op.CONTROL, b"quota\x000\0") == (
        b"Domain 0:\nnodes           :        3\nwatches         :        0\n"
        b"transactions    :        0\noutstanding     :        0\nmemory          :      132\n\0"
    )
    assert dom0.ok(Op.CONTROL, b"quota\0abc\0").startswith(b"Domain 0:\n")
    assert dom0.error(Op.CONTROL, b"quota\x005\0") == "ENOENT"
    assert dom0.ok(Op.CONTROL, b"quota\0set\0nodes\x00999\0") == OK
    assert b"nodes            :      999 " in dom0.ok(Op.CONTROL, b"quota\0")
    for bad in (
        b"quota\0set\0",
        b"quota\0set\0nodes\0",
        b"quota\0set\0nodes\0abc\0",
        b"quota\0set\0bogus\x005\0",
        b"quota\x001\x002\0",
    ):
        assert dom0.error(Op.CONTROL, bad) == "EINVAL", bad
    assert dom0.ok(Op.CONTROL, b"quota-soft\0") == (
        b"Quota settings:\n"
        b"memory           :  2097152 Total Xenstore memory per domain (warning level)\n\0"
    )
    assert dom0.ok(Op.CONTROL, b"quota-soft\0set\0memory\x00100\0") == OK
    assert b":      100 " in dom0.ok(Op.CONTROL, b"quota-soft\0")
    assert dom0.error(Op.CONTROL, b"quota-soft\0set\0nodes\x00100\0") == "EINVAL"
    assert dom0.error(Op.CONTROL, b"quota-soft\x000\0") == "EINVAL"


def test_control_memory_accounting(dom0: RawConn) -> None:
    dom0.ok(Op.WRITE, b"/q1/q2\0abc")
    report = dom0.ok(Op.CONTROL, b"quota\x000\0")
    assert b"nodes           :        5\n" in report
    assert b"memory          :      214\n" in report
    dom0.ok(Op.WATCH, b"/q1\0tok\0")
    assert b"memory          :      220\n" in dom0.ok(Op.CONTROL, b"quota\x000\0")


def test_control_live_update(dom0: RawConn) -> None:
    assert dom0.error(Op.CONTROL, b"live-update\0") == "EINVAL"
    assert dom0.ok(Op.CONTROL, b"live-update\0-a\0") == b"No live-update session active.\0"
    assert dom0.ok(Op.CONTROL, b"live-update\0-c\0x\0") == b"Not in live-update session.\0"
    assert (
        dom0.ok(Op.CONTROL, b"live-update\0-s\0-F\0-t\x005\0") == b"Not in live-update session.\0"
    )
    assert dom0.ok(Op.CONTROL, b"live-update\0-f\0/nonexistent\0") == b"File not accessible.\0"
    assert dom0.error(Op.CONTROL, b"live-update\0-x\0") == "EINVAL"


def test_pipelined_requests_answered_in_order(dom0: RawConn) -> None:
    from pyxs.protocol import encode

    batch = b"".join(encode(Op.WRITE, i, 0, b"/pipe/%d\0%d" % (i, i)) for i in range(1, 201))
    batch += b"".join(encode(Op.READ, 1000 + i, 0, b"/pipe/%d\0" % i) for i in range(1, 201))
    dom0.send_raw(batch)
    replies = [dom0.read_packet() for _ in range(400)]
    assert [r.req_id for r in replies] == [*range(1, 201), *range(1001, 1201)]
    assert [r.payload for r in replies[200:]] == [b"%d" % i for i in range(1, 201)]
