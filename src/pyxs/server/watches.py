"""The watch registry: which watches an event reaches, in which order.

Theory of operation
-------------------
Watches are indexed by their (canonical) path. A change of node ``P``
reaches the watches on ``P`` and on every ancestor of ``P`` up to ``/``, so
dispatch looks up ``P``, its parent, ... ``/``: it costs the depth of ``P``
plus the watches that match, not the number of watches. Some events match
exactly only: the descendants of a removed subtree, and the special
``@introduceDomain`` / ``@releaseDomain`` events (a watch on ``/`` does not
see those).

**Order.** cxenstored walks its connections in creation order and, for
each, its watches in creation order. Every watch carries the key
``(connection sequence, watch sequence)`` and each per-path list is kept
sorted by it, so the matches of one path are in order and the matches of
several paths are merged by a sort of the (few) hits.

Permission filtering and relative event paths are applied by the caller
(:meth:`pyxs.server.core.XenStore.fire`), once per connection.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .core import Connection

__all__ = ["Watch", "WatchRegistry"]


class Watch:
    """One registered watch."""

    __slots__ = ("conn", "cut", "order", "path", "tail", "token")

    def __init__(self, conn: Connection, path: bytes, token: bytes, cut: int, seq: int) -> None:
        self.conn = conn
        #: the canonical path (absolute, or ``@...``)
        self.path = path
        self.token = token
        #: for a relative watch, how many bytes of an event path to drop
        self.cut = cut
        #: ``b"\\0<token>\\0"``: what follows the path in an event
        self.tail = b"\0" + token + b"\0"
        self.order = (conn.seq << 32) | seq

    def __lt__(self, other: Watch) -> bool:
        return self.order < other.order

    def __repr__(self) -> str:
        return f"Watch({self.path!r}, {self.token!r}, conn={self.conn.seq})"


def _order(watch: Watch) -> int:
    return watch.order


class WatchRegistry:
    """All watches of all connections, indexed by path."""

    __slots__ = ("by_path", "seq")

    def __init__(self) -> None:
        self.by_path: dict[bytes, list[Watch]] = {}
        self.seq = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_path.values())

    def add(self, conn: Connection, path: bytes, token: bytes, cut: int) -> Watch:
        self.seq += 1
        watch = Watch(conn, path, token, cut, self.seq)
        bucket = self.by_path.get(path)
        if bucket is None:
            self.by_path[path] = [watch]
        elif bucket[-1].order < watch.order:
            bucket.append(watch)
        else:
            bisect.insort(bucket, watch)
        return watch

    def remove(self, watch: Watch) -> None:
        bucket = self.by_path.get(watch.path)
        if bucket is None:
            return
        try:
            bucket.remove(watch)
        except ValueError:
            return
        if not bucket:
            del self.by_path[watch.path]

    def matches(self, path: bytes, exact: bool) -> Sequence[Watch]:
        """The watches an event on ``path`` reaches, in delivery order."""
        by_path = self.by_path
        if not by_path:
            return ()
        hits = by_path.get(path)
        if exact or path[:1] == b"@":
            return hits or ()
        result: list[Watch] | None = None
        name = path
        while name != b"/":
            cut = name.rfind(b"/")
            name = name[:cut] if cut > 0 else b"/"
            more = by_path.get(name)
            if more:
                if hits is None:
                    hits = more
                else:
                    if result is None:
                        result = list(hits)
                    result.extend(more)
        if result is None:
            return hits or ()
        result.sort(key=_order)
        return result
