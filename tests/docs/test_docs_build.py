"""The documentation site builds with warnings as errors, and its sources
follow the rule that makes every example run."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
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
