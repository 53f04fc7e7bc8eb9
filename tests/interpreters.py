"""Finding the machine's other Python interpreters, by name.

Used by noxfile.py (a test session per supported interpreter) and by the
compat transcript (tests/client/test_compat.py), which must run Xen's
``xen.lowlevel.xs``, a CPython 3.11 extension, whatever Python runs the suite.

An interpreter is looked for on PATH, then under pyenv's
``$(pyenv root)/versions/*/bin``: pyenv's shims on PATH only run the versions
pyenv has made active, so the versions folder is searched directly. A
candidate counts only once it has been run and said what it is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

_ASK = "import sys; print(sys.implementation.name, *sys.version_info[:2])"


def pyenv_root() -> Path | None:
    """``$(pyenv root)``: $PYENV_ROOT, else what ``pyenv root`` says, else ~/.pyenv."""
    root = os.environ.get("PYENV_ROOT", "")
    if not root and shutil.which("pyenv"):
        try:
            root = subprocess.run(
                ["pyenv", "root"], capture_output=True, text=True, timeout=60
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = ""
    path = Path(root) if root else Path.home() / ".pyenv"
    return path if path.is_dir() else None


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))


def pyenv_bin_dirs() -> list[Path]:
    """``$(pyenv root)/versions/*/bin``, newest version first."""
    root = pyenv_root()
    if root is None:
        return []
    return sorted((root / "versions").glob("*/bin"), key=_version_key, reverse=True)


def identify(executable: str) -> tuple[str, int, int] | None:
    """(implementation, major, minor) of ``executable``; None if it does not run."""
    try:
        result = subprocess.run(
            [executable, "-c", _ASK], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    words = result.stdout.split()
    if result.returncode != 0 or len(words) != 3:
        return None  # e.g. a pyenv shim for a version pyenv has not made active
    return words[0], int(words[1]), int(words[2])


def find_python(implementation: str, major: int, minor: int) -> str | None:
    """An executable of that Python (``"cpython", 3, 11``), or None."""
    name = f"python{major}.{minor}" if implementation == "cpython" else f"pypy{major}.{minor}"
    candidates = [shutil.which(name)] + [str(d / name) for d in pyenv_bin_dirs()]
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        if identify(candidate) == (implementation, major, minor):
            return candidate
    return None
