"""A split device driver's XenBus handshake, between dom0 and a guest domain.

Xen's paravirtual devices (network, disk, console...) have two halves: a
*backend* in dom0 (or a driver domain) and a *frontend* in the guest. They
find each other and agree on shared rings through XenStore:

* the toolstack introduces the domain, then writes the frontend directory
  ``/local/domain/<guest>/device/vif/<n>`` (owned by the guest) and the
  backend directory ``/local/domain/0/backend/vif/<guest>/<n>`` (owned by
  dom0, readable by the guest), each naming the other;
* both halves publish their progress in a ``state`` node (XenbusState:
  1 Initialising, 2 InitWait, 3 Initialised, 4 Connected, 5 Closing,
  6 Closed) and watch the other's;
* the frontend publishes its ring reference and event channel before it
  says Initialised; the backend reads them, connects, and says Connected.

Here all three parties run in one process: the toolstack in the main thread,
the backend in a thread, and the frontend in another thread that talks to
XenStore *as domain 5*, through the guest socket the embedded server opens
when a domain is introduced. Run it with a throwaway server:

    pyxs run -- python examples/split_driver.py
"""

from __future__ import annotations

import os
import threading

import pyxs

GUEST = 5
DEVICE = 0
FRONTEND = b"/local/domain/%d/device/vif/%d" % (GUEST, DEVICE)
BACKEND = b"/local/domain/0/backend/vif/%d/%d" % (GUEST, DEVICE)
STATES = {
    b"1": "Initialising",
    b"2": "InitWait",
    b"3": "Initialised",
    b"4": "Connected",
    b"5": "Closing",
    b"6": "Closed",
}
TIMEOUT = 10.0


def state_name(value: bytes) -> str:
    return STATES.get(value, repr(value))


def guest_socket_path(domid: int) -> str:
    """Where the embedded server accepts connections acting as ``domid``.

    ``pyxs run`` and ``pyxs serve`` keep guest sockets (``domain-<domid>.sock``)
    in their run directory, which by default holds the dom0 socket too. With
    a :class:`pyxs.server.Server` object, use ``server.guest_socket_path(domid)``.
    """
    dom0_socket = os.environ["XENSTORED_PATH"]
    return os.path.join(os.path.dirname(dom0_socket), f"domain-{domid}.sock")


def wait_for(client: pyxs.Client, path: bytes, *wanted: bytes) -> bytes:
    """Block until the node at ``path`` holds one of ``wanted``; return it.

    The watch fires once at once, so a value that is there already counts;
    after that, every event is a reason to read the node again.
    """
    with client.monitor() as monitor:
        monitor.watch(path, b"wait")
        for _event in monitor.wait(timeout=TIMEOUT):
            value = client.read(path, b"")
            if value in wanted:
                return value
    raise TimeoutError(f"{path.decode()} never became {wanted}")


def toolstack_setup(dom0: pyxs.Client) -> None:
    """What a toolstack (libxl) writes before the guest boots."""

    def write_device(c: pyxs.Client) -> None:
        home = dom0.get_domain_path(GUEST)
        c.mkdir(home)
        c.set_perms(home, [b"n0", b"r%d" % GUEST])  # the guest may read its home
        c.write(FRONTEND + b"/backend", BACKEND)
        c.write(FRONTEND + b"/backend-id", b"0")
        c.write(FRONTEND + b"/state", b"1")
        c.set_perms(FRONTEND, [b"n%d" % GUEST, b"r0"])  # the guest owns its frontend
        for node in (b"backend", b"backend-id", b"state"):
            c.set_perms(FRONTEND + b"/" + node, [b"n%d" % GUEST, b"r0"])
        c.write(BACKEND + b"/frontend", FRONTEND)
        c.write(BACKEND + b"/frontend-id", b"%d" % GUEST)
        c.write(BACKEND + b"/online", b"1")
        c.write(BACKEND + b"/state", b"1")
        for node in (b"", b"/frontend", b"/frontend-id", b"/online", b"/state"):
            c.set_perms(BACKEND + node, [b"n0", b"r%d" % GUEST])  # the guest may read

    # The domain must exist before permissions can name it.
    dom0.introduce_domain(GUEST, 0xFEFFF, 15)  # domid, ring page (mfn), event channel
    dom0.transact(write_device)  # all or nothing, as libxl does
    print(f"toolstack: domain {GUEST} introduced, vif {DEVICE} set up")
    print(f"toolstack:   frontend {FRONTEND.decode()}")
    print(f"toolstack:   backend  {BACKEND.decode()}")


