"""volume: one mounted pool, ordering every change as validate -> record -> persist -> apply."""

from daxfs.volume.repair import repair, repair_pool
from daxfs.volume.volume import Volume, mkfs, open_volume

__all__ = ["Volume", "mkfs", "open_volume", "repair", "repair_pool"]
