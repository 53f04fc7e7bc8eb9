"""The documentation site builds with warnings as errors, and its sources
follow the rule that makes every example run."""

from __future__ import annotations

import importlib
import importlib.util
import os
import posixpath
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from docs_support import DOCS, pages

HAVE_SPHINX = importlib.util.find_spec("sphinx") is not None and (
    importlib.util.find_spec("furo") is not None
)


def need_sphinx() -> None:
    if HAVE_SPHINX:
        return
    message = 'Sphinx and furo are not installed: pip install -e ".[docs]"'
    if os.environ.get("CI"):
        pytest.fail(message)  # never silently skipped in CI
    pytest.skip(message)


def test_sphinx_build_without_warnings(tmp_path: Path) -> None:
    need_sphinx()
    out = tmp_path / "html"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html"),
            *(str(DOCS), str(out), "-d", str(tmp_path / "doctrees")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    for page in pages():
        name = page.relative_to(DOCS).with_suffix(".html")
        if not page.name.endswith(".inc.rst"):
            assert (out / name).is_file(), name
    index = (out / "index.html").read_text()
    assert "Event(path=b'/vm', token=b'token')" in index  # a doctest block, rendered
    reference = (out / "api" / "client.html").read_text()
    assert 'id="pyxs.client.Client.transact"' in reference
    assert (out / "_images" / "targets.svg").is_file()
    check_inventory(out / "objects.inv")


def _resolve(name: str) -> object:
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise LookupError(name)


def check_inventory(path: Path) -> None:
    """objects.inv (what intersphinx links resolve against) names every object
    by a name it can be imported by: no module path doubled, as
    ``pyxs.client.pyxs.client.Event`` was; a class or function also under
    its canonical module.qualname."""
    from sphinx.util.inventory import InventoryFile

    with path.open("rb") as f:
        inventory = InventoryFile.load(f, "", posixpath.join)
    names = {t: set(items) for t, items in inventory.items() if t.startswith("py:")}
    everything = set().union(*names.values())
    for key in ("pyxs.client.Client", "pyxs.client.Event", "pyxs.compat.Error", "pyxs.__version__"):
        assert key in everything, key
    for kind, kind_names in names.items():
        for name in kind_names:
            assert not re.search(r"\b(pyxs(\.\w+)*)\.\1\b", name), (kind, name)
            if kind == "py:module":
                importlib.import_module(name)
                continue
            if kind == "py:attribute":  # instance attributes exist on instances only
                _resolve(name.rpartition(".")[0])
                continue
            obj = _resolve(name)
            if kind in ("py:class", "py:exception", "py:function"):
                canonical = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
                assert canonical in names[kind], (name, canonical)


def test_inventory_check_catches_a_doubled_module_path(tmp_path: Path) -> None:
    from sphinx.util.inventory import InventoryFile

    need_sphinx()
    text = (
        "# Sphinx inventory version 2\n# Project: p\n# Version: 1\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    good = [
        "pyxs.client.Client py:class 1 api/client.html#$ -",
        "pyxs.client.Event py:data 1 api/client.html#$ -",
        "pyxs.compat.Error py:data 1 api/compat.html#$ -",
        "pyxs.__version__ py:data 1 api/pyxs.html#$ -",
    ]
    # each line ends with a newline, as Sphinx writes them (Sphinx 7 drops
    # an unterminated last line)
    body = "".join(line + "\n" for line in good)
    (tmp_path / "good.inv").write_bytes(text.encode() + zlib.compress(body.encode()))
    check_inventory(tmp_path / "good.inv")
    body += "pyxs.client.pyxs.client.Event py:data 1 api/client.html#$ -\n"
    (tmp_path / "objects.inv").write_bytes(text.encode() + zlib.compress(body.encode()))
    with (tmp_path / "objects.inv").open("rb") as f:
        assert InventoryFile.load(f, "", posixpath.join)
    with pytest.raises(AssertionError, match=re.escape("pyxs.client.pyxs.client.Event")):
        check_inventory(tmp_path / "objects.inv")


def test_no_code_block_goes_unrun() -> None:
    # Runnable examples are ">>>" blocks and "console" blocks (both run by
    # test_docs_pages) and literalincludes of examples/ (run by
    # test_docs_examples). Any other code block would be untested.
    for page in pages():
        text = page.read_text()
        for lineno, line in enumerate(text.splitlines(), 1):
            m = re.match(r"\s*\.\. (code-block|code|sourcecode)::\s*(\S*)", line)
            if m:
                assert m.group(2) == "console", f"{page}:{lineno}: {line.strip()}"
            m = re.match(r"\s*\.\. literalinclude::\s*(\S+)", line)
            if m:
                assert re.fullmatch(r"\.\./examples/\w+\.py", m.group(1)), f"{page}:{lineno}"
            # A "::" literal block holding Python would escape both runners.
            assert not line.rstrip().endswith("::") or ".. " in line, f"{page}:{lineno}"


def test_performance_page_is_up_to_date() -> None:
    # The committed tables and charts are what docs/perf.py makes of the
    # committed results.json.
    result = subprocess.run(
        [sys.executable, str(DOCS / "perf.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_perf_script_notices_a_stale_table(tmp_path: Path) -> None:
    perf_dir = tmp_path / "performance"
    perf_dir.mkdir()
    for f in (DOCS / "performance").iterdir():
        (perf_dir / f.name).write_bytes(f.read_bytes())
    (perf_dir / "targets.inc.rst").write_text("stale\n")
    result = subprocess.run(
        [sys.executable, str(DOCS / "perf.py"), "--check", "--out", str(perf_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "targets.inc.rst" in result.stderr
