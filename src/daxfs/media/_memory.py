"""Pools in private memory: MemoryPool (a memfd) and RecordingPool.

RecordingPool logs every store and persist.  From that log it builds the
images a power failure could leave (``crash_images``): at each persist
point, stores already covered by an earlier persist are kept; the stores
still in flight may each be lost, kept, or torn.  A torn store keeps an
arbitrary subset of its 64-byte cache lines (any line may have been written
back before the crash, in any order), and in one of its lines an arbitrary
subset of 8-byte words: that is all real memory guarantees about unflushed
stores (8-byte writes are atomic, nothing larger is).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:       # numpy is imported where crash images are built, not with daxfs
    import numpy as np

from daxfs.media._file import FilePool
from daxfs.media.pool import Buffer

_PAGE = 4096
_WORD = 8           # the largest store real memory makes atomic
_LINE = 64          # a cache line: written back whole, in no particular order


class MemoryPool(FilePool):
    """A pool in private memory (a memfd, so views can map it like a file); persist is a no-op."""

    def __init__(self, size_or_image: int | bytes | bytearray, *, readonly: bool = False,
                 name: str = "<memory>") -> None:
        size = size_or_image if isinstance(size_or_image, int) else len(size_or_image)
        fd = os.memfd_create("daxfs-pool", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            if not isinstance(size_or_image, int):
                os.pwrite(fd, size_or_image, 0)
            self._locked = False
            self._attach(fd, name, readonly)
        except BaseException:
            os.close(fd)
            raise

    def image(self) -> bytes:
        """A copy of the whole pool."""
        return self._mmap[:]

    def persist(self, offset: int, length: int) -> None:
        return None

    def close(self) -> None:
        # Memory outlives the volume that used it, as a real pool does: the
        # image stays readable (and mountable again) until the object goes.
        return None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            self._anchor = None
            self._view.release()
            self._mmap.close()
            os.close(fd)
            self._fd = -1


@dataclass(frozen=True)
class CrashImage:
    """One pool image a crash could leave, and how it was made."""

    image: bytes
    persist_index: int      # crashed before this persist completed (len(persists) = after the last)
    event_index: int        # events[:event_index] had been issued
    variant: str            # "all-lost", "all-kept", "random", "torn"


class RecordingPool(MemoryPool):
    """A MemoryPool that logs stores and persists, to enumerate crash images.

    A discard is logged as a store of zeros and a persist of its range (on memory the
    punch is done, and durable, when it returns).  The volume discards on a recording
    pool only when asked (``open_volume(discard=True)``), and never from a thread of
    its own: the events come from the test's thread, in an order it can replay.
    """

    discard_in_background = False

    def __init__(self, size_or_image: int | bytes | bytearray, *, name: str = "<recording>") -> None:
        super().__init__(size_or_image, name=name)
        self.discard_default = False
        self.initial = self.image()
        #: ("store", offset, bytes) or ("persist", offset, length), in issue order
        self.events: list[tuple[str, int, bytes | int]] = []
        self.recording = True
        self._covered_at: list[int] = []
        self._prefix: bytearray | None = None
        self._prefix_index = 0

    def write(self, offset: int, data: Buffer) -> None:
        super().write(offset, data)
        if self.recording:
            raw = bytes(data)
            self.events.append(("store", offset, raw))

    def write_fresh(self, offset: int, data: Buffer) -> None:
        self.write(offset, data)        # (recorded as any store)

    def zero(self, offset: int, length: int) -> None:
        super().zero(offset, length)
        if self.recording:
            self.events.append(("store", offset, bytes(length)))

    def discard(self, offset: int, length: int) -> None:
        super().discard(offset, length)
        if self.recording and length > 0:
            self.events.append(("store", offset, bytes(length)))
            self.persist(offset, length)

    def persist(self, offset: int, length: int) -> None:
        if self.recording and length > 0:
            start = offset - offset % _PAGE
            end = -(-(offset + length) // _PAGE) * _PAGE
            self.events.append(("persist", start, end - start))

    def persist_mapped(self, offset: int, length: int) -> None:
        # Stores through a mapping bypass write(): at their persist, record the
        # bytes then in the range as one store, durable with the persist.
        if self.recording and length > 0:
            self.events.append(("store", offset, self.read(offset, length)))
        self.persist(offset, length)

    def mark(self) -> int:
        """The current event index (tests note it around each operation)."""
        return len(self.events)

    def persist_points(self) -> list[int]:
        """Event indexes of every persist."""
        return [i for i, ev in enumerate(self.events) if ev[0] == "persist"]

    def _coverage(self) -> list[int]:
        """For each event: the index of the first persist that covers it (stores), or a huge number."""
        if len(self._covered_at) == len(self.events):
            return self._covered_at
        never = 1 << 62
        covered = [never] * len(self.events)
        pending: dict[int, list[int]] = {}     # page -> stores not yet covered
        for i, (kind, off, payload) in enumerate(self.events):
            if kind == "store":
                end = off + len(payload)  # type: ignore[arg-type]
                for page in range(off // _PAGE, max(off // _PAGE + 1, -(-end // _PAGE))):
                    pending.setdefault(page, []).append(i)
                continue
            start, stop = off, off + int(payload)  # type: ignore[arg-type]
            for page in range(start // _PAGE, stop // _PAGE):
                waiting = pending.get(page)
                if not waiting:
                    continue
                left = []
                for j in waiting:
                    if covered[j] != never:
                        continue
                    joff = self.events[j][1]
                    jend = joff + len(self.events[j][2])  # type: ignore[arg-type]
                    if start <= joff and jend <= stop:
                        covered[j] = i
                    else:
                        left.append(j)
                pending[page] = left
        self._covered_at = covered
        return covered

    def _durable_prefix(self, upto: int) -> bytearray:
        """The image with every store before event ``upto`` applied (all of them durable)."""
        if self._prefix is None or self._prefix_index > upto:
            self._prefix = bytearray(self.initial)
            self._prefix_index = 0
        base = self._prefix
        for kind, off, payload in self.events[self._prefix_index:upto]:
            if kind == "store":
                base[off:off + len(payload)] = payload  # type: ignore[arg-type]
        self._prefix_index = upto
        return base

    def crash_images(self, event_index: int, *, seed: int = 0, random_variants: int = 1
                     ) -> Iterator[CrashImage]:
        """Images a crash could leave when ``events[:event_index]`` had been issued.

        Stores covered by a persist issued before ``event_index`` are durable;
        the others are in flight.  Yields: all in-flight stores lost, all kept,
        ``random_variants`` random subsets, and one with every in-flight store
        torn (random cache lines of it kept, and random words of one line).
        """
        covered = self._coverage()
        events = self.events
        in_flight = [i for i in range(event_index) if events[i][0] == "store" and covered[i] >= event_index]
        first = in_flight[0] if in_flight else event_index
        base = self._durable_prefix(first)
        persist_index = sum(1 for ev in events[:event_index] if ev[0] == "persist")
        rng = random.Random(seed * 1_000_003 + event_index)
        flight = set(in_flight)
        import numpy as np

        def build(choose: dict[int, "np.ndarray | None"]) -> bytes:
            # choose[i]: absent = lost, None = kept whole, a bool mask = the bytes kept
            buf = bytearray(base)
            arr = np.frombuffer(buf, np.uint8)
            for i in range(first, event_index):
                kind, off, payload = events[i]
                if kind != "store":
                    continue
                data: bytes = payload  # type: ignore[assignment]
                if i in flight:
                    if i not in choose:
                        continue
                    mask = choose[i]
                    if mask is not None:
                        seg = arr[off:off + len(data)]
                        seg[mask] = np.frombuffer(data, np.uint8)[mask]
                        continue
                buf[off:off + len(data)] = data
            return bytes(buf)

        yield CrashImage(build({}), persist_index, event_index, "all-lost")
        if not in_flight:
            return
        yield CrashImage(build({i: None for i in in_flight}), persist_index, event_index, "all-kept")
        for _ in range(random_variants):
            yield CrashImage(build({i: None for i in in_flight if rng.random() < 0.5}),
                             persist_index, event_index, "random")
        gen = np.random.default_rng(rng.randrange(1 << 63))
        yield CrashImage(build({i: _torn_mask(events[i][1], len(events[i][2]), gen)  # type: ignore[arg-type]
                                for i in in_flight}), persist_index, event_index, "torn")


def _torn_mask(offset: int, length: int, gen: "np.random.Generator") -> "np.ndarray":
    """Which bytes of a store at ``offset`` survive a tear: a random subset of the cache lines
    it touches (aligned in the pool, as the hardware's are), and in one of those lines a
    random subset of 8-byte words."""
    import numpy as np
    if length == 0:
        return np.zeros(0, bool)
    first = offset // _LINE
    lines = -(-(offset + length) // _LINE) - first
    kept = gen.random(lines) < 0.5
    words = np.repeat(kept, _LINE // _WORD)
    torn = int(gen.integers(lines))
    words[torn * (_LINE // _WORD):(torn + 1) * (_LINE // _WORD)] = gen.random(_LINE // _WORD) < 0.5
    skip = offset - first * _LINE
    return np.repeat(words, _WORD)[skip:skip + length]
