"""One pyxs.Client shared by many greenlets, under gevent or eventlet.

    pyxs run -- python examples/greenlets.py gevent
    pyxs run -- python examples/greenlets.py eventlet

Monkey-patch first, then import pyxs: the client then blocks greenlets, not
the process, and its per-thread state (the current transaction) is per
greenlet. A hundred greenlets write and read through one client while a
monitor greenlet counts the events.

(Each greenlet writes its own node in a transaction of its own. The nodes
are made beforehand: transactions that each add a child to the same parent
would conflict, since adding a child changes the parent.)
"""

from __future__ import annotations

import sys
from typing import Any

LIBRARY = sys.argv[1] if len(sys.argv) > 1 else "gevent"
if LIBRARY == "gevent":
    from gevent import monkey

    monkey.patch_all()
    import gevent

    def spawn(fn: Any, *args: Any) -> Any:
        return gevent.spawn(fn, *args)

    def join(greenlets: Any) -> None:
        gevent.joinall(greenlets, raise_error=True)

elif LIBRARY == "eventlet":
    import warnings

    with warnings.catch_warnings():  # eventlet >= 0.36 warns that it is deprecated
        warnings.simplefilter("ignore")
        import eventlet

    eventlet.monkey_patch()

    def spawn(fn: Any, *args: Any) -> Any:
        return eventlet.spawn(fn, *args)

    def join(greenlets: Any) -> None:
        for g in greenlets:
            g.wait()

else:
    sys.exit(f"usage: {sys.argv[0]} gevent|eventlet")

import pyxs  # noqa: E402 - after monkey-patching, on purpose

GREENLETS = 100


def main() -> int:
    with pyxs.Client() as c, c.monitor() as m:
        # Created first: transactions that add children to one parent
        # conflict with each other (the parent changes), as in xenstored.
        for i in range(GREENLETS):
            c.mkdir(b"/greenlets/%d" % i)
        m.watch(b"/greenlets", b"g")
        assert m.next_event(timeout=5) == (b"/greenlets", b"g")  # the initial event
        events = []

        def count_events() -> None:
            for event in m.wait(timeout=5):
                events.append(event)
                if len(events) == GREENLETS:
                    return

        def work(i: int) -> bytes:
            path = b"/greenlets/%d" % i
            # Each greenlet has its own transaction on the shared client.
            c.transact(lambda t: t.write(path, b"written by greenlet %d" % i))
            return c.read(path)

        listener = spawn(count_events)
        workers = [spawn(work, i) for i in range(GREENLETS)]
        join(workers)
        join([listener])
        values = [w.value if LIBRARY == "gevent" else w.wait() for w in workers]
        assert values == [b"written by greenlet %d" % i for i in range(GREENLETS)]
        print(f"{LIBRARY}: {GREENLETS} greenlets shared one client")
        print(f"{LIBRARY}: {len(c.list(b'/greenlets'))} nodes written, {len(events)} events seen")
        del c[b"/greenlets"]
    return 0


if __name__ == "__main__":
    sys.exit(main())
