"""A guest agent, written for ``xen.lowlevel.xs`` (and run inside a guest):
relative paths only (they name the guest's own ``/local/domain/<id>``).

It reports its version, reads what the toolstack gave it, then waits for a
``control/shutdown`` request through a watch, acknowledges it by clearing
the node and exits. Prints what it saw; ``ERROR <errno> <strerror>`` and
exit 3 when XenStore fails.
"""

import sys

from xen.lowlevel.xs import Error, xs


def main():
    try:
        handle = xs()
        handle.write("", "data/agent-version", b"1.0")
        print("name", handle.read("", "name"), flush=True)
        print("target", handle.read("", "memory/target"), flush=True)
        print("missing", handle.read("", "data/nothing"), flush=True)
        print("data", handle.ls("", "data"), flush=True)
        try:
            handle.write("", "/local/domain/0/steal", b"x")
            print("wrote outside its home", flush=True)
        except Error as exc:
            print("refused", exc.args[0], exc.args[1], flush=True)
        token = ["shutdown"]  # a list: unhashable, and returned as itself
        handle.watch("control/shutdown", token)
        path, got = handle.read_watch()  # the initial event
        print("watching", path, got is token, flush=True)
        print("READY", flush=True)
        while True:
            path, got = handle.read_watch()
            assert got is token
            request = handle.read("", "control/shutdown")
            print("event", path, request, flush=True)
            if request:
                handle.write("", "control/shutdown", b"")
                break
        handle.close()
        print("done", request.decode(), flush=True)
    except Error as exc:
        print("ERROR", exc.args[0], exc.args[1], flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
