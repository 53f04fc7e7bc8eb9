"""Short docstrings on the public API of the client side's modules: every
public function, class, method and property (inherited ones count)."""

from __future__ import annotations

import inspect
import typing

import pytest

import pyxs._internal
import pyxs.client
import pyxs.commands
import pyxs.compat
import pyxs.connection
import pyxs.helpers
import pyxs.paths

MODULES = [
    pyxs._internal,
    pyxs.client,
    pyxs.commands,
    pyxs.compat,
    pyxs.connection,
    pyxs.helpers,
    pyxs.paths,
]


def undocumented(module) -> list[str]:
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if typing.get_origin(obj) is not None:
            continue  # a type alias (on 3.9 and 3.10 isclass() says True of list[int])
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if not inspect.isclass(obj) or obj.__module__ != module.__name__:
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_") and attr != "__str__":
                continue
            is_api = isinstance(value, property) or inspect.isfunction(value)
            if is_api and not inspect.getdoc(getattr(obj, attr)):
                missing.append(f"{name}.{attr}")
    return missing


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_public_api_is_documented(module) -> None:
    assert undocumented(module) == []
