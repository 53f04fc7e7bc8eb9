"""Isolation of guests, against the real cxenstored 4.17, byte for byte.

One systematic script (the harness is tests/server/test_vs_real.py's: fresh
servers for this module, a round trip on every open connection after each
step): dom0 (``a``) and two introduced guests (``g1`` = domain 63, ``g2`` =
domain 64) each watch every subtree of the fixture, ``@introduceDomain`` and
``@releaseDomain``; then each guest tries every client-legal operation on its
own nodes, the other guest's, dom0's, the shared ones and missing children of
each (under readable and unreadable parents), by relative and absolute
paths. The transcript holds every reply and every watch event each
connection got, so a node a guest can read, write or hear about and should
not (or the other way round) shows up as a difference.

The fixture:

=========================  ==================  ===========================
node                       permissions         meaning
=========================  ==================  ===========================
/local/domain/<id>         n<id>               a guest's home
/local/domain/<id>/c/d     n<id>               its own nodes
/local/domain/<id>/d0      n0                  dom0's node in a guest home
/iso/d0, /iso/d0/c         n0                  dom0 only
/iso/r1, /iso/r1/c         n0 r63              readable by g1 only
/iso/w2, /iso/w2/c         n0 w64              writable by g2 only
/iso/s, /iso/s/c           n63 r64             g1's, readable by g2
/iso/t65, /iso/t65/c       n65                 domain 65's (g2 gets it as target)
=========================  ==================  ===========================

After the guests' reads, WRITEs, MKDIRs, SET_PERMS, RMs, transactions and
domain/control requests, dom0 grants g2 the rights of domain 65 (SET_TARGET),
sets who may hear of @introduceDomain/@releaseDomain, changes permissions
under the guests' watches (directly and in a transaction), removes a subtree
whose children have different permissions, and the guests unwatch and reset.
It ends with the death of domain 63 (its nodes go), a new domain 63 reading
what the old one owned or was granted, and dom0 reading everything.

Left out: a guest's SET_PERMS on @releaseDomain or @introduceDomain, which
cxenstored 4.17 answers with a stale errno and may abort on
(tests/REALXS.md, "Known defect"). The domids (63, 64, 65, 66, 67) are not
those of tests/server/test_vs_real.py, although the servers are fresh here.
"""

from __future__ import annotations

from typing import Callable

import pytest
from test_vs_real import DP, GP, TE, TS, UW, WA, D, M, R, Step, Target, W, X, check, pair

from pyxs.protocol import Op

__all__ = ["pair"]  # the module-scoped fixture: fresh servers for this module

pytestmark = pytest.mark.realxs

G1, G2, G3 = 63, 64, 65
RESET = Op.RESET_WATCHES


def home(domid: int) -> bytes:
    return b"/local/domain/%d" % domid


def perms(*entries: str) -> bytes:
    return b"".join(e.encode() + b"\0" for e in entries)


#: (path, token) every connection watches (guests add their relative ones)
WATCHED = [
    (b"/", b"root"),
    (home(G1), b"h63"),
    (home(G2), b"h64"),
    (b"/iso/d0", b"d0"),
    (b"/iso/r1", b"r1"),
    (b"/iso/w2", b"w2"),
    (b"/iso/s", b"s"),
    (b"/iso/t65", b"t65"),
    (b"/iso/d0/nope", b"d0nope"),
    (b"/iso/r1/nope", b"r1nope"),
    (b"@introduceDomain", b"intro"),
    (b"@releaseDomain", b"rel"),
]
#: relative watches of a guest: its own home's nodes
RELATIVE_WATCHED = [(b"c", b"relc"), (b"d0", b"reld0"), (b"nope", b"relnope")]


