"""The commands of README.md and of the docs work as written in a checkout
after the README's two commands, without an activated virtual environment.

The console blocks of the docs are run (test_docs_pages) with the
environment's ``bin`` directory off ``PATH``, so a bare ``pyxs`` would fail
there; here each command line is also read: the tools that live in the
virtual environment are named by their ``.venv/bin/`` path, except inside
``pyxs run -- CMD`` (which puts ``.venv/bin`` first on CMD's ``PATH``) and
on a page that runs in the shell of ``.venv/bin/pyxs run -- bash``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from docs_support import DOCS, REPO, SHELL_PAGE, console_blocks, pages

#: Commands that a checkout has only in .venv/bin.
VENV_TOOLS = {"pip", "pip3", "pyxs", "python", "python3", "pytest", "sphinx-build", "mypy", "ruff"}


def top_level_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at ``&&``, ``||``, ``;``,
    ``|``, ``&``), as word lists; what follows ``pyxs run ... --`` is CMD."""
    words = shlex.split(line, comments=True, posix=True)
    commands: list[list[str]] = [[]]
    for word in words:
        if word in {"&&", "||", ";", "|", "&"}:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def misnamed(line: str) -> list[str]:
    """The venv tools of ``line`` named without ``.venv/bin/``."""
    bad = []
    for words in top_level_commands(line.replace(";", " ; ")):
        first = words[0]
        if first in VENV_TOOLS and not (first == "python3" and words[1:3] == ["-m", "venv"]):
            bad.append(first)
    return bad


def readme_command_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        lines += [line.strip() for line in block.splitlines() if line.strip()]
    for span in re.findall(r"`([^`\n]+)`", text.replace("```", "")):
        words = span.split()  # a command has arguments; a lone word is a name
        if len(words) > 1 and (words[0] in VENV_TOOLS or words[0].startswith(".venv/")):
            lines.append(span)
    return lines


def test_readme_commands_name_the_venv() -> None:
    lines = readme_command_lines()
    assert any(line.startswith("python3 -m venv .venv") for line in lines)
    assert any("sphinx-build" in line for line in lines)  # the docs command was read
    for line in lines:
        assert not misnamed(line), f"README.md: {line!r} needs .venv/bin/ for {misnamed(line)}"


PAGES = [p for p in pages() if console_blocks(p.read_text())]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_console_commands_name_the_venv(page: Path) -> None:
    text = page.read_text()
    if SHELL_PAGE in text:
        return  # its commands run in that shell (and test_docs_pages runs them so)
    for block in console_blocks(text):
        for command in block.commands:
            assert not misnamed(command.command), (
                f"{page.relative_to(REPO)}:{command.lineno}: $ {command.command}"
            )


def test_the_check_catches_bare_commands() -> None:
    assert misnamed("pip install -e '.[docs]' && sphinx-build -W docs out") == [
        "pip",
        "sphinx-build",
    ]
    assert misnamed("pyxs run -- python examples/x.py") == ["pyxs"]
    assert misnamed(".venv/bin/pyxs run -- python examples/x.py; echo $?") == []
    assert misnamed("python3 -m venv .venv && .venv/bin/pip install -q .") == []
