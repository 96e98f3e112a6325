"""daxfs: a user-space DAX file system on a memory pool.

The public API (see API.md): ``mkfs``, ``open_volume``, ``Volume``, ``File``,
the value types ``Stat``/``StatFS``/``Extent`` and the errors; ``daxfs.arrow``
and ``daxfs.numpy`` (zero-copy loaders, imported on first use); ``daxfs://``
for fsspec lives in ``daxfs.adapters.fsspec_fs``, found through fsspec's
entry point.

This is also where the layers are wired: the volume layer makes open files and
holders through the access layer's classes, bound here, so that no module
imports a layer above its own.
"""

from daxfs._types import DirEntry, Extent, Owner, PinInfo, Stat, StatFS
from daxfs.access import buffered
from daxfs.access.file import File
from daxfs.access.holder import Holder
from daxfs.access.mapping import Mapping
from daxfs.access.pin import Pin
from daxfs.adapters.client import Client, connect
from daxfs.adapters.wire import ServerLost
from daxfs.errors import (BusyError, CorruptVolumeError, DamagedVolumeWarning, InvalidPathError, MediaErrorWarning,
                          PoisonError)
from daxfs.volume import Volume, mkfs, open_volume

Volume.bind_handles(file=File, holder=Holder, wrap=buffered.wrap, check_options=buffered.check_options)

__version__ = "0.1.0"

# Submodules for other libraries' users, imported on first use so that ``import daxfs``
# never pays for (or needs) pyarrow or fsspec: ``daxfs.arrow``, ``daxfs.numpy``.
_LAZY_SUBMODULES = ("arrow", "numpy")


def __getattr__(name: str) -> object:
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"daxfs.{name}")
    raise AttributeError(f"module 'daxfs' has no attribute {name!r}")

__all__ = [
    "mkfs", "open_volume", "Volume", "File", "Mapping", "Pin", "Holder", "PinInfo", "Owner", "Stat", "StatFS", "Extent", "DirEntry",
    "connect", "Client", "ServerLost", "BusyError", "CorruptVolumeError", "DamagedVolumeWarning", "PoisonError", "MediaErrorWarning", "InvalidPathError",
    "__version__",
]
