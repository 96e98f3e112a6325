"""File data: random operations against a byte model, readinto, ENOSPC, reuse of freed blocks, mtime."""

from __future__ import annotations

import errno
from typing import Any

import numpy as np
import pytest

from daxfs.testing.suite._base import Remount, SuiteBase, errno_of, pattern, read_file, write_file


class DataTests(SuiteBase):
    """File data: random operations against a byte model, readinto, ENOSPC, reuse of freed blocks, mtime."""

    @pytest.mark.parametrize("seed", range(4))
    def test_random_data_ops_match_a_byte_model(self, volume: Any, remount: Remount, seed: int) -> None:
        """pwrite/append/truncate/fallocate/punch/zero in random order: contents, size and
        allocated blocks always equal a bytearray and a set of block numbers (Linux rules:
        writes, fallocate and zero_range allocate every block they touch; truncate down
        frees the blocks past the new size, truncate up frees nothing; punch frees the
        blocks it covers whole)."""
        import random

        rng = random.Random(seed)
        bs = volume.statfs().block_size
        span = 12 * bs
        model = bytearray()
        blocks: set[int] = set()
        vol = volume

        def touched(off: int, n: int) -> set[int]:
            return set(range(off // bs, (off + n - 1) // bs + 1))

        f = vol.open("f", "w+b", buffering=0)
        app = vol.open("f", "ab", buffering=0)
        for step in range(200):
            kind = rng.choice(["pwrite", "pwrite", "append", "truncate", "fallocate", "punch", "zero",
                               "reopen" if step % 50 == 49 else "pwrite"])
            off = rng.choice([0, bs, rng.randrange(span), rng.randrange(8) * bs + rng.choice([1, bs - 1])])
            n = rng.choice([1, 10, bs - 1, bs, bs + 1, rng.randrange(1, 3 * bs)])
            keep = rng.random() < 0.5
            if kind == "pwrite":
                data = bytes([rng.randrange(1, 256)]) * n
                f.pwrite(data, off)
                if off > len(model):
                    model.extend(bytes(off - len(model)))
                model[off:off + n] = data
                blocks |= touched(off, n)
            elif kind == "append":
                data = bytes([rng.randrange(1, 256)]) * n
                blocks |= touched(len(model), n)
                app.write(data)
                model.extend(data)
            elif kind == "truncate":
                size = rng.randrange(span)
                f.truncate(size)
                if size <= len(model):          # shrinking frees what lies past the size;
                    blocks = {b for b in blocks if b < -(-size // bs)}
                model = model[:size] + bytearray(max(0, size - len(model)))   # growing keeps it
            elif kind == "fallocate":
                f.fallocate(off, n, keep_size=keep)
                blocks |= touched(off, n)
                if not keep and off + n > len(model):
                    model.extend(bytes(off + n - len(model)))
            elif kind == "punch":
                f.punch_hole(off, n)
                lo = min(off, len(model))
                hi = min(off + n, len(model))
                model[lo:hi] = bytes(hi - lo)
                blocks -= set(range(-(-off // bs), (off + n) // bs))
            elif kind == "zero":
                f.zero_range(off, n, keep_size=keep)
                blocks |= touched(off, n)
                if not keep and off + n > len(model):
                    model.extend(bytes(off + n - len(model)))
                lo = min(off, len(model))
                hi = min(off + n, len(model))
                model[lo:hi] = bytes(hi - lo)
            else:
                vol = remount(vol)
                f = vol.open("f", "r+b", buffering=0)
                app = vol.open("f", "ab", buffering=0)
            where = f"seed {seed} step {step} {kind}(off={off}, n={n}, keep={keep})"
            s = f.stat()
            assert s.st_size == len(model), where
            assert f.pread(len(model) + 10, 0) == bytes(model), where
            assert s.st_blocks * 512 == len(blocks) * bs, where
        f.close()
        app.close()
        assert vol.fsck() == []

    # ------------------------------------------------------------ reading into buffers

    def test_readinto_and_preadinto_buffers(self, volume: Any) -> None:
        values = np.arange(1000, dtype=np.float64)
        with volume.open("f", "w+b", buffering=0) as f:
            assert f.write(values) == values.nbytes
            f.pwrite(np.arange(4, dtype=np.uint16).reshape(2, 2), values.nbytes)
            f.seek(0)
            out = np.empty(1000, dtype=np.float64)
            assert f.readinto(out) == values.nbytes and np.array_equal(out, values)
            assert f.tell() == values.nbytes
            grid = np.zeros((10, 10), dtype=np.float64)
            assert f.preadinto(grid, 8 * 100) == 800
            assert np.array_equal(grid.ravel(), values[100:200])
            tail = bytearray(100)
            assert f.preadinto(tail, values.nbytes) == 8              # short read at EOF
            assert bytes(tail[:8]) == np.arange(4, dtype=np.uint16).tobytes()
            assert tail[8:] == bytearray(92)
            buf = bytearray(b"-" * 20)
            view = memoryview(buf)[5:15]
            assert f.preadinto(view, 8) == 10 and buf[:5] == b"-----" and buf[15:] == b"-----"
            assert bytes(buf[5:15]) == values.tobytes()[8:18]
            assert f.preadinto(bytearray(10), 10 ** 9) == 0
            f.seek(values.nbytes + 8)
            assert f.readinto(bytearray(10)) == 0
            with pytest.raises(TypeError):
                f.preadinto(b"immutable", 0)
        with volume.open("sparse", "w+b", buffering=0) as f:
            bs = volume.statfs().block_size
            f.pwrite(b"\xff" * 10, 3 * bs)
            out = np.full(3 * bs + 10, 7, dtype=np.uint8)
            assert f.preadinto(out, 0) == out.nbytes
            assert not out[:3 * bs].any() and (out[3 * bs:] == 0xFF).all()

    # ------------------------------------------------------------ lifetimes and space
    def test_enospc_is_all_or_nothing(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        free_blocks = volume.statfs().free // bs
        fill = pattern((free_blocks - 3) * bs + 100)          # leaves 2 whole blocks free
        write_file(volume, "big", fill)
        assert volume.statfs().free == 2 * bs
        write_file(volume, "small", b"s" * 10)
        left = volume.statfs().free
        assert left == bs

        def unchanged() -> None:
            assert volume.stat("big").st_size == len(fill)
            assert volume.statfs().free == left
            assert read_file(volume, "small") == b"s" * 10

        with volume.open("big", "r+b", buffering=0) as f:
            for call in (lambda: f.pwrite(b"Q" * (3 * bs), len(fill)),              # append
                         lambda: f.pwrite(b"Q" * (4 * bs), len(fill) - 2 * bs),     # overlap + grow
                         lambda: f.fallocate(len(fill), 5 * bs),
                         lambda: f.fallocate(0, len(fill) + 5 * bs, keep_size=True),
                         lambda: f.zero_range(len(fill), 5 * bs)):
                with pytest.raises(OSError) as info:
                    call()
                assert errno_of(info) == errno.ENOSPC
                unchanged()
            assert f.pread(len(fill), 0) == fill, "a failed write changed the file"
        with volume.open("small", "r+b", buffering=0) as f:
            with pytest.raises(OSError) as info:
                f.write(b"t" * (3 * bs))
            assert errno_of(info) == errno.ENOSPC
        unchanged()
        with volume.open("big", "r+b", buffering=0) as f:                  # the last block can still be used
            f.pwrite(b"E" * 10, len(fill) + bs)
        assert volume.statfs().free == 0
        with pytest.raises(OSError) as info:
            write_file(volume, "c", b"c")
        assert errno_of(info) == errno.ENOSPC
        assert volume.exists("c") and volume.stat("c").st_size == 0       # created, empty, as Linux
        volume.unlink("big")
        write_file(volume, "c", pattern(10 * bs))
        assert read_file(volume, "c") == pattern(10 * bs)

    def test_freed_blocks_never_show_old_bytes(self, volume: Any) -> None:
        bs = volume.statfs().block_size
        n = 64 * bs
        write_file(volume, "secret", b"S" * n)
        volume.unlink("secret")
        with volume.open("a", "w+b", buffering=0) as f:
            f.truncate(n)
            assert b"S" not in f.read()
        with volume.open("b", "w+b", buffering=0) as f:
            f.fallocate(0, n)
            assert b"S" not in f.read()
            f.pwrite(b"b", n // 2)                    # converting an unwritten block
            assert b"S" not in f.pread(n, 0)
        with volume.open("c", "w+b", buffering=0) as f:
            f.pwrite(b"c", n - 1)
            f.pwrite(b"c" * 10, 5)
            assert b"S" not in f.pread(n, 0)
        with volume.open("d", "w+b", buffering=0) as f:
            f.zero_range(0, n)
            f.write(b"d" * 10)
            f.truncate(n + 5)
            assert b"S" not in f.pread(n + 5, 0)
        # the blocks of a, b, c, d go back and are taken again
        for name in "abcd":
            volume.unlink(name)
        write_file(volume, "e", b"")
        with volume.open("e", "r+b", buffering=0) as f:
            for i in range(0, n, 3 * bs):
                f.pwrite(b"e", i + 17)
            data = f.pread(n, 0)
        assert set(data) <= {0, ord("e")} and data.count(b"e") == len(range(0, n, 3 * bs))

    def test_mtime_follows_writes(self, volume: Any) -> None:
        write_file(volume, "f", b"x" * 100)
        volume.utime("f", ns=(1, 1))
        with volume.open("f", "r+b", buffering=0) as f:
            f.pwrite(b"y", 5)                          # in place: no new blocks
            in_place = f.stat().st_mtime_ns
        assert in_place > 1 and volume.stat("f").st_mtime_ns == in_place
        volume.utime("f", ns=(1, 1))
        with volume.open("f", "ab", buffering=0) as f:
            f.write(b"z")
        assert volume.stat("f").st_mtime_ns > 1

    # ------------------------------------------------------------ persistence
