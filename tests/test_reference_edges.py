"""The reference table's arithmetic and bookkeeping at its edges (found by a mutation run
over ``volume/references.py``): each test pins down one thing a slip there would get
wrong while every other test still passed.

- ``persist``: a mapping's persist makes exactly the pool bytes under the asked range of
  the view durable, piece by piece, for a mapping that starts inside a block of a file
  whose blocks are scattered in the pool.

Nothing sleeps: threads are ordered by ``before_wait`` and events.
"""

from __future__ import annotations

from daxfs.media import MemoryPool
from daxfs.volume import Volume

from _small_volume import BS, distinct, pool_and_volume

JOIN = 60.0         # a thread still running after this is hung


def _scattered(blocks: int) -> tuple[MemoryPool, Volume, bytes]:
    """A volume whose file ``f`` has ``blocks`` one-block extents, none next to another (a
    one-block file ``g<i>`` sits after each), and ``f``'s bytes."""
    pool, vol = pool_and_volume()
    data = distinct(7, blocks * BS)
    for i in range(blocks):
        with vol.open("f", "ab", buffering=0) as f:
            f.write(data[i * BS:(i + 1) * BS])
        with vol.open(f"g{i}", "wb", buffering=0) as g:
            g.write(distinct(100 + i, BS))
    with vol.open("f", "rb", buffering=0) as f:
        extents = f.extents()
    assert len(extents) == blocks, "f's blocks should be scattered"
    return pool, vol, data


def _pool_ranges(extents: list, lo: int, hi: int) -> list[tuple[int, int]]:
    """The pool byte ranges under file bytes ``[lo, hi)``, in file order."""
    out = []
    for e in extents:
        a, b = max(lo, e.file_offset), min(hi, e.file_offset + e.length)
        if a < b:
            out.append((e.pool_offset + a - e.file_offset, b - a))
    return out


def test_a_mapping_persists_exactly_the_pool_bytes_under_the_asked_range() -> None:
    pool, vol, _ = _scattered(5)
    persisted: list[tuple[int, int]] = []
    real = pool.persist_mapped

    def record(offset: int, length: int) -> None:
        if length:          # (an empty persist is a no-op on every pool)
            persisted.append((offset, length))
        real(offset, length)

    pool.persist_mapped = record  # type: ignore[method-assign]
    start = BS + 100          # inside file block 1: the view starts at block 1, 100 bytes in
    with vol.open("f", "r+b", buffering=0) as f:
        extents = f.extents()
        mapping = f.map(start, 3 * BS, write=True)
        for offset, length in ((0, 3 * BS), (10, BS), (0, BS - 100), (BS - 100, 1), (BS - 99, BS),
                               (2 * BS, BS), (3 * BS - 1, 1), (5, 0), (BS, BS - 100)):
            persisted.clear()
            mapping.persist(offset, length)
            assert persisted == _pool_ranges(extents, start + offset, start + offset + length), (offset, length)
        mapping.close()
    assert vol.fsck() == []
    vol.close()
