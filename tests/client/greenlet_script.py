"""Run by test_greenlets.py in a subprocess: ``python greenlet_script.py
gevent|eventlet SOCKET BASE_PATH``.

Monkey-patches first, then has many greenlets share one pyxs.Client against
a real server: requests in flight together, a monitor waiting, transactions
per greenlet, wake() and close() from other greenlets. Prints ``OK`` at the
end; any failure is an exception (non-zero exit).
"""

from __future__ import annotations

import sys

LIBRARY, SOCKET, BASE = sys.argv[1], sys.argv[2], sys.argv[3].encode()

if LIBRARY == "gevent":
    from gevent import monkey

    monkey.patch_all()
    import gevent

    def spawn(fn, *args):
        return gevent.spawn(fn, *args)

    def join_all(greenlets):
        gevent.joinall(greenlets, timeout=30, raise_error=True)
        assert all(g.dead for g in greenlets), "a greenlet is stuck"

    sleep = gevent.sleep
else:
    import eventlet

    eventlet.monkey_patch()

    def spawn(fn, *args):
        return eventlet.spawn(fn, *args)

    def join_all(greenlets):
        with eventlet.Timeout(30):
            for g in greenlets:
                g.wait()

    sleep = eventlet.sleep

import threading  # noqa: E402 - after monkey-patching, on purpose

import pyxs  # noqa: E402

GREENLETS = 10
ROUNDS = 30

client = pyxs.Client(unix_socket_path=SOCKET)
client.connect()
peak = [0]
protocol = client.router._session.protocol
request = type(protocol).request


def counted(self, *args, **kwargs):
    # Each request, once allocated, counts the requests in flight with it:
    # measured at every send (sampling after a reply could miss them all).
    result = request(self, *args, **kwargs)
    if self is protocol:
        peak[0] = max(peak[0], len(self.pending))
    return result


type(protocol).request = counted


# -- many greenlets, one client, a monitor listening -----------------------------
monitor = client.monitor()
monitor.watch(BASE + b"/w", b"w")
assert monitor.next_event(30) == (BASE + b"/w", b"w")
events = []


def listen() -> None:
    for event in monitor.wait(timeout=10):
        events.append(event)
        if len(events) == ROUNDS:
            return


def work(i: int) -> None:
    path = BASE + b"/%d" % i
    for n in range(ROUNDS):
        client[path] = b"%d" % n
        assert client[path] == b"%d" % n
        if i == 0:
            client[BASE + b"/w/%d" % n] = b""

    def bump(c):
        c[path] = b"%d" % (int(c[path]) + 1)

    client.transact(bump, retries=50)
    assert client[path] == b"%d" % ROUNDS


greenlets = [spawn(work, i) for i in range(GREENLETS)] + [spawn(listen)]
join_all(greenlets)
assert events == [(BASE + b"/w/%d" % n, b"w") for n in range(ROUNDS)], events
# How many requests were in flight together is up to the hub's schedule:
# measured on the real daemon, runs give 10 (all greenlets) or 1 (lockstep),
# so it is reported, not asserted (tests/client/test_threads.py asserts the
# overlap for threads).
print("requests in flight together, at most:", peak[0])
assert threading.active_count() == 1, "monkey-patched: no real threads"

# -- a transaction belongs to its greenlet --------------------------------------
client[BASE + b"/tx"] = b"before"
client.transaction()
client[BASE + b"/tx"] = b"inside"
seen = {}


def other() -> None:
    seen["tx_id"] = client.tx_id
    seen["value"] = client[BASE + b"/tx"]


join_all([spawn(other)])
assert seen == {"tx_id": 0, "value": b"before"}, seen
assert client.commit()
assert client[BASE + b"/tx"] == b"inside"

# -- wake() from another greenlet ends a blocked wait --------------------------
woken = []


def blocked_wait() -> None:
    woken.append(list(monitor.wait()))


g = spawn(blocked_wait)
sleep(0)  # a yield: the greenlet runs until it blocks in wait()
monitor.wake()
join_all([g])
assert woken == [[]], woken

# -- close() fails a greenlet blocked in wait -----------------------------------
failures = []


def wait_until_closed() -> None:
    try:
        list(monitor.wait())
    except pyxs.ConnectionError as exc:
        failures.append(exc)


g = spawn(wait_until_closed)
sleep(0)  # a yield: the greenlet runs until it blocks in wait()
client.close()
join_all([g])
assert len(failures) == 1, failures

print("OK")
