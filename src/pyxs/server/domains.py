"""Domains, quotas, and who may do what.

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

Permission rule (``perm_for_conn``): privileged callers (dom0) get
everything; the owner, or a domain whose SET_TARGET names the owner, gets
everything; otherwise the first entry naming the caller (or its target)
applies; otherwise the owner entry's letter applies to everyone.

Quotas (:class:`Quotas`) apply to unprivileged domains only, with the
defaults and option names of cxenstored 4.17.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from .store import PERM_IGNORE, PERM_OWNER, PERM_READ, PERM_WRITE, Perms, Requester, Store

if TYPE_CHECKING:
    from .core import Connection

__all__ = [
    "DOMAIN_STATES",
    "DOMID_SELF",
    "Domain",
    "Domains",
    "Quotas",
    "SoftQuotas",
]

_ALL = PERM_READ | PERM_WRITE | PERM_OWNER

#: ``DOMID_SELF``: IS_DOMAIN_INTRODUCED always says T for it.
DOMID_SELF = 0x7FF0

#: Domain states :meth:`Domains.set_state` understands (the shim's words).
DOMAIN_STATES = ("running", "shutdown", "crashed", "dying", "gone")


class Quotas:
    """Hard quotas for unprivileged domains (cxenstored 4.17 defaults).

    The attribute names are the ``CONTROL quota`` names with ``-`` as
    ``_``. Command-line equivalents: ``-E`` nodes, ``-W`` watches, ``-t``
    transactions, ``-A`` permissions, ``-S`` node_size, ``-M`` path_max,
    ``-Q name=value`` any of them.
    """

    __slots__ = (
        "memory",
        "node_size",
        "nodes",
        "outstanding",
        "path_max",
        "permissions",
        "transaction_nodes",
        "transactions",
        "watches",
    )

    #: (name, description) in the order ``CONTROL quota`` lists them.
    DESCRIPTIONS = (
        ("nodes", "Nodes per domain"),
        ("watches", "Watches per domain"),
        ("transactions", "Transactions per domain"),
        ("outstanding", "Outstanding requests per domain"),
        ("transaction-nodes", "Max. number of accessed nodes per transaction"),
        ("memory", "Total Xenstore memory per domain (error level)"),
        ("node-size", "Max. size of a node"),
        ("path-max", "Max. length of a node path"),
        ("permissions", "Max. number of permissions per node"),
    )

    def __init__(
        self,
        nodes: int = 1000,
        watches: int = 128,
        transactions: int = 10,
        outstanding: int = 20,
        transaction_nodes: int = 1024,
        memory: int = 2 * 1024 * 1024 + 512 * 1024,
        node_size: int = 2048,
        path_max: int = 2048,
        permissions: int = 5,
    ) -> None:
        self.nodes = nodes
        self.watches = watches
        self.transactions = transactions
        self.outstanding = outstanding
        self.transaction_nodes = transaction_nodes
        self.memory = memory
        self.node_size = node_size
        self.path_max = path_max
        self.permissions = permissions

    def get(self, name: str) -> int:
        return int(getattr(self, name.replace("-", "_")))

    def set(self, name: str, value: int) -> bool:
        """Set a quota by name (``node-size`` or ``node_size``); False if unknown."""
        attr = name.replace("-", "_")
        if attr not in self.__slots__:
            return False
        setattr(self, attr, value)
        return True

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__)
        return f"Quotas({args})"


class SoftQuotas:
    """Soft quotas: exceeding them is only logged."""

    __slots__ = ("memory",)

    DESCRIPTIONS = (("memory", "Total Xenstore memory per domain (warning level)"),)

    def __init__(self, memory: int = 2 * 1024 * 1024) -> None:
        self.memory = memory

    def get(self, name: str) -> int:
        return int(getattr(self, name))

    def set(self, name: str, value: int) -> bool:
        if name != "memory":
            return False
        self.memory = value
        return True


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
        self.conns: list[Connection] = []
        #: domains whose SET_TARGET named this one (each holds a reference
        #: that keeps this domain's connection alive, as talloc does)
        self.holders: list[int] = []
        #: the hypervisor killed it while a reference held it: no connection
        self.detached = False

    @property
    def watch_count(self) -> int:
        return sum(len(c.watches) for c in self.conns)

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
        store.domains = self

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

    # -- permissions -------------------------------------------------------
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

    def perm_for(self, who: Requester, perms: Perms, gen: int) -> int:
        """``perm_for_conn`` for an unprivileged caller."""
        entries = perms.entries
        owner = entries[0][1]
        if owner != 0 and not self.valid(owner, gen):
            owner = 0
        domid = who.domid
        target = who.target
        if owner == domid or (target is not None and owner == target):
            return _ALL
        for bits, entry_domid in entries[1:]:
            if (
                not bits & PERM_IGNORE
                and (entry_domid == domid or (target is not None and entry_domid == target))
                and self.valid(entry_domid, gen)
            ):
                return bits
        return entries[0][0]

    def adjust(self, perms: Perms, gen: int) -> Perms:
        """``domain_adjust_node_perms``: the entries (not the owner's) of
        domains gone or younger than a node read at generation ``gen`` get
        :data:`PERM_IGNORE`; written back, the mark stays for good, so a
        later domain with that domid never inherits them (XSA-322)."""
        entries = perms.entries
        changed = False
        adjusted = [entries[0]]
        for bits, domid in entries[1:]:
            if not bits & PERM_IGNORE and not self.valid(domid, gen):
                bits |= PERM_IGNORE
                changed = True
            adjusted.append((bits, domid))
        return Perms.get(tuple(adjusted)) if changed else perms

    def parsed(self, perms: Perms) -> Perms:
        """``domain_alloc_permrefs``: SET_PERMS entries for domains neither
        xenstored nor the hypervisor knows are ignored from the start."""
        entries = perms.entries
        if all(self.exists(domid) for _bits, domid in entries):
            return perms
        return Perms.get(
            tuple(
                (bits if self.exists(domid) else bits | PERM_IGNORE, domid)
                for bits, domid in entries
            )
        )

    def displayed(self, perms: Perms, gen: int) -> bytes:
        """GET_PERMS payload: an owner that no longer exists reads as dom0."""
        owner = perms.owner
        if owner == 0 or self.valid(owner, gen):
            return perms.wire
        return perms.with_owner(0).wire
