"""What a scenario survived, as numbers.

A scenario fills one :class:`Figures`:

``ops``
    operations completed (client calls, fuzz cases, ...);
``faults``
    faults injected (a server killed, stopped, a connection reset, a
    mutated packet stream, a client killed, a quota hit on purpose);
``errors``
    errors seen that the scenario expects (ConnectionError after a kill,
    ENOSPC at a quota, RequestTimeout while the server is stopped, an
    EINVAL for a garbage packet);
``failures``
    invariant violations: a wrong value or a reply for somebody else, an
    exception of the wrong type, a leak, a crash;
``lost``
    updates lost: a committed write not readable, a write to a watched
    path without its event, a counter off by some increments;
``hangs``
    calls or threads that did not finish in time;
``known``
    hits of bugs already written up in reliability/FINDINGS.md
    (F1, F2, ...), counted apart only when the caller asked to tolerate
    them (the short pytest runs do; ``run.py`` does not, unless told to).

A scenario passes when ``failures``, ``lost`` and ``hangs`` are all zero.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Figures", "format_table", "totals"]

#: at most this many failure messages are kept per scenario
MAX_NOTES = 20


@dataclass
class Figures:
    scenario: str
    server: str = "-"
    ops: int = 0
    faults: int = 0
    errors: int = 0
    failures: int = 0
    lost: int = 0
    hangs: int = 0
    known: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.lost == 0 and self.hangs == 0

    def fail(self, message: str, kind: str = "failures", count: int = 1) -> None:
        """Count an invariant violation (``failures``, ``lost`` or ``hangs``)."""
        setattr(self, kind, getattr(self, kind) + count)
        if len(self.notes) < MAX_NOTES:
            self.notes.append(f"{kind}: {message}")

    def note(self, message: str) -> None:
        """Record an observation that is not a failure."""
        if len(self.notes) < MAX_NOTES:
            self.notes.append(message)

    def done(self) -> Figures:
        self.seconds = time.monotonic() - self._started
        return self

    def summary(self) -> str:
        return (
            f"{self.scenario} [{self.server}]: ops={self.ops} faults={self.faults} "
            f"errors={self.errors} failures={self.failures} lost={self.lost} "
            f"hangs={self.hangs}"
            + (f" known-bugs={self.known}" if self.known else "")
            + f" ({self.seconds:.1f} s)"
        )

    def explain(self) -> str:
        """The summary and the notes, for an assertion message."""
        return "\n".join([self.summary(), *("  " + n for n in self.notes)])

    def merge(self, other: Figures) -> None:
        for name in ("ops", "faults", "errors", "failures", "lost", "hangs", "known"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.notes.extend(other.notes[: max(0, MAX_NOTES - len(self.notes))])


def totals(rows: Iterable[Figures]) -> Figures:
    total = Figures("TOTAL")
    seconds = 0.0
    for row in rows:
        total.merge(row)
        seconds += row.seconds
    total.notes = []
    total.seconds = seconds
    return total


_COLUMNS = ("ops", "faults", "errors", "failures", "lost", "hangs")


def format_table(rows: list[Figures]) -> str:
    """A plain-text table of the rows and their totals."""
    all_rows = [*rows, totals(rows)]
    name_width = max(len(f"{r.scenario} [{r.server}]") for r in all_rows)
    header = f"{'scenario [server]':<{name_width}}  " + "  ".join(
        f"{c:>9}" for c in (*_COLUMNS, "seconds")
    )
    lines = [header, "-" * len(header)]
    for i, row in enumerate(all_rows):
        if i == len(rows):
            lines.append("-" * len(header))
        label = "TOTAL" if i == len(rows) else f"{row.scenario} [{row.server}]"
        cells = [f"{getattr(row, c):>9}" for c in _COLUMNS]
        lines.append(f"{label:<{name_width}}  " + "  ".join(cells) + f"  {row.seconds:>9.1f}")
    return "\n".join(lines)
