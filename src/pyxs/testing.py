"""pytest plugin: ``xenstore_server`` and ``xenstore_client`` fixtures.

Registered as the ``pyxs`` pytest11 entry point; importing it is cheap (the
server is imported only when a fixture is used).
"""

from __future__ import annotations
