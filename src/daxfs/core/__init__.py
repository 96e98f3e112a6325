"""core: daxfs's metadata as a sans-io state machine.

Nothing here reads or writes the pool.  ``Core`` holds inodes, directories,
extent maps and free space; ``Core.apply(record)`` is the only mutation;
``invariants.check`` is fsck.
"""

from daxfs.core.extents import UNWRITTEN, ExtentMap
from daxfs.core.invariants import check
from daxfs.core.records import RECORD_TYPES, Record
from daxfs.core.space import FreeSpace
from daxfs.core.state import ROOT_INO, Core, Inode

__all__ = ["Core", "Inode", "ExtentMap", "FreeSpace", "Record", "RECORD_TYPES", "ROOT_INO",
           "UNWRITTEN", "check"]
