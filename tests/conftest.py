"""Shared fixtures: the real xenstored (tests/realxs.py) and per-test paths.

The real daemon is started once per session; tests isolate themselves by
working under their own ``unique_path``.

Running one test against both servers (tests/servers.py, tests/realxs_guest.py)
--------------------------------------------------------------------------------
``xs_server`` is parametrized ``["embedded", "real"]`` ("real" marked realxs) and yields an
``XsServer``: ``.name`` ("embedded"/"real"), ``.socket_path`` (dom0 socket),
``.introduce_guest(domid) -> str`` (INTRODUCE over the wire; returns a Unix
socket path whose connections act as that unprivileged domain, i.e. the
embedded ``Server.guest_socket_path(domid)``; on the real daemon a bridge
thread moves the bytes through the guest's shared ring), and
``.set_domain_state(domid, state)`` (running/shutdown/crashed/dying/gone;
fires ``@releaseDomain`` like VIRQ_DOM_EXC; synchronous).
``xs_server`` is shared by the session (one per kind): work under
``unique_path`` and use ``unique_domid``. ``fresh_xs_server`` is a new server
of each kind for every test (initial tree, domain states, @introduceDomain).
On the real daemon a guest socket serves one connection at a time; when it
closes, the domain is re-INTRODUCEd, which resets the guest's connection
(watches, transactions) but not its transaction-id counter. INTRODUCE sends
``<domid> NUL <domid> NUL 1 NUL`` (mfn = domid, so re-introducing works). Once a
guest is released or ``dying``/``gone``, the real daemon stops serving its
ring: requests on its socket then go unanswered (the embedded server closes
it). Raw-packet differential testing: tests/interop/xsdiff.py.
``real_xenstored.introduce_guest(domid)`` and
``real_xenstored.set_domain_state(domid, state)`` do the same on the plain
session daemon.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from realxs import RealXenstored, Unavailable, start_real_xenstored
from servers import EmbeddedXsServer, RealXsServer, XsServer

#: the ``real`` parameter of xs_server / fresh_xs_server: marked, so that
#: ``-m "not realxs"`` leaves it out
REAL = pytest.param("real", marks=pytest.mark.realxs)


@pytest.fixture(scope="session")
def real_xenstored() -> Iterator[RealXenstored]:
    """One real xenstored for the whole session (tests/realxs.py)."""
    daemon = start_real_xenstored()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def unique_path() -> bytes:
    """A fresh absolute path under which a test may do as it likes."""
    return b"/test/" + uuid.uuid4().hex[:12].encode()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for the real daemon must say so (``-m "not realxs"``)."""
    for item in items:
        if "real_xenstored" in getattr(item, "fixturenames", ()) and not any(
            item.iter_markers("realxs")
        ):
            raise pytest.UsageError(f"{item.nodeid} uses real_xenstored but is not marked realxs")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """When the real daemon cannot be had, say so in one line (no traceback)."""
    outcome = yield
    if call.excinfo is not None and call.excinfo.errisinstance(Unavailable):
        report = outcome.get_result()
        report.longrepr = str(call.excinfo.value)


# -- one test, both servers (see the module docstring) ------------------------

_unique_domids = iter(range(100, 0x7FF0))


@pytest.fixture
def unique_domid() -> int:
    """A domid no other test of the session uses (100, 101, ...)."""
    return next(_unique_domids)


@pytest.fixture(scope="session")
def _embedded_xs_server() -> Iterator[XsServer]:
    server = EmbeddedXsServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["embedded", REAL])
def xs_server(request: pytest.FixtureRequest) -> XsServer:
    """The session's embedded server, then the session's real xenstored."""
    if request.param == "embedded":
        server: XsServer = request.getfixturevalue("_embedded_xs_server")
        return server
    return RealXsServer(request.getfixturevalue("real_xenstored"))


@pytest.fixture(params=["embedded", REAL])
def fresh_xs_server(request: pytest.FixtureRequest) -> Iterator[XsServer]:
    """A new embedded server, then a new real xenstored, for this test alone."""
    server: XsServer
    if request.param == "embedded":
        server = EmbeddedXsServer()
    else:
        daemon = start_real_xenstored()
        server = RealXsServer(daemon, stop=daemon.stop)
    try:
        yield server
    finally:
        server.close()
