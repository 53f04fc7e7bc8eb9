"""Transports: how bytes reach XenStore (pyxs 0.4's module name).

The transports live in :mod:`pyxs.transports` (the byte interface, and
where XenStore is found: :mod:`pyxs.transports.discovery`); this module
keeps pyxs 0.4's import path for the sync ones:

* :class:`UnixSocketConnection`: the xenstored Unix socket (dom0 tools);
* :class:`XenBusConnection`: the XenBus character device (``/dev/xen/xenbus``
  on Linux), which works in any domain;
* :func:`default_connection`: the one libxenstore would pick (the socket,
  else the device).

Nothing here runs at import time: default paths are resolved when a
connection object is created.
"""

from __future__ import annotations

from .transports.discovery import default_socket_path, default_xenbus_path, open_xenbus_device
from .transports.sync import (
    PacketConnection,
    UnixSocketConnection,
    XenBusConnection,
    default_connection,
)

__all__ = [
    "PacketConnection",
    "UnixSocketConnection",
    "XenBusConnection",
    "default_connection",
    "default_socket_path",
    "default_xenbus_path",
    "open_xenbus_device",
]
