"""An asyncio watcher: wait for several guests to come up, concurrently.

    pyxs run -- python examples/async_watch.py

Three simulated guests step through their boot states under
``/vm/<name>/state`` at their own pace, all on one AsyncClient. For each, a
task waits until its state reads ``running``: it watches the node, and reads
it again on every event (events say *that* something changed; the value read
is what counts). ``asyncio.wait_for`` bounds the whole wait.
"""

from __future__ import annotations

import asyncio
import sys

import pyxs
from pyxs.aio import AsyncClient, AsyncTransaction

GUESTS = {b"alpha": 0.03, b"beta": 0.01, b"gamma": 0.02}  # seconds between steps
STATES = [b"created", b"booting", b"running"]


async def wait_for_value(c: AsyncClient, path: bytes, wanted: bytes) -> int:
    """Return once the node at ``path`` holds ``wanted``; how many events it took."""
    async with c.monitor() as m:
        await m.watch(path, b"wait")  # fires once at once: the current value counts
        events = 0
        async for _event in m:
            events += 1
            if await c.read(path, b"") == wanted:
                return events
    raise AssertionError("unreachable: the monitor ended")


async def guest(c: AsyncClient, name: bytes, pause: float) -> None:
    """A guest stepping through its states, each step one transaction."""

    async def step(t: AsyncTransaction, state: bytes) -> None:
        await t.write(b"/vm/%s/state" % name, state)
        await t.write(b"/vm/%s/state-changes" % name, b"%d" % (STATES.index(state) + 1))

    for state in STATES:
        await asyncio.sleep(pause)
        # transact() retries on conflict: two guests creating their first
        # nodes at once both change /vm, and one of the commits conflicts.
        await c.transact(step, state)


async def main() -> int:
    async with pyxs.AsyncClient() as c:
        waiters = [
            asyncio.create_task(wait_for_value(c, b"/vm/%s/state" % name, b"running"))
            for name in GUESTS
        ]
        await asyncio.sleep(0)  # the watches are sent before any guest moves
        guests = [asyncio.create_task(guest(c, name, pause)) for name, pause in GUESTS.items()]
        try:
            await asyncio.wait_for(asyncio.gather(*waiters, *guests), timeout=60)
        except asyncio.TimeoutError:
            print("timed out", file=sys.stderr)
            return 1
        for name in GUESTS:
            changes = await c.read(b"/vm/%s/state-changes" % name)
            print(f"{name.decode()}: running after {changes.decode()} state changes")
        print(f"all {len(GUESTS)} guests are running")
        for name in GUESTS:  # only what this program made
            await c.delete(b"/vm/%s" % name)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
