"""Limits and security: quotas, payload sizes, guest isolation, socket mode.

Each scenario runs against a server handle (``open_server(kind)``, or the
``xs_server`` fixture) and states its invariant in its docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import time
from typing import Any, Callable

import pyxs
from pyxs import commands
from pyxs.exceptions import (
    InvalidPayload,
    NoEntryError,
    NotPermittedError,
    PermissionDeniedError,
    PyXSError,
    QuotaExceededError,
    TooBigError,
)
from pyxs.protocol import HEADER, Decoder, Op, encode

from .figures import Figures
from .harness import open_server, unique_base

__all__ = [
    "QUOTAS",
    "REAL_QUOTA_OPTIONS",
    "guest_isolation",
    "payload_limits",
    "quotas",
    "socket_modes",
]

#: small quotas, so that a test reaches them quickly (embedded server) ...
QUOTAS = {"nodes": 15, "watches": 4, "transactions": 2, "node-size": 512, "permissions": 3}
#: ... and the same for the real xenstored
REAL_QUOTA_OPTIONS = ("-E", "15", "-W", "4", "-t", "2", "-S", "512", "-A", "3")


def _expect(fig: Figures, what: str, exc_type: type, fn: Callable[[], Any]) -> bool:
    """``fn()`` must raise ``exc_type``; True if it did."""
    fig.ops += 1
    try:
        fn()
    except exc_type:
        fig.errors += 1
        return True
    except BaseException as exc:  # noqa: BLE001 - judged
        fig.fail(f"{what}: raised {exc!r}, expected {exc_type.__name__}")
        return False
    fig.fail(f"{what}: succeeded, expected {exc_type.__name__}")
    return False


def _ok(fig: Figures, what: str, fn: Callable[[], Any]) -> Any:
    fig.ops += 1
    try:
        return fn()
    except BaseException as exc:  # noqa: BLE001 - judged
        fig.fail(f"{what}: raised {exc!r}")
        return None


def _guest_home(dom0: pyxs.Client, domid: int) -> bytes:
    home = b"/local/domain/%d" % domid
    dom0.mkdir(home)
    dom0.set_perms(home, [b"n%d" % domid])
    return home


def quotas(kind: str, *, domid: int = 9, pipelined: int = 60) -> Figures:
    """A guest runs into every quota (a fresh server with small quotas).

    Invariants: nodes, node size, transactions and permissions per node
    over quota give ENOSPC (QuotaExceededError); watches over quota give
    E2BIG (the real xenstored's answer); nothing crashes: after each, the
    guest and dom0 are still served, freeing a node lets the guest write
    again; ``pipelined`` requests sent at once by the guest (over the
    "outstanding requests" quota of 20) are all answered, in order.
    """
    fig = Figures("guest quotas reached", kind)
    with open_server(kind, quotas=QUOTAS, real_options=REAL_QUOTA_OPTIONS) as server:
        dom0 = pyxs.Client(unix_socket_path=server.socket_path, timeout=30)
        with dom0:
            guest_path = server.introduce_guest(domid)
            _guest_home(dom0, domid)
            with pyxs.Client(unix_socket_path=guest_path, timeout=30) as g:
                written = 0
                for i in range(40):
                    fig.ops += 1
                    try:
                        g.write(b"n%d" % i, b"x")
                        written += 1
                    except QuotaExceededError:
                        fig.errors += 1
                        break
                    except PyXSError as exc:
                        fig.fail(f"write #{i}: {exc!r}")
                        break
                else:
                    fig.fail("40 nodes written under a 15-node quota")
                fig.faults += 1
                _expect(
                    fig,
                    "write past the node quota",
                    QuotaExceededError,
                    lambda: g.write(b"more", b"x"),
                )
                _ok(fig, "delete a node", lambda: g.delete(b"n0"))
                _ok(fig, "write after freeing a node", lambda: g.write(b"again", b"x"))
                _expect(
                    fig,
                    "a value over the node-size quota",
                    QuotaExceededError,
                    lambda: g.write(b"n1", b"v" * 600),
                )
                fig.faults += 1
                if _ok(fig, "read after the node-size error", lambda: g.read(b"n1")) != b"x":
                    fig.fail("a refused write changed the node")
                too_many = [b"n%d" % domid, b"r1", b"r2", b"r3"]
                _expect(
                    fig,
                    "perms over the quota",
                    QuotaExceededError,
                    lambda: g.set_perms(b"n1", too_many),
                )
                fig.faults += 1
                m = g.monitor()
                watched = 0
                for i in range(10):
                    fig.ops += 1
                    try:
                        m.watch(b"w%d" % i, b"t")
                        watched += 1
                    except TooBigError:
                        fig.errors += 1
                        break
                    except PyXSError as exc:
                        fig.fail(f"watch #{i}: {exc!r}")
                        break
                else:
                    fig.fail("10 watches under a 4-watch quota")
                fig.faults += 1
                m.close()
                started = []
                for _ in range(6):
                    fig.ops += 1
                    try:
                        started.append(g.execute(commands.transaction_start(), tx_id=0))
                    except QuotaExceededError:
                        fig.errors += 1
                        break
                else:
                    fig.fail("6 transactions under a 2-transaction quota")
                fig.faults += 1
                for tx_id in started:
                    _ok(
                        fig,
                        "end a transaction",
                        lambda t=tx_id: g.execute(commands.transaction_end(False), tx_id=t),
                    )
                _ok(fig, "a guest write after the quotas", lambda: g.write(b"n1", b"y"))
                _ok(fig, "a dom0 write after the quotas", lambda: dom0.write(b"/q", b"y" * 3000))
                fig.note(f"{written} nodes, {watched} watches, {len(started)} transactions fit")
            _pipeline(fig, guest_path, pipelined)
            if not server.alive():
                fig.fail("the server died")
    return fig.done()


def _pipeline(fig: Figures, guest_path: str, count: int) -> None:
    async def burst() -> None:
        async with pyxs.AsyncClient(unix_socket_path=guest_path) as ag:
            # n1 exists already: the guest is at its node quota
            await ag.write(b"n1", b"0")
            calls = []
            for i in range(count):
                calls.append(ag.write(b"n1", b"%d" % i) if i % 2 else ag.read(b"n1"))
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 60)
            for i, result in enumerate(results):
                fig.ops += 1
                if isinstance(result, BaseException):
                    fig.fail(f"pipelined request #{i}: {result!r}")
                elif i % 2 == 0:
                    want = b"0" if i == 0 else b"%d" % (i - 1)
                    if result != want:
                        fig.fail(f"pipelined read #{i} gave {result!r}, expected {want!r}")

    try:
        asyncio.run(burst())
    except asyncio.TimeoutError:
        fig.fail(f"{count} pipelined requests not all answered", "hangs")
    except PyXSError as exc:
        fig.fail(f"pipelining: {exc!r}")
    fig.faults += 1


def _raw_exchange(socket_path: str, data: bytes, timeout: float = 3.0) -> tuple[list[Any], bool]:
    """Send ``data``; return (packets received, closed by the server)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(socket_path)
    decoder = Decoder()
    packets: list[Any] = []
    closed = False
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            packets.extend(decoder.feed(chunk))
            if packets:
                break
    finally:
        sock.close()
    return packets, closed


def payload_limits(server: Any) -> Figures:
    """Payloads of exactly 4096 bytes and one past.

    Invariants: a WRITE whose payload is exactly 4096 bytes succeeds and
    reads back whole, through the client and as a raw packet; one byte more
    and the client raises InvalidPayload *before sending anything* (the
    connection stays in step, the node is unchanged); a raw packet whose
    header announces 4097 bytes gets no reply: the server closes that
    connection, and only that one.
    """
    fig = Figures("payloads of 4096 and 4097 bytes", server.name)
    base = unique_base("big")
    path = base + b"/v"
    exact = b"x" * (4096 - len(path) - 1)
    with pyxs.Client(unix_socket_path=server.socket_path, timeout=30) as c:
        _ok(fig, "4096-byte write", lambda: c.write(path, exact))
        if _ok(fig, "read back", lambda: c.read(path)) != exact:
            fig.fail("the 4096-byte write did not read back whole")
        _expect(fig, "4097-byte write", InvalidPayload, lambda: c.write(path, exact + b"y"))
        fig.faults += 1
        _expect(
            fig,
            "4097-byte watch token",
            InvalidPayload,
            lambda: c.monitor().watch(path, b"t" * 4096),
        )
        if _ok(fig, "read after the refused write", lambda: c.read(path)) != exact:
            fig.fail("the refused write changed the node (or the stream is out of step)")
        with pyxs.Client(unix_socket_path=server.socket_path, timeout=30) as other:
            sentinel = _ok(fig, "a call on another connection", lambda: other.exists(path))
            if sentinel is not True:
                fig.fail("another connection does not see the node")
        raw_path = base + b"/raw"
        body = raw_path + b"\0" + b"r" * (4096 - len(raw_path) - 1)
        packets, closed = _raw_exchange(server.socket_path, encode(Op.WRITE, 7, 0, body))
        fig.ops += 1
        if not packets or packets[0].op != Op.WRITE or packets[0].req_id != 7:
            fig.fail(f"a raw 4096-byte WRITE got {packets!r}")
        over = HEADER.pack(Op.WRITE, 8, 0, 4097) + raw_path + b"\0" + b"s" * (4096 - len(raw_path))
        packets, closed = _raw_exchange(server.socket_path, over)
        fig.ops += 1
        fig.faults += 1
        if packets:
            fig.fail(f"a raw 4097-byte packet got a reply: {packets!r}")
        if not closed:
            fig.fail("a raw 4097-byte packet did not get its connection closed")
        got = _ok(fig, "read after the oversized packet", lambda: c.read(raw_path))
        if got != b"r" * (4096 - len(raw_path) - 1):
            fig.fail("the oversized packet changed the node")
        _ok(fig, "clean up", lambda: c.delete(base))
    return fig.done()


def guest_isolation(server: Any, domid: int, other: int) -> Figures:
    """An unprivileged domain cannot read, write, watch-sniff or re-own what
    it does not own.

    dom0 makes ``/secret`` (owner dom0, no access for others) and a node for
    the guest; a second guest ``other`` has a private node at home.
    Invariants: the guest gets EACCES reading, listing, writing, creating,
    removing and changing permissions of ``/secret`` and of the other
    guest's node; EPERM giving its own node away (changing the owner);
    EACCES for privileged operations; its watches on ``/``, ``/secret``,
    the other guest's home and ``@introduceDomain`` (permissions ``n0``)
    deliver no event for those while dom0 and the other guest change them
    and dom0 introduces a domain, yet do deliver the event of its own
    node's change (so the watches work).
    """
    fig = Figures("guest isolation", server.name)
    secret = unique_base("secret")
    with pyxs.Client(unix_socket_path=server.socket_path, timeout=30) as dom0:
        guest_path = server.introduce_guest(domid)
        other_path = server.introduce_guest(other)
        home = _guest_home(dom0, domid)
        other_home = _guest_home(dom0, other)
        dom0.write(secret + b"/x", b"classified")
        g = pyxs.Client(unix_socket_path=guest_path, timeout=30)
        o = pyxs.Client(unix_socket_path=other_path, timeout=30)
        with g, o:
            o.write(b"private", b"mine")
            mine = home + b"/mine"
            g.write(b"mine", b"guest")
            m = g.monitor()
            watched = (b"/", secret, other_home, home, b"@introduceDomain")
            for wpath in watched:
                m.watch(wpath, b"sniff")
            initial = [m.next_event(5) for _ in watched]  # one per watch
            fig.ops += len(watched)
            for target in (secret, secret + b"/x", other_home + b"/private"):
                _expect(fig, f"read {target!r}", PermissionDeniedError, lambda t=target: g.read(t))
                _expect(
                    fig,
                    f"write {target!r}",
                    PermissionDeniedError,
                    lambda t=target: g.write(t, b"pwned"),
                )
                _expect(
                    fig,
                    f"get_perms {target!r}",
                    PermissionDeniedError,
                    lambda t=target: g.get_perms(t),
                )
                _expect(
                    fig,
                    f"set_perms {target!r}",
                    PermissionDeniedError,
                    lambda t=target: g.set_perms(t, [b"b%d" % domid]),
                )
                _expect(
                    fig, f"delete {target!r}", PermissionDeniedError, lambda t=target: g.delete(t)
                )
            _expect(fig, "list /secret", PermissionDeniedError, lambda: g.list(secret))
            _expect(
                fig, "mkdir under /secret", PermissionDeniedError, lambda: g.mkdir(secret + b"/y")
            )
            _expect(
                fig,
                "read a missing child of /secret (ENOENT hidden)",
                PermissionDeniedError,
                lambda: g.read(secret + b"/nope"),
            )
            _expect(
                fig,
                "give its node to dom0",
                NotPermittedError,
                lambda: g.set_perms(b"mine", [b"n0"]),
            )
            _expect(
                fig,
                "give its node to the other guest",
                NotPermittedError,
                lambda: g.set_perms(b"mine", [b"n%d" % other]),
            )
            _expect(fig, "INTRODUCE", PermissionDeniedError, lambda: g.introduce_domain(4242, 1, 1))
            _expect(fig, "RELEASE", PermissionDeniedError, lambda: g.release_domain(other))
            _expect(fig, "SET_TARGET", PermissionDeniedError, lambda: g.set_target(domid, other))
            fig.faults += 1
            dom0.write(secret + b"/x", b"changed")
            dom0.write(secret + b"/new", b"new")
            dom0.set_perms(secret + b"/x", [b"n0"])
            dom0.delete(secret + b"/new")
            o.write(b"private", b"changed")
            o.write(b"private2", b"new")
            dom0.introduce_domain(other + 100, 1, 1)  # @introduceDomain is n0
            g.write(b"mine", b"changed")  # the last change: an event the guest sees
            # A connection's events come in the order the changes were made:
            # an event leaked by the changes above would come before this one.
            events = []
            for _ in range(50):
                event = m.next_event(5)
                if event is None:
                    break
                events.append(event)
                if event.path == mine:
                    break
            leaked = [
                e for e in events if e.path.startswith((secret, other_home, b"@introduceDomain"))
            ]
            for event in leaked:
                fig.fail(f"the guest saw an event for {event.path!r}")
            if not any(e.path == mine for e in events):
                fig.fail(f"the guest's watch missed its own node's event: {events!r}")
            for event in initial:
                if event is None or event.path not in watched:
                    fig.fail(f"unexpected initial event {event!r}")
            m.close()
            if (
                dom0.read(secret + b"/x") != b"changed"
                or dom0.read(other_home + b"/private") != b"changed"
            ):
                fig.fail("a refused write changed something", "lost")
            with contextlib.suppress(NoEntryError):
                dom0.read(secret + b"/y")
                fig.fail("a refused mkdir created a node")
            if dom0.get_perms(mine)[0] != b"n%d" % domid:
                fig.fail("the guest's node changed owner")
            dom0.release_domain(other + 100)
        dom0.delete(secret)
    return fig.done()


def socket_modes(server: Any | None = None) -> Figures:
    """The server's sockets are not world-accessible by default.

    Invariants (embedded, ``server`` None): ``Server()``'s dom0 socket and a
    guest's socket are mode 0600 and owned by this user, in a directory only
    this user can enter, even under ``umask 0``. With ``server`` (e.g. the
    real daemon), its dom0 socket is checked the same way.
    """
    from pyxs.server import Server

    fig = Figures("socket modes", "embedded" if server is None else getattr(server, "name", "real"))
    if server is not None:
        _check_mode(fig, server.socket_path)
        return fig.done()
    old = os.umask(0)
    try:
        with Server() as srv:
            with pyxs.Client(unix_socket_path=srv.socket_path) as c:
                c.introduce_domain(77, 1, 1)
            paths = [srv.socket_path, srv.guest_socket_path(77)]
            for path in paths:
                _check_mode(fig, path)
            mode = stat.S_IMODE(os.stat(os.path.dirname(srv.socket_path)).st_mode)
            fig.ops += 1
            if mode & 0o077:
                fig.fail(f"the run directory is mode {mode:o}")
    finally:
        os.umask(old)
    return fig.done()


def _check_mode(fig: Figures, path: str) -> None:
    st = os.stat(path)
    fig.ops += 1
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISSOCK(st.st_mode):
        fig.fail(f"{path} is not a socket")
    if mode & 0o077:
        fig.fail(f"{path} is mode {mode:o}: others may connect")
    if st.st_uid != os.getuid():
        fig.fail(f"{path} is owned by uid {st.st_uid}")
    fig.note(f"{os.path.basename(path)}: {mode:o}")
