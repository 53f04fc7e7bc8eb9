"""Hello, XenStore: write a value, read it back, list, watch, and clean up.

Run it against a throwaway embedded XenStore:

    pyxs run -- python examples/helloworld.py
"""

from __future__ import annotations

import pyxs


def main() -> None:
    with pyxs.Client() as c:  # $XENSTORED_PATH, else /var/run/xenstored/socket
        c[b"/hello/greeting"] = b"Hello, XenStore!"
        print(c[b"/hello/greeting"].decode())
        print("children of /hello:", c.list(b"/hello"))

        with c.monitor() as m:
            m.watch(b"/hello", b"my-token")
            events = m.wait()
            print("initial event:", next(events))
            c[b"/hello/greeting"] = b"changed"
            print("change event:", next(events))

        del c[b"/hello"]
        print("exists after delete:", c.exists(b"/hello"))


if __name__ == "__main__":
    main()
