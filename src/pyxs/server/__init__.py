"""An embedded XenStore server that answers like the C xenstored 4.17.

>>> from pyxs.server import Server
>>> with Server() as srv:          # doctest: +SKIP
...     srv.socket_path             # connect any XenStore client here

Modules, each importing only those listed before it: :mod:`.perms` (the
permission rule), :mod:`.quotas`, :mod:`.store` (the tree),
:mod:`.payload` (reading request payloads), :mod:`.transaction`
(transactions and the conflict rule), :mod:`.peer` (one client
connection), :mod:`.watches` (matching, firing, queueing events),
:mod:`.domains` (domains and their lifecycle), :mod:`.control` (CONTROL
commands), :mod:`.core` (:class:`XenStore`: dispatch and handlers, no I/O),
:mod:`.daemon` (sockets, :class:`Server`), :mod:`.options` (command line).
Path rules are :mod:`pyxs.paths`, shared with the clients.
"""

from __future__ import annotations

from .core import XenStore
from .daemon import Server, SocketInUse
from .domains import DOMAIN_STATES
from .peer import Peer
from .quotas import Quotas, SoftQuotas

#: the former name of :class:`Peer` (the server's end of a connection)
Connection = Peer

__all__ = [
    "DOMAIN_STATES",
    "Connection",
    "Peer",
    "Quotas",
    "Server",
    "SocketInUse",
    "SoftQuotas",
    "XenStore",
]
