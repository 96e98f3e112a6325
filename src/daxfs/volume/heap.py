"""Keeping a large volume's metadata out of the cyclic garbage collector's way.

CPython's full collections walk every tracked object, and each inode is a few
(its ``Inode``, ``ExtentMap`` and lists): at a million files one collection
stops the process for a few hundred milliseconds, at a moment nobody chooses
(the slowest create of a growing volume was such a pause, not daxfs's work).
The metadata holds no reference cycles among its inodes: reference counting
frees it.  So once a volume holds ``FREEZE_FROM`` inodes, each time it has
grown by ``FREEZE_STEP`` more, ``gc.freeze()`` moves what is alive to the
permanent generation (an O(1) list splice), and a full collection only ever
walks the few objects made since.

``gc.freeze`` is process-wide: objects of the caller alive at that moment are
frozen too.  They are still freed by reference counting; only cycles among them
wait, until the volume closes and ``gc.unfreeze()`` hands them back to the
collector.  ``DAXFS_GC_FREEZE=0`` in the environment turns this off.

One change can build many objects at once: a clone of a file of 16,384 extents
makes about 50,000 tuples, and the collector ran about 80 young collections
during it, 8 older ones and often a full one (a third of the clone's time).
``bulk`` pauses it for such a change and freezes what it made after (a young
collection of them was still a fifth of the clone's time); with freezing off,
one young collection instead.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

FREEZE_FROM = 4_096     # (a full collection of 8,000 files with data took 7.6 ms)
FREEZE_STEP = 8_192
BULK_RUNS = 1_024       # runs in one change from which the collector waits until its end


def _freezing() -> bool:
    return os.environ.get("DAXFS_GC_FREEZE", "1") != "0"


def freeze_built(inodes: int) -> None:
    """A volume's metadata was just built with the collector paused (mount): every object
    of it is young, and the first young collection after would walk them all (0.3 s of a
    million-file mount).  From ``FREEZE_FROM`` inodes they are frozen at once (the
    ``HeapKeeper`` the volume gets freezes too, and so knows to unfreeze at close)."""
    if inodes >= FREEZE_FROM and _freezing():
        gc.freeze()


class HeapKeeper:
    """When to freeze the heap, for one mounted volume."""

    def __init__(self) -> None:
        self.enabled = _freezing()
        #: the inode count at which the next freeze happens
        self.next_at = FREEZE_FROM if self.enabled else 1 << 62
        self.froze = False

    def grown(self, inodes: int) -> None:
        """The volume holds ``inodes`` inodes now, ``next_at`` or more (the caller looked: a
        comparison on every commit, no call)."""
        gc.freeze()
        self.froze = True
        self.next_at = inodes + FREEZE_STEP

    def made_young(self, items: int) -> None:
        """A list of ``items`` was just made that lives a while (a checkpoint's keys): the
        next young collection would walk all of it (6.5 ms at 375,000), so from
        ``FREEZE_FROM`` items it is frozen with the rest."""
        if self.enabled and items >= FREEZE_FROM:
            gc.freeze()
            self.froze = True

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Around one change that makes many objects (``BULK_RUNS`` extents or more): the
        collector waits, and what the change made is frozen after it (walked once by a
        young collection when freezing is off).  (Process-wide, as ``gc.disable``: another
        thread's objects wait the same few milliseconds, and are frozen with them.)"""
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            yield
        finally:
            if paused:
                gc.enable()
                if self.enabled:
                    # what the change made is the volume's metadata (no cycles, freed by
                    # reference counting): out of the collector's way at once
                    gc.freeze()
                    self.froze = True
                else:
                    gc.collect(0)

    def release(self) -> None:
        """The volume is closing: what was frozen goes back to the collector."""
        if self.froze:
            self.froze = False
            gc.unfreeze()


__all__ = ["HeapKeeper", "FREEZE_FROM", "FREEZE_STEP", "BULK_RUNS", "freeze_built"]
