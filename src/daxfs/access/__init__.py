"""access: what holds a file — open handles, mappings, leases, pins, and their holders.

Everything here goes through the volume's operations; nothing here touches
the pool or the log directly.
"""

from daxfs.access.file import File
from daxfs.access.holder import Holder
from daxfs.access.mapping import Mapping
from daxfs.access.pin import Pin

__all__ = ["File", "Holder", "Mapping", "Pin"]
