"""The edges of sharing blocks (clone_range, clone_file, dedupe_range, copy_file_range, owners)
that the differential and bad-input tables of test_reflink.py step over.

Found by mutating ``volume/sharing.py``.  What is proved here:

* **clone_file's arguments**: a read-only handle may be the source and a write-only one the
  destination; a destination path that is a dangling symlink creates the link's target (as
  ``open(O_CREAT)`` does); a name with a trailing slash that does not exist is EISDIR and
  creates nothing; the new file's owner and mode come from the caller's creator.
* **The policy over each call's own range**: a write reference on the source's first block
  refuses clone_file, one left past the source's EOF (a truncate under ``defer``) does not;
  ``refuse`` over the destination refuses the call naming it and changes nothing.
* **The checkpoint room** each call holds: one byte less is ENOSPC with nothing changed.
* **owners()**: a zero length is a ValueError, and the list is in pool order, then inode.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

import daxfs
from daxfs.volume import Volume
from daxfs.volume.prepared import GROW_RUN

from _small_volume import (BS, check_checkpoint_room, distinct, read_file, scatter_free_space, small_volume,
                           write_file)


def _extents(vol: Volume, path: str) -> list[daxfs.Extent]:
    with vol.open(path, "rb", buffering=0) as f:
        return f.extents()


def _pool_offsets(vol: Volume, path: str) -> list[int]:
    """The pool offset of each block ``path`` maps, in file order."""
    return [e.pool_offset + i for e in _extents(vol, path) for i in range(0, e.length, BS)]


def _state(vol: Volume, *paths: str) -> tuple[Any, ...]:
    """What a refused call must leave as it was: the names, each file's bytes and extents, statfs."""
    files = tuple((p, read_file(vol, p), tuple(_extents(vol, p))) if vol.exists(p) else (p, None)
                  for p in paths)
    return tuple(sorted(vol.listdir("/"))), files, vol.statfs()


# --------------------------------------------------------------------------- clone_file's arguments


def test_clone_file_takes_a_read_only_source_handle() -> None:
    vol = small_volume()
    data = distinct(1, 2 * BS + 7)
    write_file(vol, "a", data)
    write_file(vol, "b", distinct(2, BS))
    with vol.open("a", "rb", buffering=0) as src:
        vol.clone_file(src, "b")                        # over a file
        vol.clone_file(src, "c")                        # a new name
    for name in "bc":
        assert read_file(vol, name) == data
        assert _pool_offsets(vol, name) == _pool_offsets(vol, "a")
    assert vol.fsck() == []
    vol.close()


def test_clone_file_takes_a_write_only_destination_handle() -> None:
    """As FICLONE onto a file descriptor open for writing (this was a TypeError once)."""
    vol = small_volume()
    data = distinct(1, 2 * BS + 7)
    write_file(vol, "a", data)
    write_file(vol, "b", distinct(2, 3 * BS))
    with vol.open("a", "rb", buffering=0) as src, vol.open("b", "wb", buffering=0) as dst:
        vol.clone_file(src, dst)
        assert dst.stat().st_size == len(data)
    assert read_file(vol, "b") == data
    assert _pool_offsets(vol, "b") == _pool_offsets(vol, "a")
    with vol.open("b", "rb", buffering=0) as dst:
        with pytest.raises(OSError) as info:
            vol.clone_file("a", dst)
        assert info.value.errno == errno.EBADF
    assert vol.fsck() == []
    vol.close()


def test_clone_file_onto_a_dangling_symlink_creates_its_target() -> None:
    vol = small_volume()
    data = distinct(3, BS + 100)
    write_file(vol, "a", data)
    vol.symlink("target", "link")
    vol.clone_file("a", "link")
    assert vol.readlink("link") == "target"
    assert read_file(vol, "target") == data
    assert _pool_offsets(vol, "target") == _pool_offsets(vol, "a")
    assert vol.fsck() == []
    vol.close()


def test_clone_file_to_a_missing_name_with_a_trailing_slash_is_eisdir_and_creates_nothing() -> None:
    vol = small_volume()
    write_file(vol, "a", distinct(4, BS))
    before = _state(vol, "a", "new")
    with pytest.raises(OSError) as info:
        vol.clone_file("a", "new/")
    assert info.value.errno == errno.EISDIR and info.value.filename == "new/"
    assert _state(vol, "a", "new") == before
    assert vol.fsck() == []
    vol.close()


def test_clone_file_gives_the_new_file_the_creators_owner_and_mode() -> None:
    vol = small_volume()
    write_file(vol, "a", distinct(5, BS))
    vol.sharing.clone_file("a", "new", creator=(1234, 5678, 0o022))     # (as the arbiter calls it)
    st = vol.stat("new")
    assert (st.st_uid, st.st_gid, st.st_mode) == (1234, 5678, 0o100644)
    vol.sharing.clone_file("a", "other", creator=(4321, 8765, 0o077))
    st = vol.stat("other")
    assert (st.st_uid, st.st_gid, st.st_mode) == (4321, 8765, 0o100600)
    vol.close()


# --------------------------------------------------------------------------- the policy over each range


def test_clone_file_refuses_a_write_mapping_on_the_sources_first_block() -> None:
    vol = small_volume()
    write_file(vol, "a", distinct(6, 3 * BS))
    with vol.open("a", "r+b", buffering=0) as f, f.map(0, BS, write=True):
        before = _state(vol, "a", "b")
        with pytest.raises(daxfs.BusyError):
            vol.clone_file("a", "b")
        assert _state(vol, "a", "b") == before
    vol.close()


