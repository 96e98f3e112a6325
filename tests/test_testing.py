"""The shipped test machinery itself: the crash oracle's rule and the fixture helper.

The crash tests are only as strong as ``crash_state_error``, so it is checked
here on hand-made states: it accepts exactly before, exactly after, and bytes
overwritten in place torn per byte with everything else as before; it rejects
an allocating write whose data was lost (zeros where acknowledged bytes were),
a torn write whose size or timestamps moved, and a change to another file.
``close_checked`` fails a fixture when a test leaked a pin or a mapping.
"""

from __future__ import annotations

import pytest

from daxfs.media import MemoryPool
from daxfs.testing import close_checked, in_place_ranges, snapshot
from daxfs.testing.crash import CrashRecorder, crash_state_error
from daxfs.volume import Volume

BS = 4096


def _file(data: bytes, ino: int = 5, mtime: int = 1, blocks: int | None = None) -> tuple:
    nb = -(-len(data) // BS) * 8 if blocks is None else blocks
    return ("file", 0o644, 1, data, (ino, 1, 0, 0, len(data), nb, 1, mtime, mtime))


def _state(**files: tuple) -> dict:
    root = ("dir", 0o755, (1, 2, 0, 0, 40, 0, 1, 1, 1))
    return {"/": root, **{"/" + k: v for k, v in files.items()}}


def test_oracle_accepts_before_and_after_only_for_an_allocating_write() -> None:
    before = _state(f=_file(b""), g=_file(b"g" * 10, ino=6))
    after = _state(f=_file(b"new!" * 2000, mtime=2), g=_file(b"g" * 10, ino=6))
    assert crash_state_error(before, after, before) is None
    assert crash_state_error(before, after, after) is None
    lost = _state(f=_file(bytes(8000), mtime=2), g=_file(b"g" * 10, ino=6))      # size landed, data not
    assert crash_state_error(before, after, lost) is not None
    half = _state(f=_file(b"new!" * 1000 + bytes(4000), mtime=2), g=_file(b"g" * 10, ino=6))
    assert crash_state_error(before, after, half) is not None
    other = _state(f=_file(b""), g=_file(b"h" * 10, ino=6))
    assert crash_state_error(before, after, other) is not None


def test_oracle_lets_only_in_place_bytes_tear_and_only_with_the_old_metadata() -> None:
    old, new = b"o" * 8192, b"o" * 100 + b"n" * 5000 + b"o" * 3092
    before, after = _state(f=_file(old)), _state(f=_file(new, mtime=2))
    tear = {5: [(100, 5100)]}
    torn = bytearray(old)
    torn[100:164] = b"n" * 64
    torn[4000:4008] = b"n" * 8                                     # any lines, not a prefix
    assert crash_state_error(before, after, _state(f=_file(bytes(torn))), tear) is None
    # the same bytes with the new mtime: the data was persisted before the mtime, so not torn
    assert crash_state_error(before, after, _state(f=_file(bytes(torn), mtime=2)), tear) is not None
    zeroed = bytearray(old)
    zeroed[200:300] = bytes(100)                                   # neither old nor new
    assert crash_state_error(before, after, _state(f=_file(bytes(zeroed))), tear) is not None
    outside = bytearray(old)
    outside[6000] = ord("n")                                       # outside the in-place range
    assert crash_state_error(before, after, _state(f=_file(bytes(outside))), tear) is not None
    assert crash_state_error(before, after, _state(f=_file(bytes(torn))), {9: [(0, 8192)]}) is not None
    mode = _state(f=_file(bytes(torn)))
    mode["/f"] = ("file", 0o600, *mode["/f"][2:])
    assert crash_state_error(before, after, mode, tear) is not None


def test_in_place_ranges_are_the_written_private_bytes_inside_the_file() -> None:
    pool = MemoryPool(4 << 20)
    Volume.format(pool)
    vol = Volume.mount(pool)
    with vol.open("f", "wb", buffering=0) as f:
        f.write(b"x" * (3 * BS + 100))
        f.punch_hole(BS, BS)                                     # block 1 a hole
        f.fallocate(5 * BS, BS, keep_size=True)                  # block 5 unwritten, past EOF
    ino = vol.stat("f").st_ino
    assert in_place_ranges(vol, "f", 0, 10 * BS) == {ino: [(0, BS), (2 * BS, 3 * BS + 100)]}
    assert in_place_ranges(vol, "f", 3 * BS + 100, BS) == {}       # an append allocates
    assert in_place_ranges(vol, "f", BS + 5, 10) == {}             # into the hole
    vol.clone_file("f", "g")
    assert in_place_ranges(vol, "g", 0, BS) == {}                  # shared: copy-on-write
    assert in_place_ranges(vol, "missing", 0, BS) == {}
    vol.close()


def test_crash_recorder_catches_a_lost_step() -> None:
    """Tamper with a recorded state: the check must notice (it is not comparing with itself)."""
    rec = CrashRecorder(4 << 20)
    rec.run("create", lambda: rec.vol.open("f", "wb", buffering=0).close())
    rec.run("mkdir", lambda: rec.vol.mkdir("d"))
    assert rec.check()["between"] > 0
    rec.snaps[-1] = dict(rec.snaps[-1])
    del rec.snaps[-1]["/d"]
    with pytest.raises(AssertionError):
        rec.check()
    rec.vol.close()


def test_close_checked_fails_on_a_leaked_pin_or_mapping() -> None:
    for leak in ("pin", "map", None):
        pool = MemoryPool(4 << 20)
        Volume.format(pool)
        vol = Volume.mount(pool)
        f = vol.open("f", "w+b", buffering=0)
        f.write(b"x" * BS)
        ref = f.pin(0, BS) if leak == "pin" else f.map(0, BS) if leak == "map" else None
        if leak is None:
            close_checked(vol)
            assert vol.closed
            continue
        with pytest.raises(AssertionError, match="left 1 reference"):
            close_checked(vol)
        assert vol.closed == (leak == "map")                    # mappings revoked; a pin keeps it open
        ref.release() if leak == "pin" else ref.close()       # type: ignore[union-attr]
        f.close() if not f.closed else None
        vol.close()
        assert snapshot(Volume.mount(MemoryPool(pool.image())))["/f"][3] == b"x" * BS
