"""The server without I/O: connections, dispatch, one handler per operation.

Theory of operation
-------------------
:class:`XenStore` is the whole daemon state: the tree (:mod:`.store`), the
watches (:mod:`.watches`), the domains (:mod:`.domains`) and the
connections. A front end (:mod:`.daemon`, or a test) feeds the bytes a
connection received to :meth:`XenStore.receive` and sends what
:meth:`XenStore.take_output` returns; the core never touches a socket.

**Dispatch** follows ``process_message`` of ``xenstored_core.c``: an
unknown or client-illegal op is ENOSYS; a privileged op from an
unprivileged domain is EACCES; a non-zero tx_id must name a transaction of
the connection (ENOENT), except for WATCH and UNWATCH which ignore it; then
the handler runs. Every reply echoes the request's req_id and tx_id.
Replies are queued in request order. Watch events are queued as the
changes happen, so the events a request causes precede its own reply on
the connection that made the request.

**Malformed payloads** (a missing NUL, extra strings) get EINVAL. (The real
daemon answers some of these with a stale errno, or aborts.) A header
announcing more than 4096 bytes makes :meth:`XenStore.receive` return
False: the front end drops that connection, nothing else.

**Duplicate events.** Like cxenstored, an event identical to one still
waiting to be sent on that connection is dropped (``@`` events excepted);
here "waiting" means queued since the last :meth:`XenStore.take_output`.
"""

from __future__ import annotations

import collections
import time
from typing import Callable, Sequence

from ..protocol import PAYLOAD_MAX, Decoder, Op, Packet, PacketTooLarge, XsdError, encode
from . import control as _control
from .domains import DOMID_SELF, Domain, Domains, Quotas, SoftQuotas
from .store import (
    PERM_IGNORE,
    PERM_OWNER,
    PERM_READ,
    PERM_WRITE,
    PERMS_N0,
    Access,
    Fail,
    Node,
    Perms,
    Store,
    canonicalize,
    create_node,
    get_node,
    is_valid_nodename,
    lookup_node,
    node_size,
    parent_of,
    rm_node,
    set_node_value,
)
from .transaction import Transaction
from .watches import Watch, WatchRegistry

__all__ = ["Connection", "XenStore"]

c_atoi = _control.c_atoi

OK = b"OK\0"
_ERROR_PAYLOAD = {e: e.payload for e in XsdError}
_WATCH_EVENT = int(Op.WATCH_EVENT)
_ERROR = int(Op.ERROR)
#: default of :attr:`XenStore.dom0_backlog_max`: 64 MiB
DOM0_BACKLOG_MAX = 64 << 20
_RELEASE_DOMAIN = b"@releaseDomain"
_INTRODUCE_DOMAIN = b"@introduceDomain"


class _Budget:
    """A guest's memory quota, as :func:`~pyxs.server.store.create_node` asks it."""

    __slots__ = ("core", "domid", "prefix")

    def __init__(self, core: XenStore, domid: int, prefix: int) -> None:
        self.core = core
        self.domid = domid
        self.prefix = prefix

    def left(self) -> int:
        return self.core.quotas.memory - self.core.domain_memory(self.domid)


class Connection:
    """One client connection: dom0 (privileged) or a guest domain."""

    __slots__ = (
        "appended",
        "closed",
        "decoder",
        "domain",
        "domid",
        "dropped_events",
        "events",
        "held",
        "home",
        "next_tx_id",
        "out",
        "out_bytes",
        "privileged",
        "reply_ends",
        "seq",
        "transactions",
        "unsent",
        "watches",
    )

    def __init__(self, seq: int, domid: int, domain: Domain | None) -> None:
        self.seq = seq
        self.domid = domid
        #: the guest domain this connection acts as (None: a dom0 socket)
        self.domain = domain
        self.privileged = domid == 0
        self.home = b"/local/domain/%d" % domid
        self.transactions: dict[int, Transaction] = {}
        self.next_tx_id = 1
        self.watches: dict[tuple[bytes, bytes], Watch] = {}
        #: encoded packets waiting to be sent, and their total size
        self.out: list[bytes] = []
        self.out_bytes = 0
        #: the front end's count of bytes it took and could not send yet
        self.unsent: Callable[[], int] | None = None
        #: watch events dropped because the client did not read (guests)
        self.dropped_events = 0
        #: bytes ever queued, and where in that stream each reply ends (for
        #: the "outstanding" quota: replies not yet sent)
        self.appended = 0
        self.reply_ends: collections.deque[int] = collections.deque()
        #: requests received but not processed: the guest has too many
        #: replies outstanding (the front end stops reading it meanwhile)
        self.held: list[Packet] = []
        #: event payloads queued since the last flush (duplicate suppression)
        self.events: set[bytes] | None = None
        self.decoder = Decoder()
        self.closed = False

    @property
    def target(self) -> int | None:
        domain = self.domain
        return domain.target if domain is not None else None

    def __repr__(self) -> str:
        return f"Connection(#{self.seq}, dom{self.domid})"


