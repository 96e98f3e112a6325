"""Memory failure (seed 001): poison found, owners told, mappings fenced, data never silently wrong.

The scenario the seed argues about: one data block shared by three reflinked
files, mapped by one holder, pinned by another, and owned by an orphan that a
mapping keeps alive — then ``memory_failure`` on it.  Every owner comes back
from the reverse map; reads of the block raise EIO naming the file range, reads
elsewhere are byte-identical to before; the mappings are fenced there (and keep
working elsewhere) and told, the pin is told and kept; the block is quarantined
and never handed out again, even once every owner is gone, until
``clear_badblocks``.  Then clearing: zero_range and whole-block writes give
fresh blocks, punch and truncate make holes; partial writes are refused.

Plus: bad input (nothing changed), idempotence, free and busy blocks, remount,
writes/clones/dedupe/copies around poison, a touch of a fenced page dying with
a traceback and the fenced range on stderr (in a child process), and the
badblock sources (parser, side file, sysfs layouts).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import daxfs
from daxfs.errors import MediaErrorWarning
from daxfs.media import MemoryPool
from daxfs.media.badblocks import BadblockSource, format_badblocks, parse_badblocks, source_for
from daxfs.volume import Volume

BS = 4096
POOL = 16 << 20


def _pattern(n: int, seed: int) -> bytes:
    return bytes((i * 31 + seed * 7 + (i >> 12)) & 0xFF for i in range(n))


@pytest.fixture
def vol() -> Iterator[Volume]:
    pool = MemoryPool(POOL)
    Volume.format(pool)
    v = Volume.mount(pool)
    yield v
    if not v.closed:
        v.close(force=True, timeout=5)


def _write(vol: Volume, path: str, data: bytes) -> None:
    with vol.open(path, "wb", buffering=0) as f:
        f.write(data)


def _read(vol: Volume, path: str, n: int, offset: int) -> bytes:
    with vol.open(path, "rb", buffering=0) as f:
        return f.pread(n, offset)


def _accounting(vol: Volume) -> daxfs.StatFS:
    st = vol.statfs()
    assert st.free + st.used + st.busy + st.bad == st.size
    return st


# ---------------------------------------------------------------- the seed 001 scenario


def test_one_block_three_reflinks_a_mapping_a_pin_and_an_orphan(vol: Volume) -> None:
    data = _pattern(4 * BS, 1)
    _write(vol, "/a", data)
    vol.clone_file("/a", "/b")
    vol.clone_file("/a", "/c")
    vol.clone_file("/a", "/d")                  # becomes the orphan
    with vol.open("/a", "rb", buffering=0) as f:
        bad = f.extents()[0].pool_offset + BS    # file block 1 of all four
    told: list[tuple[str, int, int]] = []
    cpu, dma, keeper = vol.holder("cpu"), vol.holder("dma"), vol.holder("keeper")
    fa = cpu.open("/a", "rb", buffering=0)
    m = fa.map(on_poison=lambda r, off, n: told.append(("mapping", off, n)))
    fb = dma.open("/b", "rb", buffering=0)
    p = fb.pin(0, 4 * BS, on_poison=lambda r, off, n: told.append(("pin", off, n)))
    fd = keeper.open("/d", "rb", buffering=0)
    mo = fd.map(on_poison=lambda r, off, n: told.append(("orphan", off, n)))
    vol.unlink("/d")
    fd.close()
    before = {name: _read(vol, name, 4 * BS, 0) for name in ("/a", "/b", "/c")}
    used = _accounting(vol).used
    segments = p.segments

    owners = vol.memory_failure(bad, BS)

    assert sorted((o.path or "(orphan)", o.file_offset, o.length, o.pool_offset) for o in owners) == \
        [("(orphan)", BS, BS, bad), ("/a", BS, BS, bad), ("/b", BS, BS, bad), ("/c", BS, BS, bad)]
    # every owner's file range is poisoned: reads there fail naming the range, elsewhere they are as before
    for name in ("/a", "/b", "/c"):
        with vol.open(name, "rb", buffering=0) as f:
            with pytest.raises(daxfs.PoisonError) as err:
                f.pread(10, BS + 100)
            assert err.value.errno == errno.EIO and err.value.filename == name
            assert (err.value.file_offset, err.value.length, err.value.pool_offset) == (BS, BS, bad)
            with pytest.raises(daxfs.PoisonError):
                f.read()                                      # a read across it fails whole
            assert f.pread(BS, 0) == before[name][:BS]
            assert f.pread(2 * BS, 2 * BS) == before[name][2 * BS:]
            flags = [(e.file_offset, e.length, "poisoned" in e.flags) for e in f.extents()]
            assert (BS, BS, True) in flags and sum(n for _o, n, pz in flags if pz) == BS
    # the mappings are fenced over the block, told, and keep working elsewhere
    assert m.poisoned == [(BS, BS)] and mo.poisoned == [(BS, BS)]
    assert bytes(m.buffer[:BS]) == data[:BS] and bytes(m.buffer[2 * BS:]) == data[2 * BS:]
    assert bytes(mo.buffer[3 * BS:]) == data[3 * BS:]
    # the pin is told and stays, unchanged
    assert p.poisoned == [(BS, BS)] and p.segments == segments
    assert any(i.kind == "pin" and i.holder == "dma" for i in vol.pins())
    assert sorted(told) == [("mapping", BS, BS), ("orphan", BS, BS), ("pin", BS, BS)]
    st = _accounting(vol)
    assert st.bad == BS and st.used == used - BS
    assert vol.badblocks() == [(bad, BS)]
    assert vol.fsck() == []
    assert sorted(o.path or "" for o in vol.poisoned()) == ["", "/a", "/b", "/c"]
    # a write or a clone never takes the bad block; a new read mapping shows it fenced; a pin refuses it
    _write(vol, "/new", _pattern(200 * BS, 2))
    with vol.open("/new", "rb", buffering=0) as f:
        assert all(not (e.pool_offset <= bad < e.pool_offset + e.length) for e in f.extents())
    with vol.open("/c", "rb", buffering=0) as f:
        with f.map() as m2:
            assert m2.poisoned == [(BS, BS)] and bytes(m2.buffer[:BS]) == data[:BS]
        with pytest.raises(daxfs.PoisonError):
            f.pin(BS, BS)
        f.pin(2 * BS, BS).release()                           # elsewhere in the file: fine
    with pytest.raises(daxfs.PoisonError):
        vol.clone_file("/c", "/c2")
    assert not vol.exists("/c2")
    with pytest.raises(daxfs.BusyError):
        vol.clear_badblocks(bad, BS)                          # owned

    # clearing: each owner replaces or drops its block
    with vol.open("/a", "r+b", buffering=0) as f:
        f.zero_range(BS, BS)
        assert f.pread(4 * BS, 0) == data[:BS] + bytes(BS) + data[2 * BS:]
        assert not any("poisoned" in e.flags for e in f.extents())
    with vol.open("/b", "r+b", buffering=0) as f:
        with pytest.raises(daxfs.PoisonError):
            f.pwrite(b"partial", BS + 1)                      # the rest of the block is lost: refused
        f.pwrite(b"w" * BS, BS)                               # whole block: fresh
        assert f.pread(4 * BS, 0) == data[:BS] + b"w" * BS + data[2 * BS:]
    with vol.open("/c", "r+b", buffering=0) as f:
        f.punch_hole(BS, BS)
        assert f.pread(4 * BS, 0) == data[:BS] + bytes(BS) + data[2 * BS:]
    assert [o.path for o in vol.owners(bad, BS)] == [None]    # the orphan still owns it
    p.release()
    mo.close()
    keeper.close()                                            # the orphan goes
    assert vol.owners(bad, BS) == []
    st = _accounting(vol)
    assert st.bad == BS and vol.badblocks() == [(bad, BS)]    # quarantined, not free
    with pytest.raises(daxfs.BusyError):
        vol.clear_badblocks(bad, BS)                          # a live mapping (m) still holds it
    assert m.poisoned == [(BS, BS)]                           # a mapping made before stays fenced
    m.close()
    fa.close()
    fb.close()
    cpu.close()
    dma.close()
    free = st.free
    vol.clear_badblocks(bad, BS)
    st = _accounting(vol)
    assert st.bad == 0 and st.free == free + BS and vol.badblocks() == []
    assert vol.pool.read(bad, BS) == bytes(BS)               # zeroed before it is free again
    assert vol.fsck() == []


def test_truncate_and_whole_file_rewrite_drop_poison(vol: Volume) -> None:
    data = _pattern(3 * BS, 3)
    _write(vol, "/t", data)
    with vol.open("/t", "rb", buffering=0) as f:
        base = f.extents()[0].pool_offset
    vol.memory_failure(base + 2 * BS, BS)
    with vol.open("/t", "r+b", buffering=0) as f:
        f.truncate(2 * BS)                                    # the poisoned block is cut off
        assert f.read() == data[:2 * BS] and not any("poisoned" in e.flags for e in f.extents())
        f.truncate(3 * BS)
        assert f.pread(BS, 2 * BS) == bytes(BS)
    vol.memory_failure(base, BS)
    with vol.open("/t", "wb", buffering=0) as f:                           # O_TRUNC: a new file
        f.write(b"fresh")
    assert _read(vol, "/t", 10, 0) == b"fresh"
    assert vol.statfs().bad == 2 * BS and vol.fsck() == []


def test_a_write_covering_a_poisoned_last_block_to_eof_clears_it(vol: Volume) -> None:
    _write(vol, "/e", _pattern(BS + 100, 4))
    with vol.open("/e", "r+b", buffering=0) as f:
        with pytest.warns(MediaErrorWarning):
            vol.memory_failure(f.extents()[0].pool_offset + BS, 1)
        with pytest.raises(daxfs.PoisonError):
            f.pwrite(b"x" * 50, BS)                           # stops short of EOF
        f.pwrite(b"y" * 100, BS)                              # up to EOF: the whole block's data
        assert f.pread(200, BS) == b"y" * 100
        f.pwrite(b"z", BS + 1000)                             # grows over what was past EOF: zeros
        assert f.pread(1000, BS + 100) == bytes(900) + b"z"


def test_unwritten_blocks_on_bad_memory_hold_no_data(vol: Volume) -> None:
    with vol.open("/u", "w+b", buffering=0) as f:
        f.fallocate(0, 4 * BS)
        (extent,) = f.extents()
        vol.memory_failure(extent.pool_offset + BS, 2 * BS)
        assert not any("poisoned" in e.flags for e in f.extents())     # nothing was written there
        assert f.pread(4 * BS, 0) == bytes(4 * BS)
        assert vol.poisoned() == []
        f.pwrite(b"p", BS + 10)                         # a partial write: a fresh block, zeros around
        assert f.pread(BS, BS) == bytes(10) + b"p" + bytes(BS - 11)
        with f.map(0, 4 * BS, write=True) as m:         # populate takes a fresh block for the other
            m.buffer[2 * BS:2 * BS + 2] = b"mm"
            m.persist()
        assert f.pread(2, 2 * BS) == b"mm"
        for e in f.extents():
            for b, n in vol.badblocks():
                assert not (e.pool_offset < b + n and b < e.pool_offset + e.length)
    assert vol.fsck() == [] and vol.owners(extent.pool_offset + BS, 2 * BS) == []


def test_copies_and_dedupe_never_read_bad_memory(vol: Volume) -> None:
    data = _pattern(4 * BS, 5)
    _write(vol, "/s", data)
    _write(vol, "/t", data)
    with vol.open("/s", "rb", buffering=0) as f:
        vol.memory_failure(f.extents()[0].pool_offset + 2 * BS, BS)
    assert vol.dedupe_range("/s", 0, "/t", 0, 4 * BS) == 3 * BS     # the bad block is skipped
    vol.open("/u", "wb", buffering=0).close()
    with pytest.raises(daxfs.PoisonError):
        vol.copy_file_range("/s", 0, "/u", 0, 4 * BS)
    assert vol.stat("/u").st_size == 0                              # all-or-nothing
    assert vol.copy_file_range("/s", 0, "/u", 0, 2 * BS) == 2 * BS  # the healthy part copies
    with pytest.raises(daxfs.PoisonError):
        vol.clone_range("/s", 2 * BS, "/u", 0, BS)
    assert _read(vol, "/u", 2 * BS, 0) == data[:2 * BS]
    assert vol.fsck() == []


def test_free_and_busy_blocks_are_quarantined_at_once(vol: Volume) -> None:
    layout = vol._layout
    free_block = layout.block_offset(layout.data_blocks - 1)
    assert vol.memory_failure(free_block, BS) == []
    _write(vol, "/p", _pattern(2 * BS, 6))
    with vol.open("/p", "r+b", buffering=0) as f:
        blk = f.extents()[0].pool_offset
        told: list[int] = []
        pin = f.pin(0, 2 * BS, on_poison=lambda r, off, n: told.append(off))
        f.truncate(0)                                         # the pinned blocks go busy
        assert _accounting(vol).busy == 2 * BS
        vol.memory_failure(blk, BS)
        st = _accounting(vol)
        assert st.busy == BS and st.bad == 2 * BS and told == [0]
        pin.release()                                         # the healthy one frees; the bad one stays
    st = _accounting(vol)
    assert st.busy == 0 and st.bad == 2 * BS
    assert sorted(vol.badblocks()) == sorted([(free_block, BS), (blk, BS)])
    _write(vol, "/fill", b"f" * (st.free))                   # every free block: none of them bad
    with vol.open("/fill", "rb", buffering=0) as f:
        for e in f.extents():
            for b, n in vol.badblocks():
                assert not (e.pool_offset < b + n and b < e.pool_offset + e.length)
    assert vol.fsck() == []


# ---------------------------------------------------------------- bad input, idempotence


def test_bad_input_changes_nothing(vol: Volume) -> None:
    _write(vol, "/x", _pattern(2 * BS, 7))
    size = vol._layout.pool_size
    seq = vol._ring.next_seq
    for offset, length in ((size, BS), (-1, BS), (size - BS, 2 * BS), (vol._layout.data_offset, 0),
                           (vol._layout.data_offset, -BS)):
        with pytest.raises(OSError) as err:
            vol.memory_failure(offset, length)
        assert err.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        vol.memory_failure(1.5, BS)  # type: ignore[arg-type]
    with pytest.raises(OSError) as err:
        vol.clear_badblocks(vol._layout.data_offset, BS)     # not bad
    assert err.value.errno == errno.EINVAL
    assert vol._ring.next_seq == seq and vol.badblocks() == [] and vol.statfs().bad == 0


def test_unaligned_ranges_are_rounded_out_and_said_so_and_repeats_change_nothing(vol: Volume) -> None:
    _write(vol, "/x", _pattern(3 * BS, 8))
    with vol.open("/x", "rb", buffering=0) as f:
        base = f.extents()[0].pool_offset
    with pytest.warns(MediaErrorWarning, match="rounded out"):
        owners = vol.memory_failure(base + BS + 100, BS)       # touches blocks 1 and 2
    assert [(o.file_offset, o.length) for o in owners] == [(BS, 2 * BS)]
    assert vol.badblocks() == [(base + BS, 2 * BS)]
    seq = vol._ring.next_seq
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = vol.memory_failure(base + BS, 2 * BS)
    assert again == owners and vol._ring.next_seq == seq       # nothing logged the second time
    with pytest.raises(OSError) as err:
        vol.clear_badblocks(base, 2 * BS)                     # block 0 is not bad: nothing cleared
    assert err.value.errno == errno.EINVAL and vol.badblocks() == [(base + BS, 2 * BS)]


def test_read_only_volume_cannot_record_a_failure(tmp_path: Path) -> None:
    path = str(tmp_path / "ro.pool")
    daxfs.mkfs(path, POOL).close()
    with daxfs.open_volume(path, readonly=True) as ro:
        with pytest.raises(OSError) as err:
            ro.memory_failure(ro._layout.data_offset, BS)
        assert err.value.errno == errno.EROFS


# ---------------------------------------------------------------- remount


def test_remount_keeps_quarantine_and_poison(tmp_path: Path) -> None:
    path = str(tmp_path / "re.pool")
    data = _pattern(4 * BS, 9)
    with daxfs.mkfs(path, POOL) as vol:
        _write(vol, "/a", data)
        vol.clone_file("/a", "/b")
        with vol.open("/a", "rb", buffering=0) as f:
            base = f.extents()[0].pool_offset
        vol.memory_failure(base + BS, BS)
        spare = vol._layout.block_offset(vol._layout.data_blocks - 2)
        vol.memory_failure(spare, BS)
        st = vol.statfs()
        bad = vol.badblocks()
    for _ in range(2):          # once from the log, once from the checkpoint close wrote
        with daxfs.open_volume(path) as vol:
            # (residency is the medium's, not the volume's: the owner page is written at mount)
            assert vol.badblocks() == bad and vol.statfs()._replace(resident=0) == st._replace(resident=0)
            assert vol.fsck() == []
            for name in ("/a", "/b"):
                with pytest.raises(daxfs.PoisonError):
                    _read(vol, name, BS, BS)
                assert _read(vol, name, BS, 2 * BS) == data[2 * BS:3 * BS]
            vol.checkpoint()


# ---------------------------------------------------------------- a touch of a fenced page


def test_touching_a_fenced_page_dies_explaining_itself(tmp_path: Path) -> None:
    """A fenced page faults when touched, as a poisoned page does on Linux (SIGBUS there,
    SIGSEGV here): the process dies with a Python traceback and the fenced range on stderr."""
    script = textwrap.dedent(f"""
        import daxfs
        from daxfs.media import MemoryPool
        from daxfs.volume import Volume
        pool = MemoryPool({POOL}); Volume.format(pool); vol = Volume.mount(pool)
        with vol.open("/victim", "wb", buffering=0) as f:
            f.write(b"v" * {3 * BS})
        f = vol.open("/victim", "rb", buffering=0)
        m = f.map()
        vol.memory_failure(f.extents()[0].pool_offset + {BS}, {BS})
        print("before the touch", bytes(m.buffer[:4]), m.poisoned, flush=True)
        def touch_the_fenced_page():
            return m.buffer[{BS} + 10]
        touch_the_fenced_page()
        print("survived")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode < 0 and "survived" not in done.stdout, (done.returncode, done.stdout, done.stderr)
    assert "before the touch b'vvvv' [(4096, 4096)]" in done.stdout
    assert "bytes [4096, +4096) of /victim are fenced" in done.stderr
    assert "Segmentation fault" in done.stderr and "touch_the_fenced_page" in done.stderr


