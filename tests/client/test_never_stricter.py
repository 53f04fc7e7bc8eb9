"""pyxs refuses nothing the server accepts, and checks in 0.4's order.

Permission entries are read as xenstored reads them (``strtol``: any size,
a sign, hex, octal, leading blanks); each entry below is sent to the server
and read back, on the embedded server and on the real xenstored alike, and
pyxs's reading of it is what the server then shows.
"""

from __future__ import annotations

import pytest

import pyxs
from pyxs import commands
from pyxs.paths import parse_perm

ENTRIES = [b"w999999", b"w65536", b"r4294967295", b"w4294967296", b"b-1", b"w0x10", b"w010"]
ENTRIES += [b"w+5", b"w 5", b"n99999999999999999999"]


@pytest.mark.parametrize("entry", ENTRIES)
def test_permission_entries_the_server_accepts(xs_server, unique_path, entry) -> None:
    with pyxs.Client(unix_socket_path=xs_server.socket_path) as c:
        c[unique_path] = b""
        c.set_perms(unique_path, [b"n0", entry])  # not refused locally, sent as given
        shown = c.get_perms(unique_path)
        assert shown == [b"n0", parse_perm(entry).encode()]
        x = pyxs.xs(unix_socket_path=xs_server.socket_path)
        dom = x.get_permissions("", unique_path.decode())[1]["dom"]
        assert dom == parse_perm(entry).domid
        x.set_permissions("", unique_path.decode(), [{"dom": 0}, {"dom": 999999, "write": 1}])
        assert c.get_perms(unique_path) == [b"n0", b"w999999"]
        x.close()


@pytest.mark.parametrize("entry", [b"w", b"w0x", b"q5", b"w5 ", b"w5x"])
def test_entries_the_server_refuses_are_refused_locally(xs_server, unique_path, entry) -> None:
    with pyxs.Client(unix_socket_path=xs_server.socket_path) as c:
        c[unique_path] = b""
        with pytest.raises(pyxs.InvalidPermission):
            c.set_perms(unique_path, [b"n0", entry])
        # and the server does refuse it
        wire = unique_path + b"\0n0\0" + entry + b"\0"
        reply = c.router.roundtrip(pyxs.Op.SET_PERMS, wire)
        assert (reply.op, reply.payload) == (pyxs.Op.ERROR, b"EINVAL\0")


def test_order_of_checks_as_in_04(tmp_path) -> None:
    # A client never connected: the path is checked before anything else.
    c = pyxs.Client(unix_socket_path=str(tmp_path / "none"))
    m = c.monitor()
    for method in (m.watch, m.unwatch):
        with pytest.raises(pyxs.InvalidPath):
            method(b"bad path", b"t")
    with pytest.raises(pyxs.InvalidPath):
        c.set_perms(b"bad path", [])  # before the (empty) permissions
    with pytest.raises(pyxs.InvalidPath):
        commands.set_perms(b"/a/", [b"bogus"])
    with pytest.raises(pyxs.InvalidPermission):
        c.set_perms(b"/good", [])
    with pytest.raises(pyxs.ConnectionError):
        c.set_perms(b"/good", [b"n0"])


def test_special_paths_go_to_the_server(xs_server) -> None:
    # cxenstored lets SET_PERMS change @releaseDomain's permissions and
    # refuses READ of an @ path (EINVAL); pyxs leaves both to the server.
    with pyxs.Client(unix_socket_path=xs_server.socket_path) as c:
        c.set_perms(b"@releaseDomain", [b"n0"])
        with pytest.raises(pyxs.InvalidArgumentError):
            c.read(b"@introduceDomain")
        with pytest.raises(pyxs.InvalidArgumentError):
            c.get_perms(b"@releaseDomain")


def test_decimal_with_a_leading_zero_is_left_to_the_server(xs_server, unique_path) -> None:
    # pyxs 0.4 sent "w08" (oxenstored reads 8); cxenstored's strtol stops at
    # the 8 and refuses it: the refusal comes from the server.
    with pyxs.Client(unix_socket_path=xs_server.socket_path) as c:
        c[unique_path] = b""
        with pytest.raises(pyxs.InvalidArgumentError):
            c.set_perms(unique_path, [b"n0", b"w08"])
