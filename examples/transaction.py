"""Transactions with retries: concurrent increments that never lose an update.

    pyxs run -- python examples/transaction.py

Several threads, each with a client of its own, increment one counter. A
read-modify-write outside a transaction would lose updates; inside one, the
commit of a transaction that raced with another fails (EAGAIN) and is
retried. Shown twice: with ``Client.transact``, which retries for you, and
with an explicit ``transaction()`` / ``commit()`` loop.
"""

from __future__ import annotations

import sys
import threading
from typing import Callable

import pyxs

THREADS = 4
INCREMENTS = 50
COUNTER = b"/example/counter"


def increment(client: pyxs.Client, path: bytes, attempts: list[int]) -> int:
    """The transaction's body: may run several times, so no side effects
    outside XenStore (the attempts counter is only for the report)."""
    attempts.append(1)
    value = int(client.read(path, b"0")) + 1
    client.write(path, b"%d" % value)
    return value


def with_transact(attempts: list[int]) -> None:
    with pyxs.Client() as c:
        for _ in range(INCREMENTS):
            c.transact(increment, COUNTER, attempts, retries=1000)


def by_hand(attempts: list[int]) -> None:
    with pyxs.Client() as c:
        for _ in range(INCREMENTS):
            while True:
                c.transaction()
                try:
                    increment(c, COUNTER, attempts)
                except BaseException:
                    c.rollback()
                    raise
                if c.commit():  # False: it conflicted, nothing was applied
                    break


def run(worker: Callable[[list[int]], None], title: str) -> None:
    with pyxs.Client() as c:
        c[COUNTER] = b"0"
        attempts: list[int] = []
        threads = [threading.Thread(target=worker, args=(attempts,)) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = THREADS * INCREMENTS
        print(f"{title}: counter = {int(c[COUNTER])} (expected {total})")
        print(f"{title}: {len(attempts) - total} conflicts retried")


def main() -> int:
    run(with_transact, "transact()")
    run(by_hand, "by hand")
    with pyxs.Client() as c:
        del c[b"/example"]
    return 0


if __name__ == "__main__":
    sys.exit(main())
