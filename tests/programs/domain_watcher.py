"""A memory-balancing daemon's skeleton, written for ``xen.lowlevel.xs``.

Watches domains come and go (``@introduceDomain``/``@releaseDomain``) with
tokens that are unhashable dataclasses, and expects ``read_watch`` to hand
back the very token object. On each event it lists ``/local/domain``, builds
paths from the names, reads each domain's name and memory target, and prints
the domains it manages (ids from FIRST on). After EVENTS events it exits.
Prints ``ERROR <errno> <strerror>`` and exits 3 when XenStore fails.

Usage: domain_watcher.py FIRST EVENTS
"""

import sys
from dataclasses import dataclass, field

from xen.lowlevel.xs import Error, xs


@dataclass
class Watch:  # eq=True and not frozen: unhashable, as real daemons' tokens are
    kind: str
    fired: list = field(default_factory=list)


def managed(handle, first):
    domains = handle.ls("", "/local/domain") or []
    out = []
    for domid in sorted(domains, key=int):
        if int(domid) < first:
            continue
        base = "/local/domain/" + domid
        name = handle.read("", base + "/name")
        target = handle.read("", base + "/memory/target")
        out.append(f"{domid}:{(name or b'?').decode()}:{(target or b'-').decode()}")
    return out


def main():
    first, events = int(sys.argv[1]), int(sys.argv[2])
    try:
        handle = xs()
        intro, release = Watch("intro"), Watch("release")
        handle.watch("@introduceDomain", intro)
        handle.watch("@releaseDomain", release)
        for _ in range(2):  # the initial event of each watch
            path, token = handle.read_watch()
            assert token is intro or token is release, token
        print("READY", flush=True)
        for _ in range(events):
            path, token = handle.read_watch()
            assert token is intro or token is release, token
            token.fired.append(path)
            print(token.kind, path, " ".join(managed(handle, first)), flush=True)
        handle.unwatch("@introduceDomain", intro)
        handle.unwatch("@releaseDomain", release)
        handle.close()
        print("fired", len(intro.fired), len(release.fired), flush=True)
    except Error as exc:
        print("ERROR", exc.args[0], exc.args[1], flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
