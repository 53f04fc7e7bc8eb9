"""A udev-style hotplug script, written for ``xen.lowlevel.xs``: one process
per event, relative paths (under the caller's own domain path), transactions
retried on conflict.

Usage: device_script.py ACTION DEVID [pause]
  add:    in one transaction, read the backend's state and the frontend's
          parameters, write the backend's ``hotplug-status`` and ``state``;
  remove: in one transaction, remove the backend's node.
With ``pause`` it reads a line from stdin between its first and second
XenStore call (a daemon killed meanwhile fails the second). Prints what it
did; ``ERROR <errno> <strerror>`` and exit 3 when XenStore fails.
"""

import sys

from xen.lowlevel.xs import Error, xs


def add(handle, devid):
    backend = f"backend/vif/{devid}"
    while True:
        t = handle.transaction_start()
        state = handle.read(t, backend + "/state")
        mac = handle.read(t, backend + "/mac")
        handle.write(t, backend + "/hotplug-status", b"connected")
        handle.write(t, backend + "/state", b"4")
        if handle.transaction_end(t):
            break
    print("add", devid, state, mac, handle.ls("", backend), flush=True)


def remove(handle, devid):
    backend = f"backend/vif/{devid}"
    while True:
        t = handle.transaction_start()
        existed = handle.ls(t, backend) is not None
        handle.rm(t, backend)
        if handle.transaction_end(t):
            break
    print("remove", devid, existed, handle.read("", backend + "/state"), flush=True)


def main():
    action, devid = sys.argv[1], sys.argv[2]
    pause = sys.argv[3:] == ["pause"]
    try:
        handle = xs()
        home = handle.get_domain_path(0)
        print("home", home, flush=True)
        if pause:
            print("PAUSED", flush=True)
            sys.stdin.readline()
        if action == "add":
            add(handle, devid)
        else:
            remove(handle, devid)
        handle.close()
    except Error as exc:
        print("ERROR", exc.args[0], exc.args[1], flush=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