def _onearg(payload: bytes) -> bytes:
    """The single NUL-terminated argument, else EINVAL."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise Fail(XsdError.EINVAL)
    return payload[:-1]


def _strings(payload: bytes) -> list[bytes]:
    """``get_strings``: the NUL-terminated strings (a trailing rest is ignored)."""
    return payload.split(b"\0")[:-1]


class XenStore:
    """The state of one XenStore server and its request handlers."""

    def __init__(
        self,
        quotas: Quotas | None = None,
        soft_quotas: SoftQuotas | None = None,
        *,
        keep_orphans: bool = False,
    ) -> None:
        self.quotas = quotas if quotas is not None else Quotas()
        self.soft_quotas = soft_quotas if soft_quotas is not None else SoftQuotas()
        self.keep_orphans = keep_orphans
        #: a dom0 connection with this many bytes of output not taken by its
        #: client is closed (guests: their memory quota bounds it)
        self.dom0_backlog_max = DOM0_BACKLOG_MAX
        self.store = Store()
        self.domains = Domains(self.store)
        self.watches = WatchRegistry()
        self.store.fire_hook = self.fire
        #: permissions of the special watch paths, and the generation they
        #: were set at (entries for domains younger than that do not count)
        self.special_perms: dict[bytes, tuple[Perms, int]] = {
            _RELEASE_DOMAIN: (PERMS_N0, 0),
            _INTRODUCE_DOMAIN: (PERMS_N0, 0),
        }
        self.conns: dict[int, Connection] = {}
        self._conn_seq = 0
        #: connections with queued output (the front end flushes them)
        self.dirty: dict[int, Connection] = {}
        #: connections with held requests (see outstanding())
        self.holding: dict[int, Connection] = {}
        self.logfile: str | None = None
        self.logging_enabled = True
        #: called with a domid when it is first introduced / destroyed
        self.on_introduce: Callable[[int], None] | None = None
        self.on_destroy: Callable[[int], None] | None = None
        #: called with a connection the core wants closed (its domain is gone)
        self.on_close: Callable[[Connection], None] | None = None
        self._post: bytes | None = None
        self._handlers: list[Callable[[Connection, bytes, Transaction | None], bytes] | None] = [
            None
        ] * 23
        table = {
            Op.CONTROL: self._control,
            Op.DIRECTORY: self._directory,
            Op.READ: self._read,
            Op.GET_PERMS: self._get_perms,
            Op.WATCH: self._watch,
            Op.UNWATCH: self._unwatch,
            Op.TRANSACTION_START: self._transaction_start,
            Op.TRANSACTION_END: self._transaction_end,
            Op.INTRODUCE: self._introduce,
            Op.RELEASE: self._release,
            Op.GET_DOMAIN_PATH: self._get_domain_path,
            Op.WRITE: self._write,
            Op.MKDIR: self._mkdir,
            Op.RM: self._rm,
            Op.SET_PERMS: self._set_perms,
            Op.IS_DOMAIN_INTRODUCED: self._is_domain_introduced,
            Op.RESUME: self._resume,
            Op.SET_TARGET: self._set_target,
            Op.RESET_WATCHES: self._reset_watches,
            Op.DIRECTORY_PART: self._directory_part,
        }
        for op, handler in table.items():
            self._handlers[op] = handler
        self._privileged_ops = frozenset(
            int(op)
            for op in (
                Op.CONTROL,
                Op.INTRODUCE,
                Op.RELEASE,
                Op.IS_DOMAIN_INTRODUCED,
                Op.RESUME,
                Op.SET_TARGET,
            )
        )
        self._notid_ops = frozenset((int(Op.WATCH), int(Op.UNWATCH)))

    # ------------------------------------------------------------------
    # connections
    def connect(self, domid: int = 0) -> Connection:
        """A new connection acting as ``domid`` (0: dom0, privileged)."""
        domain = None
        if domid != 0:
            domain = self.domains.introduced(domid)
            if domain is None:
                raise LookupError(f"domain {domid} is not introduced")
        self._conn_seq += 1
        conn = Connection(self._conn_seq, domid, domain)
        self.conns[conn.seq] = conn
        if domain is not None:
            domain.conns.append(conn)
        return conn

    def close(self, conn: Connection) -> None:
        """Forget a connection and have the front end close it."""
        self.disconnect(conn)
        if self.on_close is not None:
            self.on_close(conn)

    def disconnect(self, conn: Connection) -> None:
        """Forget a connection: its watches and transactions go with it."""
        if conn.closed:
            return
        conn.closed = True
        self._drop_watches(conn)
        conn.transactions.clear()
        self.conns.pop(conn.seq, None)
        self.dirty.pop(conn.seq, None)
        if conn.domain is not None and conn in conn.domain.conns:
            conn.domain.conns.remove(conn)
        conn.out = []
        conn.out_bytes = 0
        conn.unsent = None
        conn.held = []
        conn.reply_ends.clear()
        self.holding.pop(conn.seq, None)

    def _drop_watches(self, conn: Connection) -> None:
        registry = self.watches
        for watch in conn.watches.values():
            registry.remove(watch)
        conn.watches = {}

    def receive(self, conn: Connection, data: bytes) -> bool:
        """Process bytes from ``conn``. False: drop the connection (bad header)."""
        if conn.closed:
            return False
        try:
            packets = conn.decoder.feed(data)
        except PacketTooLarge:
            return False
        if conn.held:
            conn.held.extend(packets)
        else:
            self._run(conn, packets)
        return not conn.closed

    # -- the "outstanding" quota ---------------------------------------------
    # cxenstored stops reading a guest while quota_req_outstanding (20) of its
    # requests wait for their replies to be delivered. Here a reply is
    # outstanding until the front end has sent its last byte; requests
    # received meanwhile are held, and the front end stops reading.
    def _run(self, conn: Connection, packets: list[Packet]) -> None:
        process = self.process
        limit = 0 if conn.privileged else self.quotas.outstanding
        for index, (op, req_id, tx_id, payload) in enumerate(packets):
            if limit and self.outstanding(conn) >= limit:
                conn.held = packets[index:]
                self.holding[conn.seq] = conn
                return
            process(conn, op, req_id, tx_id, payload)
            if conn.closed:
                return

    def outstanding(self, conn: Connection) -> int:
        """Replies queued for ``conn`` and not yet sent (all of its domain's
        connections, as cxenstored counts them per domain)."""
        domain = conn.domain
        conns = domain.conns if domain is not None else [conn]
        count = 0
        for c in conns:
            unsent = c.unsent
            sent = c.appended - c.out_bytes - (unsent() if unsent is not None else 0)
            ends = c.reply_ends
            while ends and ends[0] <= sent:
                ends.popleft()
            count += len(ends)
        return count

    def resume(self) -> bool:
        """Process held requests of connections no longer held back; True if
        any was (the front end then flushes, and calls again)."""
        progress = False
        for seq, conn in list(self.holding.items()):
            limit = self.quotas.outstanding
            if conn.closed or not conn.held:
                del self.holding[seq]
                continue
            if limit and self.outstanding(conn) >= limit:
                continue
            del self.holding[seq]
            packets, conn.held = conn.held, []
            self._run(conn, packets)
            progress = True
        return progress

    def take_output(self, conn: Connection) -> bytes:
        """The bytes queued for ``conn`` (and forget them)."""
        out = conn.out
        self.dirty.pop(conn.seq, None)
        if not out:
            return b""
        conn.out = []
        conn.out_bytes = 0
        conn.events = None
        return out[0] if len(out) == 1 else b"".join(out)

    # ------------------------------------------------------------------
    # dispatch
    def process(self, conn: Connection, op: int, req_id: int, tx_id: int, payload: bytes) -> None:
        """Handle one request and queue its reply."""
        handlers = self._handlers
        handler = handlers[op] if op < 23 else None
        error: XsdError | None = None
        reply = b""
        if handler is None:
            error = XsdError.ENOSYS
        elif not conn.privileged and op in self._privileged_ops:
            error = XsdError.EACCES
        else:
            tx = None
            if tx_id and op not in self._notid_ops:
                tx = conn.transactions.get(tx_id)
                if tx is None:
                    error = XsdError.ENOENT
            if error is None:
                try:
                    reply = handler(conn, payload, tx)
                except Fail as fail:
                    error = fail.error
                    self._post = None
                else:
                    if len(reply) > PAYLOAD_MAX:
                        error = XsdError.E2BIG
        if conn.closed:
            return
        if not conn.out:
            self.dirty[conn.seq] = conn
        if (
            error is None
            and not conn.privileged
            and self.quotas.memory
            and self.domain_memory(conn.domid) + self._backlog(conn) + 16 + len(reply)
            >= self.quotas.memory
        ):
            # cxenstored accounts output to the guest while it is queued: a
            # reply that would bring it to its memory quota is ENOMEM
            error = XsdError.ENOMEM
            self._post = None
        if error is None:
            packet = encode(op, req_id, tx_id, reply)
            post = self._post
        else:
            packet = encode(_ERROR, req_id, tx_id, _ERROR_PAYLOAD[error])
            post = None
        conn.out.append(packet)
        conn.out_bytes += len(packet)
        conn.appended += len(packet)
        if not conn.privileged:
            conn.reply_ends.append(conn.appended)
        if post is not None:
            self._post = None
            self._queue_event(conn, post)

    def _access(self, tx: Transaction | None) -> Access:
        return tx if tx is not None else self.store

    def _path(self, conn: Connection, path: bytes) -> bytes:
        """Canonical node path, or EINVAL."""
        path = canonicalize(path, conn.home)
        if not is_valid_nodename(path, self.quotas.path_max):
            raise Fail(XsdError.EINVAL)
        return path

    def _budget(self, conn: Connection, tx: Transaction | None) -> _Budget | None:
        """The memory quota a guest's write is held to (None: not held)."""
        if conn.privileged or not self.quotas.memory:
            return None
        return _Budget(self, conn.domid, len(b"%d/" % tx.generation) if tx is not None else 0)

    def _fail_tx(self, tx: Transaction | None) -> Callable[[], None] | None:
        if tx is None:
            return None

        def fail() -> None:
            tx.failed = True

        return fail

    # ------------------------------------------------------------------
    # watch events
    def fire(self, path: bytes, node: Node | None, exact: bool, old_perms: Perms | None) -> None:
        """Queue the events a change of ``path`` causes (``fire_watches``)."""
        hits = self.watches.matches(path, exact)
        if not hits:
            return
        special = path[:1] == b"@"
        if node is None and old_perms is None and not special:
            # watch_permitted() cannot read a node that is gone and has no
            # old permissions: nobody, not even dom0, gets the event (a node
            # created and removed within one transaction)
            return
        verdict: dict[int, bool] = {}
        queue = self._queue_event
        for watch in hits:
            conn = watch.conn
            if not conn.privileged:
                allowed = verdict.get(conn.seq)
                if allowed is None:
                    if special:
                        entry = self.special_perms.get(path)
                        allowed = (
                            entry is not None
                            and self._perm(conn, entry[0], entry[1]) & PERM_READ != 0
                        )
                    else:
                        allowed = self._watch_permitted(conn, path, node, old_perms)
                    verdict[conn.seq] = allowed
                if not allowed:
                    continue
            cut = watch.cut
            queue(conn, (path[cut:] if cut else path) + watch.tail)

    def _queue_event(self, conn: Connection, payload: bytes) -> None:
        if len(payload) > PAYLOAD_MAX or conn.closed:
            return
        events = conn.events
        if events is not None and payload in events:
            return
        backlog = self._backlog(conn)
        if conn.privileged or not self.quotas.memory:
            if backlog >= self.dom0_backlog_max:
                # a dom0 client this far behind loses its connection rather
                # than its events: it notices, and can read the tree again
                self.close(conn)
                return
        elif self.domain_memory(conn.domid) + backlog + 16 + len(payload) >= self.quotas.memory:
            # as in cxenstored, output waiting for a guest counts in its
            # memory, and an event that would bring it to the quota is dropped
            conn.dropped_events += 1
            return
        if payload[:1] != b"@":
            if events is None:
                conn.events = {payload}
            else:
                events.add(payload)
        if not conn.out:
            self.dirty[conn.seq] = conn
        packet = encode(_WATCH_EVENT, 0, 0, payload)
        conn.out.append(packet)
        conn.out_bytes += len(packet)
        conn.appended += len(packet)

    @staticmethod
    def _backlog(conn: Connection) -> int:
        """Bytes of output waiting for ``conn``: queued here, or taken by the
        front end and not sent yet."""
        unsent = conn.unsent
        return conn.out_bytes + (unsent() if unsent is not None else 0)

    def _perm(self, conn: Connection, perms: Perms, gen: int) -> int:
        if conn.privileged:
            return PERM_READ | PERM_WRITE | PERM_OWNER
        return self.domains.perm_for(conn, perms, gen)

    def _watch_permitted(
        self, conn: Connection, path: bytes, node: Node | None, old_perms: Perms | None
    ) -> bool:
        """A node counts as readable if it or its parent is readable.

        ``node`` is None for a node a transaction removed: then only its
        permissions from before the transaction count."""
        lookup = self.store.lookup
        gen = node.gen if node is not None else self.store.generation
        if old_perms is not None and self._perm(conn, old_perms, gen) & PERM_READ:
            return True
        if node is None:
            return False
        if self._perm(conn, node.perms, node.gen) & PERM_READ:
            return True
        parent = lookup(parent_of(path))
        return parent is not None and self._perm(conn, parent.perms, parent.gen) & PERM_READ != 0

    def fire_special(self, path: bytes) -> None:
        self.fire(path, None, False, None)

    # ------------------------------------------------------------------
    # node operations
    def _read(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        path = self._path(conn, _onearg(payload))
        return get_node(self._access(tx), conn, path, PERM_READ, self.domains).value

    def _get_perms(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        path = self._path(conn, _onearg(payload))
        node = get_node(self._access(tx), conn, path, PERM_READ, self.domains)
        return self.domains.displayed(node.perms, node.gen)

    def _directory(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        path = self._path(conn, _onearg(payload))
        node = get_node(self._access(tx), conn, path, PERM_READ, self.domains)
        if node.childlen > PAYLOAD_MAX:
            raise Fail(XsdError.E2BIG)
        return node.listing()

    def _directory_part(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        strings = _strings(payload)
        if len(strings) != 2:
            raise Fail(XsdError.EINVAL)
        path = self._path(conn, strings[0])
        node = get_node(self._access(tx), conn, path, PERM_READ, self.domains)
        offset = c_atoi(strings[1]) & 0xFFFFFFFF
        gen = b"%d\0" % node.gen
        childlen = node.childlen
        if offset >= childlen:
            return gen + b"\0"
        listing = node.listing()
        limit = PAYLOAD_MAX - len(gen) - 1
        cur = offset
        while True:
            nul = listing.find(b"\0", cur)
            if (cur - offset) + (nul - cur) >= limit:
                break
            cur = nul + 1
            if cur == childlen:
                return gen + listing[offset:] + b"\0"
        return gen + listing[offset:cur]

    def _write(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        nul = payload.find(b"\0")
        if nul < 0:
            raise Fail(XsdError.EINVAL)
        path = self._path(conn, payload[:nul])
        value = payload[nul + 1 :]
        acc = self._access(tx)
        node = lookup_node(acc, conn, path, PERM_WRITE, self.domains)
        if node is None:
            node = create_node(
                acc, conn, path, value, self.quotas, self._fail_tx(tx), self._budget(conn, tx)
            )
        else:
            set_node_value(
                acc, conn, path, node, value, self.quotas, self._fail_tx(tx), self._budget(conn, tx)
            )
        acc.fire(path, node, False, None)
        return OK

    def _mkdir(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        path = self._path(conn, _onearg(payload))
        acc = self._access(tx)
        if lookup_node(acc, conn, path, PERM_WRITE, self.domains) is None:
            node = create_node(
                acc, conn, path, b"", self.quotas, self._fail_tx(tx), self._budget(conn, tx)
            )
            acc.fire(path, node, False, None)
        return OK

    def _rm(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        path = self._path(conn, _onearg(payload))
        acc = self._access(tx)
        if lookup_node(acc, conn, path, PERM_WRITE, self.domains) is None:
            if acc.read(parent_of(path)) is not None:
                return OK
            raise Fail(XsdError.ENOENT)
        if path == b"/":
            raise Fail(XsdError.EINVAL)
        rm_node(acc, path)
        return OK

    def _set_perms(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        strings = _strings(payload)
        if len(strings) < 2:
            raise Fail(XsdError.EINVAL)
        if not conn.privileged and len(strings) - 1 > self.quotas.permissions:
            raise Fail(XsdError.ENOSPC)
        perms = self.domains.parsed(Perms.parse(strings[1:]))
        if perms.entries[0][0] & PERM_IGNORE:
            raise Fail(XsdError.ENOENT)  # the owner does not exist
        name = strings[0]
        if name[:1] == b"@":
            current = self.special_perms.get(name)
            if current is None:
                raise Fail(XsdError.EINVAL)
            wanted = PERM_WRITE | PERM_OWNER
            if self._perm(conn, current[0], current[1]) & wanted != wanted:
                raise Fail(XsdError.EACCES)
            self.special_perms[name] = (perms, self.store.generation)
            return OK
        path = self._path(conn, name)
        acc = self._access(tx)
        node = get_node(acc, conn, path, PERM_WRITE | PERM_OWNER, self.domains)
        old = node.perms
        if not conn.privileged:
            owner = old.owner
            if owner != 0 and not self.domains.valid(owner, node.gen):
                owner = 0
            if perms.owner != owner:
                raise Fail(XsdError.EPERM)
            size = 24 + 8 * len(perms.entries) + len(node.value) + node.childlen
            if size >= self.quotas.node_size:
                acc.consume(1)
                if tx is not None:
                    tx.failed = True
                raise Fail(XsdError.ENOSPC)
        node.perms = perms
        acc.write(path, node, old.owner, new_perms=True)
        acc.fire(path, node, False, old)
        return OK

    # ------------------------------------------------------------------
    # watches
    def _watch(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        strings = _strings(payload)
        if len(strings) != 2:
            raise Fail(XsdError.EINVAL)
        path, token = strings
        cut = 0
        if path[:1] == b"@":
            if len(path) > 2048:
                raise Fail(XsdError.EINVAL)
        else:
            if path[:1] != b"/":
                cut = len(conn.home) + 1
            path = self._path(conn, path)
        key = (path, token)
        if key in conn.watches:
            raise Fail(XsdError.EEXIST)
        domain = conn.domain
        if domain is not None and not conn.privileged and domain.watch_count > self.quotas.watches:
            raise Fail(XsdError.E2BIG)
        if (
            not conn.privileged
            and self.quotas.memory
            and self.domain_memory(conn.domid) + len(path) + len(token) >= self.quotas.memory
        ):
            raise Fail(XsdError.ENOMEM)  # a watch counts its path and token
        watch = self.watches.add(conn, path, token, cut)
        conn.watches[key] = watch
        self._post = (path[cut:] if cut else path) + watch.tail
        return OK

    def _unwatch(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        strings = _strings(payload)
        if len(strings) != 2:
            raise Fail(XsdError.EINVAL)
        key = (canonicalize(strings[0], conn.home), strings[1])
        watch = conn.watches.pop(key, None)
        if watch is None:
            raise Fail(XsdError.ENOENT)
        self.watches.remove(watch)
        return OK

    def _reset_watches(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        self._drop_watches(conn)
        conn.transactions.clear()
        return OK

    # ------------------------------------------------------------------
    # transactions
    def _transaction_start(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        if tx is not None:
            raise Fail(XsdError.EBUSY)
        if not conn.privileged:
            domain = conn.domain
            started = domain.transaction_count if domain is not None else len(conn.transactions)
            if started > self.quotas.transactions:
                raise Fail(XsdError.ENOSPC)
        transactions = conn.transactions
        tx_id = conn.next_tx_id
        while tx_id == 0 or tx_id in transactions:
            tx_id = (tx_id + 1) & 0xFFFFFFFF
        conn.next_tx_id = (tx_id + 1) & 0xFFFFFFFF
        limit = None if conn.privileged else self.quotas.transaction_nodes
        transactions[tx_id] = Transaction(tx_id, conn, self.store, limit)
        return b"%d\0" % tx_id

    def _transaction_end(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        if payload not in (b"T\0", b"F\0"):
            raise Fail(XsdError.EINVAL)
        if tx is None:
            raise Fail(XsdError.ENOENT)
        del conn.transactions[tx.id]
        if payload == b"T\0":
            if tx.failed or tx.lost_domain():
                raise Fail(XsdError.ENOMEM)
            if not conn.privileged and tx.created_nodes():
                counts = self.store.node_counts
                for domid, delta in tx.count_deltas().items():
                    if domid != 0 and counts.get(domid, 0) + delta >= self.quotas.nodes:
                        raise Fail(XsdError.ENOSPC)
            if tx.conflicts():
                raise Fail(XsdError.EAGAIN)
            tx.commit(self.fire)
        return OK

    # ------------------------------------------------------------------
    # domains
    def _introduce(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        strings = _strings(payload)
        if len(strings) < 3:
            raise Fail(XsdError.EINVAL)
        domid = c_atoi(strings[0]) & 0xFFFFFFFF
        port = c_atoi(strings[2]) & 0xFFFFFFFF
        if port == 0:
            raise Fail(XsdError.EINVAL)
        domain, new = self.domains.introduce(domid, port)
        if new:
            if domid != 0:
                self.fire_special(_INTRODUCE_DOMAIN)
                if self.on_introduce is not None:
                    self.on_introduce(domid)
        else:
            # domain_conn_reset: the domain's connection loses its watches
            # and transactions.
            for guest in list(domain.conns):
                self._drop_watches(guest)
                guest.transactions.clear()
        return OK

    def _onearg_domain(self, payload: bytes) -> Domain:
        domid = c_atoi(_onearg(payload)) & 0xFFFFFFFF
        if domid == 0:
            raise Fail(XsdError.EINVAL)
        return self._connected_domain(domid)

    def _connected_domain(self, domid: int) -> Domain:
        """``find_connected_domain``: introduced (ENOENT) and connected (EINVAL)."""
        domain = self.domains.introduced(domid)
        if domain is None:
            raise Fail(XsdError.ENOENT)
        if domain.detached:
            raise Fail(XsdError.EINVAL)
        return domain

    def _release(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        domain = self._onearg_domain(payload)
        if domain.holders:
            # SET_TARGET made another domain hold a (talloc) reference to this
            # domain's connection: freeing it only drops the newest reference.
            domain.holders.pop()
        else:
            self.destroy_domain(domain)
        return OK

    def _resume(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        self._onearg_domain(payload).shutdown = False
        return OK

    def _set_target(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        strings = _strings(payload)
        if len(strings) < 2:
            raise Fail(XsdError.EINVAL)
        domain = self._connected_domain(c_atoi(strings[0]) & 0xFFFFFFFF)
        target = self._connected_domain(c_atoi(strings[1]) & 0xFFFFFFFF)
        domain.target = target.domid
        target.holders.append(domain.domid)
        return OK

    def _get_domain_path(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        return b"/local/domain/%d\0" % (c_atoi(_onearg(payload)) & 0xFFFFFFFF)

    def _is_domain_introduced(
        self, conn: Connection, payload: bytes, tx: Transaction | None
    ) -> bytes:
        domid = c_atoi(_onearg(payload)) & 0xFFFFFFFF
        if domid == DOMID_SELF or self.domains.introduced(domid) is not None:
            return b"T\0"
        return b"F\0"

    def _control(self, conn: Connection, payload: bytes, tx: Transaction | None) -> bytes:
        return _control.control(self, conn, payload)

    def destroy_domain(self, domain: Domain) -> None:
        """Forget a domain: close its connections, remove what it owns, fire
        ``@releaseDomain`` (``destroy_domain`` in ``xenstored_domain.c``)."""
        for guest in list(domain.conns):
            self.disconnect(guest)
            if self.on_close is not None:
                self.on_close(guest)
        domain.conns = []
        self._remove_domain_tree(domain.domid)
        self.domains.drop(domain)
        if domain.introduced:
            domain.introduced = False
            if self.on_destroy is not None:
                self.on_destroy(domain.domid)
            self.fire_special(_RELEASE_DOMAIN)
        # the references this domain held (SET_TARGET) go with it
        for other in self.domains:
            if domain.domid in other.holders:
                other.holders = [d for d in other.holders if d != domain.domid]
                if other.detached and not other.holders:
                    self.destroy_domain(other)

    def _remove_domain_tree(self, domid: int) -> None:
        """Remove (or with keep_orphans give to dom0) the nodes ``domid`` owns."""
        store = self.store
        if not store.node_counts.get(domid):
            return
        stack = [b"/"]
        while stack and store.node_counts.get(domid):
            path = stack.pop()
            node = store.lookup(path)
            if node is None:
                continue
            if node.perms.owner == domid and path != b"/":
                if self.keep_orphans:
                    store.node_counts[domid] -= 1
                    node.perms = node.perms.with_owner(0)
                    store.node_counts[0] = store.node_counts.get(0, 0) + 1
                    store.account(path, node, domid)
                else:
                    rm_node(store, path)
                    continue
            if node.children:
                base = path if path != b"/" else b""
                stack.extend(base + b"/" + name for name in reversed(list(node.children)))

    def set_domain_state(self, domid: int, state: str) -> None:
        """Tell what the hypervisor says of ``domid`` and act as on VIRQ_DOM_EXC."""
        if domid != 0:
            self.domains.states[domid] = state
        self.check_domains()

    def check_domains(self) -> None:
        """``check_domains``: notice shutdown, crashed, dying and gone domains."""
        notify = False
        domains = self.domains
        again = True
        while again:
            again = False
            for domain in domains.newest_first():
                state = domains.hypervisor_state(domain.domid)
                valid = state != "gone"
                if not domain.introduced:
                    if not valid:
                        self.destroy_domain(domain)  # its nodes go, no event
                        again = True
                        break
                    continue
                if valid:
                    if state in ("shutdown", "crashed") and not domain.shutdown:
                        domain.shutdown = True
                        notify = True
                    if state != "dying":
                        continue
                if domain.domid == 0 or domain.detached:
                    continue
                if domain.holders:
                    # its connection outlives the unlink (SET_TARGET holds it)
                    domain.detached = True
                else:
                    self.destroy_domain(domain)
                notify = False
                again = True
                break
        if notify:
            self.fire_special(_RELEASE_DOMAIN)

    # ------------------------------------------------------------------
    # reports and logs
    def domain_report(self, domid: int) -> bytes:
        # any domain structure answers, introduced or not (one exists as soon
        # as a permission names a domain the hypervisor knows)
        domain = self.domains.get(domid)
        if domain is None:
            raise Fail(XsdError.ENOENT)
        memory = self.domain_memory(domid)
        guest = domid != 0
        lines = (
            ("nodes", self.store.node_counts.get(domid, 0)),
            ("watches", domain.watch_count if guest else 0),
            ("transactions", domain.transaction_count if guest else 0),
            ("outstanding", 0),
            ("memory", memory),
        )
        text = b"Domain %d:\n" % domid
        text += b"".join(b"%-16s: %8d\n" % (name.encode(), value) for name, value in lines)
        return text + b"\0"

    def domain_memory(self, domid: int) -> int:
        """What cxenstored accounts to ``domid`` (the ``memory`` quota): the
        nodes it owns, its watches, its transactions' node copies."""
        memory = self.store.memory_of(domid)
        domain = self.domains.get(domid)
        conns = domain.conns if domain is not None and domid != 0 else self.conns.values()
        for conn in conns:
            if conn.domid == domid:
                memory += sum(len(w.path) + len(w.token) for w in conn.watches.values())
                # a transaction's node copies live in the TDB as
                # "<generation>/<path>", accounted to the transaction's owner
                for tx in conn.transactions.values():
                    memory += tx.memory
        return memory

    def memreport(self) -> str:
        return (
            f"pyxs xenstored memory report {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            f"nodes: {self.store.count_nodes()}\n"
            f"watches: {len(self.watches)}\n"
            f"connections: {len(self.conns)}\n"
            f"transactions: {sum(len(c.transactions) for c in self.conns.values())}\n"
        )

    def set_logfile(self, path: str) -> None:
        self.logfile = path
        self.log("\n***")

    def log(self, message: str) -> None:
        if self.logfile is None or not self.logging_enabled:
            return
        try:
            with open(self.logfile, "a") as out:
                out.write(message + "\n")
        except OSError:
            pass

    # ------------------------------------------------------------------
    def check(self) -> list[str]:
        """Consistency problems of the whole state (empty when sound)."""
        problems = self.store.check()
        for conn in self.conns.values():
            for tx in conn.transactions.values():
                memory = sum(
                    node_size(entry.node) + tx.prefix + len(path)
                    for path, entry in tx.entries.items()
                    if entry.node is not None
                )
                if memory != tx.memory:
                    problems.append(
                        f"{conn!r}: transaction {tx.id} accounts {tx.memory}, has {memory}"
                    )
            for key, watch in conn.watches.items():
                if watch not in self.watches.by_path.get(watch.path, ()):
                    problems.append(f"{conn!r}: watch {key!r} missing from the registry")
        for path, bucket in self.watches.by_path.items():
            for watch in bucket:
                if (
                    watch.conn.closed
                    or watch.conn.watches.get((watch.path, watch.token)) is not watch
                ):
                    problems.append(f"stale watch {watch!r} on {path!r}")
            if [w.order for w in bucket] != sorted(w.order for w in bucket):
                problems.append(f"watches on {path!r} out of order")
        return problems

    def connections(self) -> Sequence[Connection]:
        return list(self.conns.values())
