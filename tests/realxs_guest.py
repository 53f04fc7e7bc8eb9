"""Acting as an unprivileged guest domain on the REAL xenstored (tests/realxs.py).

Theory of operation
-------------------
The real daemon only accepts privileged (dom0) connections on its Unix socket.
A guest talks to xenstored over a shared page instead: ``struct
xenstore_domain_interface`` from ``xen/include/public/io/xs_wire.h``::

    char req[1024];                      offset    0: guest -> daemon
    char rsp[1024];                      offset 1024: daemon -> guest
    u32 req_cons, req_prod;              offset 2048, 2052
    u32 rsp_cons, rsp_prod;              offset 2056, 2060
    u32 server_features, connection;     offset 2064, 2068

Indexes are free-running 32-bit counters; the byte at index ``i`` lives at
``MASK_XENSTORE_IDX(i) == i & 1023``; ``prod - cons`` (mod 2**32) bytes are
pending and at most 1024 may be. Each ring has one producer and one consumer:
we produce ``req`` (write bytes, then bump ``req_prod``) and consume ``rsp``
(copy bytes, then bump ``rsp_cons``); the daemon does the opposite. On x86
(TSO) plain stores in program order are enough for that hand-over.

The shim (tests/realxs_shim.c) backs the page with the file ``RUNDIR/ring-<domid>``, created
when ``INTRODUCE "<domid>\\0<mfn>\\0<port>\\0"`` makes the daemon "grant map" it,
and writes the daemon's local event-channel port to ``RUNDIR/port-<domid>``.
Writing that port (4 bytes, little-endian) into the FIFO ``RUNDIR/evtchn`` is
an event: the daemon wakes up and services every guest ring. The daemon never
notifies us back (``xenevtchn_notify`` is a no-op), so we poll ``rsp`` with a
short, growing sleep. We kick after every write to ``req`` and after every
read from ``rsp`` (the daemon stops writing when ``rsp`` is full and needs an
event to resume).

:class:`GuestBridge` makes that ring look like a socket connection: a
background thread listens on a Unix socket and copies bytes between the one
accepted connection and the ring, untouched. A ring is a single connection,
so the bridge serves one socket connection at a time (others wait in the
listen backlog). When the socket client goes away the bridge waits until the
daemon has consumed every request byte, then re-INTRODUCEs the domain with
the same mfn: cxenstored answers that with ``domain_conn_reset()`` (drops the
connection's watches, transactions, queued output, and zeroes the four ring
indexes), so the next socket connection starts clean, as a new socket
connection to the embedded server does. What does *not* reset: the domain's
transaction-id counter keeps counting, and ``@introduceDomain`` is not fired
again (only the first INTRODUCE of a domid fires it).

:meth:`RealGuests.set_domain_state` changes what the shim reports about a
domain (``RUNDIR/domains`` lines ``<domid> <state>``) and raises VIRQ_DOM_EXC
(port 1): xenstored re-scans its domains and fires ``@releaseDomain``. It then
makes a round trip on a fresh dom0 connection, so the daemon has handled the
VIRQ (and queued the events) when it returns.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import select
import socket
import struct
import threading
import time
from pathlib import Path

from pyxs.protocol import Decoder, Op, Packet, encode

__all__ = [
    "DOMAIN_STATES",
    "GuestBridge",
    "GuestRing",
    "RealGuests",
    "dom0_request",
    "guests_for",
    "introduce_payload",
]

RING_SIZE = 1024
_REQ, _RSP = 0, RING_SIZE
_REQ_CONS, _REQ_PROD, _RSP_CONS, _RSP_PROD = 2048, 2052, 2056, 2060
_IDX = struct.Struct("<I")
_U32 = 0xFFFFFFFF
VIRQ_DOM_EXC_PORT = 1
DOMAIN_STATES = ("running", "shutdown", "crashed", "dying", "gone")


def introduce_payload(domid: int) -> bytes:
    """The INTRODUCE payload the harness uses: mfn == domid, remote port 1.

    Re-introducing needs the same mfn (else EINVAL), hence a fixed rule.
    """
    return b"%d\0%d\0%d\0" % (domid, domid, 1)


def dom0_request(socket_path: str, op: int, payload: bytes, timeout: float = 5.0) -> Packet:
    """One request on a fresh privileged socket connection; returns the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        # connect while blocking: with a timeout set, a full listen backlog
        # (xenstored accepts lazily) fails with EAGAIN instead of waiting
        sock.connect(socket_path)
        sock.settimeout(timeout)
        sock.sendall(encode(op, 1, 0, payload))
        decoder = Decoder()
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"xenstored closed the connection (op {op})")
            for packet in decoder.feed(data):
                if packet.op != Op.WATCH_EVENT:
                    return packet


