"""One script of xen.lowlevel.xs calls, run against Xen's own binding and
against ``pyxs.xs`` so that test_compat.py can compare the two transcripts.

``python xs_scenario.py BASE DOMID`` runs it with ``xen.lowlevel.xs`` (found
on PYTHONPATH, talking to $XENSTORED_PATH) and prints the transcript as JSON.
"""

from __future__ import annotations

import json
import select
import sys
import time
from typing import Any


def scenario(module: Any, base: str, domid: int) -> list[Any]:
    """Run the calls; return a JSON-able transcript with ``base`` as BASE."""
    out: list[Any] = []

    def norm(value: Any) -> Any:
        if isinstance(value, bytes):
            return ["bytes", value.replace(base.encode(), b"BASE").decode("latin-1")]
        if isinstance(value, str):
            return value.replace(base, "BASE")
        if isinstance(value, (list, tuple)):
            return [norm(v) for v in value]
        return value

    def call(name: str, fn: Any, *args: Any) -> Any:
        try:
            result = fn(*args)
        except Exception as exc:
            out.append([name, "raised", isinstance(exc, RuntimeError), list(exc.args), str(exc)])
            return None
        out.append([name, norm(result)])
        return result

    x = module.xs()
    y = module.xs()
    p = base + "/node"
    call("read missing", x.read, "", p)
    call("write bytes", x.write, "", p, b"v\x00\xff")
    call("read", x.read, "", p)
    call("write str", x.write, "", p + "/s", "text")
    call("read str value", x.read, "", p + "/s")
    call("write empty", x.write, "", p + "/e", b"")
    call("read empty", x.read, "", p + "/e")
    call("ls", x.ls, "", p)
    call("ls leaf", x.ls, "", p + "/e")
    call("ls missing", x.ls, "", base + "/nope")
    call("mkdir", x.mkdir, "", p + "/m/n")
    call("mkdir existing", x.mkdir, "", p)
    call("read after mkdir", x.read, "", p)
    call("rm missing", x.rm, "", p + "/zz")
    call("rm missing parent", x.rm, "", base + "/nope/deeper")
    call("rm", x.rm, "", p + "/m")
    call("ls after rm", x.ls, "", p)
    call("read bad path", x.read, "", "bad path")
    call("read special path", x.read, "", "@introduceDomain")
    call("write bad path", x.write, "", p + "/a b", b"")

    call("get_permissions", x.get_permissions, "", p)
    call("get_permissions missing", x.get_permissions, "", base + "/nope")
    call("set_permissions", x.set_permissions, "", p, [{"dom": 0}, {"dom": 5, "read": 1}])
    call("get_permissions after", x.get_permissions, "", p)
    call("set_permissions dom0 owner forced", x.set_permissions, "", p, [{"dom": 3, "read": 1}])
    call("get_permissions forced", x.get_permissions, "", p)
    call("set_permissions all", x.set_permissions, "", p, [{"dom": 0, "read": True, "write": True}])
    call("get_permissions all", x.get_permissions, "", p)
    big = [{"dom": 0}, {"dom": 999999, "write": 1}]  # no domain: kept, as the server keeps it
    call("set_permissions big domid", x.set_permissions, "", p, big)
    call("get_permissions big domid", x.get_permissions, "", p)
    call("set_permissions special path", x.set_permissions, "", "@releaseDomain", [{"dom": 0}])
    call("set_permissions not a list", x.set_permissions, "", p, ({"dom": 0},))
    call("set_permissions missing node", x.set_permissions, "", base + "/nope", [{"dom": 0}])

    t = call("transaction_start", x.transaction_start)
    call("write in tx", x.write, t, p + "/t", b"tx")
    call("read in tx", x.read, t, p + "/t")
    call("read outside tx", x.read, "", p + "/t")
    call("ls in tx", x.ls, t, p)
    call("transaction_end", x.transaction_end, t)
    call("read committed", x.read, "", p + "/t")
    call("transaction_end again", x.transaction_end, t)
    t = call("transaction_start 2", x.transaction_start)
    call("write in tx 2", x.write, t, p + "/t", b"aborted")
    call("transaction_end abort", x.transaction_end, t, 1)
    call("read after abort", x.read, "", p + "/t")
    t = call("transaction_start 3", x.transaction_start)
    call("read in tx 3", x.read, t, p + "/t")
    call("conflicting write", y.write, "", p + "/t", b"other")
    call("write in tx 3", x.write, t, p + "/t", b"mine")
    call("transaction_end conflict", x.transaction_end, t)
    call("read after conflict", x.read, "", p + "/t")

    call("get_domain_path", x.get_domain_path, 5)
    call("introduce_domain", x.introduce_domain, domid, 1, 4)
    call("resume_domain", x.resume_domain, domid)
    call("set_target", x.set_target, domid, 0)
    call("release_domain", x.release_domain, domid)
    call("release_domain unknown", x.release_domain, domid)
    call("resume_domain unknown", x.resume_domain, 0x7FEF)
    call("set_target unknown", x.set_target, 0x7FEF, 0x7FEE)

    token = object()
    call("check_watch empty", x.check_watch)
    call("watch", x.watch, p, token)
    event = x.read_watch()
    out.append(["read_watch initial", norm(event[0]), event[1] is token])
    call("check_watch nothing", x.check_watch)
    call("write watched", y.write, "", p + "/w", b"")
    event = None
    deadline = time.monotonic() + 30  # a hang guard: the event comes soon
    while event is None and time.monotonic() < deadline:
        event = x.check_watch()
        time.sleep(0.001)
    out.append(["check_watch event", norm(event[0]), event[1] is token])
    call("watch str token", x.watch, p + "/w", "str-token")
    out.append(["read_watch str token", norm(x.read_watch())])
    call("watch same token twice", x.watch, p + "/w", "str-token")
    fd = x.fileno()
    out.append(["fileno is an int", isinstance(fd, int)])
    ready, _, _ = select.select([fd], [], [], 0.2)
    out.append(["fileno idle", ready])
    call("write watched again", y.write, "", p + "/w/x", b"")
    ready, _, _ = select.select([fd], [], [], 5)
    out.append(["fileno readable", ready == [fd]])
    events = []
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:
        event = x.check_watch()
        if event is None:
            select.select([fd], [], [], 0.5)
            continue
        events.append([norm(event[0]), event[1] is token or event[1]])
    out.append(["check_watch both", sorted(events, key=str)])
    call("check_watch drained", x.check_watch)
    call("unwatch", x.unwatch, p, token)
    call("unwatch str token", x.unwatch, p + "/w", "str-token")
    call("unwatch unknown", x.unwatch, p, token)
    call("write unwatched", y.write, "", p + "/w/y", b"")
    time.sleep(0.2)  # not a synchronisation: a chance for a wrong event to show
    call("check_watch after unwatch", x.check_watch)

    call("close", x.close)
    call("read after close", x.read, "", p)
    call("close again", x.close)
    y.close()
    return out


if __name__ == "__main__":
    import xen.lowlevel.xs as xs_module

    print(json.dumps(scenario(xs_module, sys.argv[1], int(sys.argv[2]))))
