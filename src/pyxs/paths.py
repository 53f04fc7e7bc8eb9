"""Path, token and permission rules, shared by the clients and the server.

XenStore paths are bytes over ``[A-Za-z0-9/_@-]``; ``/`` separates
components; a path without a leading ``/`` (and not starting with ``@``) is
relative to the caller's ``/local/domain/<domid>``. Special watch paths start
with ``@`` (``@introduceDomain``, ``@releaseDomain``).

Permissions are ``<letter><domid>``: ``n`` none, ``r`` read, ``w`` write,
``b`` both. The first entry of a node's list names its owner (who has full
access) and its letter is the access of every domain not listed.

Two sides use these rules. A client checks what it sends
(:func:`validate_path`, :func:`validate_perms`) and is never stricter than
the server. The embedded server (:mod:`pyxs.server`) resolves and judges what
it receives exactly as cxenstored 4.17 does (:func:`canonicalize`,
:func:`is_valid_nodename`, :func:`perm_entry` with ``strict=True``): its
answers are compared byte for byte with the real daemon's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple, Union

from .exceptions import InvalidPath, InvalidPayload, InvalidPermission
from .protocol import ABS_PATH_MAX, REL_PATH_MAX

__all__ = [
    "DOMID_MAX",
    "Permission",
    "basename",
    "canonicalize",
    "check_ascii",
    "child_path",
    "domain_path",
    "format_perm",
    "is_valid_nodename",
    "parent_of",
    "parse_perm",
    "perm_entry",
    "signed_domid",
    "validate_path",
    "validate_perms",
    "validate_watch_path",
    "watch_matches",
]

PathLike = Union[bytes, str]

#: the characters a path may contain (``valid_chars()`` in xenstored).
_PATH_CHARS = re.compile(rb"[A-Za-z0-9/_@\-]+\Z")
#: A permission entry: the letter, then whatever cxenstored's
#: ``strtol(p, &end, 0)`` consumes to the end (blanks, a sign, hex, octal),
#: or decimal digits with a leading 0 (``08``: oxenstored's 8, see perm_entry).
_PERM = re.compile(rb"([nrwb])[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|[0-9]+)\Z")
#: the letters by their access bits: read 1, write 2 (``"nrwb"[bits]``)
_LETTERS = "nrwb"
_LONG_MAX = 2**63 - 1
_7BIT = re.compile(rb"[\x20-\x7e]*\Z")
_LOCAL_DOMAIN = b"/local/domain/"

#: Domain ids are 16-bit; ids from 0x7FF0 up are reserved (DOMID_SELF ...).
#: (Permission entries are not limited to it: see :func:`parse_perm`.)
DOMID_MAX = 0xFFFF


def _as_bytes(value: object, what: str, error: type[ValueError]) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            raise error(f"{what} {value!r} is not 7-bit ASCII") from None
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


#: Paths that passed :func:`validate_path` (clients use the same few paths
#: over and over; checking one again is a dict lookup). Bounded.
_VALID_PATHS: dict[bytes, None] = {}


def validate_path(path: PathLike) -> bytes:
    """Check a node path as the client sends it and return it as bytes.

    Relative paths are allowed (the server resolves them), and so are ``@``
    paths: the server decides what they mean for each operation (cxenstored
    4.17 lets SET_PERMS change ``@releaseDomain``'s and refuses READ with
    EINVAL; oxenstored reads them as empty nodes).
    """
    if path.__class__ is bytes:
        if path in _VALID_PATHS:
            return path
        checked = _validate_path(path)
        if len(_VALID_PATHS) >= 4096:
            _VALID_PATHS.clear()
        _VALID_PATHS[checked] = None
        return checked
    return _validate_path(path)


def _validate_path(path: PathLike) -> bytes:
    path = _as_bytes(path, "path", InvalidPath)
    if not path:
        raise InvalidPath("empty path")
    if not _PATH_CHARS.match(path):
        raise InvalidPath(f"{path!r}: only ASCII letters, digits and -/_@ are allowed")
    return _check_shape(path)


def validate_watch_path(path: PathLike) -> bytes:
    """Check a path for WATCH/UNWATCH: a node path or an ``@`` special path."""
    return _validate_path(path)


def _check_shape(path: bytes) -> bytes:
    limit = ABS_PATH_MAX if path[:1] == b"/" else REL_PATH_MAX
    if len(path) > limit:
        raise InvalidPath(f"path of {len(path)} bytes exceeds {limit}")
    if b"//" in path:
        raise InvalidPath(f"{path!r}: empty path component")
    if _trailing_slash(path):
        raise InvalidPath(f"{path!r}: trailing '/'")
    return path


def _trailing_slash(path: bytes) -> bool:
    return path[-1:] == b"/" and path != b"/"


# -- the server's side: how a path it receives is resolved and judged --------


def domain_path(domid: int) -> bytes:
    """``/local/domain/<domid>``: the home of a domain's relative paths."""
    return b"/local/domain/%d" % domid


