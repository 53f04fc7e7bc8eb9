"""Value escaping exactly as xenstore-utils 4.17 does it, and JSON values.

``xenstore-read`` and ``xenstore-ls`` print values *sanitised*: printable
ASCII stays as it is (except the backslash), ``\\t \\n \\r \\\\`` become
two-character escapes, bytes below 8 become three-digit octal escapes
(``\\001``) and every other byte a hex escape (``\\x1f``, ``\\xff``).

``xenstore-write`` *unsanitises* its value arguments (``unsanitise_value()``
in xenstore_client.c), quirks included, because scripts depend on them:

* ``\\t \\n \\r \\\\`` as in C;
* ``\\x`` reads a number with glibc's ``sscanf("%2x")``: blanks are skipped,
  a sign counts towards the two-character width, ``0x`` alone reads as 0,
  and when no number follows, the ``x`` stays literally;
* ``\\0``-``\\7`` start an octal number of up to three digits (``sscanf("%3o")``),
  truncated to a byte (``\\400`` is NUL);
* a backslash before any other character is dropped (``\\q`` is ``q``);
* a trailing backslash becomes a NUL byte.

:func:`json_value` is how the ``--json`` outputs and the dump format carry a
value: as text when the bytes are valid UTF-8, else in base64.
"""

from __future__ import annotations

from typing import Any

__all__ = ["from_json_value", "json_value", "sanitise", "unsanitise"]


def _build_table() -> list[bytes]:
    table = []
    for c in range(256):
        if 0x20 <= c <= 0x7E and c != 0x5C:
            table.append(bytes((c,)))
        elif c == 0x09:
            table.append(b"\\t")
        elif c == 0x0A:
            table.append(b"\\n")
        elif c == 0x0D:
            table.append(b"\\r")
        elif c == 0x5C:
            table.append(b"\\\\")
        elif c < 0o10:
            table.append(b"\\%03o" % c)
        else:
            table.append(b"\\x%02x" % c)
    return table


_TABLE = _build_table()
_PLAIN = frozenset(c for c in range(0x20, 0x7F) if c != 0x5C)


def sanitise(value: bytes) -> bytes:
    """``sanitise_value()``: a value as xenstore-read prints it (ASCII only)."""
    if _PLAIN.issuperset(value):
        return value
    table = _TABLE
    return b"".join([table[c] for c in value])


_SIMPLE = {ord("t"): 0x09, ord("n"): 0x0A, ord("r"): 0x0D, ord("\\"): 0x5C}
_BLANKS = b" \t\n\v\f\r"
_HEX = b"0123456789abcdefABCDEF"


def _scan_hex2(s: bytes, i: int) -> tuple[int, int] | None:
    """glibc ``sscanf(s + i, "%2x")``: (byte value, end index) or None."""
    n = len(s)
    while i < n and s[i] in _BLANKS:
        i += 1
    width = 2
    negative = False
    if i < n and s[i] in b"+-":
        negative = s[i] == 0x2D
        i += 1
        width -= 1
    if width == 2 and s[i : i + 2] in (b"0x", b"0X"):
        return 0, i + 2  # the prefix fills the width: the number is 0
    start = i
    while i < n and i - start < width and s[i] in _HEX:
        i += 1
    if i == start:
        return None
    number = int(s[start:i], 16)
    return (-number if negative else number) & 0xFF, i


def unsanitise(arg: bytes) -> bytes:
    """``unsanitise_value()``: a xenstore-write argument as the bytes to store."""
    if b"\\" not in arg:
        return arg
    out = bytearray()
    i = 0
    n = len(arg)
    while i < n:
        c = arg[i]
        i += 1
        if c != 0x5C:
            out.append(c)
            continue
        if i == n:  # a trailing backslash: C writes the terminating NUL
            out.append(0)
            break
        c = arg[i]
        i += 1
        if c in _SIMPLE:
            out.append(_SIMPLE[c])
        elif c == 0x78:  # x
            scanned = _scan_hex2(arg, i)
            if scanned is None:
                out.append(c)
            else:
                out.append(scanned[0])
                i = scanned[1]
        elif 0x30 <= c <= 0x37:  # an octal digit: up to three of them
            start = i - 1
            i = start
            while i < n and i - start < 3 and 0x30 <= arg[i] <= 0x37:
                i += 1
            out.append(int(arg[start:i], 8) & 0xFF)
        else:
            out.append(c)
    return bytes(out)


def json_value(value: bytes, into: dict[str, Any]) -> dict[str, Any]:
    """Put ``value`` into a JSON object: ``value`` (UTF-8 text) or ``value_base64``."""
    try:
        into["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        import base64

        into["value_base64"] = base64.b64encode(value).decode("ascii")
    return into


def from_json_value(obj: dict[str, Any]) -> bytes:
    """The inverse of :func:`json_value` (raises ValueError/KeyError when malformed)."""
    if "value_base64" in obj:
        import base64
        import binascii

        text = obj["value_base64"]
        if not isinstance(text, str):
            raise ValueError("value_base64 must be a string")
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueError(f"bad base64 value: {exc}") from None
    text = obj["value"]
    if not isinstance(text, str):
        raise ValueError("value must be a string")
    return text.encode("utf-8")