def test_migrating_a_mapping_keeps_its_fence(vol: Volume) -> None:
    data = _pattern(3 * BS, 10)
    _write(vol, "/mig", data)
    with vol.open("/mig", "rb", buffering=0) as f:
        m = f.map()
        vol.memory_failure(f.extents()[0].pool_offset + BS, BS)
        m.revoke("migrate")                         # copies around the fence, never through it
        assert m.revoked and bytes(m.buffer[:BS]) == data[:BS] and bytes(m.buffer[2 * BS:]) == data[2 * BS:]
        assert m.poisoned == [(BS, BS)]
        m.close()


def test_a_pins_cpu_view_made_after_the_failure_is_fenced(vol: Volume) -> None:
    data = _pattern(3 * BS, 11)
    _write(vol, "/pv", data)
    with vol.open("/pv", "rb", buffering=0) as f:
        pin = f.pin(0, 3 * BS)
        vol.memory_failure(f.extents()[0].pool_offset + 2 * BS, BS)
        assert bytes(pin.buffer[:2 * BS]) == data[:2 * BS]    # made now: block 2 fenced in it
        assert pin.reference.view.fenced == [(2 * BS, BS)]  # type: ignore[union-attr]
        pin.release()


def test_a_closed_mapping_whose_arrays_live_is_fenced_too(vol: Volume) -> None:
    data = _pattern(2 * BS, 12)
    _write(vol, "/arr", data)
    with vol.open("/arr", "rb", buffering=0) as f:
        m = f.map()
        arr = m.array()
        view = m.reference.view
        m.close()                                   # the array keeps the memory mapped
        vol.memory_failure(f.extents()[0].pool_offset + BS, BS)
        assert view.fenced == [(BS, BS)]  # type: ignore[union-attr]
        assert bytes(arr[:BS]) == data[:BS]
        del arr


