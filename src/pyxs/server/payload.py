"""Request payloads as xenstored reads them: strings, one argument, ``atoi``.

A payload is a run of NUL-terminated strings (``get_strings``); numbers in
it are read with C ``atoi`` (:func:`c_atoi`), which never fails: what is not
a number reads as 0. What does not have the shape an operation needs is
EINVAL (:class:`~pyxs.server.store.Fail`).
"""

from __future__ import annotations

from ..protocol import XsdError
from .store import Fail

__all__ = ["c_atoi", "onearg", "strings"]


def onearg(payload: bytes) -> bytes:
    """The single NUL-terminated argument, else EINVAL."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        raise Fail(XsdError.EINVAL)
    return payload[:-1]


def strings(payload: bytes) -> list[bytes]:
    """``get_strings``: the NUL-terminated strings (a trailing rest is ignored)."""
    return payload.split(b"\0")[:-1]


def c_atoi(text: bytes) -> int:
    """C ``atoi``: leading blanks, a sign, digits; anything else stops it.

    Returns a C ``int`` (wrapped to 32 bits as glibc's ``(int)strtol``)."""
    text = text.lstrip(b" \t\n\v\f\r")
    sign = 1
    if text[:1] in (b"+", b"-"):
        if text[:1] == b"-":
            sign = -1
        text = text[1:]
    end = 0
    while end < len(text) and 48 <= text[end] <= 57:
        end += 1
    value = int(text[:end]) if end else 0
    value = min(value, (1 << 63) - 1 if sign > 0 else 1 << 63) * sign
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value
