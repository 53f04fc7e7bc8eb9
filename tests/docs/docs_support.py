"""Run the examples of a documentation page against an embedded XenStore.

A page (``docs/**/*.rst``) holds two kinds of runnable examples, and both
run, in the order they appear on the page, against one embedded server
started for that page (``XENSTORED_PATH`` points at it):

* Python doctest blocks (``>>>`` lines and their expected output), all
  sharing the page's globals, as a reader would type them into one
  interpreter;
* ``.. code-block:: console`` blocks: ``$ command`` lines followed by their
  expected output (stdout and stderr together). A block runs as one bash
  script (so ``cd``, variables and ``$!`` carry over inside the block), in a
  scratch directory where ``examples`` and ``docs`` are the repository's and
  ``.venv`` is the environment under test, as in a checkout after the
  README's two commands.

Commands must work as a reader types them, without an activated virtual
environment: the environment's ``bin`` directory is not on ``PATH``, so a
page names ``.venv/bin/pyxs``, ``.venv/bin/python``... A page that says its
commands run in the shell ``.venv/bin/pyxs run -- bash`` gives (see
:data:`SHELL_PAGE`) gets what that shell has: ``XENSTORED_PATH`` and the
environment's ``bin`` first on ``PATH`` (``pyxs run`` puts it there).

Expected output is compared with doctest's rules plus ``ELLIPSIS``: ``...``
matches anything (a temporary path, a timing).
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
EXAMPLES = REPO / "examples"

OPTIONFLAGS = doctest.ELLIPSIS
#: Where a bash command's output starts; never printed by a command itself.
_MARK = "@@pyxs-docs-output-of-command@@"

_CONSOLE = re.compile(r"^(?P<indent>[ \t]*)\.\. code-block:: console[ \t]*$")

#: A page whose text holds this runs its console blocks in that shell.
SHELL_PAGE = "``.venv/bin/pyxs run -- bash``"


def pages() -> list[Path]:
    """Every page of the documentation, sorted."""
    return sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts)


@dataclass
class Command:
    """One ``$ command`` of a console block and the output expected of it."""

    command: str
    want: str
    lineno: int  # 1-based line of the command in the page


@dataclass
class ConsoleBlock:
    lineno: int  # 1-based line of the directive
    end: int  # 1-based line after the block
    commands: list[Command] = field(default_factory=list)


def console_blocks(text: str) -> list[ConsoleBlock]:
    """The ``.. code-block:: console`` blocks of ``text``."""
    lines = text.splitlines()
    blocks: list[ConsoleBlock] = []
    i = 0
    while i < len(lines):
        m = _CONSOLE.match(lines[i])
        if not m:
            i += 1
            continue
        indent = len(m.group("indent"))
        start = i
        i += 1
        # options (":caption: ...") and the blank line before the content
        while (
            i < len(lines)
            and (not lines[i].strip() or lines[i].strip().startswith(":"))
            and (not lines[i].strip() or _indent(lines[i]) > indent)
        ):
            i += 1
        body: list[tuple[int, str]] = []
        body_indent = None
        while i < len(lines):
            line = lines[i]
            if line.strip():
                if _indent(line) <= indent:
                    break
                if body_indent is None:
                    body_indent = _indent(line)
            body.append((i + 1, line))
            i += 1
        block = ConsoleBlock(start + 1, i + 1)
        current: Command | None = None
        for lineno, line in body:
            content = line[body_indent:] if body_indent is not None else line.strip()
            if content.startswith("$ "):
                current = Command(content[2:], "", lineno)
                block.commands.append(current)
            elif current is None:
                if content.strip():
                    raise ValueError(f"line {lineno}: output before any '$ ' command")
            else:
                current.want += content.rstrip() + "\n"
        for command in block.commands:
            command.want = command.want.rstrip("\n") + "\n" if command.want.strip() else ""
        if not block.commands:
            raise ValueError(f"line {start + 1}: a console block without a '$ ' command")
        blocks.append(block)
    return blocks


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


Step = Union[doctest.Example, ConsoleBlock]


def steps(text: str, name: str) -> Iterator[Step]:
    """The page's doctest examples and console blocks, in page order."""
    blocks = console_blocks(text)
    parser = doctest.DocTestParser()
    examples = parser.get_examples(text, name)
    for example in examples:
        for block in blocks:
            if block.lineno <= example.lineno + 1 < block.end:
                raise ValueError(f"{name}:{example.lineno + 1}: '>>>' inside a console block")
    items: list[tuple[int, Step]] = [(e.lineno + 1, e) for e in examples]
    items += [(b.lineno, b) for b in blocks]
    for _, item in sorted(items, key=lambda pair: pair[0]):
        yield item