# ---------------------------------------------------------------- badblock sources


def test_badblocks_format() -> None:
    text = "0 8\n\n# a comment\n17 1\n  100   3  \nbogus line\n5 0\n"
    ranges, problems = parse_badblocks(text)
    assert ranges == [(0, 4096), (17 * 512, 512), (100 * 512, 3 * 512)]
    assert len(problems) == 2 and "bogus" in problems[0]
    assert format_badblocks([(0, 4096), (1000, 100)]) == "0 8\n1 2\n"
    assert parse_badblocks(format_badblocks(ranges))[0] == ranges


def test_side_file_source(tmp_path: Path) -> None:
    pool = tmp_path / "p.pool"
    pool.write_bytes(bytes(1 << 20))
    source = source_for(str(pool), 1 << 20)
    assert source is not None and source.path == str(pool) + ".badblocks" and source.writable
    assert source.read() == [] and source.stamp() is None
    assert source.append(1000, 10) == (512, 512)             # rounded out to its sector
    source.append(8192, 4096)
    assert source.read() == [(512, 512), (8192, 4096)]
    source.remove(8192 + 1024, 1024)
    assert source.read() == [(512, 512), (8192, 1024), (8192 + 2048, 2048)]
    with (tmp_path / "p.pool.badblocks").open("a") as fh:
        fh.write(f"{(1 << 20) // 512 - 1} 4\n")             # runs past the pool: clipped
    assert source.read()[-1] == ((1 << 20) - 512, 512)
    assert source_for(str(tmp_path)) is None                 # a directory has no list
    assert source_for("<memory>") is None


