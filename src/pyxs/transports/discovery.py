"""Where XenStore is: the paths libxenstore looks at, in its order.

``xs_open`` tries the xenstored Unix socket (:func:`default_socket_path`),
then the XenBus device (``$XENSTORED_PATH`` if set, else
:func:`default_xenbus_path`): :func:`candidates` is that list. Each
candidate that exists is used as what it is (a socket as a socket, anything
else as the device); :func:`open_xenbus_device` opens a device, refusing a
regular file left at the device's path. Every front end (the sync clients,
the asyncio client, the ``pyxs`` command) finds XenStore by this one rule;
the sync transports' :func:`~pyxs.transports.sync.default_connection`
applies it.

Everything is read from the environment and the file system on each call,
never at import time.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from ..exceptions import ConnectionError

__all__ = [
    "DEFAULT_RUNDIR",
    "candidates",
    "default_socket_path",
    "default_xenbus_path",
    "open_xenbus_device",
    "transport_error",
]

#: Where xenstored listens when nothing in the environment says otherwise.
DEFAULT_RUNDIR = "/var/run/xenstored"


def default_socket_path() -> str:
    """The xenstored socket, resolved as libxenstore does.

    ``$XENSTORED_PATH``, else ``$XENSTORED_RUNDIR/socket``, else
    ``/var/run/xenstored/socket``. Read from the environment on every call.
    """
    path = os.environ.get("XENSTORED_PATH")
    if path:
        return path
    rundir = os.environ.get("XENSTORED_RUNDIR") or DEFAULT_RUNDIR
    return os.path.join(rundir, "socket")


def default_xenbus_path() -> str:
    """The XenBus device of this operating system.

    Linux: ``/dev/xen/xenbus``, or ``/proc/xen/xenbus`` on kernels that do not
    have the former; NetBSD: ``/kern/xen/xenbus``; FreeBSD:
    ``/dev/xen/xenstore``.
    """
    platform = sys.platform
    if platform.startswith("linux"):
        if os.path.exists("/dev/xen/xenbus"):
            return "/dev/xen/xenbus"
        return "/proc/xen/xenbus"
    if platform.startswith("netbsd"):
        return "/kern/xen/xenbus"
    if platform.startswith("freebsd"):
        return "/dev/xen/xenstore"
    return "/dev/xen/xenbus"


def candidates() -> list[str]:
    """The paths ``xs_open`` tries, in order: the socket, then the device.

    With ``$XENSTORED_PATH`` set both are that one path, tried once.
    """
    socket_path = default_socket_path()
    device_path = os.environ.get("XENSTORED_PATH") or default_xenbus_path()
    return [socket_path] if device_path == socket_path else [socket_path, device_path]


#: Where the XenBus entry is a regular file of a pseudo file system (Linux's
#: xenfs at /proc/xen, NetBSD's kernfs at /kern/xen), which nobody can have
#: left a plain file in. Everywhere else it must be a character device.
_PSEUDO_FS_DIRS = ("/proc/", "/kern/")


def open_xenbus_device(path: str, flags: int = 0) -> int:
    """Open the XenBus device at ``path`` for reading and writing; return
    the descriptor.

    :param flags: added to ``O_RDWR | O_NOCTTY | O_CLOEXEC`` (``O_NONBLOCK``
        for an event loop).
    :raises pyxs.exceptions.ConnectionError: it cannot be opened, or it is
        not a character device (a regular file left at the device's path
        would otherwise be written into); ``/proc/xen/xenbus`` and
        ``/kern/xen/xenbus``, regular files of pseudo file systems, are
        accepted.
    """
    flags |= os.O_RDWR | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise transport_error("opening", path, exc) from exc
    try:
        mode = os.fstat(fd).st_mode  # of what was opened: no race with a rename
    except OSError as exc:
        os.close(fd)
        raise transport_error("opening", path, exc) from exc
    if stat.S_ISCHR(mode):
        return fd
    if stat.S_ISREG(mode) and os.path.realpath(path).startswith(_PSEUDO_FS_DIRS):
        return fd
    os.close(fd)
    raise ConnectionError(
        f"{path!r} is not a XenBus device: not a character device", errno=errno.ENODEV
    )


def transport_error(action: str, path: str, exc: OSError) -> ConnectionError:
    """The ConnectionError for ``exc``, raised while ``action`` ``path``
    (``"reading from"``): every OSError is translated here, at the boundary."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    code = exc.errno if exc.errno else errno.EIO
    return ConnectionError(f"error {action} {path!r}: {reason}", errno=code)
