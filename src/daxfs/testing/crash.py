"""The crash oracle: run steps on a RecordingPool, then check every image a crash could leave.

``CrashRecorder`` runs steps (callables, or workload ``Op``s) on a volume whose pool
records every store and persist, and keeps the state (``snapshot``) after each one.
``check`` mounts the images a power failure could leave at the chosen events and holds
each to the contract the README states:

- ``fsck`` is clean and nothing is busy;
- a crash between steps leaves exactly the state after the last step that returned:
  names, modes, link counts, owners, sizes, allocated blocks, timestamps and bytes;
- a crash inside a step leaves exactly the state before it or after it, with one
  exception: bytes the step overwrites in place (``tearable``: inside the file's size,
  in blocks the file owns alone and has written) may each be old or new, as on any DAX
  file system, while everything else -- the file's metadata included -- is as before
  the step.  A write that allocates (fills holes, grows the file, copies shared blocks)
  is all-or-nothing.

``crash_state_error`` is that rule on its own, for tests that build their own loops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from daxfs.testing.workload import Op, recorded_volume, snapshot


def crash_state_error(before: dict, after: dict, got: dict,
                      tearable: dict[int, list[tuple[int, int]]] | None = None) -> str | None:
    """None when ``got`` is a state a crash inside a step may leave, else what is wrong.

    ``before``/``after``: snapshots around the step; ``tearable``: ``{ino: [(lo, hi)]}``
    byte ranges the step overwrites in place.
    """
    if got == before or got == after:
        return None
    if not tearable:
        return "neither the state before the step nor the one after it"
    if set(got) != set(before):
        return (f"a torn in-place write changed names: {sorted(set(got) ^ set(before))}")
    for path, entry in got.items():
        old = before[path]
        if entry == old:
            continue
        if entry[0] != "file" or old[0] != "file":
            return f"{path}: changed, and is not a file"
        ranges = tearable.get(entry[4][0])
        if not ranges:
            return f"{path}: changed, but the step wrote nothing in place there"
        if entry[:3] != old[:3] or entry[4] != old[4]:
            return f"{path}: bytes torn, but the metadata is not as before: {entry[4]} vs {old[4]}"
        new = after.get(path)
        if new is None or new[0] != "file":
            return f"{path}: torn, but gone after the step"
        data, od, nd = entry[3], old[3], new[3]
        for i in _diff(data, od):
            if not any(lo <= i < hi for lo, hi in ranges):
                return f"{path}: byte {i} changed outside the ranges written in place {ranges}"
            if i >= len(nd) or data[i] != nd[i]:
                return f"{path}: byte {i} is {data[i]}, neither old {od[i]} nor new"
    return None


def _diff(a: bytes, b: bytes) -> list[int]:
    """Positions where two equally long byte strings differ."""
    import numpy as np
    x, y = np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)
    return [int(i) for i in np.flatnonzero(x != y)]


@dataclass
class Step:
    """One step a CrashRecorder ran: what it was and what a crash inside it may tear."""

    label: str
    tearable: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.label


class CrashRecorder:
    """Steps on a recorded volume, and the states a crash image is checked against.

    ``times``: hold timestamps too (False where a step leaves in-place writes on a
    handle still open: their mtime is durable only at fsync/close).
    """

    def __init__(self, size: int = 4 << 20, *, times: bool = True, **mount: Any) -> None:
        self.pool, self.vol = recorded_volume(size, **mount)
        self.times = times
        self.steps: list[Step] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.snaps = [snapshot(self.vol, times=times)]

    def run(self, label: str, fn: Callable[[], Any], *,
            tearable: dict[int, list[tuple[int, int]]] | None = None) -> Any:
        """Run ``fn`` as one step; fsck the live volume after it."""
        self.starts.append(self.pool.mark())
        result = fn()
        self.ends.append(self.pool.mark())
        self.steps.append(Step(label, dict(tearable or {})))
        self.snaps.append(snapshot(self.vol, times=self.times))
        problems = self.vol.fsck()
        assert problems == [], f"live volume unclean after {label}: {problems}"
        return result

    def run_op(self, op: Op) -> Any:
        """Run a workload op as one step (its in-place ranges noted by ``Op.apply``)."""
        self.starts.append(self.pool.mark())
        err = op.apply(self.vol)
        self.ends.append(self.pool.mark())
        self.steps.append(Step(str(op), dict(op.tearable)))
        self.snaps.append(snapshot(self.vol, times=self.times))
        problems = self.vol.fsck()
        assert problems == [], f"live volume unclean after {op}: {problems}"
        return err

    def points(self) -> list[int]:
        """Every persist point, and the end."""
        return self.pool.persist_points() + [len(self.pool.events)]

    def check(self, points: Iterable[int] | None = None, *, random_variants: int = 1,
              extra: Callable[[Any, str, int | None, int], None] | None = None) -> Counter:
        """Mount the crash images at ``points`` and check each (see the module docstring).

        ``extra(vol, where, running, done)`` adds checks on the mounted image.  Returns how
        many images showed each outcome: ``between`` steps, ``before``/``after``/``torn``
        inside one -- so a caller can assert the crash points reached all of them.
        """
        from daxfs.media import MemoryPool
        from daxfs.volume import Volume

        pool = self.pool
        seen: Counter = Counter()
        for e in (self.points() if points is None else points):
            running = next((i for i in range(len(self.steps)) if self.starts[i] <= e < self.ends[i]), None)
            done = sum(1 for end in self.ends if end <= e)
            for image in pool.crash_images(e, seed=e, random_variants=random_variants):
                where = f"crash at event {e} ({image.variant})"
                vol = Volume.mount(MemoryPool(image.image))
                try:
                    problems = vol.fsck()
                    assert problems == [], f"fsck after {where}: {problems}"
                    assert vol.statfs().busy == 0, f"{where}: blocks busy after a mount"
                    got = snapshot(vol, times=self.times)
                    if extra is not None:
                        extra(vol, where, running, done)
                finally:
                    vol.close()
                if running is None:
                    assert got == self.snaps[done], \
                        f"{where}, after step {done}: {describe(self.snaps[done], got)}"
                    seen["between"] += 1
                    continue
                step = self.steps[running]
                before, after = self.snaps[running], self.snaps[running + 1]
                error = crash_state_error(before, after, got, step.tearable)
                assert error is None, f"{where} inside {step}: {error}; {describe(before, got)}"
                seen["before" if got == before else "after" if got == after else "torn"] += 1
        return seen


def describe(want: dict, got: dict) -> str:
    """A short account of how two snapshots differ."""
    parts = []
    for path in sorted(set(want) | set(got)):
        w, g = want.get(path), got.get(path)
        if w == g:
            continue
        if w is None or g is None:
            parts.append(f"{path} {'missing' if g is None else 'unexpected'}")
        elif w[0] != g[0]:
            parts.append(f"{path} is a {g[0]}, expected a {w[0]}")
        else:
            fields = []
            if w[1] != g[1]:
                fields.append(f"mode {g[1]:o} != {w[1]:o}")
            if w[-1] != g[-1]:
                fields.append(f"meta {g[-1]} != {w[-1]}")
            if w[0] == "file" and w[3] != g[3]:
                first = next((i for i in range(min(len(w[3]), len(g[3]))) if w[3][i] != g[3][i]),
                             min(len(w[3]), len(g[3])))
                fields.append(f"bytes differ from {first} (len {len(g[3])} vs {len(w[3])})")
            parts.append(f"{path}: {', '.join(fields)}")
    return "; ".join(parts[:6]) or "equal"
