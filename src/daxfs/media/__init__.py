"""media: the pool, the only code in daxfs that touches memory addresses.

A ``Pool`` is a flat byte range with four mutations (write, zero, persist,
and close) and zero-copy reads (``view``).  Everything above sees offsets,
never addresses.  ``FilePool`` maps a file or device; ``MemoryPool`` is a
bytearray for tests; ``RecordingPool`` also records every store and persist
so tests can build the images a crash could leave.
"""

from daxfs.media._file import FilePool, flock_holders
from daxfs.media._view import PoolView
from daxfs.media._forks import children_may_show, shown as shown_in_children, when_unshown
from daxfs.media._memory import MemoryPool, RecordingPool, CrashImage
from daxfs.media.pool import Pool

__all__ = ["Pool", "FilePool", "MemoryPool", "RecordingPool", "CrashImage", "PoolView", "flock_holders",
           "children_may_show", "shown_in_children", "when_unshown"]
