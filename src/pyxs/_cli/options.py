"""Command-line parsing for the xenstore-utils subcommands, getopt_long style.

The xenstore-* tools parse their arguments with GNU ``getopt_long``; scripts
written for them rely on its rules, so this parser follows them rather than
argparse's: options and operands may be mixed in any order (``read /a -p``),
``--`` ends the options, short options cluster (``-fp``), a required
argument may be attached (``-n1``) or separate (``-n 1``), long options may
be abbreviated to any unambiguous prefix (``--pre``) and take an argument as
``--opt=ARG`` or ``--opt ARG``; an *optional* argument only as ``--opt=ARG``.

Where 4.17 would print a warning and carry on (an unknown option), this
parser refuses: a usage error, exit status 1 (xenstore-utils' status for
the usage errors it does report).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple

__all__ = ["COMMON", "Opt", "Spec", "UsageError", "format_help", "parse"]

NONE, REQUIRED, OPTIONAL = 0, 1, 2


class Opt(NamedTuple):
    """One option: ``-p``/``--prefix`` setting ``dest``."""

    short: str | None
    long: str | None
    dest: str
    help: str
    arg: int = NONE
    metavar: str = ""
    convert: Callable[[str], Any] | None = None


class Spec(NamedTuple):
    """A subcommand: its name, operands, options and help."""

    name: str
    summary: str
    operands: str  # as shown in the usage line, "key [...]"
    description: str
    options: tuple[Opt, ...]
    min_args: int
    max_args: int | None = None
    #: xenstore-utils tool this subcommand replaces, for the help text
    replaces: str = ""
    epilog: str = ""


class UsageError(Exception):
    """A bad command line: exit status 1, as xenstore-utils."""


#: Options every subcommand takes.
COMMON: tuple[Opt, ...] = (
    Opt(None, "socket", "socket", "connect to the xenstored Unix socket PATH", REQUIRED, "PATH"),
    Opt(
        None,
        "xenbus",
        "xenbus",
        "use the XenBus device (default /dev/xen/xenbus or /proc/xen/xenbus); "
        "PATH may also follow as the next argument if it is a character device",
        OPTIONAL,
        "PATH",
    ),
    Opt("s", None, "compat_s", "accepted and ignored, as by xenstore-utils 4.17"),
    Opt("h", "help", "help", "show this help and exit"),
)


class Namespace:
    """Parsed arguments: one attribute per option ``dest``, plus ``args``."""

    args: list[str]

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # only for unknown names
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"Namespace({self.__dict__!r})"


def _is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def parse(spec: Spec, argv: Sequence[str]) -> Namespace:
    """Parse ``argv`` (after the subcommand name) for ``spec``."""
    options = spec.options + COMMON
    shorts = {o.short: o for o in options if o.short}
    longs = {o.long: o for o in options if o.long}
    values: dict[str, Any] = {}
    for o in options:
        values.setdefault(o.dest, None if o.arg else False)
    operands: list[str] = []

    def store(o: Opt, value: Any, shown: str) -> None:
        if o.convert is not None and value is not None and value is not True:
            try:
                value = o.convert(value)
            except ValueError as exc:
                raise UsageError(f"invalid argument for {shown}: {value!r} ({exc})") from None
        values[o.dest] = value

    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        i += 1
        if arg == "--":
            operands.extend(argv[i:])
            break
        if arg.startswith("--"):
            name, eq, attached = arg[2:].partition("=")
            exact = longs.get(name)
            if exact is not None:
                o = exact
            else:
                matches = sorted(k for k in longs if k.startswith(name))
                if not matches:
                    raise UsageError(f"unrecognized option '--{name}'")
                if len(matches) > 1:
                    names = ", ".join(f"'--{m}'" for m in matches)
                    raise UsageError(f"option '--{name}' is ambiguous; possibilities: {names}")
                o = longs[matches[0]]
            shown = f"--{o.long}"
            if o.arg == NONE:
                if eq:
                    raise UsageError(f"option '{shown}' doesn't allow an argument")
                store(o, True, shown)
            elif eq:
                store(o, attached, shown)
            elif o.arg == REQUIRED:
                if i >= n:
                    raise UsageError(f"option '{shown}' requires an argument")
                store(o, argv[i], shown)
                i += 1
            elif o.dest == "xenbus" and i < n and _is_char_device(argv[i]):
                store(o, argv[i], shown)
                i += 1
            else:
                store(o, True, shown)
            continue
        if arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                letter = arg[j]
                j += 1
                short = shorts.get(letter)
                if short is None:
                    raise UsageError(f"invalid option -- '{letter}'")
                o = short
                shown = f"-{letter}"
                if o.arg == NONE:
                    store(o, True, shown)
                    continue
                if j < len(arg):
                    store(o, arg[j:], shown)
                elif i < n:
                    store(o, argv[i], shown)
                    i += 1
                else:
                    raise UsageError(f"option requires an argument -- '{letter}'")
                break
            continue
        operands.append(arg)
    values["args"] = operands
    result = Namespace(**values)
    if result.help:
        return result
    if len(operands) < spec.min_args:
        raise UsageError("missing operand" if not operands else "too few operands")
    if spec.max_args is not None and len(operands) > spec.max_args:
        raise UsageError(f"extra operand '{operands[spec.max_args]}'")
    return result


def _option_label(o: Opt) -> str:
    parts = []
    if o.short:
        parts.append(f"-{o.short}")
    if o.long:
        if o.arg == REQUIRED:
            parts.append(f"--{o.long} {o.metavar}")
        elif o.arg == OPTIONAL:
            parts.append(f"--{o.long}[={o.metavar}]")
        else:
            parts.append(f"--{o.long}")
    elif o.arg:
        parts[-1] += f" {o.metavar}"
    label = ", ".join(parts)
    return label if o.short else "    " + label


def usage_line(prog: str, spec: Spec) -> str:
    flags = "".join(f" [-{o.short}]" for o in spec.options if o.short and not o.arg)
    with_args = "".join(
        f" [-{o.short} {o.metavar}]" for o in spec.options if o.short and o.arg == REQUIRED
    )
    longs = "".join(f" [--{o.long}]" for o in spec.options if not o.short and o.long)
    operands = f" {spec.operands}" if spec.operands else ""
    return f"usage: {prog} {spec.name} [-h]{flags}{with_args}{longs} [CONNECTION]{operands}"


def _wrap(text: str, width: int, indent: int) -> list[str]:
    words = text.split()
    lines: list[str] = []
    line = ""
    for word in words:
        if line and len(line) + 1 + len(word) > width - indent:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines or [""]


def _option_block(title: str, options: Sequence[Opt], width: int) -> list[str]:
    out = [f"{title}:"]
    column = 24
    for o in options:
        label = "  " + _option_label(o)
        text = _wrap(o.help, width, column)
        if len(label) >= column - 1:
            out.append(label)
            out.extend(" " * column + t for t in text)
        else:
            out.append(label.ljust(column) + text[0])
            out.extend(" " * column + t for t in text[1:])
    return out


def format_help(prog: str, spec: Spec, exit_status: str) -> str:
    """The ``--help`` text of a subcommand."""
    width = 79
    out = [usage_line(prog, spec), ""]
    for paragraph in spec.description.split("\n\n"):
        if paragraph.startswith(" "):
            out.extend(paragraph.splitlines())
        else:
            out.extend(_wrap(paragraph, width, 0))
        out.append("")
    if spec.replaces:
        out.extend(
            _wrap(
                f"Replaces {spec.replaces} (xenstore-utils 4.17): same options, "
                "output, escaping and messages.",
                width,
                0,
            )
        )
        out.append("")
    if spec.options:
        out.extend(_option_block("options", spec.options, width))
        out.append("")
    out.extend(_option_block("connection (CONNECTION)", COMMON[:2], width))
    note = (
        "Without these, as libxenstore: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, "
        "else /var/run/xenstored/socket, else the XenBus device."
    )
    out.extend("  " + line for line in _wrap(note, width, 2))
    out.append("")
    out.extend(_option_block("other", COMMON[2:], width))
    out.append("")
    if spec.epilog:
        out.extend(spec.epilog.rstrip("\n").splitlines())
        out.append("")
    out.append(exit_status.rstrip("\n"))
    return "\n".join(out) + "\n"
