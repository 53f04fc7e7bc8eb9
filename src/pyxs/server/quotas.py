"""The quotas that bind unprivileged domains, as cxenstored 4.17 has them.

:class:`Quotas` are hard: a request that would exceed one fails (the errno
cxenstored answers with is chosen where the quota is checked).
:class:`SoftQuotas` are only reported. The names are those of
``CONTROL quota`` and of cxenstored's ``-Q`` option.
"""

from __future__ import annotations

__all__ = ["Quotas", "SoftQuotas"]


class Quotas:
    """Hard quotas for unprivileged domains (cxenstored 4.17 defaults).

    The attribute names are the ``CONTROL quota`` names with ``-`` as
    ``_``. Command-line equivalents: ``-E`` nodes, ``-W`` watches, ``-t``
    transactions, ``-A`` permissions, ``-S`` node_size, ``-M`` path_max,
    ``-Q name=value`` any of them.
    """

    __slots__ = (
        "memory",
        "node_size",
        "nodes",
        "outstanding",
        "path_max",
        "permissions",
        "transaction_nodes",
        "transactions",
        "watches",
    )

    #: (name, description) in the order ``CONTROL quota`` lists them.
    DESCRIPTIONS = (
        ("nodes", "Nodes per domain"),
        ("watches", "Watches per domain"),
        ("transactions", "Transactions per domain"),
        ("outstanding", "Outstanding requests per domain"),
        ("transaction-nodes", "Max. number of accessed nodes per transaction"),
        ("memory", "Total Xenstore memory per domain (error level)"),
        ("node-size", "Max. size of a node"),
        ("path-max", "Max. length of a node path"),
        ("permissions", "Max. number of permissions per node"),
    )

    def __init__(
        self,
        nodes: int = 1000,
        watches: int = 128,
        transactions: int = 10,
        outstanding: int = 20,
        transaction_nodes: int = 1024,
        memory: int = 2 * 1024 * 1024 + 512 * 1024,
        node_size: int = 2048,
        path_max: int = 2048,
        permissions: int = 5,
    ) -> None:
        self.nodes = nodes
        self.watches = watches
        self.transactions = transactions
        self.outstanding = outstanding
        self.transaction_nodes = transaction_nodes
        self.memory = memory
        self.node_size = node_size
        self.path_max = path_max
        self.permissions = permissions

    def get(self, name: str) -> int:
        return int(getattr(self, name.replace("-", "_")))

    def set(self, name: str, value: int) -> bool:
        """Set a quota by name (``node-size`` or ``node_size``); False if unknown."""
        attr = name.replace("-", "_")
        if attr not in self.__slots__:
            return False
        setattr(self, attr, value)
        return True

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__)
        return f"Quotas({args})"


class SoftQuotas:
    """Soft quotas: exceeding them is only logged."""

    __slots__ = ("memory",)

    DESCRIPTIONS = (("memory", "Total Xenstore memory per domain (warning level)"),)

    def __init__(self, memory: int = 2 * 1024 * 1024) -> None:
        self.memory = memory

    def get(self, name: str) -> int:
        return int(getattr(self, name))

    def set(self, name: str, value: int) -> bool:
        if name != "memory":
            return False
        self.memory = value
        return True
