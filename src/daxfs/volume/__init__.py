"""volume: one mounted pool, ordering every change as validate -> record -> persist -> apply."""

from daxfs.volume.volume import Volume, mkfs, open_volume

__all__ = ["Volume", "mkfs", "open_volume"]
