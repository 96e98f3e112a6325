""".npy files as NumPy arrays straight over the pool: ``load``, ``create``, ``save``.

``load(vol, path)`` parses the header and maps the data that follows it: the
array *is* the file's bytes (read-only); ``mode="r+"`` maps them for writing,
so stores into the array are stores into the file (durable after
``mapping_of(array).persist()``).  ``create`` makes a new .npy file of a
given shape and dtype and returns it as a writable array, to be filled in
place.  Each array keeps its mapping open — listed by ``vol.pins()``, subject
to the pin policy, its blocks kept — until it and every view of it are gone.

Arrays of Python objects are pickles, not bytes to map: ``load`` refuses them.
``vol`` is a ``Volume``, a ``Client``, a ``Holder`` or a ``daxfs://`` file system.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import numpy as np
import numpy.lib.format as npy_format

from daxfs.adapters.inplace import MappingOwner, map_range, owner_of

__all__ = ["load", "create", "save", "mapping_of"]

MODES = ("r", "r+")
_PREFIX = len(npy_format.MAGIC_PREFIX) + 2      # magic and the version bytes


def _header(f: Any, path: str) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """(shape, fortran_order, dtype, data offset) from the header of the open .npy file."""
    head = f.pread(_PREFIX + 4, 0)
    if len(head) < _PREFIX + 2 or not head.startswith(npy_format.MAGIC_PREFIX):
        raise ValueError(f"{path}: not a .npy file")
    version = (head[_PREFIX - 2], head[_PREFIX - 1])
    if version == (1, 0):
        length = struct.unpack("<H", head[_PREFIX:_PREFIX + 2])[0]
        start = _PREFIX + 2
    elif version in ((2, 0), (3, 0)):
        length = struct.unpack("<I", head[_PREFIX:_PREFIX + 4])[0]
        start = _PREFIX + 4
    else:
        raise ValueError(f"{path}: .npy format version {version[0]}.{version[1]} is not supported")
    raw = f.pread(start + length, 0)
    if len(raw) < start + length:
        raise ValueError(f"{path}: .npy header is cut short")
    reader = io.BytesIO(raw)
    npy_format.read_magic(reader)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(reader, max_header_size=length + 1)
    else:
        # Version 3.0 differs from 2.0 only in allowing UTF-8 field names; the 2.0 reader
        # reads both for every dtype whose names are ASCII.
        shape, fortran, dtype = npy_format.read_array_header_2_0(reader, max_header_size=length + 1)
    return tuple(shape), bool(fortran), dtype, start + length


def _array(owner: MappingOwner | None, shape: tuple[int, ...], fortran: bool,
           dtype: np.dtype[Any]) -> np.ndarray:
    if owner is None:               # no bytes to map: an empty array, nothing to hold
        return np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    flat = np.asarray(owner)        # uint8 over the mapping; its base is the owner
    return flat.view(dtype).reshape(shape, order="F" if fortran else "C")


def load(vol: Any, path: str, *, mode: str = "r", lease: bool = False,
         on_break: Any = None) -> np.ndarray:
    """The array in the .npy file at ``path``, over a mapping of it (zero-copy).

    ``mode`` ``"r"``: read-only; ``"r+"``: writable, stores go to the file.
    ``lease``/``on_break`` as ``File.map``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'r' or 'r+', not {mode!r}")
    write = mode == "r+"
    with vol.open(path, "r+b" if write else "rb", buffering=0) as f:
        shape, fortran, dtype, offset = _header(f, path)
        size = f.stat().st_size
    if dtype.hasobject:
        raise ValueError(f"{path}: an array of Python objects is pickled, not mapped; "
                         "read it with numpy.load(fs.open(path), allow_pickle=True)")
    nbytes = math.prod(shape) * dtype.itemsize
    if offset + nbytes > size:
        raise ValueError(f"{path}: the file holds {size - offset} bytes of data, the header "
                         f"says {nbytes}")
    owner = None
    if nbytes:
        owner = map_range(vol, path, offset, nbytes, write=write, lease=lease, on_break=on_break)
    return _array(owner, shape, fortran, dtype)


def create(vol: Any, path: str, shape: int | tuple[int, ...], dtype: Any = "f8", *,
           fortran_order: bool = False, exist_ok: bool = False) -> np.ndarray:
    """A new .npy file at ``path``, returned as a writable zero-filled array over it.

    The file's blocks are allocated before this returns; fill the array in place and
    call ``mapping_of(array).persist()`` to make the stores durable.
    """
    dims = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise ValueError("an array of Python objects cannot live in a mapping")
    header = {"descr": npy_format.dtype_to_descr(dt), "fortran_order": bool(fortran_order),
              "shape": dims}
    with vol.open(path, "wb" if exist_ok else "xb", buffering=0) as f:
        # numpy's header, padded so the data starts aligned, in the oldest version that
        # holds it (1.0 limits the header to 64 KiB).
        stream = io.BytesIO()
        try:
            npy_format.write_array_header_1_0(stream, header)
        except ValueError:
            stream = io.BytesIO()
            npy_format.write_array_header_2_0(stream, header)
        f.write(stream.getvalue())
        offset = len(stream.getvalue())
    nbytes = math.prod(dims) * dt.itemsize
    owner = map_range(vol, path, offset, nbytes, write=True) if nbytes else None
    return _array(owner, dims, bool(fortran_order), dt)


def save(vol: Any, path: str, array: Any) -> None:
    """Write ``array`` to ``path`` as a .npy file (what ``numpy.save`` writes)."""
    with vol.open(path, "wb", buffering=0) as f:
        npy_format.write_array(f, np.asanyarray(array), allow_pickle=False)


def mapping_of(array: np.ndarray) -> Any:
    """The mapping under an array from ``load``/``create`` (for ``persist()``), or None."""
    owner = owner_of(array)
    return None if owner is None else owner.mapping
