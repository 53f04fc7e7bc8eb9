"""A stand-in for the XenBus character device, for the threaded client.

A pseudo-terminal in raw mode plays ``/dev/xen/xenbus``: the client opens
its slave side (``device_path``) with ``os.open`` and talks XenStore packets
through it; two bridge threads copy bytes between the master side and a
connection to a real server's socket.

With ``kernel_watch=True`` it behaves like Linux's xenbus driver, which
handles WATCH and UNWATCH itself: the bridge answers them with an ``OK`` of
its own making and drops the server's, and it passes the watch's first
event on *before* that ``OK``.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import tty

from pyxs.protocol import Decoder, Op, Packet, encode


class XenBusStandIn:
    def __init__(self, socket_path: str, kernel_watch: bool = True) -> None:
        self.socket_path = socket_path
        self.kernel_watch = kernel_watch
        self.device_path = ""
        self.watch_oks = 0  # OKs the bridge made up
        self.events_before_ok = 0
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        # req_id of a WATCH/UNWATCH in flight -> (request, event seen?)
        self._intercepted: dict[int, Packet] = {}
        self._awaiting_event: dict[bytes, Packet] = {}
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> XenBusStandIn:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.device_path = os.ttyname(self._slave)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(self.socket_path)
        for target in (self._from_client, self._from_server):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """The device goes away: the master side is closed (reads give EIO)."""
        if self._stop.is_set():
            return
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._sock.close()
        os.close(self._master)
        os.close(self._slave)

    def _to_client(self, packet: Packet) -> None:
        data = encode(packet.op, packet.req_id, packet.tx_id, packet.payload)
        with self._write_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._master, view) :]

    def _from_client(self) -> None:
        decoder = Decoder()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            for packet in decoder.feed(data):
                if self.kernel_watch and packet.op in (Op.WATCH, Op.UNWATCH):
                    self._intercepted[packet.req_id] = packet
                    if packet.op == Op.WATCH:
                        path, token = packet.payload.split(b"\0")[:2]
                        self._awaiting_event[path + b"\0" + token] = packet
                self._sock.sendall(encode(*packet))

    def _from_server(self) -> None:
        decoder = Decoder()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.05)
            if not ready:
                continue
            data = self._sock.recv(65536)
            if not data:
                return
            for packet in decoder.feed(data):
                request = self._intercepted.get(packet.req_id)
                if packet.op == Op.WATCH_EVENT:
                    self._to_client(packet)
                    key = b"\0".join(packet.payload.split(b"\0")[:2])
                    watch = self._awaiting_event.pop(key, None)
                    if watch is not None:
                        # the first event went first; now the made-up OK
                        self.events_before_ok += 1
                        self._ok(watch)
                elif request is not None and packet.op == request.op:
                    del self._intercepted[packet.req_id]
                    if request.op == Op.UNWATCH:
                        self._ok(request)
                    # a WATCH's OK is sent after its first event
                else:
                    if request is not None:  # an error: the kernel passes it on
                        del self._intercepted[packet.req_id]
                        self._awaiting_event = {
                            k: v for k, v in self._awaiting_event.items() if v is not request
                        }
                    self._to_client(packet)

    def _ok(self, request: Packet) -> None:
        self.watch_oks += 1
        self._to_client(Packet(request.op, request.req_id, 0, b"OK\0"))
