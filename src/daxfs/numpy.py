"""``daxfs.numpy``: .npy files as NumPy arrays over the pool (zero-copy).

See ``daxfs.adapters.npy``.
"""

from daxfs.adapters.npy import create, load, mapping_of, save

__all__ = ["load", "create", "save", "mapping_of"]
