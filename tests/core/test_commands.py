"""pyxs.commands as a module: requests built, replies decoded, procedures
driven by the one Driver and its catch rule, the one retry policy.

No server: replies are real :class:`~pyxs.protocol.Packet` objects made here.
The end-to-end tests (tests/client, tests/aio) run the same operations
against real servers.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

from pyxs import commands
from pyxs.commands import Command, Driver, RetryPolicy, run_blocking
from pyxs.exceptions import (
    InvalidPath,
    NoEntryError,
    NotSupportedError,
    PermissionDeniedError,
    TooBigError,
    TransactionConflictError,
    UnexpectedPacket,
    XenStoreError,
)
from pyxs.protocol import Op, Packet


def reply(command: Command[Any], payload: bytes) -> Packet:
    """The server's success reply to ``command``."""
    return Packet(int(command.op), 7, 0, payload)


def error(name: str) -> Packet:
    """The server's error reply: ``ENOENT\\0``..."""
    return Packet(int(Op.ERROR), 7, 0, name.encode() + b"\0")


class Script:
    """A blocking exchange that answers from a list and records each request."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[Op, bytes]] = []

    def __call__(self, command: Command[Any]) -> Packet:
        self.sent.append((command.op, command.payload))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, Packet):
            return answer
        return reply(command, answer)


# -- requests and replies --------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "op", "payload"),
    [
        (commands.read(b"/a"), Op.READ, b"/a\0"),
        (commands.read("/a"), Op.READ, b"/a\0"),
        (commands.write(b"/a", b"v\0x"), Op.WRITE, b"/a\0v\0x"),
        (commands.write(b"/a", bytearray(b"")), Op.WRITE, b"/a\0"),
        (commands.mkdir(b"/a"), Op.MKDIR, b"/a\0"),
        (commands.rm(b"/a"), Op.RM, b"/a\0"),
        (commands.directory(b"/"), Op.DIRECTORY, b"/\0"),
        (commands.directory_part(b"/a", 12), Op.DIRECTORY_PART, b"/a\x0012\0"),
        (commands.get_perms(b"/a"), Op.GET_PERMS, b"/a\0"),
        (commands.set_perms(b"/a", [b"n0", "r5"]), Op.SET_PERMS, b"/a\0n0\0r5\0"),
        (commands.watch(b"@releaseDomain", b"t"), Op.WATCH, b"@releaseDomain\0t\0"),
        (commands.unwatch(b"/a", "t"), Op.UNWATCH, b"/a\0t\0"),
        (commands.transaction_start(), Op.TRANSACTION_START, b"\0"),
        (commands.transaction_end(True), Op.TRANSACTION_END, b"T\0"),
        (commands.transaction_end(False), Op.TRANSACTION_END, b"F\0"),
        (commands.introduce(3, 4, 5), Op.INTRODUCE, b"3\x004\x005\0"),
        (commands.release(3), Op.RELEASE, b"3\0"),
        (commands.resume(3), Op.RESUME, b"3\0"),
        (commands.set_target(3, 4), Op.SET_TARGET, b"3\x004\0"),
        (commands.get_domain_path(65535), Op.GET_DOMAIN_PATH, b"65535\0"),
        (commands.is_domain_introduced(0), Op.IS_DOMAIN_INTRODUCED, b"0\0"),
        (commands.reset_watches(), Op.RESET_WATCHES, b""),
        (commands.control(b"print", "hi"), Op.CONTROL, b"print\0hi\0"),
    ],
)
def test_request_payloads(command: Command[Any], op: Op, payload: bytes) -> None:
    assert (command.op, command.payload) == (op, payload)


@pytest.mark.parametrize(
    ("command", "payload", "value"),
    [
        (commands.read(b"/a"), b"v\0\0", b"v\0\0"),  # raw: NULs are data
        (commands.read(b"/a"), b"", b""),
        (commands.write(b"/a", b""), b"OK\0", None),
        (commands.directory(b"/"), b"a\0bc\0", [b"a", b"bc"]),
        (commands.directory(b"/"), b"", []),
        (commands.get_perms(b"/a"), b"n0\0r5\0", [b"n0", b"r5"]),
        (commands.transaction_start(), b"4294967295\0", 4294967295),
        (commands.get_domain_path(1), b"/local/domain/1\0", b"/local/domain/1"),
        (commands.is_domain_introduced(1), b"T\0", True),
        (commands.is_domain_introduced(1), b"F\0", False),
        (commands.control(b"check"), b"\0", b""),
        (commands.directory_part(b"/a", 0), b"9\0a\0b\0\0", (b"9", b"a\0b\0", True)),
        (commands.directory_part(b"/a", 0), b"9\0a\0b\0", (b"9", b"a\0b\0", False)),
        (commands.directory_part(b"/a", 4), b"9\0\0", (b"9", b"", True)),
    ],
)
def test_replies_decoded(command: Command[Any], payload: bytes, value: Any) -> None:
    assert command.result(reply(command, payload)) == value


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        (commands.write(b"/a", b""), b"KO\0"),
        (commands.transaction_start(), b"0\0"),
        (commands.transaction_start(), b"4294967296\0"),
        (commands.transaction_start(), b"-1\0"),
        (commands.directory_part(b"/a", 0), b"no generation"),
    ],
)
def test_malformed_replies_are_unexpected(command: Command[Any], payload: bytes) -> None:
    with pytest.raises(UnexpectedPacket):
        command.result(reply(command, payload))


def test_error_reply_raises_its_error_and_other_ops_are_unexpected() -> None:
    command = commands.read(b"/a")
    with pytest.raises(NoEntryError) as caught:
        command.result(error("ENOENT"))
    assert caught.value.args[0] == errno.ENOENT
    with pytest.raises(UnexpectedPacket, match="expected a reply of type READ"):
        command.result(Packet(int(Op.WRITE), 7, 0, b"OK\0"))


@pytest.mark.parametrize(
    ("make", "exception"),
    [
        (lambda: commands.read(b"/a b"), InvalidPath),
        (lambda: commands.read(b"/a/"), InvalidPath),
        (lambda: commands.write(b"/a", "str"), TypeError),
        (lambda: commands.directory_part(b"/a", -1), ValueError),
        (lambda: commands.directory_part(b"/a", True), ValueError),
        (lambda: commands.set_perms(b"/a", [b"x0"]), ValueError),
        (lambda: commands.set_perms(b"/bad/", [b"x0"]), InvalidPath),  # the path first
        (lambda: commands.release(65536), ValueError),
        (lambda: commands.release(True), ValueError),
        (lambda: commands.introduce(1, -1, 2), ValueError),
        (lambda: commands.introduce(1, 1, -2), ValueError),
        (lambda: commands.control(), ValueError),
        (lambda: commands.watch(b"/a", "tök"), ValueError),
    ],
)
def test_bad_arguments_raise_before_any_request(make: Any, exception: type) -> None:
    with pytest.raises(exception):
        make()


# -- the driver ------------------------------------------------------------------


def test_driver_of_a_command_is_done_at_its_reply() -> None:
    driver = Driver(commands.read(b"/a"))
    assert driver.command.op == Op.READ and not driver.done
    assert driver.feed(reply(driver.command, b"v")) is True
    assert driver.done and driver.result == b"v"


def test_driver_raises_a_commands_error_reply() -> None:
    driver = Driver(commands.read(b"/a"))
    with pytest.raises(NoEntryError):
        driver.feed(error("ENOENT"))
    assert not driver.done


def test_driver_validates_a_procedures_arguments_when_made() -> None:
    with pytest.raises(InvalidPath):
        Driver(commands.list_children(b"/a//b"))


def test_driver_throws_only_xenstore_errors_into_a_procedure() -> None:
    seen: list[BaseException] = []

    def procedure() -> commands.Procedure[str]:
        for _ in range(2):
            try:
                yield commands.read(b"/a")
            except BaseException as exc:  # the test: what gets in
                seen.append(exc)
        return "done"

    driver = Driver(procedure())
    assert driver.feed(error("EACCES")) is False
    assert isinstance(seen[0], PermissionDeniedError)
    # A reply of another type: not thrown in; the procedure is closed and it propagates.
    with pytest.raises(UnexpectedPacket):
        driver.feed(Packet(int(Op.WRITE), 7, 0, b"OK\0"))
    assert len(seen) == 2 and isinstance(seen[1], GeneratorExit)
    assert driver.procedure is not None and driver.procedure.gi_frame is None


def test_driver_propagates_the_error_a_procedure_does_not_catch() -> None:
    driver = Driver(commands.exists(b"/a"))
    with pytest.raises(PermissionDeniedError):
        driver.feed(error("EACCES"))


def test_driver_close_closes_the_procedure() -> None:
    closed = []

    def procedure() -> commands.Procedure[None]:
        try:
            yield commands.read(b"/a")
        finally:
            closed.append(True)

    driver = Driver(procedure())
    driver.close()
    assert closed == [True]


def test_run_blocking_closes_the_procedure_on_an_exchange_error() -> None:
    closed = []

    def procedure() -> commands.Procedure[None]:
        try:
            yield commands.read(b"/a")
        except XenStoreError:  # pragma: no cover - the test: never thrown in
            closed.append("caught")
        finally:
            closed.append("closed")

    with pytest.raises(TimeoutError):
        run_blocking(procedure(), Script(TimeoutError()))
    assert closed == ["closed"]


def test_run_blocking_of_a_command() -> None:
    script = Script(b"OK\0")
    assert run_blocking(commands.mkdir(b"/a"), script) is None
    assert script.sent == [(Op.MKDIR, b"/a\0")]


# -- procedures ------------------------------------------------------------------


def test_list_children_is_one_directory_when_it_fits() -> None:
    script = Script(b"a\0b\0")
    assert run_blocking(commands.list_children(b"/x"), script) == [b"a", b"b"]
    assert script.sent == [(Op.DIRECTORY, b"/x\0")]


def test_list_children_reads_parts_after_e2big() -> None:
    script = Script(error("E2BIG"), b"5\0a\0b\0", b"5\0c\0\0")
    assert run_blocking(commands.list_children(b"/x"), script) == [b"a", b"b", b"c"]
    assert script.sent == [
        (Op.DIRECTORY, b"/x\0"),
        (Op.DIRECTORY_PART, b"/x\x000\0"),
        (Op.DIRECTORY_PART, b"/x\x004\0"),
    ]


def test_list_children_starts_again_when_the_generation_changes() -> None:
    script = Script(error("E2BIG"), b"5\0a\0", b"6\0b\0\0", b"6\0a\0", b"6\0b\0c\0\0")
    assert run_blocking(commands.list_children(b"/x"), script) == [b"a", b"b", b"c"]
    offsets = [payload for op, payload in script.sent if op == Op.DIRECTORY_PART]
    assert offsets == [b"/x\x000\0", b"/x\x002\0", b"/x\x000\0", b"/x\x002\0"]


def test_list_children_without_directory_part_leaves_e2big() -> None:
    script = Script(error("E2BIG"), error("ENOSYS"))
    with pytest.raises(TooBigError) as caught:
        run_blocking(commands.list_children(b"/x"), script)
    assert not isinstance(caught.value, NotSupportedError)


def test_exists_outside_a_transaction() -> None:
    assert run_blocking(commands.exists(b"/a"), Script(b"v")) is True
    script = Script(error("ENOENT"))
    assert run_blocking(commands.exists(b"/a"), script) is False
    assert len(script.sent) == 1  # no check of "/" outside a transaction
    with pytest.raises(PermissionDeniedError):
        run_blocking(commands.exists(b"/a"), Script(error("EACCES")))


def test_exists_in_a_live_transaction_checks_the_root() -> None:
    script = Script(error("ENOENT"), b"")
    assert run_blocking(commands.exists(b"/a", in_transaction=True), script) is False
    assert script.sent == [(Op.READ, b"/a\0"), (Op.READ, b"/\0")]
    # A guest cannot read "/": EACCES still says the transaction is alive.
    script = Script(error("ENOENT"), error("EACCES"))
    assert run_blocking(commands.exists(b"/a", in_transaction=True), script) is False


def test_exists_in_a_lost_transaction_raises_the_first_enoent() -> None:
    first = error("ENOENT")
    with pytest.raises(NoEntryError) as caught:
        run_blocking(commands.exists(b"/a", in_transaction=True), Script(first, error("ENOENT")))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# -- the retry policy ------------------------------------------------------------


def test_retry_policy_allows_retries_then_raises_the_conflict() -> None:
    policy = RetryPolicy(2)
    policy.conflicted()
    policy.conflicted()
    with pytest.raises(TransactionConflictError) as caught:
        policy.conflicted()
    assert caught.value.args == (
        errno.EAGAIN,
        "Resource temporarily unavailable",
        "transaction conflicted 3 times",
    )


def test_retry_policy_zero_retries_and_default() -> None:
    with pytest.raises(TransactionConflictError, match="conflicted 1 times"):
        RetryPolicy(0).conflicted()
    policy = RetryPolicy()
    assert policy.retries == commands.DEFAULT_RETRIES == 16
    for _ in range(16):
        policy.conflicted()
    with pytest.raises(TransactionConflictError, match="conflicted 17 times"):
        policy.conflicted()


def test_retry_policy_forever() -> None:
    policy = RetryPolicy(None)
    for _ in range(1000):
        policy.conflicted()
    assert policy.conflicts == 1000


def test_retry_policy_refuses_negative_retries() -> None:
    with pytest.raises(ValueError, match="retries must be >= 0"):
        RetryPolicy(-1)
