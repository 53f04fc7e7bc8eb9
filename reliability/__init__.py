"""pyxs reliability suite: stress, faults and fuzzing, with figures.

Run everything with ``python reliability/run.py [--long]``; the pytest tests
in ``tests/reliability/`` call the same scenario functions with small numbers.

Every scenario function takes its sizes as arguments and returns a
:class:`~reliability.figures.Figures`: operations done, faults injected,
errors seen (expected ones: the consequence of a fault, a quota), invariant
violations, updates lost and hangs. The last three must be zero.

Modules:

- :mod:`.figures`: the :class:`Figures` record and the report table;
- :mod:`.harness`: servers to run against (embedded in-process or as a
  killable subprocess, the real xenstored), thread/fd accounting;
- :mod:`.workloads`: concurrency (threads x operations) and contention;
- :mod:`.faults`: servers killed, restarted, stopped; partial writes,
  resets; clients killed mid-transaction;
- :mod:`.limits`: quotas, payload limits, guest isolation, socket mode;
- :mod:`.fuzz_server`, :mod:`.fuzz_client`: the two fuzz targets (also
  runnable on their own, ``python reliability/fuzz_server.py --cases N``).
"""
