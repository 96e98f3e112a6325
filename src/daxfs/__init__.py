"""daxfs: a user-space DAX file system on a memory pool.

The public API (see API.md): ``mkfs``, ``open_volume``, ``Volume``, ``File``,
the value types ``Stat``/``StatFS``/``Extent`` and the errors.

This is also where the layers are wired: the volume layer makes open files and
holders through the access layer's classes, bound here, so that no module
imports a layer above its own.
"""

from daxfs._types import Extent, Owner, PinInfo, Stat, StatFS
from daxfs.access.file import File
from daxfs.access.holder import Holder
from daxfs.access.mapping import Mapping
from daxfs.access.pin import Pin
from daxfs.adapters.client import Client, connect
from daxfs.adapters.wire import ServerLost
from daxfs.errors import (BusyError, CorruptVolumeError, DamagedVolumeWarning, InvalidPathError, MediaErrorWarning,
                          PoisonError)
from daxfs.volume import Volume, mkfs, open_volume

Volume.bind_handles(file=File, holder=Holder)

__version__ = "0.1.0"

__all__ = [
    "mkfs", "open_volume", "Volume", "File", "Mapping", "Pin", "Holder", "PinInfo", "Owner", "Stat", "StatFS", "Extent",
    "connect", "Client", "ServerLost", "BusyError", "CorruptVolumeError", "DamagedVolumeWarning", "PoisonError", "MediaErrorWarning", "InvalidPathError",
    "__version__",
]
