"""The ``xen`` package, standing in for Xen's own: only ``xen.lowlevel.xs``."""
