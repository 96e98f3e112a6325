"""Memory that other libraries own a reference to: a mapping kept for as long as they need it.

A NumPy array or an Arrow buffer made from a mapping's memoryview keeps the
*memory* mapped, but not the *mapping*: once ``Mapping.close()`` runs, the
volume no longer counts it (it leaves ``vol.pins()``, and a truncate under
policy ``refuse`` or ``wait`` no longer sees it).  Loaders that hand out arrays
and tables instead give them a ``MappingOwner`` as their base object: the
mapping stays open, and follows the pin policies like any other, until the last
array, table or buffer made from it is collected; then the owner closes it.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["MappingOwner", "map_range", "owner_of"]


class MappingOwner:
    """Holds a mapping open while anything made from its memory lives.

    It exposes the mapped bytes through ``__array_interface__`` (so ``numpy.asarray``
    gives a uint8 array whose ``base`` is this object) and ``address``/``nbytes`` (for
    ``pyarrow.foreign_buffer(..., base=owner)``).
    """

    __slots__ = ("mapping", "address", "nbytes", "readonly", "__array_interface__", "__weakref__")

    def __init__(self, mapping: Any) -> None:
        import numpy as np   # a dependency, but not imported with daxfs: it costs ~50 ms

        self.mapping = mapping
        view = mapping.buffer
        self.nbytes = view.nbytes
        self.readonly = bool(view.readonly)
        # The address of the first byte; the probe array goes at once, leaving no export.
        probe = np.frombuffer(view, dtype=np.uint8)
        self.address = int(probe.ctypes.data) if self.nbytes else 0
        del probe, view
        self.__array_interface__ = {"shape": (self.nbytes,), "typestr": "|u1", "version": 3,
                                    "data": (self.address, self.readonly)}

    def __del__(self) -> None:
        # The last user of the memory is gone: the mapping, and its hold on the blocks, go too.
        with contextlib.suppress(Exception):
            self.mapping.close()

    def __repr__(self) -> str:
        return f"<daxfs mapping owner of {self.mapping!r}>"


def map_range(volume: Any, path: str, offset: int = 0, length: int | None = None, *,
              write: bool = False, lease: bool = False, on_break: Any = None) -> MappingOwner:
    """Map ``[offset, offset+length)`` of ``path`` (None: to EOF) and wrap it in an owner.

    ``volume`` is anything whose ``open(path, mode)`` gives a daxfs file: a ``Volume``,
    a ``Client``, a ``Holder`` or a ``daxfs://`` file system.  The file is closed before
    this returns; the mapping outlives it, as an mmap outlives its descriptor.
    """
    with volume.open(path, "r+b" if write else "rb", buffering=0) as f:
        options: dict[str, Any] = {"write": write}
        if lease:
            options.update(lease=True, on_break=on_break)
        mapping = f.map(offset, length, **options)
    try:
        return MappingOwner(mapping)
    except BaseException:
        mapping.close()
        raise


def owner_of(obj: Any) -> MappingOwner | None:
    """The ``MappingOwner`` at the root of a NumPy array's ``base`` chain, if any."""
    seen = 0
    while obj is not None and seen < 64:       # bases form a short chain, never a cycle
        if isinstance(obj, MappingOwner):
            return obj
        obj = getattr(obj, "base", None)
        seen += 1
    return None
