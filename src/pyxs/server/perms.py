"""Who may do what: cxenstored's permission rule, in one place.

Theory of operation
-------------------
A node carries a :class:`Perms`: a list of ``(bits, domid)`` entries. The
first entry names the *owner*; its bits are what every domain not listed
gets. ``bits`` is :data:`PERM_READ` and/or :data:`PERM_WRITE` (the letters
``n r w b`` of :func:`pyxs.paths.perm_entry`), plus :data:`PERM_IGNORE` on
an entry that no longer counts.

The rule (``perm_for_conn`` in ``xenstored_core.c``), :func:`perm_for`:

1. a privileged caller (dom0) gets everything;
2. the owner gets everything, and so does a domain whose SET_TARGET names
   the owner;
3. otherwise the first entry (after the owner's) naming the caller or its
   target, unless marked :data:`PERM_IGNORE`, gives its bits;
4. otherwise the owner entry's bits apply.

**Domain generations.** An entry (or the owner) counts only if its domain
existed when the node was last written: a domain records the global
generation at its creation, and a node written before then does not grant
it anything (``chk_domain_generation``; XSA-322). The domain table
(:class:`DomainTable`, implemented by :class:`~pyxs.server.domains.Domains`)
answers that question; this module only applies it. An owner that does not
count reads as dom0 (:func:`owner_of`). Entries that do not count are marked
:data:`PERM_IGNORE` when a node is read or written (:func:`adjust`), and
stay marked for good; SET_PERMS marks those naming unknown domains from the
start (:func:`admitted`). GET_PERMS still lists ignored entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

from ..paths import format_perm, perm_entry

__all__ = [
    "PERMS_N0",
    "PERM_ALL",
    "PERM_IGNORE",
    "PERM_NONE",
    "PERM_OWNER",
    "PERM_READ",
    "PERM_WRITE",
    "Perms",
    "adjust",
    "admitted",
    "displayed",
    "owner_of",
    "perm_for",
]

PERM_NONE = 0
PERM_READ = 1
PERM_WRITE = 2
PERM_OWNER = 4
#: ``XS_PERM_IGNORE``: an entry for a domain that did not exist (or was
#: younger than the node) when the node was read or written. It stays on the
#: node for good and grants nothing; GET_PERMS still lists the entry.
PERM_IGNORE = 8
PERM_ALL = PERM_READ | PERM_WRITE | PERM_OWNER


class Perms:
    """A node's permission list, immutable and interned (shared by nodes).

    ``entries`` is a tuple of ``(bits, domid)``; ``domid`` is the C
    ``unsigned int`` the real daemon stores. ``wire`` is the GET_PERMS
    payload (``b"n0\\0r5\\0"``): ids print as C ``%i`` (``r-1`` for
    4294967295), as cxenstored prints them.
    """

    __slots__ = ("entries", "owner", "wire")

    _interned: ClassVar[dict[tuple[tuple[int, int], ...], Perms]] = {}

    def __init__(self, entries: tuple[tuple[int, int], ...]) -> None:
        self.entries = entries
        self.owner = entries[0][1]
        self.wire = b"".join(
            format_perm(bits & ~PERM_IGNORE, domid) + b"\0" for bits, domid in entries
        )

    @classmethod
    def get(cls, entries: tuple[tuple[int, int], ...]) -> Perms:
        perms = cls._interned.get(entries)
        if perms is None:
            if len(cls._interned) > 4096:
                cls._interned.clear()
            perms = cls._interned[entries] = cls(entries)
        return perms

    def with_owner(self, domid: int) -> Perms:
        if self.owner == domid:
            return self
        return Perms.get(((self.entries[0][0], domid), *self.entries[1:]))

    @staticmethod
    def parse(strings: list[bytes]) -> Perms | None:
        """``xs_strings_to_perms``: None if an entry is not one (EINVAL)."""
        entries = []
        for item in strings:
            entry = perm_entry(item, strict=True)
            if entry is None:
                return None
            entries.append(entry)
        return Perms.get(tuple(entries))

    def __repr__(self) -> str:
        return f"Perms({self.wire!r})"


#: Every node starts with the permissions ``n0``.
PERMS_N0 = Perms.get(((PERM_NONE, 0),))


if TYPE_CHECKING:  # for annotations only: no class at run time

    class Requester(Protocol):
        """Who is asking: what the rule needs to know of a connection."""

        @property
        def domid(self) -> int: ...

        @property
        def privileged(self) -> bool: ...

        @property
        def target(self) -> int | None: ...

    class DomainTable(Protocol):
        """Which domains count (:class:`~pyxs.server.domains.Domains`)."""

        def valid(self, domid: int, gen: int) -> bool:
            """Does an entry for ``domid`` count on a node written at ``gen``?"""

        def exists(self, domid: int) -> bool:
            """Is ``domid`` known to xenstored or to the hypervisor?"""


def owner_of(owner: int, gen: int, domains: DomainTable | None) -> int:
    """The owner of a node written at ``gen`` as it counts: dom0 once the
    owner is gone."""
    if owner == 0 or domains is None or domains.valid(owner, gen):
        return owner
    return 0


def perm_for(who: Requester, perms: Perms, gen: int, domains: DomainTable | None) -> int:
    """``perm_for_conn``: the bits ``who`` has on a node with ``perms``
    written at generation ``gen``."""
    if who.privileged or domains is None:
        return PERM_ALL
    entries = perms.entries
    owner = entries[0][1]
    if owner != 0 and not domains.valid(owner, gen):
        owner = 0  # owner_of() inline: this runs for every guest request
    domid = who.domid
    target = who.target
    if owner == domid or (target is not None and owner == target):
        return PERM_ALL
    for bits, entry_domid in entries[1:]:
        if (
            not bits & PERM_IGNORE
            and (entry_domid == domid or (target is not None and entry_domid == target))
            and domains.valid(entry_domid, gen)
        ):
            return bits
    return entries[0][0]


def adjust(perms: Perms, gen: int, domains: DomainTable | None) -> Perms:
    """``domain_adjust_node_perms``: the entries (not the owner's) of
    domains gone or younger than a node read at generation ``gen`` get
    :data:`PERM_IGNORE`; written back, the mark stays for good, so a later
    domain with that domid never inherits them (XSA-322)."""
    if domains is None:
        return perms
    entries = perms.entries
    changed = False
    adjusted = [entries[0]]
    for bits, domid in entries[1:]:
        if not bits & PERM_IGNORE and not domains.valid(domid, gen):
            bits |= PERM_IGNORE
            changed = True
        adjusted.append((bits, domid))
    return Perms.get(tuple(adjusted)) if changed else perms


def admitted(perms: Perms, domains: DomainTable) -> Perms:
    """``domain_alloc_permrefs``: SET_PERMS entries for domains neither
    xenstored nor the hypervisor knows are ignored from the start."""
    entries = perms.entries
    if all(domains.exists(domid) for _bits, domid in entries):
        return perms
    return Perms.get(
        tuple(
            (bits if domains.exists(domid) else bits | PERM_IGNORE, domid)
            for bits, domid in entries
        )
    )


def displayed(perms: Perms, gen: int, domains: DomainTable | None) -> bytes:
    """GET_PERMS payload: an owner that no longer exists reads as dom0."""
    owner = owner_of(perms.owner, gen, domains)
    return perms.wire if owner == perms.owner else perms.with_owner(owner).wire
