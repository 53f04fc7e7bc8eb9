"""``xen.lowlevel``: only ``xs``, from pyxs."""
