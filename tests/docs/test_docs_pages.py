"""Every example of the documentation runs, against an embedded XenStore.

Each page gets a fresh :class:`pyxs.server.Server`; its ``>>>`` examples and
its ``console`` blocks run in page order (see ``docs_support``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_support import (
    DOCS,
    PageFailure,
    console_blocks,
    console_env,
    pages,
    run_page,
    scratch_dir,
)

from pyxs.server import Server

PAGES = pages()
#: pages whose examples run gevent and eventlet: CPython only (tests/client/test_greenlets.py)
GREENLET_PAGES = {"greenlets.rst"}


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(
            p,
            id=str(p.relative_to(DOCS)),
            marks=[pytest.mark.greenlets] if str(p.relative_to(DOCS)) in GREENLET_PAGES else [],
        )
        for p in PAGES
    ],
)
def test_page_examples(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Server() as server, scratch_dir() as scratch:
        monkeypatch.setenv("XENSTORED_PATH", server.socket_path)
        monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
        monkeypatch.setenv("PATH", console_env(server.socket_path)["PATH"])
        run_page(page, server.socket_path, Path(scratch))


def test_the_pages_have_examples() -> None:
    # The tutorial pages exist and are not prose only.
    names = {str(p.relative_to(DOCS)) for p in PAGES}
    for required in [
        "tutorial/basics.rst",
        "tutorial/connections.rst",
        "tutorial/transactions.rst",
        "tutorial/events.rst",
        "tutorial/compat.rst",
        "asyncio.rst",
        "greenlets.rst",
        "server.rst",
        "testing.rst",
        "cli.rst",
        "migrating.rst",
    ]:
        assert required in names
        text = (DOCS / required).read_text()
        assert ">>> " in text or console_blocks(text), required


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.rst"
    page.write_text(text)
    return page


def test_a_wrong_output_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The runner is not a rubber stamp: wrong Python and console output fail.
    with Server() as server, scratch_dir() as scratch:
        monkeypatch.setenv("XENSTORED_PATH", server.socket_path)
        page = _page(
            tmp_path,
            "Title\n=====\n\n>>> import pyxs\n>>> with pyxs.Client() as c:\n"
            "...     c.write(b'/a', b'1')\n...     c[b'/a']\nb'2'\n\n"
            ".. code-block:: console\n\n   $ .venv/bin/pyxs read /a\n   3\n",
        )
        with pytest.raises(PageFailure) as info:
            run_page(page, server.socket_path, Path(scratch))
        assert "b'2'" in str(info.value)
        assert "$ .venv/bin/pyxs read /a" in str(info.value)


def test_python_and_console_share_the_server_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Server() as server, scratch_dir() as scratch:
        monkeypatch.setenv("XENSTORED_PATH", server.socket_path)
        page = _page(
            tmp_path,
            ">>> import pyxs\n>>> c = pyxs.Client(); c.connect()\n"
            ">>> c[b'/a'] = b'from python'\n\n"
            ".. code-block:: console\n\n   $ .venv/bin/pyxs read /a\n   from python\n"
            "   $ x=1; echo $x\n   1\n   $ .venv/bin/pyxs write /a shell\n\n"
            ">>> c[b'/a']\nb'shell'\n>>> c.close()\n",
        )
        assert run_page(page, server.socket_path, Path(scratch)) == 8


def test_console_block_parsing() -> None:
    text = (
        "Intro\n\n.. code-block:: console\n   :caption: demo\n\n"
        "   $ echo a\n   a\n\n   $ true\n   $ printf 'b\\nc\\n'\n   b\n   c\nafter\n"
    )
    (block,) = console_blocks(text)
    assert [(c.command, c.want) for c in block.commands] == [
        ("echo a", "a\n"),
        ("true", ""),
        ("printf 'b\\nc\\n'", "b\nc\n"),
    ]
    assert block.commands[0].lineno == 6


TUTORIAL = ["basics", "connections", "transactions", "events", "compat"]


def test_tutorial_pages_in_order_on_one_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader follows the tutorial on one ``pyxs run``: each page works after
    the ones before it, as it does on a fresh server (test_page_examples)."""
    toctree = (DOCS / "index.rst").read_text()
    assert [f"tutorial/{name}" in toctree for name in TUTORIAL] == [True] * len(TUTORIAL)
    order = sorted(TUTORIAL, key=lambda name: toctree.index(f"tutorial/{name}"))
    assert order == TUTORIAL
    with Server() as server, scratch_dir() as scratch:
        monkeypatch.setenv("XENSTORED_PATH", server.socket_path)
        monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
        monkeypatch.setenv("PATH", console_env(server.socket_path)["PATH"])
        for name in TUTORIAL:
            run_page(DOCS / "tutorial" / f"{name}.rst", server.socket_path, Path(scratch))
