"""List a XenStore subtree with its values, as ``xenstore-ls`` does.

    pyxs run -- sh -c 'pyxs write /vm/demo/name guest && python examples/ls.py /vm'

Prints one node per line, indented by one space per level, ``name = "value"``
(non-printable bytes escaped); ``-p`` adds each node's permissions.
"""

from __future__ import annotations

import argparse
import sys

import pyxs


def show(value: bytes) -> str:
    """The value between double quotes, escaped as xenstore-ls escapes it."""
    out = []
    for byte in value:
        char = chr(byte)
        if char in "\t\n\r\\":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}[char])
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        elif byte < 8:
            out.append(f"\\{byte:03o}")
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="/", help="the top of the tree (default /)")
    parser.add_argument("-p", "--perms", action="store_true", help="show permissions too")
    args = parser.parse_args(argv)
    top = args.path.encode()
    depth0 = top.rstrip(b"/").count(b"/")
    try:
        with pyxs.Client() as c:
            for path, value, _children in c.walk(top):
                if path == top:
                    continue  # xenstore-ls shows what is below the top
                depth = path.count(b"/") - depth0 - 1
                name = path.rsplit(b"/", 1)[1].decode()
                line = f"{' ' * depth}{name} = {show(value)}"
                if args.perms:
                    line += "  (" + ", ".join(p.decode() for p in c.get_perms(path)) + ")"
                print(line)
    except pyxs.NoEntryError:
        print(f"{args.path}: no such node", file=sys.stderr)
        return 1
    except pyxs.ConnectionError as exc:
        print(f"cannot reach XenStore: {exc}", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