class GuestRing:
    """The shared page of one guest, mapped from ``RUNDIR/ring-<domid>``."""

    def __init__(self, rundir: Path, domid: int) -> None:
        self.rundir = rundir
        self.domid = domid
        fd = os.open(rundir / f"ring-{domid}", os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._evtchn = os.open(rundir / "evtchn", os.O_WRONLY | os.O_NONBLOCK)
        self.port = 0
        self.refresh_port()

    def refresh_port(self) -> None:
        """Re-read the daemon's local port (each INTRODUCE binds a new one)."""
        self.port = int((self.rundir / f"port-{self.domid}").read_text().strip())

    def _get(self, offset: int) -> int:
        return int(_IDX.unpack_from(self._map, offset)[0])

    def _set(self, offset: int, value: int) -> None:
        _IDX.pack_into(self._map, offset, value & _U32)

    def kick(self) -> None:
        """Raise the guest's event: the daemon services the rings."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._evtchn, _IDX.pack(self.port))

    def requests_pending(self) -> int:
        """Request bytes the daemon has not consumed yet."""
        return (self._get(_REQ_PROD) - self._get(_REQ_CONS)) & _U32

    def write_requests(self, data: bytes) -> int:
        """Copy as much of ``data`` into ``req`` as fits; returns the count."""
        cons = self._get(_REQ_CONS)
        prod = self._get(_REQ_PROD)
        free = RING_SIZE - ((prod - cons) & _U32)
        if free <= 0 or not data:
            return 0
        n = min(free, len(data))
        start = prod & (RING_SIZE - 1)
        first = min(n, RING_SIZE - start)
        m = self._map
        m[_REQ + start : _REQ + start + first] = data[:first]
        if n > first:
            m[_REQ : _REQ + n - first] = data[first:n]
        self._set(_REQ_PROD, prod + n)
        return n

    def read_responses(self) -> bytes:
        """Take every byte the daemon has put into ``rsp``."""
        cons = self._get(_RSP_CONS)
        prod = self._get(_RSP_PROD)
        n = (prod - cons) & _U32
        if n == 0 or n > RING_SIZE:
            return b""
        start = cons & (RING_SIZE - 1)
        first = min(n, RING_SIZE - start)
        m = self._map
        data = m[_RSP + start : _RSP + start + first]
        if n > first:
            data += m[_RSP : _RSP + n - first]
        self._set(_RSP_CONS, cons + n)
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._evtchn)
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()


class GuestBridge:
    """Bridges connections on a Unix socket, one at a time, to a guest's ring."""

    POLL_MIN = 0.0001
    POLL_MAX = 0.004

    def __init__(self, ring: GuestRing, socket_path: str, daemon_socket: str) -> None:
        self.ring = ring
        self.socket_path = socket_path
        self.daemon_socket = daemon_socket
        # Serialises ring access between the bridge thread and reintroduce().
        self.lock = threading.Lock()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(socket_path)
        self._listener.listen(16)
        self._stop = threading.Event()
        #: set while no socket connection is being served and the ring is reset
        self.idle = threading.Event()
        self.idle.set()
        self._wake_r, self._wake_w = os.pipe()  # wakes the thread's select() on close()
        self._thread = threading.Thread(
            target=self._run, name=f"guest-bridge-{ring.domid}", daemon=True
        )
        self._thread.start()

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self.ring.close()

    def reintroduce(self) -> Packet:
        """INTRODUCE the domain again (same mfn): resets its connection."""
        with self.lock:
            reply = dom0_request(
                self.daemon_socket, Op.INTRODUCE, introduce_payload(self.ring.domid)
            )
            if reply.op == Op.INTRODUCE:
                self.ring.refresh_port()
            return reply

    # -- the thread --------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener.fileno(), self._wake_r], [], [])
            if self._listener.fileno() not in ready:
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            self.idle.clear()
            with conn:
                self._serve(conn)
            self._reset_after_disconnect()
            self.idle.set()

    def _serve(self, conn: socket.socket) -> None:
        ring = self.ring
        outgoing = bytearray()  # socket -> ring, not yet in the ring
        delay = self.POLL_MIN
        open_ = True
        while not self._stop.is_set():
            progressed = False
            with self.lock:
                if outgoing:
                    n = ring.write_requests(bytes(outgoing))
                    if n:
                        del outgoing[:n]
                        ring.kick()
                        progressed = True
                data = ring.read_responses()
                if data:
                    ring.kick()  # room in rsp again: let the daemon go on
            if data:
                progressed = True
                try:
                    conn.sendall(data)
                except OSError:
                    open_ = False
            if not open_:
                # Client gone: hand over what it sent before closing, as a
                # socket server would still read it.
                self._flush(outgoing)
                return
            if progressed:
                delay = self.POLL_MIN
            readable, _, _ = select.select(
                [conn.fileno(), self._wake_r], [], [], 0 if progressed else delay
            )
            if not progressed:
                delay = min(delay * 2, self.POLL_MAX)
            if conn.fileno() in readable:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    chunk = b""
                if chunk:
                    outgoing += chunk
                    delay = self.POLL_MIN
                else:
                    open_ = False

    def _flush(self, outgoing: bytearray, timeout: float = 5.0) -> None:
        """Push the rest of ``outgoing`` and wait until the daemon took it all."""
        ring = self.ring
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if outgoing:
                    n = ring.write_requests(bytes(outgoing))
                    del outgoing[:n]
                ring.read_responses()  # nobody wants them; keep output flowing
                ring.kick()
                if not outgoing and ring.requests_pending() == 0:
                    return
            time.sleep(0.001)

    def _reset_after_disconnect(self) -> None:
        try:
            introduced = dom0_request(
                self.daemon_socket, Op.IS_DOMAIN_INTRODUCED, b"%d\0" % self.ring.domid
            )
            if introduced.payload == b"T\0":
                self.reintroduce()
        except OSError:
            pass  # the daemon is gone: nothing to reset


class RealGuests:
    """The guests and domain states of one real xenstored."""

    def __init__(self, rundir: Path, socket_path: str) -> None:
        self.rundir = Path(rundir)
        self.socket_path = socket_path
        self.bridges: dict[int, GuestBridge] = {}
        self.states: dict[int, str] = {}
        self._lock = threading.Lock()

    def guest_socket_path(self, domid: int) -> str:
        return str(self.rundir / f"guest-{domid}.sock")

    def introduce(self, domid: int) -> str:
        """INTRODUCE ``domid``; return a socket path whose connections are that guest.

        Introducing an already introduced domid again resets its connection
        (the real daemon's rule), so do not do it while a client is connected.
        """
        if not 0 < domid < 0x7FF0:
            raise ValueError(f"cannot act as domain {domid}")
        with self._lock:
            bridge = self.bridges.get(domid)
            if bridge is not None:
                reply = bridge.reintroduce()
            else:
                reply = dom0_request(self.socket_path, Op.INTRODUCE, introduce_payload(domid))
            if reply.op != Op.INTRODUCE:
                raise OSError(errno.EIO, f"INTRODUCE {domid} failed: {reply.payload!r}")
            if bridge is None:
                ring = GuestRing(self.rundir, domid)
                bridge = GuestBridge(ring, self.guest_socket_path(domid), self.socket_path)
                self.bridges[domid] = bridge
            return bridge.socket_path

    def settle(self, domid: int, timeout: float = 10.0) -> None:
        """Wait until the bridge of ``domid`` is done with a closed connection
        (the domain re-INTRODUCEd), so that what comes next cannot race it."""
        bridge = self.bridges.get(domid)
        if bridge is not None and not bridge.idle.wait(timeout):
            raise TimeoutError(f"the bridge of domain {domid} is still busy")

    def set_domain_state(self, domid: int, state: str) -> None:
        """Make the shim report ``state`` for ``domid`` and raise VIRQ_DOM_EXC."""
        if state not in DOMAIN_STATES:
            raise ValueError(f"unknown domain state {state!r}; expected one of {DOMAIN_STATES}")
        with self._lock:
            self.states[domid] = state
            lines = "".join(f"{d} {s}\n" for d, s in sorted(self.states.items()))
            tmp = self.rundir / "domains.tmp"
            tmp.write_text(lines)
            os.replace(tmp, self.rundir / "domains")
            fd = os.open(self.rundir / "evtchn", os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, _IDX.pack(VIRQ_DOM_EXC_PORT))
            finally:
                os.close(fd)
            # The VIRQ is handled before any later socket request: a round
            # trip makes this call synchronous, as the embedded server's is.
            dom0_request(self.socket_path, Op.GET_DOMAIN_PATH, b"0\0")

    def close(self) -> None:
        with self._lock:
            for bridge in self.bridges.values():
                bridge.close()
            self.bridges.clear()


_REGISTRY: dict[str, RealGuests] = {}
_REGISTRY_LOCK = threading.Lock()


def guests_for(rundir: Path | str, socket_path: str) -> RealGuests:
    """The :class:`RealGuests` of the daemon running in ``rundir`` (one per daemon)."""
    key = str(rundir)
    with _REGISTRY_LOCK:
        guests = _REGISTRY.get(key)
        if guests is None:
            guests = _REGISTRY[key] = RealGuests(Path(rundir), socket_path)
        return guests


def close_guests(rundir: Path | str) -> None:
    """Stop the bridges of the daemon in ``rundir`` (call before stopping it)."""
    with _REGISTRY_LOCK:
        guests = _REGISTRY.pop(str(rundir), None)
    if guests is not None:
        guests.close()