def backend(dom0: pyxs.Client) -> None:
    """netback's side, in dom0."""
    frontend = dom0.read(BACKEND + b"/frontend")
    state = dom0.read(frontend + b"/state")
    print(f"backend:  frontend is {state_name(state)}; -> InitWait")
    dom0.write(BACKEND + b"/state", b"2")

    wait_for(dom0, frontend + b"/state", b"3")
    ring_ref = dom0.read(frontend + b"/tx-ring-ref")
    channel = dom0.read(frontend + b"/event-channel")
    print(
        f"backend:  frontend is Initialised; maps ring {ring_ref.decode()}, "
        f"binds event channel {channel.decode()}; -> Connected"
    )
    dom0.write(BACKEND + b"/state", b"4")

    wait_for(dom0, frontend + b"/state", b"4")
    print(f"backend:  frontend is Connected: vif{GUEST}.{DEVICE} is up")
    dom0.write(BACKEND + b"/hotplug-status", b"connected")

    wait_for(dom0, BACKEND + b"/online", b"0")
    print("backend:  unplugged; -> Closing")
    dom0.write(BACKEND + b"/state", b"5")

    wait_for(dom0, frontend + b"/state", b"6")
    print("backend:  frontend is Closed; -> Closed")
    dom0.write(BACKEND + b"/state", b"6")


def frontend() -> None:
    """netfront's side, in the guest: a client acting as domain 5."""
    with pyxs.Client(unix_socket_path=guest_socket_path(GUEST)) as guest:
        here = b"device/vif/%d" % DEVICE  # relative: /local/domain/5/device/vif/0
        backend_path = guest.read(here + b"/backend")

        wait_for(guest, backend_path + b"/state", b"2")
        print(
            "frontend: backend is InitWait; publishes ring 8 and event channel 15; -> Initialised"
        )

        def publish(c: pyxs.Client) -> None:
            c.write(here + b"/tx-ring-ref", b"8")
            c.write(here + b"/event-channel", b"15")
            c.write(here + b"/state", b"3")

        guest.transact(publish)

        wait_for(guest, backend_path + b"/state", b"4")
        print("frontend: backend is Connected; -> Connected")
        guest.write(here + b"/state", b"4")

        wait_for(guest, backend_path + b"/state", b"5")
        print("frontend: backend is Closing; -> Closed")
        guest.write(here + b"/state", b"6")


def main() -> None:
    with pyxs.Client() as dom0:
        toolstack_setup(dom0)
        threads = [
            threading.Thread(target=backend, args=(pyxs.Client(router=dom0.router),)),
            threading.Thread(target=frontend),
        ]
        for thread in threads:
            thread.start()

        wait_for(dom0, BACKEND + b"/hotplug-status", b"connected")
        print(f"toolstack: vif {DEVICE} of domain {GUEST} is connected; unplugging it")
        dom0.write(BACKEND + b"/online", b"0")

        wait_for(dom0, BACKEND + b"/state", b"6")
        for thread in threads:
            thread.join()
        print("toolstack: backend is Closed; removes the device and releases the domain")
        dom0.delete(FRONTEND)
        dom0.delete(BACKEND)
        dom0.release_domain(GUEST)
        print(f"toolstack: domain {GUEST} introduced: {dom0.is_domain_introduced(GUEST)}")


if __name__ == "__main__":
    main()
