"""pyxs.operations as a module: the method layer over a front end that
answers from a dict, and the walk's order. No server: the requests and
replies are real Packets; tests/client and tests/aio run the same methods
against real servers."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from pyxs import commands
from pyxs.commands import Command, run_blocking
from pyxs.exceptions import NoEntryError, PermissionDeniedError
from pyxs.operations import DomainOperations, TreeWalk, walk_node
from pyxs.protocol import Op, Packet


class Tree:
    """Answers READ and DIRECTORY from ``nodes`` (path -> (value, children))."""

    def __init__(self, nodes: dict[bytes, tuple[bytes, list[bytes]]], hidden=()) -> None:
        self.nodes = nodes
        self.hidden = set(hidden)  # values that cannot be read (EACCES)
        self.sent: list[tuple[Op, bytes]] = []

    def __call__(self, command: Command[Any]) -> Packet:
        self.sent.append((command.op, command.payload))
        path = command.payload.split(b"\0")[0]
        if command.op == Op.IS_DOMAIN_INTRODUCED:
            return Packet(int(command.op), 1, 0, b"T\0")
        if command.op in (Op.GET_DOMAIN_PATH, Op.RELEASE):
            return Packet(int(command.op), 1, 0, b"/local/domain/" + path + b"\0")
        if path not in self.nodes:
            return Packet(int(Op.ERROR), 1, 0, b"ENOENT\0")
        value, children = self.nodes[path]
        if command.op == Op.READ:
            if path in self.hidden:
                return Packet(int(Op.ERROR), 1, 0, b"EACCES\0")
            return Packet(int(Op.READ), 1, 0, value)
        assert command.op == Op.DIRECTORY
        return Packet(int(Op.DIRECTORY), 1, 0, b"".join(c + b"\0" for c in children))


class Front(DomainOperations[bytes, None, bool, "list[bytes]"]):
    """A blocking front end in four lines: what Client supplies, minus I/O."""

    def __init__(self, tree: Tree, in_transaction: bool = False) -> None:
        self.tree = tree
        self.tx = in_transaction

    @property
    def _in_transaction(self) -> bool:
        return self.tx

    def _op(self, make: Callable[..., Any], *args: Any) -> Any:
        return self._submit(make(*args))

    def _op_outside(self, make: Callable[..., Any], *args: Any) -> Any:
        return self._submit(make(*args))

    def _submit(self, operation: Any) -> Any:
        return run_blocking(operation, self.tree)

    def walk(self, top: bytes, topdown: bool = True):
        walk = TreeWalk(top, topdown)
        for step in walk:
            if isinstance(step, tuple):
                yield step
            else:
                walk.answer(run_blocking(step, self.tree))


TREE = {
    b"/": (b"", [b"a", b"b"]),
    b"/a": (b"1", [b"x", b"gone"]),
    b"/a/x": (b"2", []),
    b"/b": (b"3", []),
}


def test_read_with_and_without_default() -> None:
    front = Front(Tree(TREE))
    assert front.read(b"/a") == b"1"
    assert front.read(b"/a") == b"1"  # the cached READ: same request
    assert front.read(b"/missing", b"dflt") == b"dflt"
    assert front.read(b"/missing", b"") == b""
    with pytest.raises(NoEntryError):
        front.read(b"/missing")
    assert front.tree.sent[:2] == [(Op.READ, b"/a\0")] * 2


def test_exists_asks_the_root_only_in_a_transaction() -> None:
    tree = Tree(TREE)
    assert Front(tree).exists(b"/missing") is False
    assert len(tree.sent) == 1
    assert Front(tree, in_transaction=True).exists(b"/missing") is False
    assert tree.sent[1:] == [(Op.READ, b"/missing\0"), (Op.READ, b"/\0")]


def test_domain_ids_as_pyxs_04_took_them() -> None:
    front = Front(Tree(TREE))
    assert front.get_domain_path("5") == b"/local/domain/5"
    assert front.get_domain_path(b"6") == b"/local/domain/6"
    assert front.is_domain_introduced(7) is True
    assert front.debug is not None and Front.debug is Front.control
    with pytest.raises(ValueError, match="must be an integer, not 'x'"):
        front.release_domain("x")
    with pytest.raises(ValueError, match=r"0\.\.65535, not 70000"):
        front.release_domain("70000")
    with pytest.raises(ValueError, match="domain 0 cannot be introduced"):
        front.introduce_domain("0", 1, 2)
    # pyxs 0.4's order: domain 0 refused before the mfn, the mfn before the range
    with pytest.raises(ValueError, match="domain 0 cannot be introduced"):
        front.introduce_domain(b"0", -1, 2)
    with pytest.raises(ValueError, match="mfn must be"):
        front.introduce_domain(70000, -1, 2)
    assert len(front.tree.sent) == 3  # bad arguments send nothing


def test_walk_top_down_prunes_and_skips_what_went_away() -> None:
    front = Front(Tree(TREE, hidden={b"/b"}))
    seen = []
    for path, value, children in front.walk(b"/"):
        seen.append((path, value, list(children)))
        if path == b"/a":
            children.remove(b"x")  # pruned: never visited
    assert seen == [
        (b"/", b"", [b"a", b"b"]),
        (b"/a", b"1", [b"x", b"gone"]),
        (b"/b", b"", []),  # EACCES on its value: b""
    ]


def test_walk_bottom_up() -> None:
    front = Front(Tree(TREE))
    assert [p for p, _, _ in front.walk(b"/a", topdown=False)] == [b"/a/x", b"/a"]


def test_walk_of_a_missing_top_raises_and_bad_top_is_refused() -> None:
    with pytest.raises(NoEntryError):
        list(Front(Tree(TREE)).walk(b"/missing"))
    with pytest.raises(ValueError):
        next(TreeWalk(b"/bad path", True))


def test_walk_node_lets_other_errors_through() -> None:
    tree = Tree(TREE)

    def denied(command: Command[Any]) -> Packet:
        return Packet(int(Op.ERROR), 1, 0, b"EACCES\0")

    with pytest.raises(PermissionDeniedError):
        run_blocking(walk_node(b"/a", False), denied)
    assert run_blocking(walk_node(b"/gone", False), tree) is None
    assert run_blocking(walk_node(b"/a/x", True), tree) == (b"2", [])
    assert commands.domain_id(b"65535") == 65535