def fixture() -> list[Step]:
    """dom0 builds the tree (everyone already watches: events in the transcript)."""
    steps: list[Step] = []
    for d in (G1, G2):
        steps += [
            ("a", M, home(d) + b"\0"),
            ("a", Op.SET_PERMS, home(d) + b"\0" + perms(f"n{d}")),
            ("a", W, home(d) + b"/c/d\0v%d" % d),
            ("a", W, home(d) + b"/d0\0dom0"),
            ("a", Op.SET_PERMS, home(d) + b"/d0\0" + perms("n0")),
        ]
    steps += [
        ("a", W, b"/iso/d0/c\0secret"),
        ("a", W, b"/iso/r1\0r"),
        ("a", Op.SET_PERMS, b"/iso/r1\0" + perms("n0", f"r{G1}")),
        ("a", W, b"/iso/r1/c\0rc"),  # inherits n0 r63
        ("a", W, b"/iso/w2\0w"),
        ("a", Op.SET_PERMS, b"/iso/w2\0" + perms("n0", f"w{G2}")),
        ("a", W, b"/iso/w2/c\0wc"),
        ("a", W, b"/iso/s\0s"),
        ("a", Op.SET_PERMS, b"/iso/s\0" + perms(f"n{G1}", f"r{G2}")),
        ("a", W, b"/iso/s/c\0sc"),  # inherits n63 r64
        ("a", Op.INTRODUCE, b"%d\x000\x007\0" % G3),  # an introduced domain, no connection
        ("a", W, b"/iso/t65/c\0tc"),
        ("a", Op.SET_PERMS, b"/iso/t65/c\0" + perms(f"n{G3}")),
        ("a", Op.SET_PERMS, b"/iso/t65\0" + perms(f"n{G3}")),
    ]
    return steps


def read_targets(s: int, o: int) -> list[bytes]:
    """Paths guest ``s`` reads: its own, the other guest's (``o``), dom0's,
    the shared ones, missing children of each, relative and absolute."""
    return [
        home(s),
        home(s) + b"/c",
        home(s) + b"/c/d",
        home(s) + b"/d0",
        b"c",
        b"c/d",
        b"d0",
        home(o),
        home(o) + b"/c",
        home(o) + b"/c/d",
        home(o) + b"/d0",
        b"/",
        b"/tool",
        b"/local",
        b"/iso",
        b"/iso/d0",
        b"/iso/d0/c",
        b"/iso/r1",
        b"/iso/r1/c",
        b"/iso/w2",
        b"/iso/w2/c",
        b"/iso/s",
        b"/iso/s/c",
        b"/iso/t65",
        b"/iso/t65/c",
        # missing children: readable and unreadable parents, missing parents
        b"nope",
        b"nope/deeper",
        b"d0/nope",
        home(s) + b"/c/nope",
        home(o) + b"/nope",
        home(o) + b"/nope/deeper",
        home(o) + b"/d0/nope",
        b"/nope",
        b"/iso/d0/nope",
        b"/iso/d0/nope/deeper",
        b"/iso/r1/nope",
        b"/iso/r1/nope/deeper",
        b"/iso/w2/nope",
        b"/iso/s/nope",
        b"/iso/s/nope/deeper",
        b"/iso/t65/nope",
        b"/local/domain/99/x",
    ]


def reads(g: str, paths: list[bytes], tx: int = 0) -> list[Step]:
    steps: list[Step] = []
    for path in paths:
        steps += [
            (g, R, path + b"\0", tx),
            (g, GP, path + b"\0", tx),
            (g, D, path + b"\0", tx),
            (g, DP, path + b"\x000\0", tx),
        ]
    return steps


def write_targets(s: int, o: int) -> list[bytes]:
    return [
        home(s),
        home(s) + b"/c",
        b"c/w",
        b"d0",
        b"d0/w",
        b"new/deep/er",
        home(o) + b"/c",
        home(o) + b"/w%d" % s,
        home(o) + b"/d0",
        b"/iso/d0",
        b"/iso/d0/w%d" % s,
        b"/iso/d0/nope/deeper",
        b"/iso/r1",
        b"/iso/r1/w%d" % s,
        b"/iso/w2",
        b"/iso/w2/w%d" % s,
        b"/iso/w2/c/deep%d/er" % s,
        b"/iso/s",
        b"/iso/s/c",
        b"/iso/s/w%d" % s,
        b"/iso/t65/c",
        b"/iso/t65/w%d" % s,
        b"/top%d" % s,
        b"/local/domain/99/x",
    ]


def mkdir_targets(s: int, o: int) -> list[bytes]:
    return [
        b"mk",
        home(s) + b"/c",  # exists
        b"d0",  # exists, not ours
        b"d0/mk",
        home(o),  # exists, not ours
        home(o) + b"/mk%d" % s,
        b"/iso/d0",
        b"/iso/d0/mk%d" % s,
        b"/iso/r1",
        b"/iso/r1/mk%d" % s,
        b"/iso/w2/mk%d" % s,
        b"/iso/s/mk%d" % s,
        b"/iso/t65/mk%d" % s,
        b"/mk%d" % s,
    ]


