"""access: what holds a file — open handles now; mappings, pins, leases and holders next.

Everything here goes through the volume's operations; nothing here touches
the pool or the log directly.
"""

from daxfs.access.file import File

__all__ = ["File"]