def canonicalize(path: bytes, home: bytes) -> bytes:
    """A received path made absolute: relative ones (not ``/``, not ``@``)
    live under the caller's ``home`` (its :func:`domain_path`)."""
    first = path[:1]
    if first == b"/" or first == b"@":
        return path
    return home + b"/" + path


def is_valid_nodename(path: bytes, path_max: int) -> bool:
    """cxenstored's ``is_valid_nodename``: absolute, no empty component, no
    trailing ``/``, the path characters, and at most ``path_max`` bytes
    counted after ``/local/domain/<domid>/``."""
    # (every request's path comes here: the trailing-slash test is inline)
    if path[:1] != b"/" or (path[-1:] == b"/" and path != b"/") or b"//" in path:
        return False
    if len(path) > path_max and len(path) > _local_offset(path) + path_max:
        return False
    return _PATH_CHARS.match(path) is not None


def _local_offset(path: bytes) -> int:
    """``sscanf(path, "/local/domain/%5u/%n", ...)``: where the count starts."""
    if not path.startswith(_LOCAL_DOMAIN):
        return 0
    rest = path[14:20]
    i = 1 if rest[:1] in (b"+", b"-") else 0
    j = i
    while j < len(rest) and j < 5 and 48 <= rest[j] <= 57:
        j += 1
    if j == i or rest[j : j + 1] != b"/":
        return 0
    return 14 + j + 1


def parent_of(path: bytes) -> bytes:
    """``get_parent``: ``/a/b`` -> ``/a``; ``/a`` -> ``/``."""
    cut = path.rfind(b"/")
    return path[:cut] if cut > 0 else b"/"


def basename(path: bytes) -> bytes:
    """The last component: ``/a/b`` -> ``b``."""
    return path[path.rfind(b"/") + 1 :]


def child_path(path: bytes, name: bytes) -> bytes:
    """``/a`` and ``b`` -> ``/a/b`` (``/`` and ``b`` -> ``/b``)."""
    return path + b"/" + name if path != b"/" else b"/" + name


def watch_matches(watched_path: bytes, event_path: bytes) -> bool:
    """Whether an event for ``event_path`` belongs to a watch on
    ``watched_path``: the rule by which the clients' monitors keep the
    events of the paths they watch (the caller compares the tokens).

    It does when ``event_path`` is ``watched_path``, or lies below it at a
    ``/`` boundary (a watch on ``/a`` covers ``/a/b``, not ``/ab``); a watch
    on ``/`` covers every event; and a watch on a domain-specific special
    path, such as ``@releaseDomain/5``, covers the events of its special
    name (``@releaseDomain``). Relative paths compare as they are (the
    server reports a relative watch's events relative too).

    >>> watch_matches(b"/a", b"/a/b"), watch_matches(b"/a", b"/ab")
    (True, False)
    """
    if event_path == watched_path or watched_path == b"/":
        return True
    size = len(watched_path)
    if event_path.startswith(watched_path) and event_path[size : size + 1] == b"/":
        return True
    return watched_path[:1] == b"@" and watched_path.startswith(event_path + b"/")


def check_ascii(value: PathLike, what: str = "argument") -> bytes:
    """A protocol string (token, control argument): 7-bit printable, no NUL."""
    value = _as_bytes(value, what, InvalidPayload)
    if not _7BIT.match(value):
        raise InvalidPayload(f"{what} {value!r} must be printable 7-bit ASCII")
    return value