def _fake_sysfs(tmp_path: Path) -> tuple[Path, Path]:
    """A /sys with a pmem disk (pmem0, partition pmem0p1) and a device-dax device in an nd region."""
    sys_root = tmp_path / "sys"
    region = sys_root / "devices" / "ndbus0" / "region0"
    disk = region / "namespace0.0" / "block" / "pmem0"
    (disk / "pmem0p1").mkdir(parents=True)
    (disk / "badblocks").write_text("8 8\n")
    (disk / "pmem0p1" / "start").write_text("4\n")
    dax = region / "dax0.1" / "dax0.1"
    dax.mkdir(parents=True)
    (region / "badblocks").write_text("2048 16\n")
    (region / "resource").write_text("0x100000000\n")
    (dax / "resource").write_text("0x100080000\n")           # 512 KiB into the region
    for kind, name, target in (("block", "259:0", disk), ("block", "259:1", disk / "pmem0p1"),
                               ("char", "252:1", dax)):
        (sys_root / "dev" / kind).mkdir(parents=True, exist_ok=True)
        os.symlink(target, sys_root / "dev" / kind / name)
    return sys_root, region


def test_device_sources_read_the_kernels_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daxfs.media import badblocks as bb
    sys_root, region = _fake_sysfs(tmp_path)
    fake = {"/dev/pmem0": (0o060000, os.makedev(259, 0)), "/dev/pmem0p1": (0o060000, os.makedev(259, 1)),
            "/dev/dax0.1": (0o020000, os.makedev(252, 1))}
    real_stat = os.stat

    def stat(path: str, *a: object, **k: object) -> object:
        if path in fake:        # a device node that is not on this machine
            mode, rdev = fake[path]
            return SimpleNamespace(st_mode=mode | 0o600, st_rdev=rdev)
        return real_stat(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(bb.os, "stat", stat)
    disk = source_for("/dev/pmem0", 1 << 30, sysfs=str(sys_root))
    assert disk is not None and disk.kind == "device" and not disk.writable
    assert disk.read() == [(8 * 512, 8 * 512)]
    part = source_for("/dev/pmem0p1", 1 << 30, sysfs=str(sys_root))
    assert part is not None and part.read() == [(4 * 512, 8 * 512)]       # less the partition's start
    dax = source_for("/dev/dax0.1", 1 << 30, sysfs=str(sys_root))
    assert dax is not None and dax.path == os.path.realpath(region / "badblocks")
    assert dax.read() == [(2048 * 512 - 0x80000, 16 * 512)]              # region offset less the device's
    with pytest.raises(OSError) as err:
        dax.append(0, 512)
    assert err.value.errno == errno.EOPNOTSUPP


def test_a_file_pool_acts_on_its_side_file_at_mount_and_while_mounted(tmp_path: Path) -> None:
    path = str(tmp_path / "w.pool")
    data = _pattern(2 * BS, 13)
    with daxfs.mkfs(path, POOL) as vol:
        _write(vol, "/w", data)
        with vol.open("/w", "rb", buffering=0) as f:
            base = f.extents()[0].pool_offset
    BadblockSource(path + ".badblocks", "side file").append(base, 512)     # listed while unmounted
    with daxfs.open_volume(path) as vol:
        assert vol.badblocks() == [(base, BS)]
        with pytest.raises(daxfs.PoisonError):
            _read(vol, "/w", 10, 0)
        vol.unlink("/w")
        vol.clear_badblocks(base, BS)                         # the simulated repair: unlisted too
        assert vol.badblocks() == [] and BadblockSource(path + ".badblocks", "side file").read() == []


def test_a_refused_close_keeps_watching(tmp_path: Path) -> None:
    path = str(tmp_path / "busy.pool")
    with daxfs.mkfs(path, POOL) as vol:
        _write(vol, "/m", _pattern(BS, 14))
        with vol.open("/m", "rb", buffering=0) as f:
            told = threading.Event()
            m = f.map(on_poison=lambda *_a: told.set())
            with pytest.raises(daxfs.BusyError):
                vol.close()                                   # refused: the mapping lives
            BadblockSource(path + ".badblocks", "side file").append(f.extents()[0].pool_offset, BS)
            assert told.wait(30), "the watcher stopped with the refused close"
            m.close()
