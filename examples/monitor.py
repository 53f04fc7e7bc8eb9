"""Watch XenStore paths and print every change, as ``xenstore-watch`` does.

    pyxs run -- python examples/monitor.py --demo

Watches each PATH (default ``/vm``) and prints the path of every event,
starting with the one each new watch fires at once; ``-v`` also prints the
value read when the event arrived. Stops after ``-n`` events, or on Ctrl-C.
``--demo`` makes a few changes from a second client once the watches are
set, so that there is something to see.
"""

from __future__ import annotations

import argparse
import sys
import threading

import pyxs


def demo_changes() -> None:
    """What another program might do meanwhile: create, change, remove."""
    with pyxs.Client() as c:
        c[b"/vm/demo/name"] = b"guest"
        c[b"/vm/demo/memory"] = b"512"
        c.set_perms(b"/vm/demo/memory", [b"n0", b"r5"])
        del c[b"/vm/demo"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=["/vm"], metavar="PATH")
    parser.add_argument("-n", "--number", type=int, help="stop after this many events")
    parser.add_argument("-v", "--value", action="store_true", help="print values too")
    parser.add_argument("--demo", action="store_true", help="make some changes to watch")
    args = parser.parse_args(argv)
    if args.demo and args.number is None:
        args.number = 5  # the initial event and the four demo changes

    with pyxs.Client() as c, c.monitor() as m:
        for path in args.paths:
            m.watch(path.encode(), b"monitor")  # one token: all events are ours
        print("watching " + " ".join(args.paths), flush=True)
        if args.demo:
            # Once the initial events are in: they come first, then the changes.
            for _ in args.paths:
                initial = m.next_event(timeout=5)
                assert initial is not None, "no initial event"
                print(initial.path.decode(), flush=True)
                args.number -= 1
            threading.Thread(target=demo_changes).start()
        seen = 0
        try:
            for event in m.wait():
                line = event.path.decode()
                if args.value:
                    try:
                        line += f" = {c.read(event.path)!r}"
                    except pyxs.NoEntryError:
                        line += " (removed)"
                print(line, flush=True)
                seen += 1
                if args.number is not None and seen >= args.number:
                    break
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