def test_clone_file_ignores_a_write_mapping_left_past_the_sources_eof() -> None:
    """A truncate under ``defer`` leaves a write mapping past the new EOF: nothing it can
    still store into is shared, so the clone goes ahead."""
    vol = small_volume()
    data = distinct(7, 3 * BS)
    write_file(vol, "a", data)
    with vol.open("a", "r+b", buffering=0) as f, f.map(2 * BS, BS, write=True):
        f.truncate(BS)
        vol.clone_file("a", "b")
        assert read_file(vol, "b") == data[:BS]
        assert _pool_offsets(vol, "b") == _pool_offsets(vol, "a")
    assert vol.fsck() == []
    vol.close()


def test_refuse_over_the_first_block_of_a_clone_files_destination_changes_nothing() -> None:
    vol = small_volume(policy="refuse")
    write_file(vol, "a", distinct(8, 2 * BS))
    write_file(vol, "b", distinct(9, 3 * BS))
    with vol.open("b", "rb", buffering=0) as f, f.pin(0, BS):
        before = _state(vol, "a", "b")
        with pytest.raises(daxfs.BusyError) as info:
            vol.clone_file("a", "b")
        assert info.value.errno == errno.EBUSY and "clone over refused" in str(info.value)
        assert _state(vol, "a", "b") == before
    vol.clone_file("a", "b")
    assert read_file(vol, "b") == read_file(vol, "a")
    assert vol.fsck() == []
    vol.close()


# --------------------------------------------------------------------------- checkpoint room


def _room_volume() -> Volume:
    """``f`` (2 blocks) and ``src`` (3 blocks, one run) on a fresh volume."""
    vol = small_volume()
    write_file(vol, "f", distinct(10, 2 * BS))
    write_file(vol, "src", distinct(11, 3 * BS))
    return vol


def _room_case(op: Any) -> tuple[Any, list[Volume]]:
    """``make`` for check_checkpoint_room, remembering the volumes it made (for ``op``)."""
    made: list[Volume] = []

    def make() -> Volume:
        made.append(_room_volume())
        return made[-1]
    return make, made


@pytest.mark.parametrize("case", ["clone_file over f", "clone_file to a new name"])
def test_clone_file_holds_its_checkpoint_room(case: str) -> None:
    """One run shared (GROW_RUN a run, plus two); a new name costs 256 and 4 a character more."""
    make, made = _room_case(None)
    if case == "clone_file over f":
        check_checkpoint_room(make, lambda f: made[-1].clone_file("src", "f"), GROW_RUN * 3, case, 4 * BS)
    else:
        check_checkpoint_room(make, lambda f: made[-1].clone_file(f, "newname"),
                              256 + 4 * len("newname") + GROW_RUN * 3, case, 4 * BS)


# --------------------------------------------------------------------------- owners


def test_owners_refuses_a_zero_length_or_a_negative_offset() -> None:
    vol = small_volume()
    write_file(vol, "a", distinct(12, BS))
    po = _pool_offsets(vol, "a")[0]
    for offset, length in ((po, 0), (po, -1), (-1, BS)):
        with pytest.raises(ValueError):
            vol.owners(offset, length)
    assert [o.ino for o in vol.owners(po)] == [vol.stat("a").st_ino]
    vol.close()


def test_owners_lists_in_pool_order_then_by_inode() -> None:
    """``a`` is made first (the smaller inode) but written after ``b``, so its data lies after
    ``b``'s; ``c`` clones ``b`` (a larger inode on the same block)."""
    vol = small_volume()
    write_file(vol, "a", b"")
    write_file(vol, "b", distinct(13, BS))
    write_file(vol, "a", distinct(14, BS))
    vol.clone_file("b", "c")
    ino = {name: vol.stat(name).st_ino for name in "abc"}
    assert ino["a"] < ino["b"] < ino["c"]
    (pb,), (pa,) = _pool_offsets(vol, "b"), _pool_offsets(vol, "a")
    assert pb < pa
    lo = min(pa, pb)
    got = vol.owners(lo, max(pa, pb) + BS - lo)
    want = [daxfs.Owner(ino["b"], "/b", 0, BS, pb), daxfs.Owner(ino["c"], "/c", 0, BS, pb)]
    want += [daxfs.Owner(ino["a"], "/a", 0, BS, pa)]
    assert [o for o in got if o.pool_offset in (pa, pb)] == want
    vol.close()


# --------------------------------------------------------------------------- copy_file_range


def test_copy_file_range_shares_the_sources_eof_block_when_it_ends_at_the_destinations_eof() -> None:
    """The source's partial last block may be shared when the copy ends at or past the
    destination's EOF: exactly at it, nothing of the destination's shows past the copy."""
    vol = small_volume()
    data = distinct(15, 2 * BS + 100)
    write_file(vol, "a", data)
    write_file(vol, "b", distinct(16, 2 * BS + 100))
    assert vol.copy_file_range("a", 0, "b", 0, len(data)) == len(data)
    assert read_file(vol, "b") == data
    assert _pool_offsets(vol, "b") == _pool_offsets(vol, "a")
    assert vol.fsck() == []
    vol.close()


