"""Sphinx configuration of the pyxs documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
Every ``>>>`` example and every ``console`` block of these pages is also run
against an embedded XenStore server by ``tests/docs/test_docs_pages.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The checkout's package, also when it is not installed (autodoc imports it).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pyxs

project = "pyxs"
author = "pyxs developers"
copyright = "pyxs developers"  # noqa: A001 - Sphinx's name
release = pyxs.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "performance/*.inc.rst"]
templates_path: list[str] = []
html_static_path: list[str] = []

html_theme = "furo"
html_title = f"pyxs {release}"

# The reference follows the source order and shows signatures with their types.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}
# ``pyxs.Client`` and friends are documented under their public names.
add_module_names = True
python_use_unqualified_type_names = True

# No network: nothing is fetched from other projects' inventories.
nitpicky = False
