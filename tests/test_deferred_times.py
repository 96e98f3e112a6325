"""Held-back modification times (``Journal.defer_mtime`` / ``flush_deferred``).

An in-place write logs nothing: its mtime is held and logged at the file's fsync or close.
A volume closed while the file is still open logs it then; an fsync of one file logs that
file's alone (the others stay held, one record each later, not all at once now), and
nothing when nothing is held; the time logged is the file's mtime and ctime both."""

from __future__ import annotations

from daxfs.media import MemoryPool
from daxfs.volume import Volume

from _small_volume import clock_past, pool_and_volume, write_file


def _volume() -> tuple[MemoryPool, Volume]:
    return pool_and_volume()


def test_a_volume_closed_with_a_file_open_logs_its_held_mtime() -> None:
    pool, vol = _volume()
    write_file(vol, "f", b"x" * 8192)
    logged = vol.stat("f").st_mtime_ns
    clock_past(logged)
    f = vol.open("f", "r+b", buffering=0)
    f.pwrite(b"y", 100)                         # in place: held
    held = vol.stat("f").st_mtime_ns
    assert held > logged
    vol.close()                                 # (the handle is detached, the time logged)
    again = Volume.mount(MemoryPool(pool.image()))
    try:
        st = again.stat("f")
        assert st.st_mtime_ns == st.st_ctime_ns == held
    finally:
        again.close()


def test_an_fsync_logs_its_own_files_held_mtime_only() -> None:
    _pool, vol = _volume()
    write_file(vol, "f", b"x" * 8192)
    write_file(vol, "g", b"x" * 8192)
    clock_past(max(vol.stat("f").st_mtime_ns, vol.stat("g").st_mtime_ns))
    with vol.open("f", "r+b", buffering=0) as f, vol.open("g", "r+b", buffering=0) as g:
        f.pwrite(b"y", 100)
        g.pwrite(b"y", 100)
        seq = vol._journal.ring.next_seq
        f.fsync()
        assert vol._journal.ring.next_seq == seq + 1        # f's time, not g's too
        g.fsync()
        assert vol._journal.ring.next_seq == seq + 2
        g.fsync()                               # nothing held now: nothing logged
        assert vol._journal.ring.next_seq == seq + 2
        st = vol.stat("f")
        assert st.st_ctime_ns == st.st_mtime_ns     # the held time is logged as both
    vol.close()


def test_a_checkpoint_takes_a_held_mtime_as_mtime_and_ctime() -> None:
    """A checkpoint writes the state with the held times in it (nothing logged for them):
    the file's mtime and its ctime both, in memory as on the pool — a ctime left behind
    would go backwards in stat once the time is no longer held."""
    pool, vol = _volume()
    write_file(vol, "f", b"x" * 8192)
    logged = vol.stat("f")
    clock_past(max(logged.st_mtime_ns, logged.st_ctime_ns))
    with vol.open("f", "r+b", buffering=0) as f:
        f.pwrite(b"y", 100)                         # in place: held
        held = vol.stat("f").st_mtime_ns
        assert held > logged.st_ctime_ns
        vol.checkpoint()
        assert not vol._journal.deferred            # taken into the state
        st = vol.stat("f")
        assert st.st_mtime_ns == st.st_ctime_ns == held
        image = pool.image()                        # (a crash here: the checkpoint has them)
    vol.close()
    again = Volume.mount(MemoryPool(image))
    try:
        st = again.stat("f")
        assert st.st_mtime_ns == st.st_ctime_ns == held
    finally:
        again.close()