class PageFailure(AssertionError):
    pass


def run_page(path: Path, socket_path: str, scratch: Path) -> int:
    """Run every example of the page at ``path``; return how many ran.

    :raises PageFailure: listing every example whose output differed.
    """
    text = path.read_text()
    name = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    globs: dict[str, object] = {"__name__": "__docs__"}
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS, verbose=False)
    checker = doctest.OutputChecker()
    env = console_env(socket_path, in_pyxs_shell=SHELL_PAGE in text)
    ran = 0
    pending: list[doctest.Example] = []

    def flush() -> None:
        if not pending:
            return
        test = doctest.DocTest(list(pending), globs, name, str(path), 0, None)
        test.globs = globs  # DocTest copies them; the page shares one namespace
        pending.clear()
        out: list[str] = []
        result = runner.run(test, out=out.append, clear_globs=False)
        if result.failed:
            report.append("".join(out))

    try:
        for step in steps(text, name):
            if isinstance(step, doctest.Example):
                pending.append(step)
                ran += 1
                continue
            flush()
            ran += len(step.commands)
            for command, got in zip(step.commands, run_console(step, env, scratch)):
                if not checker.check_output(command.want, got, OPTIONFLAGS):
                    report.append(
                        f"{name}:{command.lineno}: $ {command.command}\n"
                        + checker.output_difference(
                            doctest.Example(command.command, command.want), got, OPTIONFLAGS
                        )
                    )
        flush()
    finally:
        # Close what the page left open (a failing example may skip its close()).
        for value in list(globs.values()):
            close = getattr(value, "close", None)
            if type(value).__name__ in {"Client", "xs"} and callable(close):
                try:
                    close()
                except Exception:  # closed already
                    pass
        globs.clear()
    if report:
        raise PageFailure("\n".join(report))
    return ran


def console_env(socket_path: str, *, in_pyxs_shell: bool = True) -> dict[str, str]:
    """The environment of a console block; ``in_pyxs_shell``: as in the shell
    of ``.venv/bin/pyxs run -- bash``, else as in a plain shell of the
    checkout (the environment's ``bin`` directory off ``PATH``)."""
    env = dict(os.environ)
    env["XENSTORED_PATH"] = socket_path
    bindir = os.path.dirname(sys.executable)
    path = [p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != bindir]
    if in_pyxs_shell:
        path.insert(0, bindir)
    env["PATH"] = os.pathsep.join(path)
    env.pop("VIRTUAL_ENV", None)
    env["COLUMNS"] = "80"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("XENSTORED_RUNDIR", None)
    return env


def run_console(block: ConsoleBlock, env: dict[str, str], cwd: Path) -> list[str]:
    """Run a console block as one bash script; the output of each command."""
    script = []
    for command in block.commands:
        script.append(f"printf '%s\\n' '{_MARK}'")
        script.append(f"{{ {command.command}\n}} 2>&1")
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    parts = result.stdout.split(_MARK + "\n")
    outputs = parts[1:]
    if parts[0] or len(outputs) != len(block.commands):
        raise PageFailure(f"line {block.lineno}: console block garbled:\n{result.stdout}")
    return outputs


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A scratch directory in which ``examples`` and ``docs`` are the
    repository's and ``.venv`` the environment under test (so that pages can
    name them as from a checkout), and anything else a page writes is thrown
    away."""
    tmp = tempfile.TemporaryDirectory(prefix="pyxs-docs-", dir="/tmp")
    os.symlink(EXAMPLES, os.path.join(tmp.name, "examples"))
    os.symlink(DOCS, os.path.join(tmp.name, "docs"))
    os.symlink(sys.prefix, os.path.join(tmp.name, ".venv"))
    return tmp
