"""pyxs.paths as a module: path validation, the server's path rules, permission entries.

The server's readings are checked against C itself where C decides: a
permission entry's number is what libc's ``strtol(s, &end, 0)`` reads.
"""

from __future__ import annotations

import ctypes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxs.exceptions import InvalidPath, InvalidPayload, InvalidPermission
from pyxs.paths import (
    Permission,
    basename,
    canonicalize,
    check_ascii,
    child_path,
    domain_path,
    format_perm,
    is_valid_nodename,
    parent_of,
    parse_perm,
    perm_entry,
    signed_domid,
    validate_path,
    validate_perms,
    validate_watch_path,
    watch_matches,
)
from pyxs.protocol import ABS_PATH_MAX, REL_PATH_MAX

# -- what a client sends -------------------------------------------------------


@pytest.mark.parametrize("path", [b"/", b"/a", b"a/b", b"@releaseDomain", b"/A-z_0@9", "/str"])
def test_validate_path_accepts(path: bytes | str) -> None:
    expected = path.encode() if isinstance(path, str) else path
    assert validate_path(path) == expected
    assert validate_watch_path(path) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (b"", "empty path"),
        (b"/a b", "only ASCII letters"),
        (b"/a//b", "empty path component"),
        (b"/a/", "trailing '/'"),
        ("/é", "not 7-bit ASCII"),
        (b"/" + b"a" * ABS_PATH_MAX, f"exceeds {ABS_PATH_MAX}"),
        (b"a" * (REL_PATH_MAX + 1), f"exceeds {REL_PATH_MAX}"),
    ],
)
def test_validate_path_refuses(path: bytes | str, message: str) -> None:
    with pytest.raises(InvalidPath, match=message):
        validate_path(path)
    with pytest.raises(InvalidPath, match=message):
        validate_watch_path(path)


def test_validate_path_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="path must be bytes or str, not int"):
        validate_path(5)  # type: ignore[arg-type]
    assert validate_path(bytearray(b"/x")) == b"/x"  # type: ignore[arg-type]


def test_check_ascii() -> None:
    assert check_ascii("tok en") == b"tok en"
    with pytest.raises(InvalidPayload, match="token b'a\\\\x00' must be printable"):
        check_ascii(b"a\0", "token")


def test_watch_matches() -> None:
    assert watch_matches(b"/a", b"/a")
    assert watch_matches(b"/a", b"/a/b/c")
    assert not watch_matches(b"/a", b"/ab")
    assert watch_matches(b"/", b"/anything")
    assert watch_matches(b"@releaseDomain/5", b"@releaseDomain")
    assert not watch_matches(b"@releaseDomain", b"@introduceDomain")
    assert watch_matches(b"rel", b"rel/x")


# -- what the server makes of a path ---------------------------------------------


def test_domain_path_and_canonicalize() -> None:
    home = domain_path(7)
    assert home == b"/local/domain/7"
    assert canonicalize(b"device/vif", home) == b"/local/domain/7/device/vif"
    assert canonicalize(b"/abs", home) == b"/abs"
    assert canonicalize(b"@releaseDomain", home) == b"@releaseDomain"


def test_parent_basename_child() -> None:
    assert parent_of(b"/a/b") == b"/a"
    assert parent_of(b"/a") == b"/"
    assert basename(b"/a/b") == b"b"
    assert child_path(b"/", b"a") == b"/a"
    assert child_path(b"/a", b"b") == b"/a/b"


