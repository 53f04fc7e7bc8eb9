"""``xen.lowlevel.xs`` as pyxs provides it: put this directory's parent on
PYTHONPATH and programs written for Xen's binding run on pyxs unchanged."""

from pyxs.compat import Error, xs

__all__ = ["Error", "xs"]
