"""The server without I/O: connections, dispatch, one handler per operation.

Theory of operation
-------------------
:class:`XenStore` is the whole daemon state: the tree (:mod:`.store`), the
watches (:mod:`.watches`), the domains (:mod:`.domains`) and the
connections (:class:`~pyxs.server.peer.Peer`). It holds dispatch and the
handlers of the node, watch and transaction operations; it inherits watch
firing (:class:`~pyxs.server.watches.WatchEvents`) and the domain
operations and lifecycle (:class:`~pyxs.server.domains.DomainLifecycle`).
Changes made outside transactions reach the watches through the store's
``on_change``, which is :meth:`XenStore.fire`.

A front end (:mod:`.daemon`, or a test) feeds the bytes a connection
received to :meth:`XenStore.receive` and sends what
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

**Duplicate events** are dropped as :mod:`.watches` says; "waiting" there
means queued since the last :meth:`XenStore.take_output`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from ..paths import canonicalize, is_valid_nodename, parent_of
from ..protocol import PAYLOAD_MAX, Op, Packet, PacketTooLarge, XsdError, encode
from .control import control
from .domains import DomainLifecycle, Domains
from .payload import c_atoi, onearg, strings
from .peer import Peer
from .perms import (
    PERM_IGNORE,
    PERM_OWNER,
    PERM_READ,
    PERM_WRITE,
    Perms,
    admitted,
    displayed,
    owner_of,
)
from .quotas import Quotas, SoftQuotas
from .store import (
    Fail,
    Store,
    create_node,
    get_node,
    lookup_node,
    node_size,
    rm_node,
    set_node_value,
)
from .transaction import Transaction
from .watches import WatchEvents, WatchRegistry

if TYPE_CHECKING:
    from ..trace import Tracer
    from .store import Access

__all__ = ["XenStore"]

OK = b"OK\0"
_ERROR_PAYLOAD = {e: e.payload for e in XsdError}
_ERROR = int(Op.ERROR)
#: default of :attr:`XenStore.dom0_backlog_max`: 64 MiB
DOM0_BACKLOG_MAX = 64 << 20


class _Budget:
    """A guest's memory quota, as :func:`~pyxs.server.store.create_node` asks it."""

    __slots__ = ("core", "domid", "prefix")

    def __init__(self, core: XenStore, domid: int, prefix: int) -> None:
        self.core = core
        self.domid = domid
        self.prefix = prefix

    def left(self) -> int:
        return self.core.quotas.memory - self.core.domain_memory(self.domid)