def test_copy_file_range_past_the_atomic_limit_goes_in_chunks_with_the_same_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An unaligned copy longer than the atomic limit is written chunk by chunk (limits made
    small here: 8 blocks, chunks of 3 blocks and 5 bytes); every byte lands where it should."""
    from daxfs.volume import sharing
    monkeypatch.setattr(sharing, "_ATOMIC_COPY_LIMIT", 8 * BS)
    monkeypatch.setattr(sharing, "_COPY_CHUNK", 3 * BS + 5)
    vol = small_volume()
    data = distinct(17, 12 * BS)
    old = distinct(18, 2 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", old)
    n = 10 * BS + 17
    assert vol.copy_file_range("a", 1, "b", 100, n) == n
    assert read_file(vol, "b") == old[:100] + data[1:1 + n]
    vol.open("c", "wb", buffering=0).close()
    assert vol.copy_file_range("a", 3, "c", 0, 8 * BS + 1) == 8 * BS + 1
    assert read_file(vol, "c") == data[3:3 + 8 * BS + 1]
    assert vol.fsck() == []
    vol.close()


def test_copy_file_range_starting_at_or_past_the_sources_eof_copies_nothing() -> None:
    vol = small_volume()
    write_file(vol, "a", distinct(19, BS + 10))
    write_file(vol, "b", distinct(20, BS))
    before = _state(vol, "a", "b")
    for offset in (BS + 10, 5 * BS):
        assert vol.copy_file_range("a", offset, "b", 0, BS) == 0
        assert vol.copy_file_range("a", offset, "b", 4 * BS, BS) == 0      # nor grows the destination
    assert _state(vol, "a", "b") == before
    vol.close()


# --------------------------------------------------------------------------- bad input, one argument at a time

_NEGATIVE: list[tuple[str, Any]] = [
    ("clone_range dst_offset", lambda v: v.clone_range("a", 0, "b", -BS, BS)),
    ("clone_range length", lambda v: v.clone_range("a", 0, "b", 0, -BS)),
    ("clone_range src_offset", lambda v: v.clone_range("a", -BS, "b", 0, BS)),
    ("dedupe_range src_offset", lambda v: v.dedupe_range("a", -BS, "b", 0, BS)),
    ("dedupe_range dst_offset", lambda v: v.dedupe_range("a", 0, "b", -BS, BS)),
    ("dedupe_range length", lambda v: v.dedupe_range("a", 0, "b", 0, -BS)),
    ("dedupe_range unaligned dst_offset", lambda v: v.dedupe_range("a", 0, "b", 100, BS)),
    ("copy_file_range src_offset", lambda v: v.copy_file_range("a", -BS, "b", 0, BS)),
    ("copy_file_range dst_offset", lambda v: v.copy_file_range("a", 0, "b", -BS, BS)),
    ("copy_file_range length", lambda v: v.copy_file_range("a", 0, "b", 0, -BS)),
]


@pytest.mark.parametrize("call", [c[1] for c in _NEGATIVE], ids=[c[0] for c in _NEGATIVE])
def test_each_bad_offset_or_length_alone_is_einval_and_changes_nothing(call: Any) -> None:
    vol = small_volume()
    write_file(vol, "a", distinct(21, 4 * BS))
    write_file(vol, "b", distinct(22, 4 * BS))
    before = _state(vol, "a", "b")
    with pytest.raises(OSError) as info:
        call(vol)
    assert info.value.errno == errno.EINVAL
    assert _state(vol, "a", "b") == before and vol.fsck() == []
    vol.close()


# --------------------------------------------------------------------------- clone_range's edges


def test_clone_range_of_length_zero_from_exactly_the_sources_eof_clones_nothing() -> None:
    vol = small_volume()
    write_file(vol, "a", distinct(23, 2 * BS + 100))
    write_file(vol, "b", distinct(24, BS))
    before = _state(vol, "a", "b")
    assert vol.clone_range("a", 2 * BS + 100, "b", 0, 0) == 0
    assert _state(vol, "a", "b") == before
    vol.close()


def test_an_unaligned_clone_may_end_exactly_at_the_destinations_eof() -> None:
    vol = small_volume()
    src = distinct(25, 2 * BS + 100)
    dst = distinct(26, 3 * BS + 100)
    write_file(vol, "a", src)
    write_file(vol, "b", dst)
    assert vol.clone_range("a", 0, "b", BS, 0) == len(src)
    assert read_file(vol, "b") == dst[:BS] + src
    assert _pool_offsets(vol, "b")[1:] == _pool_offsets(vol, "a")
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("op", ["clone_range", "dedupe_range", "copy_file_range"])
def test_adjacent_ranges_of_one_file_do_not_overlap(op: str) -> None:
    vol = small_volume()
    block, other = distinct(27, BS), distinct(28, BS)
    write_file(vol, "c", block * 2 + other * 2)
    call = getattr(vol, op)
    assert call("c", 0, "c", BS, BS) == BS                  # block 0 onto block 1
    assert call("c", 3 * BS, "c", 2 * BS, BS) == BS          # block 3 onto block 2
    got = read_file(vol, "c")
    assert got == block * 2 + other * 2
    offsets = _pool_offsets(vol, "c")
    assert offsets[0] == offsets[1] and offsets[2] == offsets[3]
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("op", ["clone_range", "dedupe_range"])
def test_a_write_mapping_refuses_sharing_only_over_the_blocks_it_covers(op: str) -> None:
    """A write mapping on source block 2: sharing blocks 0-1 goes ahead, 1-2 or 2-3 is
    EBUSY with nothing changed."""
    vol = small_volume()
    data = distinct(29, 4 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", data)
    call = getattr(vol, op)
    with vol.open("a", "r+b", buffering=0) as f, f.map(2 * BS, BS, write=True):
        for first in (BS, 2 * BS):
            before = _state(vol, "a", "b")
            with pytest.raises(daxfs.BusyError):
                call("a", first, "b", first, 2 * BS)
            assert _state(vol, "a", "b") == before
        assert call("a", 0, "b", 0, 2 * BS) == 2 * BS
    assert _pool_offsets(vol, "b")[:2] == _pool_offsets(vol, "a")[:2]
    assert vol.fsck() == []
    vol.close()


def test_dedupe_refuses_a_write_mapping_over_the_destination_range() -> None:
    """Stores through a write mapping of the destination would land in the shared block."""
    vol = small_volume()
    data = distinct(30, 4 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", data)
    with vol.open("b", "r+b", buffering=0) as f, f.map(2 * BS, BS, write=True):
        before = _state(vol, "a", "b")
        for first in (BS, 2 * BS):
            with pytest.raises(daxfs.BusyError):
                vol.dedupe_range("a", first, "b", first, 2 * BS)
            assert _state(vol, "a", "b") == before
        assert vol.dedupe_range("a", 0, "b", 0, 2 * BS) == 2 * BS
    vol.close()


@pytest.mark.parametrize("op", ["clone_range", "dedupe_range", "copy_file_range"])
def test_refuse_over_the_destination_range_only(op: str) -> None:
    """Under ``refuse`` a read pin on destination block 2 refuses a call writing blocks 1-2
    (naming the call) or 2-3, not one writing blocks 0-1."""
    vol = small_volume(policy="refuse")
    data = distinct(31, 4 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", data if op == "dedupe_range" else distinct(32, 4 * BS))
    says = {"clone_range": "clone into", "dedupe_range": "dedupe into", "copy_file_range": "copy into"}[op]
    call = getattr(vol, op)
    with vol.open("b", "rb", buffering=0) as f, f.pin(2 * BS, BS):
        for first in (BS, 2 * BS):
            before = _state(vol, "a", "b")
            with pytest.raises(daxfs.BusyError) as info:
                call("a", first, "b", first, 2 * BS)
            assert f"{says} refused" in str(info.value)
            assert _state(vol, "a", "b") == before
        assert call("a", 0, "b", 0, 2 * BS) == 2 * BS
    assert read_file(vol, "b")[:2 * BS] == data[:2 * BS]
    assert vol.fsck() == []
    vol.close()


def test_growing_a_file_over_its_shared_partial_last_block_leaves_the_other_owner_alone() -> None:
    """``b``'s last block is shared with ``a``, where ``a`` goes on past ``b``'s EOF: a clone
    or copy growing ``b`` zeroes ``b``'s old tail in a copy, never in ``a``'s block."""
    for op in ("clone_range", "copy_file_range"):
        vol = small_volume()
        data = distinct(33, 3 * BS)
        write_file(vol, "a", data)
        write_file(vol, "x", distinct(34, BS))
        vol.clone_file("a", "b")
        with vol.open("b", "r+b", buffering=0) as f:
            f.truncate(BS + 100)
        assert getattr(vol, op)("x", 0, "b", 2 * BS, BS) == BS
        assert read_file(vol, "a") == data, op
        assert read_file(vol, "b") == data[:BS + 100] + bytes(BS - 100) + read_file(vol, "x")
        assert vol.fsck() == []
        vol.close()


@pytest.mark.parametrize("op", ["clone_range", "copy_file_range"])
def test_growing_past_a_stale_tail_shows_zeros_between_the_old_and_new_eof(op: str) -> None:
    """The destination was cut short inside a block (the old bytes stay in the pool past
    its EOF); a clone or copy past it must show zeros there."""
    vol = small_volume()
    write_file(vol, "b", distinct(35, 2 * BS))
    with vol.open("b", "r+b", buffering=0) as f:
        f.truncate(BS + 100)
    src = distinct(36, BS)
    write_file(vol, "a", src)
    assert getattr(vol, op)("a", 0, "b", 3 * BS, BS) == BS
    got = read_file(vol, "b")
    assert len(got) == 4 * BS and got[BS + 100:3 * BS] == bytes(2 * BS - 100) and got[3 * BS:] == src
    vol.close()


@pytest.mark.parametrize("case", ["clone_range", "copy_file_range shared", "copy_file_range edges",
                                  "dedupe_range"])
def test_each_call_holds_its_checkpoint_room(case: str) -> None:
    """GROW_RUN a run of the record's map, plus two (dedupe: plus one)."""
    make, made = _room_case(None)
    if case == "clone_range":            # one shared run, growing f
        check_checkpoint_room(make, lambda f: made[-1].clone_range("src", 0, f, 0, 3 * BS), GROW_RUN * 3,
                              case, 4 * BS)
    elif case == "copy_file_range shared":
        check_checkpoint_room(make, lambda f: made[-1].copy_file_range("src", 0, f, 0, 3 * BS), GROW_RUN * 3,
                              case, 4 * BS)
    elif case == "copy_file_range edges":  # head and tail copied into fresh blocks, one block shared
        check_checkpoint_room(make, lambda f: made[-1].copy_file_range("src", 100, f, 100, 2 * BS),
                              GROW_RUN * 5, case, 4 * BS)
    else:
        def dedupe(f: daxfs.File) -> None:
            vol = made[-1]
            assert vol.dedupe_range("src", 0, f, 0, 2 * BS) == 2 * BS

        def make_equal() -> Volume:
            vol = make()
            write_file(vol, "src", distinct(10, 2 * BS))          # f's bytes
            return vol
        check_checkpoint_room(make_equal, dedupe, GROW_RUN * 2, case, 4 * BS)


