"""Domains: which exist and count, and their lifecycle.

Theory of operation
-------------------
Two views of a domain are kept apart, as in cxenstored:

* what the *hypervisor* says (``hypervisor_state``): ``running``,
  ``shutdown``, ``crashed``, ``dying`` or ``gone``. Without Xen this is
  what :meth:`Domains.set_state` was told; by default dom0 and every
  introduced domain run and every other domain is gone (this mirrors the
  ``realxs`` shim and its ``RUNDIR/domains`` file);
* the daemon's own *domain structures* (:class:`Domain`), created on
  INTRODUCE or when a permission names a domain the hypervisor knows. Each
  records the global generation at its creation: a permission entry (or an
  owner) only counts for a node written after that domain came to be, so a
  new domain reusing a domid does not inherit the rights of an old one
  (``chk_domain_generation`` in ``xenstored_domain.c``).

:class:`Domains` answers which domains count for permissions
(``DomainTable`` in :mod:`.perms`, where the rule itself is); the quotas
are in :mod:`.quotas` (imported here for the old names).

**Lifecycle** (:class:`DomainLifecycle`, ``xenstored_domain.c``).
INTRODUCE makes a domain introduced (``@introduceDomain`` fires; a second
INTRODUCE resets its peers: watches and transactions go). RELEASE, or the
hypervisor reporting it dying or gone (:meth:`DomainLifecycle.check_domains`,
on VIRQ_DOM_EXC), destroys it: its peers are closed, the nodes it owns are
removed (or given to dom0 with ``keep_orphans``) and ``@releaseDomain``
fires. A domain SET_TARGET named is held by the domain that named it: its
RELEASE only drops that reference, its death only detaches it, and it is
destroyed when the last holder goes. ``shutdown`` and ``crashed`` fire
``@releaseDomain`` and keep the domain.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable

from ..paths import domain_path
from ..protocol import XsdError
from .payload import c_atoi, onearg, strings
from .peer import Peer
from .quotas import Quotas, SoftQuotas
from .store import Fail, Store, rm_node
from .transaction import Transaction
from .watches import INTRODUCE_DOMAIN, RELEASE_DOMAIN, WatchRegistry

__all__ = [
    "DOMAIN_STATES",
    "DOMID_SELF",
    "Domain",
    "DomainLifecycle",
    "Domains",
    "Quotas",
    "SoftQuotas",
]

OK = b"OK\0"

#: ``DOMID_SELF``: IS_DOMAIN_INTRODUCED always says T for it.
DOMID_SELF = 0x7FF0

#: Domain states :meth:`Domains.set_state` understands (the shim's words).
DOMAIN_STATES = ("running", "shutdown", "crashed", "dying", "gone")


class Domain:
    """cxenstored's ``struct domain``."""

    __slots__ = (
        "conns",
        "detached",
        "domid",
        "generation",
        "holders",
        "introduced",
        "port",
        "shutdown",
        "target",
    )

    def __init__(self, domid: int, generation: int) -> None:
        self.domid = domid
        self.generation = generation
        self.introduced = False
        self.shutdown = False
        self.port = 0
        #: SET_TARGET: this domain acts with the rights of ``target``
        self.target: int | None = None
        #: guest connections acting as this domain
        self.conns: list[Peer] = []
        #: domains whose SET_TARGET named this one (each holds a reference
        #: that keeps this domain's connection alive, as talloc does)
        self.holders: list[int] = []
        #: the hypervisor killed it while a reference held it: no connection
        self.detached = False

    @property
    def transaction_count(self) -> int:
        return sum(len(c.transactions) for c in self.conns)

    def __repr__(self) -> str:
        return f"Domain({self.domid}, introduced={self.introduced})"