def set_perms_targets(s: int, o: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"c", perms(f"n{s}", f"r{o}")),  # own: granted to the other guest
        (home(s) + b"/c/d", perms(f"n{o}")),  # own, given away: EPERM
        (home(s) + b"/c/d", perms(f"n{s}", "rabc")),  # malformed
        (b"mk", perms(f"n{s}", f"w{o}")),
        (b"d0", perms(f"n{s}")),  # dom0's node in our home
        (home(o) + b"/c", perms(f"n{s}")),
        (home(o) + b"/c", perms(f"n{o}", f"r{s}")),
        (b"/iso/d0", perms("n0", f"r{s}")),
        (b"/iso/d0/c", perms(f"n{s}")),
        (b"/iso/r1", perms("n0", f"r{G1}", f"r{G2}")),
        (b"/iso/w2", perms("n0", f"w{G2}", f"r{G2}")),
        (b"/iso/s", perms(f"n{G1}", f"b{G2}")),  # g1 owns it: g2 may now write
        (b"/iso/s/c", perms(f"n{G1}", f"r{G2}", f"w{G2}")),
        (b"/iso/t65", perms(f"n{G3}", f"r{s}")),
        (b"/iso/s/nope", perms(f"n{s}")),
        (b"/iso/d0/nope", perms(f"n{s}")),
        (b"nope", perms(f"n{s}")),
        # Not @releaseDomain or @introduceDomain: cxenstored 4.17 answers a
        # guest with a stale errno there (do_set_perms returns errno, and
        # set_perms_special returns EACCES without setting it), and aborts
        # when that errno is 0 (tests/REALXS.md, "Known defect").
    ]


def rm_targets(s: int, o: int) -> list[bytes]:
    return [
        b"/",
        b"/iso",
        home(o),
        home(o) + b"/c/d",
        home(o) + b"/nope",
        home(o) + b"/nope/deeper",
        home(o) + b"/mk%d" % s,  # if our MKDIR got there
        b"/iso/d0/c",
        b"/iso/d0/nope",
        b"/iso/d0/nope/deeper",
        b"/iso/r1/c",
        b"/iso/r1/nope",
        b"/iso/w2/nope",
        b"/iso/w2/w%d" % s,
        b"/iso/w2/c",
        b"/iso/s/nope",
        b"/iso/s/nope/deeper",
        b"/iso/s/w%d" % s,
        b"/iso/t65/c",
        b"nope",
        b"nope/deeper",
        b"d0",  # dom0's node in our home
        b"c/w",
        b"new",
    ]


def every_guest(build: Callable[[str, int, int], list[Step]]) -> list[Step]:
    """``build(conn, self, other)`` for g1, then for g2."""
    return build("g1", G1, G2) + build("g2", G2, G1)


