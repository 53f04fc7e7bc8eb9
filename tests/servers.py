"""One interface over both XenStore servers, so a test can run against each.

``XsServer`` is what the ``xs_server`` / ``fresh_xs_server`` fixtures yield:

- ``name``: ``"embedded"`` or ``"real"``
- ``socket_path``: the privileged (dom0) Unix socket
- ``introduce_guest(domid) -> str``: INTRODUCE ``domid`` over the dom0 socket
  and return a Unix socket path whose connections act as that unprivileged
  domain (the meaning of the embedded ``Server.guest_socket_path(domid)``)
- ``set_domain_state(domid, state)``: state in running/shutdown/crashed/
  dying/gone; fires ``@releaseDomain`` as the real daemon does on VIRQ_DOM_EXC.
  Synchronous: the daemon has acted on it when the call returns.
- ``close()``
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Protocol

from pyxs.protocol import Op
from realxs_guest import DOMAIN_STATES, dom0_request, guests_for, introduce_payload

__all__ = ["DOMAIN_STATES", "EmbeddedXsServer", "RealXsServer", "XsServer"]


class XsServer(Protocol):
    name: str
    socket_path: str

    def introduce_guest(self, domid: int) -> str: ...

    def set_domain_state(self, domid: int, state: str) -> None: ...

    def close(self) -> None: ...


def _introduce(socket_path: str, domid: int) -> None:
    reply = dom0_request(socket_path, Op.INTRODUCE, introduce_payload(domid))
    if reply.op != Op.INTRODUCE:
        raise OSError(f"INTRODUCE {domid} failed: {reply.payload!r}")


class EmbeddedXsServer:
    """The embedded ``pyxs.server.Server``, started in this process."""

    name = "embedded"

    def __init__(self) -> None:
        server_mod: Any = importlib.import_module("pyxs.server")
        self.server: Any = server_mod.Server()
        self.server.__enter__()
        self.socket_path: str = str(self.server.socket_path)

    def introduce_guest(self, domid: int) -> str:
        _introduce(self.socket_path, domid)
        return str(self.server.guest_socket_path(domid))

    def set_domain_state(self, domid: int, state: str) -> None:
        if state not in DOMAIN_STATES:
            raise ValueError(f"unknown domain state {state!r}")
        self.server.set_domain_state(domid, state)

    def close(self) -> None:
        self.server.__exit__(None, None, None)


class RealXsServer:
    """A real xenstored (a ``realxs.RealXenstored``), guests over its rings."""

    name = "real"

    def __init__(self, daemon: Any, stop: Callable[[], None] | None = None) -> None:
        self.daemon = daemon
        self.socket_path: str = daemon.socket_path
        self.guests = guests_for(daemon.rundir, daemon.socket_path)
        self._stop = stop  # set when this object owns the daemon

    def introduce_guest(self, domid: int) -> str:
        return self.guests.introduce(domid)

    def set_domain_state(self, domid: int, state: str) -> None:
        self.guests.set_domain_state(domid, state)

    def close(self) -> None:
        if self._stop is not None:
            self._stop()
