"""volume: one mounted pool, ordering every change as validate -> record -> persist -> apply.

``Volume`` (volume.py) is the face; its collaborators each own one job (see
its docstring).  ``open_volume`` and ``mkfs`` are the entry points; ``repair``
makes a volume damaged by a bad log record writable again.
"""

from daxfs.volume.references import POLICIES, Reference, ReferenceTable, check_policy
from daxfs.volume.namespace import OpenFile
from daxfs.volume.repair import repair, repair_pool
from daxfs.volume.opening import mkfs, open_volume
from daxfs.volume.volume import DURABILITIES, Volume

__all__ = ["Volume", "mkfs", "open_volume", "OpenFile", "Reference", "ReferenceTable", "POLICIES",
           "DURABILITIES", "check_policy", "repair", "repair_pool"]
