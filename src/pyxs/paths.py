"""Path, token and permission rules, shared by the clients and the server.

XenStore paths are bytes over ``[A-Za-z0-9/_@-]``; ``/`` separates
components; a path without a leading ``/`` (and not starting with ``@``) is
relative to the caller's ``/local/domain/<domid>``. Special watch paths start
with ``@`` (``@introduceDomain``, ``@releaseDomain``).

Permissions are ``<letter><domid>``: ``n`` none, ``r`` read, ``w`` write,
``b`` both. The first entry of a node's list names its owner (who has full
access) and its letter is the access of every domain not listed.
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple, Union

from .exceptions import InvalidPath, InvalidPayload, InvalidPermission
from .protocol import ABS_PATH_MAX, REL_PATH_MAX

__all__ = [
    "DOMID_MAX",
    "PERM_LETTERS",
    "Permission",
    "check_ascii",
    "domain_path",
    "format_perms",
    "parse_perm",
    "parse_perms",
    "validate_path",
    "validate_perms",
    "validate_watch_path",
    "watch_matches",
]

PathLike = Union[bytes, str]

#: the characters a path may contain (``valid_chars()`` in xenstored).
_PATH_CHARS = re.compile(rb"[A-Za-z0-9/_@\-]+\Z")
#: A permission entry as a server may read it: the letter, then whatever
#: cxenstored's ``strtol(p, &end, 0)`` consumes to the end (blanks, a sign,
#: hex, octal), or decimal digits (pyxs 0.4's rule; oxenstored reads ``08``).
_PERM = re.compile(rb"([nrwb])[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|[0-9]+)\Z")
_LONG_MAX = 2**63 - 1
_7BIT = re.compile(rb"[\x20-\x7e]*\Z")

#: Domain ids are 16-bit; ids from 0x7FF0 up are reserved (DOMID_SELF ...).
#: (Permission entries are not limited to it: see :func:`parse_perm`.)
DOMID_MAX = 0xFFFF
PERM_LETTERS = b"nrwb"


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
    path = _as_bytes(path, "path", InvalidPath)
    if not path:
        raise InvalidPath("empty path")
    if not _PATH_CHARS.match(path):
        raise InvalidPath(f"{path!r}: only ASCII letters, digits and -/_@ are allowed")
    return _check_shape(path)


def _check_shape(path: bytes) -> bytes:
    limit = ABS_PATH_MAX if path[:1] == b"/" else REL_PATH_MAX
    if len(path) > limit:
        raise InvalidPath(f"path of {len(path)} bytes exceeds {limit}")
    if b"//" in path:
        raise InvalidPath(f"{path!r}: empty path component")
    if path[-1:] == b"/" and path != b"/":
        raise InvalidPath(f"{path!r}: trailing '/'")
    return path


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
    match = _PERM.match(raw)
    if match is None:
        raise InvalidPermission(f"{perm!r} is not one of n<domid> r<domid> w<domid> b<domid>")
    return Permission(match.group(1).decode("ascii"), _strtol_domid(match.group(2), match.group(3)))


def _strtol_domid(sign: bytes, digits: bytes) -> int:
    """The domain id xenstored makes of an entry's number, as it shows it.

    Never stricter than the server: cxenstored 4.17 (and pyxs's server)
    take any number ``strtol`` reads, saturated to a C long, stored in an
    unsigned int and shown signed: ``w4294967295`` reads back as ``w-1``,
    ``w0x10`` as ``w16``. A domain id above 65535 names no domain; as a
    non-owner entry it is kept, as an owner refused by the server (ENOENT).
    """
    if digits[:2] in (b"0x", b"0X"):
        value = int(digits[2:], 16)
    elif digits[:1] == b"0" and digits.isdigit() and b"8" not in digits and b"9" not in digits:
        value = int(digits, 8)
    else:
        value = int(digits)  # "08": not strtol's (cxenstored refuses it), oxenstored's 8
    value = min(value, _LONG_MAX + 1 if sign == b"-" else _LONG_MAX)
    if sign == b"-":
        value = -value
    value &= 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


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


def parse_perms(payload: bytes) -> list[Permission]:
    """A GET_PERMS reply, ``b"n0\\0r5\\0"``, as a list of :class:`Permission`."""
    return [parse_perm(p) for p in payload.split(b"\0") if p]


def format_perms(perms: Iterable[Permission]) -> bytes:
    """The SET_PERMS payload tail for ``perms``: each entry NUL-terminated."""
    return b"".join(p.encode() + b"\0" for p in perms)


def domain_path(domid: int) -> bytes:
    """``/local/domain/<domid>``: the home of a domain's relative paths."""
    return b"/local/domain/%d" % domid