class Permission(NamedTuple):
    """One permission entry: a letter of ``nrwb`` and a domain id.

    >>> parse_perm(b"r5")
    Permission(letter='r', domid=5)

    In a node's list the first entry names the owner, whose own access is
    full whatever the letter; its letter is what unlisted domains get.
    """

    #: ``"n"`` none, ``"r"`` read, ``"w"`` write, ``"b"`` both
    letter: str
    #: the domain the entry is about
    domid: int

    @property
    def read(self) -> bool:
        """Whether the letter grants reading (``r`` or ``b``)."""
        return self.letter in "rb"

    @property
    def write(self) -> bool:
        """Whether the letter grants writing (``w`` or ``b``)."""
        return self.letter in "wb"

    def encode(self) -> bytes:
        """The entry as it goes on the wire (without its NUL): ``b"r5"``."""
        return f"{self.letter}{self.domid}".encode("ascii")

    def __str__(self) -> str:
        """The entry as text: ``"r5"``."""
        return f"{self.letter}{self.domid}"


def parse_perm(perm: PathLike) -> Permission:
    """``b"r5"`` -> ``Permission("r", 5)``; anything else: InvalidPermission."""
    raw = _as_bytes(perm, "permission", InvalidPermission)
    entry = perm_entry(raw, strict=False)
    if entry is None:
        raise InvalidPermission(f"{perm!r} is not one of n<domid> r<domid> w<domid> b<domid>")
    bits, domid = entry
    return Permission(_LETTERS[bits], signed_domid(domid))


def perm_entry(raw: bytes, *, strict: bool) -> tuple[int, int] | None:
    """A permission entry as xenstored reads it (``xs_strings_to_perms``):
    ``(bits, domid)``, or None if it is not one.

    ``bits`` is the letter's access: ``n`` 0, ``r`` 1, ``w`` 2, ``b`` 3.
    ``domid`` is what ``strtol(p, &end, 0)`` reads, saturated to a C long
    and stored in an unsigned int: ``w4294967295`` and ``w-1`` are both
    4294967295, ``w0x10`` is 16. A domain id above 65535 names no domain;
    as a non-owner entry it is kept, as an owner refused by the server.
    ``strict`` is the server's reading: ``08`` is not a number (strtol stops
    at the 8); a client (``strict=False``) sends it for oxenstored's 8.
    """
    match = _PERM.match(raw)
    if match is None:
        return None
    sign, digits = match.group(2), match.group(3)
    if digits[:2] in (b"0x", b"0X"):
        value = int(digits[2:], 16)
    elif digits[:1] == b"0" and (b"8" in digits or b"9" in digits):
        if strict:
            return None
        value = int(digits)
    elif digits[:1] == b"0":
        value = int(digits, 8)
    else:
        value = int(digits)
    value = min(value, _LONG_MAX + 1 if sign == b"-" else _LONG_MAX)
    if sign == b"-":
        value = -value
    return _LETTERS.index(chr(raw[0])), value & 0xFFFFFFFF


def signed_domid(domid: int) -> int:
    """An entry's unsigned domain id as xenstored shows it (C ``%i``):
    4294967295 -> -1."""
    return domid - 2**32 if domid >= 2**31 else domid


def format_perm(bits: int, domid: int) -> bytes:
    """``(bits, domid)`` as it goes on the wire (without its NUL): ``b"r5"``."""
    return b"%s%d" % (_LETTERS[bits].encode(), signed_domid(domid))


def validate_perms(perms: Iterable[PathLike | Permission]) -> list[bytes]:
    """Check a permission list for SET_PERMS; return its entries as bytes."""
    if isinstance(perms, (bytes, str)):
        raise InvalidPermission("permissions must be a list of entries such as [b'n0', b'r5']")
    out = []
    for p in perms:
        if isinstance(p, Permission):
            out.append(p.encode())
        else:
            parse_perm(p)  # checked, then sent as given: the server reads it
            out.append(_as_bytes(p, "permission", InvalidPermission))
    if not out:
        raise InvalidPermission("at least one permission (the owner) is required")
    return out
