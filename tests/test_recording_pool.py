"""The RecordingPool's crash images: what a power failure may leave of stores not yet persisted.

The crash tests are only as strong as these images, so they are checked here:
persisted stores always survive; in-flight stores may be lost, kept or torn;
a torn store keeps arbitrary cache lines (not a prefix) and, inside a line,
arbitrary 8-byte words; later stores land over earlier ones in issue order.
"""

from __future__ import annotations

import numpy as np

from daxfs.media import RecordingPool

SIZE = 1 << 16


def _pool() -> RecordingPool:
    pool = RecordingPool(SIZE)
    pool.initial = pool.image()
    return pool


def test_persisted_stores_survive_every_image_and_in_flight_ones_vary() -> None:
    pool = _pool()
    pool.write(0, b"A" * 100)
    pool.persist(0, 100)
    pool.write(8192, b"B" * 8192)                       # in flight at the end
    images = {img.variant: img.image for img in pool.crash_images(len(pool.events), seed=3)}
    assert set(images) == {"all-lost", "all-kept", "random", "torn"}
    for image in images.values():
        assert image[:100] == b"A" * 100
    assert images["all-lost"][8192:16384] == bytes(8192)
    assert images["all-kept"][8192:16384] == b"B" * 8192
    # before the persist completed, the first store was in flight too
    lost = next(pool.crash_images(1, seed=3))
    assert lost.variant == "all-lost" and lost.image[:100] == bytes(100)


def test_a_torn_store_keeps_arbitrary_cache_lines_not_a_prefix() -> None:
    pool = _pool()
    pool.write(4096 + 40, b"x" * 10_000)                 # not line-aligned at either end
    seen_gap_before_kept = False
    for seed in range(10):
        torn = [img for img in pool.crash_images(len(pool.events), seed=seed) if img.variant == "torn"]
        assert len(torn) == 1
        data = np.frombuffer(torn[0].image, np.uint8)[4096 + 40:4096 + 40 + 10_000]
        kept = data == ord("x")
        assert set(np.unique(data)) <= {0, ord("x")}
        assert 0 < kept.sum() < len(kept)
        first_lost = int(np.argmin(kept))
        if kept[first_lost:].any():
            seen_gap_before_kept = True
        # whole 8-byte words, aligned in the pool, survive or not
        words = np.frombuffer(torn[0].image, np.uint8)[4096:4096 + 10_048].reshape(-1, 8)
        inside = words[5:-1]
        assert np.all((inside == 0).all(axis=1) | (inside == ord("x")).all(axis=1))
    assert seen_gap_before_kept, "every torn image was a prefix"


def test_a_torn_line_may_keep_some_words_and_lose_others() -> None:
    pool = _pool()
    pool.write(0, b"y" * 64 * 200)
    mixed = 0
    for seed in range(5):
        torn = [img for img in pool.crash_images(len(pool.events), seed=seed) if img.variant == "torn"][0]
        lines = np.frombuffer(torn.image, np.uint8)[:64 * 200].reshape(200, 64)
        whole = (lines == ord("y")).all(axis=1) | (lines == 0).all(axis=1)
        mixed += int((~whole).sum())
    assert mixed > 0, "no cache line was ever torn at word granularity"


def test_stores_land_in_issue_order() -> None:
    pool = _pool()
    pool.write(0, b"1" * 64)
    pool.write(0, b"2" * 64)
    pool.persist(0, 64)
    for img in pool.crash_images(len(pool.events), seed=1):
        assert img.image[:64] == b"2" * 64             # the later store wins once persisted
    kept = [img for img in pool.crash_images(2, seed=1) if img.variant == "all-kept"][0]
    assert kept.image[:64] == b"2" * 64


def test_mapped_stores_are_recorded_at_their_persist() -> None:
    pool = _pool()
    pool._mmap[100:110] = b"m" * 10                     # a store through a mapping: not seen ...
    assert pool.events == []
    pool.persist_mapped(100, 10)                        # ... until it is persisted
    assert pool.events[0] == ("store", 100, b"m" * 10)
    for img in pool.crash_images(len(pool.events)):
        assert img.image[100:110] == b"m" * 10