def script() -> list[Step]:
    steps: list[Step] = [
        ("connect", "a"),
        ("a", WA, b"@introduceDomain\0a-intro\0"),
        ("a", WA, b"@releaseDomain\0a-rel\0"),
        ("connect", "g1", G1),  # INTRODUCE: a gets @introduceDomain
        ("connect", "g2", G2),
    ]
    for conn in ("a", "g1", "g2"):
        steps += [(conn, WA, path + b"\0" + token + b"\0") for path, token in WATCHED]
    for conn in ("g1", "g2"):
        steps += [(conn, WA, path + b"\0" + token + b"\0") for path, token in RELATIVE_WATCHED]
    steps += fixture()

    # --- reading --------------------------------------------------------
    steps += every_guest(lambda g, s, o: reads(g, read_targets(s, o)))

    # --- writing, one guest then the other, op by op ---------------------
    steps += every_guest(lambda g, s, o: [(g, W, p + b"\0by%d" % s) for p in write_targets(s, o)])
    steps += every_guest(lambda g, s, o: [(g, M, p + b"\0") for p in mkdir_targets(s, o)])
    steps += every_guest(
        lambda g, s, o: [(g, Op.SET_PERMS, p + b"\0" + e) for p, e in set_perms_targets(s, o)]
    )
    # what the permission changes allowed (or not)
    steps += [
        ("g2", R, home(G1) + b"/c\0"),
        ("g2", W, home(G1) + b"/c\0x"),
        ("g2", W, home(G1) + b"/mk\0by64"),
        ("g2", R, home(G1) + b"/mk\0"),
        ("g1", R, home(G2) + b"/c\0"),
        ("g1", R, home(G2) + b"/mk\0"),
        ("g2", W, b"/iso/s\0by64"),
        ("g2", R, b"/iso/s\0"),
        ("g2", W, b"/iso/s/new64\0"),
        ("g2", GP, b"/iso/s/new64\0"),
        ("g2", W, b"/iso/s/c\0by64"),
        ("g1", GP, b"/iso/s/c\0"),
        ("a", GP, b"/iso/s/c\0"),
    ]
    steps += every_guest(lambda g, s, o: [(g, X, p + b"\0") for p in rm_targets(s, o)])

    # --- transactions -----------------------------------------------------
    inside_g1: list[bytes] = [b"c", home(G2) + b"/c", b"/iso/d0", b"/iso/r1", b"/iso/s/nope"]
    steps += [
        ("g1", TS, b"\0"),
        ("g2", TS, b"\0"),
        *reads("g1", inside_g1, 1),
        ("g1", W, b"c/tx\0in1", 1),
        ("g1", W, b"/iso/s/tx1\0in1", 1),
        ("g1", W, b"/iso/w2/tx1\0in1", 1),
        ("g1", W, b"/iso/d0/tx1\0in1", 1),
        ("g1", M, b"/iso/r1/tx1\0", 1),
        ("g1", X, b"/iso/s/c\0", 1),
        ("g1", Op.SET_PERMS, b"c/tx\0" + perms(f"n{G1}", f"r{G2}"), 1),
        ("g1", D, b"/iso/s\0", 1),
        ("g2", R, b"/iso/s/tx1\0"),  # not visible outside
        ("g2", R, b"/iso/s/c\0", 1),  # g2's own transaction 1 is not g1's
        ("g2", W, b"/iso/w2/tx2\0in2", 1),
        ("g2", R, b"/iso/s\0", 1),
        ("g2", W, b"c/tx\0in2", 1),
        ("g2", R, b"c\0", 99),
        ("g1", TE, b"T\0", 1),  # events now, filtered for g2
        ("a", W, b"/iso/s\0changed"),  # g2's transaction read it
        ("g2", TE, b"T\0", 1),  # EAGAIN
        ("g2", R, b"/iso/w2/tx2\0"),
        ("g2", TS, b"\0"),
        ("g2", W, b"/iso/w2/tx2\0in2", 2),
        ("g2", W, b"c/tx\0in2", 2),
        ("g2", W, b"/iso/r1/tx2\0in2", 2),
        ("g2", TE, b"F\0", 2),  # aborted: no events
        ("g2", TS, b"\0"),
        ("g2", W, b"/iso/w2/tx2\0in2", 3),
        ("g2", TE, b"T\0", 3),
        ("g1", TE, b"T\0", 3),  # someone else's transaction id
        ("g1", TS, b"\0", 2),
    ]

    # --- domain operations, control ------------------------------------
    for g, s, o in (("g1", G1, G2), ("g2", G2, G1)):
        for d in (s, o, 0, G3):
            steps += [
                (g, Op.GET_DOMAIN_PATH, b"%d\0" % d),
                (g, Op.IS_DOMAIN_INTRODUCED, b"%d\0" % d),
                (g, Op.RESUME, b"%d\0" % d),
                (g, Op.RELEASE, b"%d\0" % d),
            ]
        steps += [
            (g, Op.INTRODUCE, b"%d\x000\x007\0" % G3),
            (g, Op.INTRODUCE, b"%d\x000\x007\0" % s),
            (g, Op.INTRODUCE, b"66\x000\x007\0"),
            (g, Op.SET_TARGET, b"%d\x00%d\0" % (s, o)),
            (g, Op.SET_TARGET, b"%d\x00%d\0" % (o, s)),
            (g, Op.CONTROL, b"check\0"),
            (g, Op.CONTROL, b"help\0"),
        ]

    # --- dom0 grants g2 the rights of domain 65 (a device model) ----------
    steps += [
        ("g2", R, b"/iso/t65/c\0"),
        ("a", Op.SET_TARGET, b"%d\x00%d\0" % (G2, G3)),
        ("g2", R, b"/iso/t65/c\0"),
        ("g2", W, b"/iso/t65/c\0by64"),
        ("g2", W, b"/iso/t65/new\0by64"),
        ("g2", GP, b"/iso/t65/new\0"),
        ("g2", Op.SET_PERMS, b"/iso/t65/c\0" + perms(f"n{G3}", f"r{G1}")),
        ("g2", Op.SET_PERMS, b"/iso/t65/c\0" + perms(f"n{G2}")),
        ("g1", R, b"/iso/t65/c\0"),
        ("a", W, b"/iso/t65/c\0by0"),
        ("g2", Op.RESUME, b"%d\0" % G3),
        ("g2", Op.RELEASE, b"%d\0" % G3),
        ("g2", X, b"/iso/t65/new\0"),
    ]

    # --- who hears about domains ------------------------------------------
    steps += [
        ("a", Op.INTRODUCE, b"66\x000\x007\0"),
        ("a", Op.SET_PERMS, b"@introduceDomain\0" + perms("n0", f"r{G1}")),
        ("a", Op.SET_PERMS, b"@releaseDomain\0" + perms("n0", f"r{G2}")),
        ("a", Op.INTRODUCE, b"67\x000\x007\0"),
        ("a", Op.RELEASE, b"66\0"),
        ("a", Op.SET_PERMS, b"@releaseDomain\0" + perms("n0", f"r{G3}")),  # g2 is 65's target
        ("a", Op.RELEASE, b"67\0"),
        ("a", Op.SET_PERMS, b"@releaseDomain\0" + perms("n0", f"r{G2}")),
        ("a", Op.RESUME, b"%d\0" % G1),
        ("state", G2, "shutdown"),  # @releaseDomain; 64 stays introduced
        ("g2", R, b"c\0"),
        ("a", Op.RESUME, b"%d\0" % G2),
        ("a", Op.IS_DOMAIN_INTRODUCED, b"%d\0" % G2),
    ]

    # --- dom0 changes what guests may see ----------------------------------
    steps += [
        ("a", W, b"/iso/r1/c/deeper\0x"),  # n0 r63, from its parent
        ("a", Op.SET_PERMS, b"/iso/r1/c/deeper\0" + perms("n0")),  # the parent still lets g1 in
        ("a", W, b"/iso/r1/c/deeper\0y"),
        ("a", Op.SET_PERMS, b"/iso/r1/c\0" + perms("n0")),  # revoked: g1 hears of the revocation
        ("a", W, b"/iso/r1/c/deeper\0z"),  # ... and of nothing after it
        ("a", W, b"/iso/r1/c\0z"),
        ("a", Op.SET_PERMS, b"/iso/r1/c\0" + perms("n0", f"r{G2}")),  # granted to g2
        ("a", W, b"/iso/r1/c/deeper\0w"),
        ("a", W, b"/iso/mix/a/b\0"),
        ("a", Op.SET_PERMS, b"/iso/mix/a\0" + perms("n0", f"r{G1}")),
        ("a", Op.SET_PERMS, b"/iso/mix/a/b\0" + perms("n0", f"r{G2}")),
        ("a", W, b"/iso/mix/c\0"),
        ("a", Op.SET_PERMS, b"/iso/mix/c\0" + perms(f"n{G2}")),
    ]
    for conn in ("g1", "g2"):
        steps += [
            (conn, WA, b"/iso/mix\0mix\0"),
            (conn, WA, b"/iso/mix/a/b\0mixab\0"),
            (conn, WA, b"/iso/mix/c\0mixc\0"),
        ]
    steps += [
        ("a", X, b"/iso/mix\0"),  # each child's event is filtered by its own permissions
        ("a", TS, b"\0"),
        ("a", W, b"/iso/r1/t\0in", 1),
        ("a", Op.SET_PERMS, b"/iso/r1\0" + perms("n0"), 1),  # g1 loses /iso/r1 at commit
        ("a", W, b"/iso/r1/c\0in", 1),
        ("a", W, b"/iso/r1/tmp\0", 1),
        ("a", X, b"/iso/r1/tmp\0", 1),  # created and removed in the transaction
        ("g1", R, b"/iso/r1\0"),
        ("a", TE, b"T\0", 1),
        ("g1", R, b"/iso/r1\0"),
        ("g1", R, b"/iso/r1/t\0"),
        ("g2", R, b"/iso/r1/c\0"),
        ("a", Op.SET_PERMS, b"/iso/r1\0" + perms("n0", f"r{G1}")),
        ("a", Op.CONTROL, b"quota\x00%d\0" % G1),
        ("a", Op.CONTROL, b"quota\x00%d\0" % G2),
        ("a", Op.CONTROL, b"quota\x00%d\0" % G3),
    ]

    # --- unwatching, resetting ---------------------------------------------
    steps += [
        ("g1", UW, home(G1) + b"/c\0relc\0"),  # the relative watch, named absolutely
        ("g1", UW, b"c\0relc\0"),
        ("g1", UW, b"/iso/s\0relc\0"),
        ("g1", UW, b"/iso/d0\0d0\0"),
        ("g1", UW, b"/iso/d0\0d0\0"),
        ("g2", UW, b"/iso/s\0s\0"),
        ("a", W, b"/iso/d0/c\0again"),
        ("a", W, b"/local/domain/63/c\0again"),
        ("a", W, b"/iso/s/c\0again"),
        ("g2", TS, b"\0"),
        ("g2", W, b"c/reset\0in4", 4),
        ("g2", RESET, b""),  # its watches and its transaction go
        ("g2", TE, b"T\0", 4),
        ("g2", R, b"c/reset\0"),
        ("a", W, b"/iso/r1/c\0again"),
        ("a", W, b"/iso/w2/c2\0again"),
        ("g2", WA, b"/iso\0iso\0"),
        ("a", W, b"/iso/w2/c2\0again"),
        ("a", W, b"/iso/r1/c\0again"),
    ]

    # --- death of domain 63, and a new domain 63 -------------------------
    steps += [
        ("a", W, b"/iso/keep\0k"),
        ("a", Op.SET_PERMS, b"/iso/keep\0" + perms("n0", f"r{G1}", f"w{G2}")),
        ("a", W, home(G2) + b"/from63\0"),
        ("a", Op.SET_PERMS, home(G2) + b"/from63\0" + perms(f"n{G1}", f"r{G2}")),
        ("close", "g1"),
        ("state", G1, "dying"),  # its nodes go; @releaseDomain
        ("a", Op.IS_DOMAIN_INTRODUCED, b"%d\0" % G1),
        ("g2", R, b"/iso/s\0"),
        ("g2", R, home(G2) + b"/from63\0"),
        ("g2", R, b"/iso/keep\0"),
        ("a", GP, b"/iso/keep\0"),
        ("a", GP, b"/iso/r1\0"),
        ("a", D, b"/iso\0"),
        ("state", G1, "running"),
        ("connect", "g1", G1),  # INTRODUCE again: @introduceDomain
        ("g1", WA, b"/iso\0iso\0"),
        ("g1", WA, b"c\0relc\0"),
        *reads("g1", read_targets(G1, G2)),
        ("g1", W, b"/iso/keep\0by63"),
        ("g1", W, b"c\0by63"),
        ("a", W, b"/iso/keep\0k2"),
        ("a", W, b"/iso/r1/c\0k2"),
        ("a", Op.SET_PERMS, b"/iso/r1\0" + perms("n0", f"r{G1}")),
        ("g1", R, b"/iso/r1\0"),
        ("a", M, home(G1) + b"\0"),
        ("a", Op.SET_PERMS, home(G1) + b"\0" + perms(f"n{G1}")),
        ("g1", W, b"c\0by63"),
        ("g2", R, home(G1) + b"/c\0"),
        ("a", Op.CONTROL, b"quota\x00%d\0" % G1),
        ("a", Op.CONTROL, b"quota\x00%d\0" % G2),
    ]

    # --- what dom0 sees at the end ----------------------------------------
    steps += reads("a", [*read_targets(G1, G2), b"/iso/keep", b"/iso/w2/tx2"])
    return steps


def test_isolation_transcript(pair: tuple[Target, Target]) -> None:
    lines = check(pair, script())
    assert any(" g2 <- WATCH_EVENT " in line for line in lines)
    assert any(" g1 <- ERROR " in line and "EACCES" in line for line in lines)