class XenStore(DomainLifecycle, WatchEvents):
    """The state of one XenStore server, dispatch, and its request handlers.

    The domain operations and domain death are :class:`.DomainLifecycle`'s,
    watch firing and event queueing :class:`.WatchEvents`'s."""

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
        # a change outside transactions fires the watches at once
        self.store = Store(on_change=self.fire)
        self.domains = Domains(self.store)
        self.store.domains = self.domains
        self.watches = WatchRegistry()
        self._init_special_perms()
        self.conns: dict[int, Peer] = {}
        self._conn_seq = 0
        #: connections with queued output (the front end flushes them)
        self.dirty: dict[int, Peer] = {}
        #: connections with held requests (see outstanding())
        self.holding: dict[int, Peer] = {}
        self.logfile: str | None = None
        self.logging_enabled = True
        #: called with a domid when it is first introduced / destroyed
        self.on_introduce: Callable[[int], None] | None = None
        self.on_destroy: Callable[[int], None] | None = None
        #: called with a connection the core wants closed (its domain is gone)
        self.on_close: Callable[[Peer], None] | None = None
        #: told about every request handled and packet queued (``Server(trace=...)``)
        self.tracer: Tracer | None = None
        self._post: bytes | None = None
        self._handlers: list[Callable[[Peer, bytes, Transaction | None], bytes] | None] = [
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
    def connect(self, domid: int = 0) -> Peer:
        """A new connection acting as ``domid`` (0: dom0, privileged)."""
        domain = None
        if domid != 0:
            domain = self.domains.introduced(domid)
            if domain is None:
                raise LookupError(f"domain {domid} is not introduced")
        self._conn_seq += 1
        conn = Peer(self._conn_seq, domid, domain)
        conn.tracer = self.tracer
        self.conns[conn.seq] = conn
        if domain is not None:
            domain.conns.append(conn)
        return conn

    def close(self, conn: Peer) -> None:
        """Forget a connection and have the front end close it."""
        self.disconnect(conn)
        if self.on_close is not None:
            self.on_close(conn)

    def disconnect(self, conn: Peer) -> None:
        """Forget a connection: its watches and transactions go with it."""
        if conn.closed:
            return
        conn.closed = True
        self.conn_reset(conn)
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

    def receive(self, conn: Peer, data: bytes) -> bool:
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
    def _run(self, conn: Peer, packets: list[Packet]) -> None:
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

    def outstanding(self, conn: Peer) -> int:
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

    def take_output(self, conn: Peer) -> bytes:
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
    def process(self, conn: Peer, op: int, req_id: int, tx_id: int, payload: bytes) -> None:
        """Handle one request and queue its reply."""
        if self.tracer is not None:
            self.tracer.packet(conn.seq, ">", Packet(op, req_id, tx_id, payload), conn.domid)
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
            and self.domain_memory(conn.domid) + conn.backlog() + 16 + len(reply)
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
        # Peer.push inline: this runs for every request
        conn.out.append(packet)
        conn.out_bytes += len(packet)
        conn.appended += len(packet)
        if self.tracer is not None:
            self.tracer.queued(conn.seq, conn.domid, packet)
        if not conn.privileged:
            conn.reply_ends.append(conn.appended)
        if post is not None:
            self._post = None
            self.queue_event(conn, post)

    def _access(self, tx: Transaction | None) -> Access:
        return tx if tx is not None else self.store

    def _path(self, conn: Peer, path: bytes) -> bytes:
        """Canonical node path, or EINVAL."""
        path = canonicalize(path, conn.home)
        if not is_valid_nodename(path, self.quotas.path_max):
            raise Fail(XsdError.EINVAL)
        return path

    def _budget(self, conn: Peer, tx: Transaction | None) -> _Budget | None:
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
    # node operations
    def _read(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        path = self._path(conn, onearg(payload))
        return get_node(self._access(tx), conn, path, PERM_READ, self.domains).value

    def _get_perms(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        path = self._path(conn, onearg(payload))
        node = get_node(self._access(tx), conn, path, PERM_READ, self.domains)
        return displayed(node.perms, node.gen, self.domains)

    def _directory(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        path = self._path(conn, onearg(payload))
        node = get_node(self._access(tx), conn, path, PERM_READ, self.domains)
        if node.childlen > PAYLOAD_MAX:
            raise Fail(XsdError.E2BIG)
        return node.listing()

    def _directory_part(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        args = strings(payload)
        if len(args) != 2:
            raise Fail(XsdError.EINVAL)
        path = self._path(conn, args[0])
        node = get_node(self._access(tx), conn, path, PERM_READ, self.domains)
        offset = c_atoi(args[1]) & 0xFFFFFFFF
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

    def _write(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
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

    def _mkdir(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        path = self._path(conn, onearg(payload))
        acc = self._access(tx)
        if lookup_node(acc, conn, path, PERM_WRITE, self.domains) is None:
            node = create_node(
                acc, conn, path, b"", self.quotas, self._fail_tx(tx), self._budget(conn, tx)
            )
            acc.fire(path, node, False, None)
        return OK

    def _rm(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        path = self._path(conn, onearg(payload))
        acc = self._access(tx)
        if lookup_node(acc, conn, path, PERM_WRITE, self.domains) is None:
            if acc.read(parent_of(path)) is not None:
                return OK
            raise Fail(XsdError.ENOENT)
        if path == b"/":
            raise Fail(XsdError.EINVAL)
        rm_node(acc, path)
        return OK

    def _set_perms(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        args = strings(payload)
        if len(args) < 2:
            raise Fail(XsdError.EINVAL)
        if not conn.privileged and len(args) - 1 > self.quotas.permissions:
            raise Fail(XsdError.ENOSPC)
        parsed = Perms.parse(args[1:])
        if parsed is None:
            raise Fail(XsdError.EINVAL)
        perms = admitted(parsed, self.domains)
        if perms.entries[0][0] & PERM_IGNORE:
            raise Fail(XsdError.ENOENT)  # the owner does not exist
        name = args[0]
        if name[:1] == b"@":
            self.set_special_perms(conn, name, perms)
            return OK
        path = self._path(conn, name)
        acc = self._access(tx)
        node = get_node(acc, conn, path, PERM_WRITE | PERM_OWNER, self.domains)
        old = node.perms
        if not conn.privileged:
            if perms.owner != owner_of(old.owner, node.gen, self.domains):
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
    def _watch(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        args = strings(payload)
        if len(args) != 2:
            raise Fail(XsdError.EINVAL)
        path, token = args
        cut = 0
        if path[:1] == b"@":
            if len(path) > 2048:
                raise Fail(XsdError.EINVAL)
        else:
            if path[:1] != b"/":
                cut = len(conn.home) + 1
            path = self._path(conn, path)
        if (path, token) in self.watches.owned(conn):
            raise Fail(XsdError.EEXIST)
        domain = conn.domain
        if (
            domain is not None
            and not conn.privileged
            and self.watches.count(domain.conns) > self.quotas.watches
        ):
            raise Fail(XsdError.E2BIG)
        if (
            not conn.privileged
            and self.quotas.memory
            and self.domain_memory(conn.domid) + len(path) + len(token) >= self.quotas.memory
        ):
            raise Fail(XsdError.ENOMEM)  # a watch counts its path and token
        watch = self.watches.add(conn, path, token, cut)
        self._post = (path[cut:] if cut else path) + watch.tail
        return OK

    def _unwatch(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        args = strings(payload)
        if len(args) != 2:
            raise Fail(XsdError.EINVAL)
        watch = self.watches.owned(conn).get((canonicalize(args[0], conn.home), args[1]))
        if watch is None:
            raise Fail(XsdError.ENOENT)
        self.watches.remove(watch)
        return OK

    def _reset_watches(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        self.conn_reset(conn)
        return OK

    # ------------------------------------------------------------------
    # transactions
    def _transaction_start(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
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
        transactions[tx_id] = Transaction(tx_id, self.store, limit)
        return b"%d\0" % tx_id

    def _transaction_end(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
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
    # the rest
    def _control(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        return control(self, payload)

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
            for key, watch in self.watches.owned(conn).items():
                if watch not in self.watches.by_path.get(watch.path, ()):
                    problems.append(f"{conn!r}: watch {key!r} missing from the registry")
        for path, bucket in self.watches.by_path.items():
            for watch in bucket:
                if (
                    watch.conn.closed
                    or self.watches.owned(watch.conn).get((watch.path, watch.token)) is not watch
                ):
                    problems.append(f"stale watch {watch!r} on {path!r}")
            if [w.order for w in bucket] != sorted(w.order for w in bucket):
                problems.append(f"watches on {path!r} out of order")
        return problems

    def connections(self) -> list[Peer]:
        return list(self.conns.values())