def test_copy_file_range_shares_around_a_write_mapping_past_its_range() -> None:
    """Only a write reference over the blocks to share stops sharing: one on a later block
    of the source leaves the copy sharing its whole blocks."""
    vol = small_volume()
    data = distinct(37, 4 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", b"")
    with vol.open("a", "r+b", buffering=0) as f, f.map(3 * BS, BS, write=True):
        assert vol.copy_file_range("a", 0, "b", 0, 2 * BS) == 2 * BS
        assert _pool_offsets(vol, "b") == _pool_offsets(vol, "a")[:2]
        assert vol.copy_file_range("a", 2 * BS, "b", 2 * BS, 2 * BS) == 2 * BS      # block 3: copied
        assert set(_pool_offsets(vol, "b")[2:]).isdisjoint(_pool_offsets(vol, "a"))
    assert read_file(vol, "b") == data
    assert vol.fsck() == []
    vol.close()


# --------------------------------------------------------------------------- copies over bad memory


def _bad_destination(size: int, bad_block: int) -> tuple[Volume, int, bytes]:
    """A volume with ``a`` (8 blocks) and ``b`` (``size`` bytes) whose block ``bad_block`` is
    poisoned; returns the volume, that block's pool offset and ``b``'s bytes."""
    vol = small_volume()
    write_file(vol, "a", distinct(40, 8 * BS))
    old = distinct(41, size)
    write_file(vol, "b", old)
    pool_offset = _pool_offsets(vol, "b")[bad_block]
    vol.memory_failure(pool_offset, BS)
    return vol, pool_offset, old


# (destination size, its bad block, copy offset, length): a copy covering the bad block in
# part, which cannot keep the rest of that block's bytes
_PART = [("its head", 3 * BS, 1, BS, BS - 100),
         ("its tail", 3 * BS, 1, BS + 100, BS - 100),
         ("inside", 3 * BS, 1, BS + 100, 100),
         ("before the EOF inside it", 2 * BS + 200, 2, 2 * BS, 100)]


@pytest.mark.parametrize("case", _PART, ids=[c[0] for c in _PART])
def test_a_copy_covering_a_poisoned_destination_block_in_part_is_refused(case: tuple[Any, ...]) -> None:
    _what, size, bad, offset, length = case
    vol, pool_offset, _old = _bad_destination(size, bad)
    extents, statfs = _extents(vol, "b"), vol.statfs()     # (b does not read whole: a block is bad)
    with pytest.raises(daxfs.PoisonError) as info:
        vol.copy_file_range("a", 3, "b", offset, length)        # offsets never line up: all copied
    err = info.value
    assert (err.errno, err.filename, err.file_offset, err.pool_offset, err.length) == (
        errno.EIO, "/b", bad * BS, pool_offset, BS)
    assert "a copy covering them in part" in str(err)
    assert _extents(vol, "b") == extents and vol.stat("b").st_size == size and vol.statfs() == statfs
    assert vol.fsck() == []
    vol.close()


# (destination size, its bad block, copy offset, length): a copy covering all of the bad
# block that the file shows (up to its EOF), which replaces it
_WHOLE = [("a whole block", 3 * BS, 1, BS, BS),
          ("a whole block and more", 3 * BS, 1, BS - 100, BS + 200),
          ("up to the EOF inside it", 2 * BS + 200, 2, 2 * BS, 200),
          ("past the EOF inside it", 2 * BS + 200, 2, 2 * BS, 300)]


@pytest.mark.parametrize("case", _WHOLE, ids=[c[0] for c in _WHOLE])
def test_a_copy_covering_a_poisoned_destination_block_whole_replaces_it(case: tuple[Any, ...]) -> None:
    _what, size, bad, offset, length = case
    vol, pool_offset, old = _bad_destination(size, bad)
    src = read_file(vol, "a")
    assert vol.copy_file_range("a", 3, "b", offset, length) == length
    end = offset + length
    want = old[:offset] + src[3:3 + length] + old[end:]
    assert read_file(vol, "b") == want
    assert pool_offset not in _pool_offsets(vol, "b")
    assert vol.fsck() == []
    vol.close()


def test_a_copy_far_into_a_file_needs_only_the_blocks_it_writes() -> None:
    """Nearly full: a one-block copy at file block 500 fits in the few blocks left."""
    vol = small_volume()
    write_file(vol, "a", distinct(42, BS))
    write_file(vol, "b", b"")
    free = vol.statfs().free
    write_file(vol, "fill", b"f" * (free - 4 * BS))
    assert vol.copy_file_range("a", 1, "b", 500 * BS + 3, 100) == 100
    with vol.open("b", "rb", buffering=0) as f:
        assert f.pread(100, 500 * BS + 3) == read_file(vol, "a")[1:101]
        assert f.stat().st_blocks == BS // 512
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("dst_offset", [0, 7, BS + 9])
def test_an_unaligned_copy_into_scattered_free_blocks_writes_nothing_outside_them(dst_offset: int) -> None:
    vol = small_volume()
    data = distinct(43, 6 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", b"")
    others = scatter_free_space(vol)
    assert vol.copy_file_range("a", 5, "b", dst_offset, 3 * BS + 50) == 3 * BS + 50
    assert read_file(vol, "b") == bytes(dst_offset) + data[5:5 + 3 * BS + 50]
    for name, want in others.items():
        assert read_file(vol, name) == want, f"the copy wrote into {name}"
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("offset", [BS + 500, BS + 100, 3 * BS + 7])
def test_a_copy_growing_the_file_from_inside_its_last_block_shows_zeros_before_it(offset: int) -> None:
    """``b`` was cut short at BS + 100 (old bytes stay in the pool past it); an unaligned
    copy at ``offset`` shows zeros between the old EOF and the copy."""
    vol = small_volume()
    old = distinct(44, 2 * BS)
    write_file(vol, "b", old)
    with vol.open("b", "r+b", buffering=0) as f:
        f.truncate(BS + 100)
    src = distinct(45, BS)
    write_file(vol, "a", src)
    assert vol.copy_file_range("a", 3, "b", offset, 200) == 200
    assert read_file(vol, "b") == old[:BS + 100] + bytes(offset - BS - 100) + src[3:203]
    assert vol.fsck() == []
    vol.close()


# --------------------------------------------------------------------------- dedupe_range


@pytest.mark.parametrize("longer", [False, True], ids=["dst ends there", "dst goes on"])
def test_dedupe_shares_an_equal_partial_last_block_only_where_the_destination_ends(longer: bool) -> None:
    """Equal bytes up to the source's EOF inside a block: shared when the destination ends
    at the range's end too; kept when the destination goes on (its tail would change)."""
    vol = small_volume()
    data = distinct(46, 2 * BS + 100)
    write_file(vol, "a", data)
    write_file(vol, "b", data + (distinct(47, 50) if longer else b""))
    want_b = read_file(vol, "b")
    got = vol.dedupe_range("a", 0, "b", 0, len(data))
    assert got == (2 * BS if longer else len(data))
    assert read_file(vol, "b") == want_b and read_file(vol, "a") == data
    a_blocks, b_blocks = _pool_offsets(vol, "a"), _pool_offsets(vol, "b")
    assert b_blocks[:2] == a_blocks[:2]
    assert (b_blocks[2] == a_blocks[2]) is not longer
    assert vol.fsck() == []
    vol.close()


def test_dedupe_maps_each_equal_block_onto_its_own_source_block() -> None:
    """The source is in two pool runs and block 2 differs: the destination shares blocks 0,
    1 and 3 each with the source block at the same offset, in one record, and the call
    returns the bytes shared; a second dedupe shares nothing more and logs nothing."""
    vol = small_volume()
    blocks = [distinct(50 + i, BS) for i in range(4)]
    write_file(vol, "a", blocks[0])
    write_file(vol, "gap", distinct(49, BS))
    with vol.open("a", "r+b", buffering=0) as f:
        f.pwrite(b"".join(blocks[1:]), BS)
    write_file(vol, "b", blocks[0] + blocks[1] + distinct(60, BS) + blocks[3])
    a_blocks = _pool_offsets(vol, "a")
    assert a_blocks[1] != a_blocks[0] + BS, "the source should be in two runs"
    seq = vol._journal.ring.next_seq
    assert vol.dedupe_range("a", 0, "b", 0, 4 * BS) == 3 * BS
    assert vol._journal.ring.next_seq == seq + 1
    b_blocks = _pool_offsets(vol, "b")
    assert [b_blocks[i] == a_blocks[i] for i in range(4)] == [True, True, False, True]
    statfs = vol.statfs()
    assert statfs.shared == 3 * BS
    assert vol.dedupe_range("a", 0, "b", 0, 4 * BS) == 0
    assert vol._journal.ring.next_seq == seq + 1 and vol.statfs() == statfs
    assert vol.fsck() == []
    vol.close()


def test_dedupe_skips_holes_and_unwritten_blocks() -> None:
    vol = small_volume()
    data = distinct(61, 3 * BS)
    write_file(vol, "a", bytes(BS) + data[BS:])
    write_file(vol, "b", bytes(BS) + data[BS:])
    with vol.open("a", "r+b", buffering=0) as f:
        f.punch_hole(0, BS)                      # a: a hole at block 0
    with vol.open("b", "r+b", buffering=0) as f:
        f.zero_range(2 * BS, BS)                 # b: block 2 unwritten
    with vol.open("a", "r+b", buffering=0) as f:
        f.zero_range(2 * BS, BS)                 # a: block 2 unwritten too
    assert vol.dedupe_range("a", 0, "b", 0, 3 * BS) == BS
    assert _pool_offsets(vol, "b")[1] == _pool_offsets(vol, "a")[0]       # a's block 1 (after its hole)
    assert read_file(vol, "b") == bytes(BS) + data[BS:2 * BS] + bytes(BS)
    assert vol.fsck() == []
    vol.close()


def test_dedupe_of_length_zero_or_to_exactly_both_eofs() -> None:
    vol = small_volume()
    data = distinct(62, 2 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", data)
    assert vol.dedupe_range("a", 2 * BS, "b", 2 * BS, 0) == 0
    assert vol.dedupe_range("a", BS, "b", BS, BS) == BS
    assert _pool_offsets(vol, "b")[1] == _pool_offsets(vol, "a")[1]
    vol.close()


# --------------------------------------------------------------------------- unwritten blocks


def test_a_copy_gives_the_destination_fresh_unwritten_blocks_apart_from_its_copied_edges() -> None:
    """The source's middle block is unwritten (fallocated): the copy's shared middle gives
    the destination a fresh unwritten block of its own, never one the copied head or tail
    took, nor the source's."""
    vol = small_volume()
    data = distinct(63, 3 * BS)
    write_file(vol, "a", data)
    with vol.open("a", "r+b", buffering=0) as f:
        f.zero_range(BS, BS)
    write_file(vol, "b", b"")
    assert vol.copy_file_range("a", 100, "b", 100, 3 * BS - 200) == 3 * BS - 200
    want = bytes(100) + data[100:BS] + bytes(BS) + data[2 * BS:3 * BS - 100]
    assert read_file(vol, "b") == want
    b_extents = _extents(vol, "b")
    assert any("unwritten" in e.flags for e in b_extents)
    b_blocks = [e.pool_offset + i for e in b_extents for i in range(0, e.length, BS)]
    assert len(set(b_blocks)) == 3 and set(b_blocks).isdisjoint(_pool_offsets(vol, "a"))
    statfs = vol.statfs()
    assert statfs.shared == 0 and statfs.used == 6 * BS
    assert vol.fsck() == []
    vol.close()


# --------------------------------------------------------------------------- file arguments


def test_a_closed_handle_is_a_valueerror_for_every_sharing_call() -> None:
    vol = small_volume()
    write_file(vol, "a", distinct(64, BS))
    write_file(vol, "b", distinct(65, BS))
    f = vol.open("a", "r+b", buffering=0)
    f.close()
    before = _state(vol, "a", "b")
    for call in (lambda: vol.clone_range(f, 0, "b", 0, BS), lambda: vol.clone_range("b", 0, f, 0, BS),
                 lambda: vol.clone_file(f, "c"), lambda: vol.dedupe_range(f, 0, "b", 0, BS),
                 lambda: vol.copy_file_range("b", 0, f, 0, BS)):
        with pytest.raises(ValueError, match="closed file"):
            call()
    assert _state(vol, "a", "b") == before
    vol.close()


def test_a_special_file_is_einval_for_every_sharing_call() -> None:
    vol = small_volume()
    write_file(vol, "a", distinct(66, BS))
    vol.mknod("fifo")
    before = _state(vol, "a")
    for call in (lambda: vol.clone_range("fifo", 0, "a", 0, BS), lambda: vol.clone_range("a", 0, "fifo", 0, BS),
                 lambda: vol.clone_file("fifo", "c"), lambda: vol.clone_file("a", "fifo"),
                 lambda: vol.dedupe_range("a", 0, "fifo", 0, BS), lambda: vol.copy_file_range("fifo", 0, "a", 0, BS)):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EINVAL and info.value.filename == "fifo"
    assert _state(vol, "a") == before and not vol.exists("c")
    vol.close()


# --------------------------------------------------------------------------- sharing bad memory


@pytest.mark.parametrize("op", ["clone_range", "copy_file_range"])
def test_sharing_refuses_exactly_the_ranges_holding_a_poisoned_block(op: str) -> None:
    """Source block 2 of 5 is bad: a share of blocks 0-2 or 2-4 is a PoisonError naming it
    (nothing changed); one of blocks 0-1 or 3-4 goes ahead."""
    vol = small_volume()
    data = distinct(67, 5 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", distinct(68, 5 * BS))
    bad = _pool_offsets(vol, "a")[2]
    vol.memory_failure(bad, BS)
    call = getattr(vol, op)
    for first in (0, 2 * BS):
        before = _state(vol, "b")
        with pytest.raises(daxfs.PoisonError) as info:
            call("a", first, "b", first, 3 * BS)
        assert (info.value.file_offset, info.value.pool_offset, info.value.length) == (2 * BS, bad, BS)
        assert _state(vol, "b") == before
    assert call("a", 0, "b", 0, 2 * BS) == 2 * BS
    assert call("a", 3 * BS, "b", 3 * BS, 2 * BS) == 2 * BS
    b_blocks, a_blocks = _pool_offsets(vol, "b"), _pool_offsets(vol, "a")
    assert [b_blocks[i] == a_blocks[i] for i in range(5)] == [True, True, False, True, True]
    assert vol.fsck() == []
    vol.close()


def test_a_copy_to_the_sources_eof_never_touches_the_destination_past_the_range() -> None:
    """From an unaligned offset to the source's EOF, into a longer destination (its offsets
    line up): the shared middle stops at the source's EOF block, and the destination's
    bytes after the copied range stay."""
    vol = small_volume()
    src = distinct(69, 2 * BS + 100)
    dst = distinct(70, 3 * BS + 50)
    write_file(vol, "a", src)
    write_file(vol, "b", dst)
    assert vol.copy_file_range("a", 100, "b", 100, 2 * BS) == 2 * BS
    assert read_file(vol, "b") == dst[:100] + src[100:] + dst[2 * BS + 100:]
    assert vol.fsck() == []
    vol.close()


def test_a_copy_inside_one_block_changes_only_its_bytes() -> None:
    vol = small_volume()
    src = distinct(71, 2 * BS)
    dst = distinct(72, 2 * BS)
    write_file(vol, "a", src)
    write_file(vol, "b", dst)
    assert vol.copy_file_range("a", 100, "b", 100, 50) == 50
    assert read_file(vol, "b") == dst[:100] + src[100:150] + dst[150:]
    assert vol.fsck() == []
    vol.close()


@pytest.mark.parametrize("tail", [1, 100])
def test_a_copy_to_the_sources_eof_shares_its_last_block_past_a_write_mapping_before_the_range(tail: int) -> None:
    """The offsets line up but start inside block 0, under a write mapping of the source:
    blocks 1 and 2 (the EOF block, ``tail`` bytes) are shared, block 0's part copied."""
    vol = small_volume()
    src = distinct(73, 2 * BS + tail)
    write_file(vol, "a", src)
    write_file(vol, "b", distinct(74, 2 * BS + tail))
    with vol.open("a", "r+b", buffering=0) as f, f.map(0, BS, write=True):
        assert vol.copy_file_range("a", 50, "b", 50, 2 * BS + tail - 50) == 2 * BS + tail - 50
    a_blocks, b_blocks = _pool_offsets(vol, "a"), _pool_offsets(vol, "b")
    assert b_blocks[1:] == a_blocks[1:] and b_blocks[0] != a_blocks[0]
    assert read_file(vol, "b")[50:] == src[50:]
    assert vol.fsck() == []
    vol.close()


def test_an_aligned_copy_past_the_atomic_limit_still_shares_in_one_record(monkeypatch: pytest.MonkeyPatch) -> None:
    from daxfs.volume import sharing
    monkeypatch.setattr(sharing, "_ATOMIC_COPY_LIMIT", 8 * BS)
    vol = small_volume()
    data = distinct(75, 10 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", b"")
    seq = vol._journal.ring.next_seq
    assert vol.copy_file_range("a", 0, "b", 0, 10 * BS) == 10 * BS
    assert vol._journal.ring.next_seq == seq + 1
    assert _pool_offsets(vol, "b") == _pool_offsets(vol, "a")
    assert read_file(vol, "b") == data
    vol.close()


def test_a_copy_whose_shared_part_is_one_byte_at_the_sources_eof_shares_that_block() -> None:
    vol = small_volume()
    src = distinct(76, 2 * BS + 1)
    write_file(vol, "a", src)
    write_file(vol, "b", distinct(77, 2 * BS + 1))
    assert vol.copy_file_range("a", BS + 50, "b", BS + 50, BS - 49) == BS - 49
    assert _pool_offsets(vol, "b")[2] == _pool_offsets(vol, "a")[2]
    assert read_file(vol, "b")[BS + 50:] == src[BS + 50:]
    assert vol.fsck() == []
    vol.close()


def test_an_unaligned_copy_of_exactly_the_atomic_limit_is_one_record(monkeypatch: pytest.MonkeyPatch) -> None:
    from daxfs.volume import sharing
    monkeypatch.setattr(sharing, "_ATOMIC_COPY_LIMIT", 8 * BS)
    monkeypatch.setattr(sharing, "_COPY_CHUNK", 3 * BS)
    vol = small_volume()
    data = distinct(78, 10 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", b"")
    seq = vol._journal.ring.next_seq
    assert vol.copy_file_range("a", 1, "b", 0, 8 * BS) == 8 * BS
    assert vol._journal.ring.next_seq == seq + 1
    assert read_file(vol, "b") == data[1:1 + 8 * BS]
    vol.close()


def test_an_append_handle_may_be_a_source_but_no_target() -> None:
    vol = small_volume()
    data = distinct(79, 2 * BS)
    write_file(vol, "a", data)
    with vol.open("a", "a+b", buffering=0) as src:
        vol.clone_file(src, "b")
        assert vol.dedupe_range(src, 0, "b", 0, 2 * BS) == 0          # already shared
        assert vol.clone_range(src, 0, "b", 2 * BS, 2 * BS) == 2 * BS
    assert read_file(vol, "b") == data * 2
    with vol.open("b", "a+b", buffering=0) as dst:
        for call in (lambda: vol.clone_range("a", 0, dst, 0, BS), lambda: vol.copy_file_range("a", 0, dst, 0, BS),
                     lambda: vol.dedupe_range("a", 0, dst, 0, BS)):
            with pytest.raises(OSError) as info:
                call()
            assert info.value.errno == errno.EBADF
    vol.close()


def test_dedupe_into_a_read_only_handle_is_ebadf_and_from_one_works() -> None:
    vol = small_volume()
    data = distinct(80, 2 * BS)
    write_file(vol, "a", data)
    write_file(vol, "b", data)
    with vol.open("b", "rb", buffering=0) as dst:
        with pytest.raises(OSError) as info:
            vol.dedupe_range("a", 0, dst, 0, 2 * BS)
        assert info.value.errno == errno.EBADF
    with vol.open("a", "rb", buffering=0) as src, vol.open("b", "r+b", buffering=0) as dst:
        assert vol.dedupe_range(src, 0, dst, 0, 2 * BS) == 2 * BS
    assert _pool_offsets(vol, "b") == _pool_offsets(vol, "a")
    vol.close()


def test_dedupe_of_one_equal_byte_at_both_eofs_shares_its_block() -> None:
    vol = small_volume()
    write_file(vol, "a", b"x")
    write_file(vol, "b", b"x")
    assert vol.dedupe_range("a", 0, "b", 0, 1) == 1
    assert _pool_offsets(vol, "b") == _pool_offsets(vol, "a") and read_file(vol, "b") == b"x"
    vol.close()


def test_a_clone_of_a_range_with_unwritten_blocks_sets_the_destinations_times() -> None:
    from _small_volume import clock_past
    vol = small_volume()
    write_file(vol, "a", distinct(81, 3 * BS))
    with vol.open("a", "r+b", buffering=0) as f:
        f.zero_range(BS, BS)                     # block 1 unwritten
    write_file(vol, "b", distinct(82, 3 * BS))
    before = vol.stat("b")
    clock_past(before.st_mtime_ns)
    assert vol.clone_range("a", 0, "b", 0, 3 * BS) == 3 * BS
    after = vol.stat("b")
    assert after.st_mtime_ns > before.st_mtime_ns and after.st_ctime_ns > before.st_ctime_ns
    vol.close()


def test_a_refused_handle_is_named_in_the_error() -> None:
    vol = small_volume()
    other = small_volume()
    write_file(vol, "a", distinct(83, BS))
    write_file(other, "x", distinct(84, BS))
    with other.open("x", "rb", buffering=0) as foreign, vol.open("a", "rb", buffering=0) as read_only:
        for call, code, name in ((lambda: vol.clone_range(foreign, 0, "a", 0, BS), errno.EXDEV, foreign.name),
                                 (lambda: vol.copy_file_range("a", 0, read_only, 0, BS), errno.EBADF,
                                  read_only.name)):
            with pytest.raises(OSError) as info:
                call()
            assert (info.value.errno, info.value.filename) == (code, name)
    vol.close()
    other.close()
