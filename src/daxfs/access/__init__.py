"""access: what holds a file — open handles and mappings; pins, leases and holders next.

Everything here goes through the volume's operations; nothing here touches
the pool or the log directly.
"""

from daxfs.access.file import File
from daxfs.access.mapping import Mapping

__all__ = ["File", "Mapping"]
