"""Where things live in a pool.

```
0        superblock A (4 KiB)
4 KiB    superblock B (4 KiB)
8 KiB    owner page: pid of the read-write opener, for "busy" messages
16 KiB   status page (48 KiB): the opener's pins and busy bytes, for other processes
64 KiB   log            (size/256, 256 KiB .. 64 MiB)
...      checkpoint A   (size/64, 256 KiB .. 512 MiB)
...      checkpoint B
...      data blocks    (start 2 MiB-aligned when the pool is >= 64 MiB)
```
The geometry is a pure function of pool size and block size, and is also
written in the superblock; mount trusts the superblock and checks it fits.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from daxfs.errors import fs_error

SUPERBLOCK_OFFSETS = (0, 4096)
SUPERBLOCK_SIZE = 4096
OWNER_OFFSET = 8192
STATUS_OFFSET = 16 * 1024
STATUS_SIZE = 48 * 1024
HEADER_SIZE = 64 * 1024
HUGE_PAGE = 2 * 1024 * 1024
MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = HUGE_PAGE
MIN_DATA_BLOCKS = 16
_PAGE = 4096
_LEAST_REGION = 256 * 1024      # the least log and checkpoint slot ``compute`` makes


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _align_up(value: int, align: int) -> int:
    return -(-value // align) * align


@dataclass(frozen=True)
class Layout:
    """The pool's geometry, in bytes."""

    pool_size: int
    block_size: int
    log_offset: int
    log_size: int
    checkpoint_offsets: tuple[int, int]
    checkpoint_size: int
    data_offset: int
    data_blocks: int

    @classmethod
    def compute(cls, pool_size: int, block_size: int) -> "Layout":
        """The geometry mkfs gives a pool; EINVAL for a bad block size or a pool too small."""
        if block_size < MIN_BLOCK_SIZE or block_size > MAX_BLOCK_SIZE or block_size & (block_size - 1):
            raise fs_error(errno.EINVAL, message=f"block size must be a power of two from "
                           f"{MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}, not {block_size}")
        log_size = _align_up(_clamp(pool_size // 256, 256 * 1024, 64 << 20), 4096)
        checkpoint_size = _align_up(_clamp(pool_size // 64, 256 * 1024, 512 << 20), 4096)
        log_offset = HEADER_SIZE
        ckpt_a = log_offset + log_size
        ckpt_b = ckpt_a + checkpoint_size
        meta_end = ckpt_b + checkpoint_size
        align = HUGE_PAGE if pool_size >= 64 << 20 else block_size
        data_offset = _align_up(meta_end, max(align, block_size))
        data_blocks = (pool_size - data_offset) // block_size if pool_size > data_offset else 0
        if data_blocks < MIN_DATA_BLOCKS:
            raise fs_error(errno.EINVAL, message=f"pool of {pool_size} bytes is too small: the "
                           f"metadata needs {data_offset} bytes and at least {MIN_DATA_BLOCKS} data blocks")
        return cls(pool_size, block_size, log_offset, log_size, (ckpt_a, ckpt_b), checkpoint_size,
                   data_offset, data_blocks)

    @property
    def data_size(self) -> int:
        return self.data_blocks * self.block_size

    @property
    def align_blocks(self) -> int:
        """Data blocks per huge page, when data blocks sit on huge-page boundaries."""
        if self.data_offset % HUGE_PAGE == 0 and self.block_size < HUGE_PAGE:
            return HUGE_PAGE // self.block_size
        return 1

    def block_offset(self, pblk: int) -> int:
        return self.data_offset + pblk * self.block_size

    def fits(self) -> bool:
        """Whether the regions are in order and inside the pool, each as ``compute`` lays them
        out (page-aligned, no smaller than its least size, data blocks on a block boundary): a
        check on a decoded superblock, whose checksum only says it was written so."""
        a, b = self.checkpoint_offsets
        bs = self.block_size
        return (MIN_BLOCK_SIZE <= bs <= MAX_BLOCK_SIZE and bs & (bs - 1) == 0
                and HEADER_SIZE <= self.log_offset and self.log_offset + self.log_size <= a
                and a + self.checkpoint_size <= b and b + self.checkpoint_size <= self.data_offset
                and self.data_offset + self.data_blocks * bs <= self.pool_size
                and self.log_size >= _LEAST_REGION and self.checkpoint_size >= _LEAST_REGION
                and all(x % _PAGE == 0 for x in (self.log_offset, self.log_size, a, b, self.checkpoint_size))
                and self.data_offset % bs == 0 and self.data_blocks > 0)
