"""Put the repository root on sys.path, so that ``import reliability`` finds
the suite's library (reliability/ at the top of the repository).

Import it first in every test module of this folder (no conftest.py here: it
would shadow the root conftest module's name)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
