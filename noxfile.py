"""The whole test suite on every Python pyxs supports: ``nox -s tests-3.9``.

Sessions: ``tests-3.9``, ``tests-3.10``, ``tests-3.11``, ``tests-3.12``,
``tests-3.13`` (CPython) and ``tests-pypy3.9`` (PyPy); plain ``nox`` runs
them all, one after the other. Each installs the package with its ``test``
and ``docs`` extras (the suite builds the docs) in a fresh virtualenv and
runs the whole suite; arguments after ``--`` go to pytest
(``nox -s tests-3.13 -- -x -q tests/aio``).

Interpreters are found by name (``python3.9``, ``pypy3.9``) on PATH and
under ``$(pyenv root)/versions/*/bin`` (tests/interpreters.py): pyenv's shims
run only the versions pyenv has made active, so its versions folders go
first on PATH here. A missing interpreter is an error, never a skipped
session, and nox never downloads one.

PyPy: gevent and eventlet do not install there (pyproject's test extra
leaves them out by an environment marker), so the PyPy session deselects
the tests marked ``greenlets``, and those marked ``cpython`` (they need
what only CPython has, such as tracemalloc): ``-m "not greenlets and not
cpython"``. Every CPython session runs them. Give PyPy's session your own ``-m`` as
``-m "not greenlets and not cpython and ..."``: pytest keeps the last ``-m``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent / "tests"))
from interpreters import pyenv_bin_dirs  # tests/interpreters.py

CPYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
PYPYS = ["pypy3.9"]

nox.needs_version = ">=2025.5.1"
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
nox.options.default_venv_backend = "venv"  # Debian's pypy3 makes venvs (pypy3-venv)

os.environ["PATH"] = os.pathsep.join([*map(str, pyenv_bin_dirs()), os.environ.get("PATH", "")])


@nox.session(python=CPYTHONS + PYPYS)
def tests(session: nox.Session) -> None:
    """The whole suite on one interpreter."""
    session.install(".[test,docs]")
    deselect = ["-m", "not greenlets and not cpython"] if session.python in PYPYS else []
    session.run("python", "-m", "pytest", *deselect, *session.posargs)
