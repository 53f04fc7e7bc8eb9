"""An embedded XenStore server that answers like the C xenstored 4.17.

>>> from pyxs.server import Server
>>> with Server() as srv:          # doctest: +SKIP
...     srv.socket_path             # connect any XenStore client here

Modules: :mod:`.store` (the tree), :mod:`.transaction` (transactions and
the conflict rule), :mod:`.watches` (watch matching), :mod:`.domains`
(domains, permissions, quotas), :mod:`.core` (dispatch, no I/O),
:mod:`.control` (CONTROL commands), :mod:`.daemon` (sockets, :class:`Server`).
"""

from __future__ import annotations

from .core import Connection, XenStore
from .daemon import Server, SocketInUse
from .domains import DOMAIN_STATES, Quotas, SoftQuotas

__all__ = [
    "DOMAIN_STATES",
    "Connection",
    "Quotas",
    "Server",
    "SocketInUse",
    "SoftQuotas",
    "XenStore",
]
