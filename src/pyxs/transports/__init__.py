"""Transports: how bytes reach XenStore, side by side as httpcore's backends.

A transport is the tiny interface the clients need and nothing more::

    connect()        open it (a no-op when already open)
    close()          close it (idempotent; wakes a thread blocked in recv)
    send(data)       write all of ``data`` (whole packets)
    recv(n)          read at most ``n`` bytes (at least one)
    fileno()         the descriptor, for select()

Every ``OSError`` is translated at this boundary into
:class:`pyxs.exceptions.ConnectionError`; an orderly end of stream is a
``ConnectionError`` too, so ``recv`` never returns ``b""``.

Modules:

* :mod:`.discovery`: where XenStore is (libxenstore's paths and their
  order), and opening the XenBus device safely; shared by every front end;
* :mod:`.sync`: the blocking transports of :class:`pyxs.Client` and the
  ``pyxs`` command, :class:`~.sync.UnixSocketConnection` and
  :class:`~.sync.XenBusConnection`, and :func:`~.sync.default_connection`;
* :mod:`.asyncio`: those of :class:`pyxs.aio.AsyncClient`,
  :class:`~.asyncio.SocketTransport` (the event loop's own socket transport)
  and :class:`~.asyncio.DeviceTransport` (the XenBus device, watched by the
  loop), behind one small interface (:class:`~.asyncio.AsyncTransport`).

:mod:`pyxs.connection` (pyxs 0.4's module) re-exports the sync names;
this package imports nothing itself, so each front end loads only its own
transports.
"""