class Domains:
    """The daemon's domain structures and the hypervisor's view of domains."""

    __slots__ = ("_structs", "states", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        #: domid -> Domain, in allocation order
        self._structs: dict[int, Domain] = {}
        #: explicit hypervisor states (set_state); otherwise see hypervisor_state
        self.states: dict[int, str] = {}
        dom0 = self._alloc(0)
        dom0.introduced = True

    def _alloc(self, domid: int) -> Domain:
        domain = self._structs[domid] = Domain(domid, self.store.generation)
        return domain

    def get(self, domid: int) -> Domain | None:
        return self._structs.get(domid)

    def introduced(self, domid: int) -> Domain | None:
        domain = self._structs.get(domid)
        return domain if domain is not None and domain.introduced else None

    def newest_first(self) -> list[Domain]:
        """Structures in the order cxenstored's list holds them (newest first)."""
        return list(reversed(self._structs.values()))

    def __iter__(self) -> Iterator[Domain]:
        return iter(list(self._structs.values()))

    def drop(self, domain: Domain) -> None:
        self._structs.pop(domain.domid, None)

    def hypervisor_state(self, domid: int) -> str:
        state = self.states.get(domid)
        if state is not None:
            return state
        if domid == 0:
            return "running"
        domain = self._structs.get(domid)
        return "running" if domain is not None and domain.introduced else "gone"

    def exists(self, domid: int) -> bool:
        """``domain_alloc_permrefs``: known to xenstored or to the hypervisor."""
        if domid in self._structs:
            return True
        if self.hypervisor_state(domid) != "gone":
            self._alloc(domid)
            return True
        return False

    def introduce(self, domid: int, port: int) -> tuple[Domain, bool]:
        """INTRODUCE: (the domain, whether it was newly introduced)."""
        domain = self._structs.get(domid)
        if domain is None:
            domain = self._alloc(domid)
        domain.port = port
        if domain.introduced:
            return domain, False
        domain.introduced = True
        domain.shutdown = False
        return domain, True

    # -- which domains count (perms.DomainTable) ----------------------------
    def valid(self, domid: int, gen: int) -> bool:
        """``chk_domain_generation``: does a permission for ``domid`` count on
        a node last written at generation ``gen``?"""
        if domid == 0:
            return True
        domain = self._structs.get(domid)
        if domain is not None:
            return domain.generation <= gen
        if self.hypervisor_state(domid) != "gone":
            self._alloc(domid)
            return True
        return False


class DomainLifecycle:
    """Part of :class:`~pyxs.server.core.XenStore`: the domain operations
    (INTRODUCE, RELEASE, RESUME, SET_TARGET, GET_DOMAIN_PATH,
    IS_DOMAIN_INTRODUCED), domain death and what a domain is accounted."""

    store: Store
    domains: Domains
    watches: WatchRegistry
    quotas: Quotas
    conns: dict[int, Peer]
    keep_orphans: bool
    #: called with a domid when it is first introduced / destroyed
    on_introduce: Callable[[int], None] | None
    on_destroy: Callable[[int], None] | None
    #: called with a peer the core wants closed (its domain is gone)
    on_close: Callable[[Peer], None] | None

    if TYPE_CHECKING:

        def disconnect(self, conn: Peer) -> None: ...

        def fire_special(self, path: bytes) -> None: ...

    def conn_reset(self, conn: Peer) -> None:
        """``domain_conn_reset``: the peer loses its watches and transactions."""
        self.watches.drop(conn)
        conn.transactions.clear()

    # -- handlers ------------------------------------------------------------
    def _introduce(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        args = strings(payload)
        if len(args) < 3:
            raise Fail(XsdError.EINVAL)
        domid = c_atoi(args[0]) & 0xFFFFFFFF
        port = c_atoi(args[2]) & 0xFFFFFFFF
        if port == 0:
            raise Fail(XsdError.EINVAL)
        domain, new = self.domains.introduce(domid, port)
        if new:
            if domid != 0:
                self.fire_special(INTRODUCE_DOMAIN)
                if self.on_introduce is not None:
                    self.on_introduce(domid)
        else:
            for guest in list(domain.conns):
                self.conn_reset(guest)
        return OK

    def _onearg_domain(self, payload: bytes) -> Domain:
        domid = c_atoi(onearg(payload)) & 0xFFFFFFFF
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

    def _release(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        domain = self._onearg_domain(payload)
        if domain.holders:
            # SET_TARGET made another domain hold a (talloc) reference to this
            # domain's connection: freeing it only drops the newest reference.
            domain.holders.pop()
        else:
            self.destroy_domain(domain)
        return OK

    def _resume(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        self._onearg_domain(payload).shutdown = False
        return OK

    def _set_target(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        args = strings(payload)
        if len(args) < 2:
            raise Fail(XsdError.EINVAL)
        domain = self._connected_domain(c_atoi(args[0]) & 0xFFFFFFFF)
        target = self._connected_domain(c_atoi(args[1]) & 0xFFFFFFFF)
        domain.target = target.domid
        target.holders.append(domain.domid)
        return OK

    def _get_domain_path(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        return domain_path(c_atoi(onearg(payload)) & 0xFFFFFFFF) + b"\0"

    def _is_domain_introduced(self, conn: Peer, payload: bytes, tx: Transaction | None) -> bytes:
        domid = c_atoi(onearg(payload)) & 0xFFFFFFFF
        if domid == DOMID_SELF or self.domains.introduced(domid) is not None:
            return b"T\0"
        return b"F\0"

    # -- death -----------------------------------------------------------------
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
            self.fire_special(RELEASE_DOMAIN)
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
            self.fire_special(RELEASE_DOMAIN)

    # -- accounting ------------------------------------------------------------
    def domain_memory(self, domid: int) -> int:
        """What cxenstored accounts to ``domid`` (the ``memory`` quota): the
        nodes it owns, its watches, its transactions' node copies."""
        memory = self.store.memory_of(domid)
        domain = self.domains.get(domid)
        conns = domain.conns if domain is not None and domid != 0 else self.conns.values()
        owned = self.watches.owned
        for conn in conns:
            if conn.domid == domid:
                memory += sum(len(w.path) + len(w.token) for w in owned(conn).values())
                # a transaction's node copies live in the TDB as
                # "<generation>/<path>", accounted to the transaction's owner
                for tx in conn.transactions.values():
                    memory += tx.memory
        return memory

    def domain_report(self, domid: int) -> bytes:
        """``CONTROL quota <domid>``: what the domain uses."""
        # any domain structure answers, introduced or not (one exists as soon
        # as a permission names a domain the hypervisor knows)
        domain = self.domains.get(domid)
        if domain is None:
            raise Fail(XsdError.ENOENT)
        memory = self.domain_memory(domid)
        guest = domid != 0
        lines = (
            ("nodes", self.store.node_counts.get(domid, 0)),
            ("watches", self.watches.count(domain.conns) if guest else 0),
            ("transactions", domain.transaction_count if guest else 0),
            ("outstanding", 0),
            ("memory", memory),
        )
        text = b"Domain %d:\n" % domid
        text += b"".join(b"%-16s: %8d\n" % (name.encode(), value) for name, value in lines)
        return text + b"\0"
