"""Build tests/data/format-v1.pool.gz: a pool image made by a given daxfs version.

Run from a checkout of the version whose format is to be kept (the image in
the repository was made by the code of 2026-11-22, before the volume was split
into modules):  ``PYTHONPATH=src python tests/data/make_format_v1_pool.py OUT``.

The image is taken while the volume is still open, so mount has both a
checkpoint and a log tail to replay; ``expected()`` says what it must hold.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys

POOL_SIZE = 8 << 20
BS = 4096


def pattern(n: int, seed: int) -> bytes:
    unit = bytes((i * 13 + seed) % 251 + 1 for i in range(4093))
    return (unit * (n // len(unit) + 1))[:n]


def build() -> bytes:
    from daxfs.media import MemoryPool
    from daxfs.volume import Volume

    pool = MemoryPool(POOL_SIZE)
    Volume.format(pool)
    vol = Volume.mount(pool)
    vol.mkdir("/d/e", parents=True)
    with vol.open("/d/small", "wb") as f:
        f.write(b"hello, format\n")
    with vol.open("/d/e/big", "wb") as f:
        f.write(pattern(5 * BS + 123, 1))
    with vol.open("/sparse", "wb") as f:
        f.pwrite(b"tail", 20 * BS)
        f.fallocate(2 * BS, 3 * BS)                     # unwritten extents
    vol.link("/d/small", "/hard")
    vol.chmod("/d/small", 0o640)
    vol.utime("/d/small", ns=(1_000_000_000, 2_000_000_000))
    vol.checkpoint()
    # after the checkpoint: records mount must replay from the log
    vol.clone_file("/d/e/big", "/clone")               # shared blocks
    with vol.open("/clone", "r+b") as f:
        f.pwrite(b"COW", BS)                             # one block made private again
    with vol.open("/d/e/big", "r+b") as f:
        f.punch_hole(0, BS)
    vol.rename("/sparse", "/d/sparse")
    vol.mkdir("/gone")
    vol.rmdir("/gone")
    return pool.image()


def main() -> None:
    image = build()
    with gzip.open(sys.argv[1], "wb", compresslevel=9) as out:
        out.write(image)
    print(json.dumps({"sha256": hashlib.sha256(image).hexdigest(), "size": len(image)}))


if __name__ == "__main__":
    main()
