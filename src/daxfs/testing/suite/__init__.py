"""VolumeSuite: the volume tests, written once, run by every front end.

A front end (the embedded ``Volume``, a client of the server, ...) subclasses
``VolumeSuite`` (or the parts it supports: ``NamespaceTests``, ``OpenModeTests``,
``SparseTests``, ``DataTests``, ``LifetimeTests``, ``ReferenceTests``,
``SharingTests``, ``PythonHabitTests``; ``supports`` names its capabilities, as zarr's ``supports_*``)
in its own test module and provides two pytest fixtures:

- ``volume``: a fresh, empty, read-write volume (small: 8 to 32 MiB of data
  area, so the ENOSPC test can fill it quickly);
- ``reopen``: a callable ``reopen(vol) -> vol`` that closes the volume and
  returns the same pool mounted again.

Tests reach ``reopen`` through the ``remount`` fixture, which also checks
fsck before and after, and every test ends with ``fsck() == []`` on the
volume it left mounted.

What the suite proves, on whatever front end runs it (Linux semantics where
Linux has them):

- namespace: mkdir (parents, exist_ok), listdir, rename of files and
  directories (over existing targets, replace=False, into itself), hard links
  and link counts, unlink, rmdir (ENOTEMPTY), chmod, utime with nanoseconds;
- open modes rb/r+b/wb/w+b/xb/ab/a+b: creation, truncation, exclusivity,
  appending (pwrite on an append handle appends), EBADF for the wrong
  direction, ValueError after close, binary only;
- sparse files and holes read as zeros; truncate down then up shows zeros,
  never the old bytes; fallocate/punch_hole/zero_range with and without
  keep_size change size and st_blocks as on Linux; SEEK_DATA/SEEK_HOLE;
  extents() reports holes and "unwritten" runs;
- readinto/preadinto into bytearrays, memoryviews and NumPy arrays;
- an unlinked open file stays usable through its handle and its space comes
  back when the handle closes;
- ENOSPC is all-or-nothing; a freed block reused by another file never
  shows its old bytes;
- everything (contents, modes, link counts, sizes, times) survives reopen.
"""

from daxfs.testing.suite._base import (Remount, SuiteBase, allocated, errno_of, pattern, read_file, tree_state,
                                       write_file)
from daxfs.testing.suite.data import DataTests
from daxfs.testing.suite.lifetime import LifetimeTests
from daxfs.testing.suite.namespace import NamespaceTests
from daxfs.testing.suite.open_modes import OpenModeTests
from daxfs.testing.suite.pythonic import PythonHabitTests
from daxfs.testing.suite.references import ReferenceTests
from daxfs.testing.suite.sharing import SharingTests
from daxfs.testing.suite.sparse import SparseTests

__all__ = ["VolumeSuite", "SuiteBase", "Remount", "NamespaceTests", "OpenModeTests", "SparseTests",
           "DataTests", "LifetimeTests", "ReferenceTests", "SharingTests", "PythonHabitTests", "allocated", "errno_of", "pattern", "read_file", "tree_state",
           "write_file"]


class VolumeSuite(NamespaceTests, OpenModeTests, SparseTests, DataTests, LifetimeTests, ReferenceTests,
                  SharingTests, PythonHabitTests):
    """Behaviour every daxfs front end shows: every part of the suite.  Subclasses provide
    ``volume`` and ``reopen``; a front end that supports only some parts may combine those."""
