"""See what XenStore is doing: decoded traffic, live.

:mod:`.tracer` turns packets into lines of text or JSON objects (filters,
summary); :mod:`.proxy` is the forwarding proxy of ``pyxs trace``, which
feeds it; the embedded server feeds it from the inside
(``Server(trace=...)``). The command itself is in :mod:`pyxs._cli.trace`.
"""

from __future__ import annotations

from .proxy import Proxy, domid_of_socket, listen_unix
from .tracer import NOTE, TO_CLIENT, TO_SERVER, Filters, Record, Summary, Tracer

__all__ = [
    "NOTE",
    "TO_CLIENT",
    "TO_SERVER",
    "Filters",
    "Proxy",
    "Record",
    "Summary",
    "Tracer",
    "domid_of_socket",
    "listen_unix",
]
