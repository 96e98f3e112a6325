"""Test machinery shipped with daxfs, so every front end runs the same checks.

- ``snapshot``/``walk``: the observable state of a volume (tree, modes, sizes, bytes).
- ``recorded_volume``: a volume on a RecordingPool, for crash tests; the crash oracle
  (``CrashRecorder``, ``crash_state_error``) is in ``daxfs.testing.crash``.
- ``close_checked``: close a volume in a fixture, failing when references leaked.
- ``Workload``: seeded random operation sequences over a small name space.
- ``VolumeSuite`` (in ``daxfs.testing.suite``): the volume tests, written once;
  a front end subclasses it and provides the ``volume`` factory fixture.  It is a
  pytest suite: ``pip install 'daxfs[testing]'``.  This package itself needs only daxfs.
"""

from daxfs.testing.workload import (Op, Workload, close_checked, in_place_ranges, recorded_volume, snapshot,
                                    walk)

__all__ = ["Op", "Workload", "close_checked", "in_place_ranges", "recorded_volume", "snapshot", "walk"]
