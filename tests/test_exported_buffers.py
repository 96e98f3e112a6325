"""Buffers exported from a reference that was let go of: what they still reach.

A mapping closed (or a pin released) while a memoryview or array of its buffer lives stays
mapped until the last export goes, and its blocks stay held.  These tests pin down that
nothing hands those blocks to another file meanwhile (found by an independent review):

- closing the volume (plain or forced) moves such buffers to private memory, same bytes,
  and lets their blocks go: the pool's next writer may reuse them, and stores through the
  old arrays never reach its files (before, the close left them on the pool);
- clone_file, clone_range and dedupe_range refuse to share blocks such a write buffer can
  still change, and copy_file_range copies them instead of sharing (before, stores through
  the old array changed the clone);
- a memory failure under such a buffer fences it, as it fences a live mapping's (before,
  the volume's weak reference to the view died at once and nothing was fenced).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

import daxfs

BS = 4096
SIZE = 16 * BS


@pytest.fixture
def pool() -> Iterator[str]:
    path = f"/dev/shm/daxfs-exported-{os.getpid()}-{uuid.uuid4().hex}.pool"
    with daxfs.mkfs(path, 8 << 20) as vol:
        with vol.open("/a", "wb") as f:
            f.write(b"A" * SIZE)
    yield path
    os.unlink(path)


def _let_go_exported(vol: daxfs.Volume, kind: str) -> np.ndarray:
    """An array over /a's buffer, writable, whose reference (a pin or a write mapping) is
    let go of at once."""
    with vol.open("/a", "r+b", buffering=0) as f:
        ref = f.pin(0, SIZE, write=True) if kind == "pin" else f.map(0, SIZE, write=True)
        array = np.frombuffer(ref.buffer, dtype=np.uint8)
        if kind == "pin":
            ref.release()
        else:
            ref.close()
    return array


def _fill(vol: daxfs.Volume) -> list[str]:
    names = []
    while True:
        name = f"/fill{len(names)}"
        try:
            with vol.open(name, "wb") as f:
                f.write(b"F" * SIZE)
        except OSError:
            vol.unlink(name)
            return names
        names.append(name)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("kind", ["pin", "mapping"])
def test_closing_the_volume_moves_buffers_still_exported_to_private_memory(
        pool: str, kind: str, force: bool) -> None:
    vol = daxfs.open_volume(pool)
    array = _let_go_exported(vol, kind)
    assert vol.statfs().busy == 0                      # /a still owns them; held, not busy
    vol.close(force=force)
    assert bytes(array[:4]) == b"AAAA"                 # the same bytes, now private
    with daxfs.open_volume(pool) as vol:
        vol.unlink("/a")
        fills = _fill(vol)
        assert fills and vol.statfs().busy == 0        # every block given out again
        array[:] = ord("X")
        for name in fills:
            with vol.open(name, "rb") as f:
                assert set(f.read()) == {ord("F")}, name
        assert vol.fsck() == []
    assert bytes(array[:4]) == b"XXXX"


@pytest.mark.parametrize("share", ["clone_file", "clone_range", "dedupe_range"])
@pytest.mark.parametrize("kind", ["pin", "mapping"])
def test_sharing_refuses_blocks_a_let_go_write_buffer_can_still_change(pool: str, kind: str,
                                                                       share: str) -> None:
    with daxfs.open_volume(pool) as vol:
        with vol.open("/b", "wb") as f:
            f.write(b"A" * SIZE)
        array = _let_go_exported(vol, kind)
        with pytest.raises(daxfs.BusyError, match="can still change"):
            if share == "clone_file":
                vol.clone_file("/a", "/c")
            else:
                getattr(vol, share)("/a", 0, "/b", 0, SIZE)
        assert not vol.exists("/c") and vol.statfs().shared == 0
        array[:] = ord("X")
        with vol.open("/b", "rb") as f:
            assert f.read() == b"A" * SIZE
        del array
        gc.collect()                                   # the export gone, sharing is allowed
        vol.clone_file("/a", "/c")
        assert vol.statfs().shared == SIZE


def test_copy_file_range_copies_blocks_a_let_go_write_buffer_can_still_change(pool: str) -> None:
    with daxfs.open_volume(pool) as vol:
        with vol.open("/b", "wb") as f:
            f.write(b"B" * SIZE)
        array = _let_go_exported(vol, "mapping")
        assert vol.copy_file_range("/a", 0, "/b", 0, SIZE) == SIZE
        assert vol.statfs().shared == 0                # copied, not shared
        array[:] = ord("X")
        with vol.open("/b", "rb") as f:
            assert f.read() == b"A" * SIZE
        del array
        gc.collect()


def test_a_let_go_reference_keeps_its_view_for_fencing_until_the_last_export_goes(pool: str) -> None:
    with daxfs.open_volume(pool) as vol:
        with vol.open("/a", "rb", buffering=0) as f:
            mapping = f.map(0, SIZE)
            export = mapping.buffer[:]
            ref = mapping._ref
            mapping.close()
        assert ref.lingering is not None and ref.lingering() is not None
        assert vol.references.lingering() == [ref]
        export.release()
        del export
        gc.collect()
        assert ref.lingering() is None and vol.references.lingering() == []


_TOUCH_AFTER_FAILURE = r"""
import sys, numpy as np, daxfs
vol = daxfs.open_volume(sys.argv[1])
f = vol.open("/a", "r+b", buffering=0)
with f.pin(0, 4096) as first:
    pool_offset = first.segments[0][2]
ref = f.map(0, 65536) if sys.argv[2] == "mapping" else f.pin(0, 65536)
array = np.frombuffer(ref.buffer, dtype=np.uint8)
ref.close() if sys.argv[2] == "mapping" else ref.release()
vol.memory_failure(pool_offset + 8192, 4096)
print(bytes(array[:2]).decode(), flush=True)       # a page beside it still reads
print(bytes(array[8192:8194]).decode(), flush=True)  # the failed page: a fault, never bytes
"""


@pytest.mark.parametrize("kind", ["pin", "mapping"])
def test_a_memory_failure_fences_a_let_go_references_exported_buffer(pool: str, kind: str) -> None:
    run = subprocess.run([sys.executable, "-c", _TOUCH_AFTER_FAILURE, pool, kind],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.splitlines() == ["AA"], run.stderr
    assert run.returncode == -11                        # SIGSEGV on the fenced page
