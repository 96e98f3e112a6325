"""Arrow IPC and Feather (v2) files opened in place: tables whose buffers are the pool.

``read_table(vol, path)`` maps the file read-only and lets Arrow's IPC reader
slice its columns out of that memory: no byte of data is copied, and
``pyarrow.total_allocated_bytes()`` does not move (an IPC file whose buffers
are compressed is the exception: Arrow must decompress them).  The table keeps
the mapping open — listed by ``vol.pins()``, subject to the volume's pin
policy, its blocks kept — until the table and every array, slice or buffer
taken from it are gone.

``buffer(vol, path)`` is the building block: a ``pyarrow.Buffer`` over a
mapping, which any Arrow reader takes (``pyarrow.parquet.read_table(buf)``
parses a Parquet file from the pool without reading it into memory first).

``vol`` is a ``Volume``, a ``Client`` (``daxfs.connect``), a ``Holder``, or a
``daxfs://`` file system.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from daxfs.adapters.inplace import map_range

__all__ = ["buffer", "open_file", "read_table"]

_FILE_MAGIC = b"ARROW1"
_FEATHER_V1_MAGIC = b"FEA1"


def buffer(vol: Any, path: str, offset: int = 0, length: int | None = None, *,
           lease: bool = False, on_break: Any = None) -> pa.Buffer:
    """``[offset, offset+length)`` of ``path`` (None: to EOF) as a zero-copy Arrow buffer.

    ``lease``/``on_break`` as ``File.map``: under policy ``break`` the holder is told,
    then the memory is migrated (it stays valid, no longer the file's).
    """
    owner = map_range(vol, path, offset, length, lease=lease, on_break=on_break)
    return pa.foreign_buffer(owner.address, owner.nbytes, base=owner)


def open_file(vol: Any, path: str) -> ipc.RecordBatchFileReader:
    """An IPC file reader over the mapped file: record batches read in place, on demand."""
    return ipc.open_file(_checked(buffer(vol, path), path))


def read_table(vol: Any, path: str, *, columns: list[str] | None = None) -> pa.Table:
    """The Arrow IPC file (Feather v2) or stream at ``path``, in place (zero-copy).

    ``columns`` selects columns by name; the rest are never touched.
    """
    source = _checked(buffer(vol, path), path)
    if source.size >= len(_FILE_MAGIC) and source[:len(_FILE_MAGIC)].to_pybytes() == _FILE_MAGIC:
        table = ipc.open_file(source).read_all()
    else:
        table = ipc.open_stream(source).read_all()
    return table.select(columns) if columns is not None else table


def _checked(source: pa.Buffer, path: str) -> pa.Buffer:
    if source.size >= 4 and source[:4].to_pybytes() == _FEATHER_V1_MAGIC:
        raise ValueError(f"{path}: a Feather v1 file is not Arrow IPC and cannot be read in "
                         "place; write it again as Feather v2 (the default since pyarrow 0.17)")
    return source