@pytest.mark.parametrize(
    ("path", "valid"),
    [
        (b"/", True),
        (b"/a/b", True),
        (b"a", False),  # relative: canonicalize first
        (b"@releaseDomain", False),
        (b"/a/", False),
        (b"/a//b", False),
        (b"/a b", False),
        (b"/" + b"x" * 19, True),
        (b"/" + b"x" * 20, False),
        # the count starts after /local/domain/<domid>/
        (b"/local/domain/5/" + b"x" * 20, True),
        (b"/local/domain/5/" + b"x" * 21, False),
        (b"/local/domain/12345/" + b"x" * 20, True),
        # %5u reads five digits at most; then a "/" must follow
        (b"/local/domain/123456/" + b"x" * 20, False),
        (b"/local/domain/-5/" + b"x" * 20, True),  # %5u takes a sign
        (b"/local/domain/+5/x", False),  # "+" is no path character
        (b"/local/domain/x/" + b"x" * 20, False),
    ],
)
def test_is_valid_nodename(path: bytes, valid: bool) -> None:
    assert is_valid_nodename(path, 20) is valid


# -- permission entries -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "strict", "lenient"),
    [
        (b"n0", (0, 0), (0, 0)),
        (b"r5", (1, 5), (1, 5)),
        (b"w0x10", (2, 16), (2, 16)),
        (b"b010", (3, 8), (3, 8)),  # octal, as strtol base 0
        (b"r08", None, (1, 8)),  # strtol stops at the 8; oxenstored reads 8
        (b"r-1", (1, 0xFFFFFFFF), (1, 0xFFFFFFFF)),
        (b"r4294967295", (1, 0xFFFFFFFF), (1, 0xFFFFFFFF)),
        (b"r 7", (1, 7), (1, 7)),
        (b"r99999999999999999999", (1, 0xFFFFFFFF), (1, 0xFFFFFFFF)),  # LONG_MAX
        (b"r", None, None),
        (b"x5", None, None),
        (b"r5x", None, None),
        (b"r0x", None, None),
        (b"", None, None),
    ],
)
def test_perm_entry(raw: bytes, strict: tuple[int, int] | None, lenient: object) -> None:
    assert perm_entry(raw, strict=True) == strict
    assert perm_entry(raw, strict=False) == lenient


_libc = ctypes.CDLL(None)
_libc.strtol.restype = ctypes.c_long
_libc.strtol.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]


def _c_strtol0(text: bytes) -> int | None:
    """libc's strtol(text, &end, 0), None unless it consumed all of ``text``."""
    buf = ctypes.create_string_buffer(text)
    end = ctypes.c_char_p()
    value = _libc.strtol(buf, ctypes.byref(end), 0)
    start = ctypes.cast(buf, ctypes.c_void_p).value
    consumed = ctypes.cast(end, ctypes.c_void_p).value - start  # type: ignore[operator]
    if not text or consumed != len(text):
        return None
    return int(value)


@given(st.text(alphabet="0123456789abcdefxX+- \t", max_size=24).map(str.encode))
def test_strict_perm_entry_reads_numbers_as_strtol(number: bytes) -> None:
    expected = _c_strtol0(number)
    got = perm_entry(b"w" + number, strict=True)
    if expected is None:
        assert got is None
    else:
        assert got == (2, expected & 0xFFFFFFFF)


def test_signed_and_formatted() -> None:
    assert signed_domid(0xFFFFFFFF) == -1
    assert signed_domid(5) == 5
    assert format_perm(3, 0xFFFFFFFF) == b"b-1"
    assert format_perm(0, 0) == b"n0"


def test_parse_perm_and_permission() -> None:
    perm = parse_perm("w4294967295")
    assert perm == Permission("w", -1)
    assert perm.write and not perm.read
    assert perm.encode() == b"w-1"
    assert str(parse_perm(b"b0x10")) == "b16"
    with pytest.raises(InvalidPermission, match="is not one of"):
        parse_perm(b"q1")


def test_validate_perms() -> None:
    assert validate_perms([b"n0", "r5", Permission("b", 7)]) == [b"n0", b"r5", b"b7"]
    assert validate_perms([b"r08"]) == [b"r08"]  # sent as given
    with pytest.raises(InvalidPermission, match="at least one permission"):
        validate_perms([])
    with pytest.raises(InvalidPermission, match="must be a list"):
        validate_perms(b"n0")
