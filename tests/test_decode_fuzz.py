"""Well-checksummed but impossible metadata: fuzzing after the checksum.

A checkpoint or log record is decoded from a real volume, one field is changed
to a wrong type (float, str, None, list, bool, bytes, a map) or an out-of-range
value (negative, zero, huge, a bad name, unknown flag bits, wrong arity), and it
is encoded again with a valid checksum.  Whatever was changed, mount ends in one
of three ways and nothing else:

- a clean mount: fsck is [], every file reads, new changes work and survive a remount;
- a read-only mount that says which record is bad, holding exactly the state
  before that record (fsck [] too);
- CorruptVolumeError.

Never OverflowError, KeyError, TypeError, at mount, in fsck or later.

Also here: the read-only mount and ``repair`` round trips (records appended after
a repair, remounts, crashes inside the repair), and fsck over hand-broken states.
"""

from __future__ import annotations

import copy
import errno
import random
import stat as st
import warnings
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

import daxfs
from daxfs.adapters.cli import main
from daxfs.core import Core, ExtentMap, check
from daxfs.core.records import RECORD_TYPES, Batch, Reclaim, Record, Unlink
from daxfs.format.checkpoint import decode_checkpoint, encode_checkpoint
from daxfs.format.layout import STATUS_OFFSET
from daxfs.format.log import HEADER, PAD_CODE, BadRecordError, _frame, decode_record, encode_record
from daxfs.media import MemoryPool, RecordingPool
from daxfs.testing import snapshot
from daxfs.volume import Volume, repair, repair_pool

POOL = 4 << 20
BS = 4096


# ---------------------------------------------------------------------------- a rich volume

def _build(vol: Volume) -> None:
    """Files, directories, hard links, holes, unwritten and shared extents, odd names."""
    vol.mkdir("/d")
    vol.mkdir("/d/sub")
    vol.mkdir("/caf\udce9")
    with vol.open("/a", "wb", buffering=0) as f:
        f.write(bytes(range(256)) * 48)             # 3 blocks
    with vol.open("/d/b", "wb", buffering=0) as f:
        f.write(b"b" * 5000)
    with vol.open("/d/sub/c", "wb", buffering=0) as f:
        f.write(b"c" * 10)
    with vol.open("/sparse", "wb", buffering=0) as f:
        f.pwrite(b"s" * 100, 6 * BS)               # a hole, then data
    with vol.open("/prealloc", "wb", buffering=0) as f:
        f.fallocate(0, 6 * BS)                      # unwritten
        f.pwrite(b"p" * BS, 2 * BS)                 # one written block inside
    with vol.open("/punched", "wb", buffering=0) as f:
        f.write(b"q" * 5 * BS)
        f.punch_hole(BS, 2 * BS)
    vol.link("/d/b", "/d/b-link")
    vol.clone_file("/a", "/d/a-clone")              # shared blocks (a Batch record)
    with vol.open("/\u00e9t\u00e9", "wb", buffering=0) as f:
        f.write(b"e" * 3)
    vol.symlink("d/b", "/link")                      # an 11-field checkpoint row
    vol.mknod("/fifo", st.S_IFIFO | 0o640)


def _more(vol: Volume) -> None:
    """Operations after the checkpoint: one of every record type in the log."""
    vol.mkdir("/new")
    with vol.open("/new/f", "wb", buffering=0) as f:
        f.write(b"n" * 6000)
    vol.link("/new/f", "/new/g")
    vol.symlink("../a", "/new/to-a")               # CreateNode
    vol.rename("/d/sub/c", "/new/c")
    vol.chmod("/a", 0o600)
    vol.utime("/d/b", ns=(10**18, 2 * 10**18))
    with vol.open("/prealloc", "r+b", buffering=0) as f:
        f.zero_range(0, BS)
        f.truncate(3 * BS)
    vol.clone_file("/new/f", "/new/clone")
    vol.clone_file("/a", "/new/clone")              # over an existing file: unmap to the end
    vol.unlink("/new/g")
    vol.unlink("/sparse")
    vol.rmdir("/caf\udce9")
    with vol.open("/new/f", "ab", buffering=0) as f:
        f.write(b"+" * 100)
    held = vol.open("/new/held", "wb", buffering=0)
    held.write(b"h" * 10)
    vol.unlink("/new/held")                         # an orphan while held ...
    held.close()                                    # ... reclaimed at the last close
    spare = vol._layout.block_offset(vol._layout.data_blocks - 1)
    vol.memory_failure(spare, BS)                   # a free block quarantined (Quarantine) ...
    vol.clear_badblocks(spare, BS)                  # ... and repaired (ClearQuarantine)
    vol.memory_failure(STATUS_OFFSET, BS)           # bad metadata: the (advisory) status page
    with vol.open("/\u00e9t\u00e9", "rb", buffering=0) as f:
        vol.memory_failure(f.extents()[0].pool_offset, BS)     # a poisoned file


def _rich_image(*, log: bool) -> tuple[bytes, Volume]:
    """A pool image: the rich volume checkpointed, with (``log``) records after the checkpoint."""
    pool = MemoryPool(POOL)
    Volume.format(pool)
    vol = Volume.mount(pool)
    _build(vol)
    vol.checkpoint()
    if log:
        _more(vol)
    image = pool.image()
    return bytes(image), vol


_CACHE: dict[bool, tuple[bytes, dict[str, Any]]] = {}


def _base(log: bool) -> tuple[bytes, dict[str, Any]]:
    """The image and what the fuzz needs to know about it (built once per kind)."""
    if log not in _CACHE:
        image, vol = _rich_image(log=log)
        lay = vol._layout
        ring = vol._ring
        info = {"layout": lay, "generation": vol._generation, "volume_id": ring.volume_id,
                "head": ring.head, "next_seq": ring.next_seq, "snapshot": snapshot(vol)}
        vol.close()
        _CACHE[log] = (image, info)
    return _CACHE[log]


# ---------------------------------------------------------------------------- outcomes

def _mount(image: bytes | bytearray) -> Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", daxfs.DamagedVolumeWarning)
        return Volume.mount(MemoryPool(bytes(image)))


def _outcome(image: bytes | bytearray, what: str, *, bad_seq: int | None = None,
             expected_before_bad: dict | None = None) -> str:
    """Mount ``image``: 'clean', 'readonly' or 'corrupt'; anything else fails the test.

    A read-only mount that stops at record ``bad_seq`` must hold ``expected_before_bad``
    (a changed record may also apply, and make a later one fail instead).
    """
    try:
        vol = _mount(image)
    except daxfs.CorruptVolumeError as exc:
        assert exc.errno == errno.EUCLEAN and exc.what, what
        return "corrupt"
    try:
        if vol.damaged is not None:
            assert vol.readonly, what
            # (a record changed into bad metadata in a checkpoint slot also mounts read-only)
            assert ("log record" in vol.damaged or "bad memory" in vol.damaged) and "read-only" in vol.damaged, \
                (what, vol.damaged)
            assert vol.fsck() == [], (what, vol.fsck())
            got = snapshot(vol)
            if expected_before_bad is not None and f"log record {bad_seq} " in vol.damaged:
                assert got == expected_before_bad, f"{what}: the read-only state is not the one before the record"
            with pytest.raises(OSError) as info:
                vol.mkdir("/must-fail")
            assert info.value.errno == errno.EROFS, what
            return "readonly"
        problems = vol.fsck()
        assert problems == [], (what, problems)
        snapshot(vol)                       # every name, stat and byte reads
        # new changes work on whatever was mounted, and survive a remount
        vol.mkdir("/after-fuzz", exist_ok=True)
        with vol.open("/after-fuzz/x", "wb", buffering=0) as f:
            f.write(b"x" * 5000)
        for path in ("/a", "/d/b"):
            if vol.exists(path) and vol.stat(path).st_mode & 0o170000 == st.S_IFREG:
                with vol.open(path, "r+b", buffering=0) as f:
                    try:
                        f.pwrite(b"w", 7)
                    except daxfs.PoisonError:
                        pass    # a record changed into a quarantine of its block: refused, as it must be
        assert vol.fsck() == [], what
        expected = snapshot(vol)
        pool = vol.pool
        image2 = pool.image()
    finally:
        if not vol.closed:
            vol.close()
    again = _mount(image2)
    try:
        assert again.damaged is None and again.fsck() == [] and snapshot(again) == expected, what
    finally:
        again.close()
    return "clean"


# ---------------------------------------------------------------------------- mutations

_HUGE = 2**64 - 1
_WRONG_TYPES: list[object] = [1.5, 0.0, "7", "", None, [], [1], True, False, b"\x01", {"a": 1}]
_BAD_INTS: list[object] = [-1, -(2**63), 0, 2**62 + 1, 2**63, _HUGE, 2**31, 1 << 40]
_BAD_NAMES: list[object] = ["..", ".", "a/b", "", "a\0b", "x" * 256, "\u00e9" * 128, "/"]
_FLAGS: list[object] = [2, 3, 4, 8, 255, 1 << 16]


def _values_for(value: object) -> list[object]:
    """Replacements for one field: wrong types, out-of-range ints, bad names, nearby values."""
    out = list(_WRONG_TYPES) + list(_BAD_INTS) + list(_FLAGS)
    if isinstance(value, str):
        out += _BAD_NAMES + [value + "x", value.upper() or "Z"]
    if type(value) is int:
        out += [value + 1, value - 1, -value, value * 4096, value | 0o170000, value ^ 0o040000 ^ 0o100000]
    if isinstance(value, list):
        out += [value[:-1], value + [0], value + [0, 0, 0, 0], [x for x in value for _ in (0, 1)],
                list(reversed(value))]
    return out


def _slots(obj: object, path: tuple = ()) -> Iterator[tuple]:
    """Every position in a nested list (the list itself included)."""
    yield path
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _slots(item, path + (i,))


def _get(obj: Any, path: tuple) -> Any:
    for i in path:
        obj = obj[i]
    return obj


def _set(obj: Any, path: tuple, value: object) -> Any:
    if not path:
        return value
    out = copy.deepcopy(obj)
    _get(out, path[:-1])[path[-1]] = value
    return out


# ---------------------------------------------------------------------------- checkpoint fuzz

def _checkpoint_cases(log: bool, n: int, seed: int) -> list[tuple[tuple, object]]:
    image, info = _base(log)
    lay = info["layout"]
    slot = lay.checkpoint_offsets[info["generation"] % 2]
    state = decode_checkpoint(image[slot:slot + lay.checkpoint_size], slot).state
    positions = list(_slots(state))
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        path = rng.choice(positions)
        cases.append((path, rng.choice(_values_for(_get(state, path)))))
    return cases


def _with_checkpoint(image: bytes, info: dict, mutate: Any, *, wipe_older: bool) -> bytearray | None:
    """``image`` with its newest checkpoint's state changed by ``mutate`` (valid crc); None if it cannot be."""
    lay = info["layout"]
    gen = info["generation"]
    slot = lay.checkpoint_offsets[gen % 2]
    ckpt = decode_checkpoint(image[slot:slot + lay.checkpoint_size], slot)
    try:
        raw = encode_checkpoint(mutate(ckpt.state), ckpt.generation, ckpt.last_seq, ckpt.log_pos)
    except (OverflowError, TypeError, ValueError):
        return None                    # msgpack cannot hold it (an int past 64 bits): no such pool
    if len(raw) > lay.checkpoint_size:
        return None
    out = bytearray(image)
    out[slot:slot + lay.checkpoint_size] = raw + bytes(lay.checkpoint_size - len(raw))
    if wipe_older:
        older = lay.checkpoint_offsets[(gen + 1) % 2]
        out[older:older + lay.checkpoint_size] = bytes(lay.checkpoint_size)
    return out


@pytest.mark.parametrize("log", [False, True], ids=["log-empty", "log-after"])
@pytest.mark.parametrize("wipe_older", [False, True], ids=["with-fallback", "newest-only"])
def test_checkpoint_fuzz_after_the_checksum(wipe_older: bool, log: bool) -> None:
    """With records after the checkpoint (``log``), a changed checkpoint that still decodes
    may not take the log: then the older checkpoint plus the log is used, or (without one)
    the volume mounts read-only before the record that does not apply."""
    image, info = _base(log)
    outcomes = {"clean": 0, "readonly": 0, "corrupt": 0}
    for i, (path, value) in enumerate(_checkpoint_cases(log, 150, seed=8 + wipe_older + 2 * log)):
        damaged = _with_checkpoint(image, info, lambda s: _set(s, path, value), wipe_older=wipe_older)
        if damaged is None:
            continue
        what = f"case {i}: checkpoint field {path} = {value!r} (older slot {'wiped' if wipe_older else 'kept'})"
        outcomes[_outcome(damaged, what)] += 1
    assert sum(outcomes.values()) >= 120, outcomes
    if wipe_older:
        assert outcomes["corrupt"] >= 50, outcomes
    else:
        # the older checkpoint plus the log rebuilds the volume: nothing is lost
        assert outcomes["clean"] == sum(outcomes.values()), outcomes


def test_newest_checkpoint_the_log_does_not_apply_to_falls_back() -> None:
    """A newest checkpoint that decodes and holds together, but that the log after it does
    not apply to (a name changed), is not used: the older one plus the log loses nothing."""
    image, info = _base(True)

    def rename_sparse(state: list) -> list:
        s = copy.deepcopy(state)
        root = next(r for r in s[1] if r[0] == 1)
        root[9][root[9].index("sparse")] = "sparsX"      # the log unlinks "sparse"
        return s

    damaged = _with_checkpoint(image, info, rename_sparse, wipe_older=False)
    vol = _mount(damaged)
    try:
        assert vol.damaged is None and not vol.readonly
        assert snapshot(vol) == info["snapshot"] and vol.fsck() == []
    finally:
        vol.close()
    damaged = _with_checkpoint(image, info, rename_sparse, wipe_older=True)
    vol = _mount(damaged)
    try:
        assert vol.readonly and "Unlink" in vol.damaged and "no 'sparse'" in vol.damaged  # type: ignore[operator]
        assert vol.fsck() == []
    finally:
        vol.close()


def _row_of(state: list, name_path: str) -> int:
    """The index in the rows of the inode named by a top-level ``name_path``."""
    rows = state[1]
    root = next(r for r in rows if r[0] == 1)
    flat = root[9]
    ino = flat[flat.index(name_path) + 1]
    return next(i for i, r in enumerate(rows) if r[0] == ino)


@pytest.mark.parametrize("change", [
    "mode=-1", "run-length-0", "float-size", "name-dotdot", "name-slash", "unknown-flags", "share-flag",
    "uid-negative", "time-huge", "ino-zero", "ino-duplicate", "next-ino-low", "runs-overlap", "run-past-data",
    "written-past-size", "entry-to-missing", "dir-cycle", "root-a-file", "extents-on-dir", "entries-on-file",
    "name-twice", "row-short", "bool-size", "name-bytes", "mode-symlink",
])
def test_named_checkpoint_damage_is_corruption(change: str) -> None:
    """The issue's examples (and their cousins), with no older checkpoint to fall back to."""
    image, info = _base(False)

    def mutate(state: list) -> list:
        s = copy.deepcopy(state)
        rows = s[1]
        a = rows[_row_of(s, "a")]
        d = rows[_row_of(s, "d")]
        root = next(r for r in rows if r[0] == 1)
        if change == "mode=-1":
            a[1] = -1
        elif change == "run-length-0":
            a[8][1] = 0
        elif change == "float-size":
            a[4] = float(a[4])
        elif change == "name-dotdot":
            root[9][root[9].index("a")] = ".."
        elif change == "name-slash":
            root[9][root[9].index("a")] = "a/b"
        elif change == "unknown-flags":
            a[8][3] = 4
        elif change == "share-flag":
            a[8][3] = 2
        elif change == "uid-negative":
            a[2] = -5
        elif change == "time-huge":
            a[6] = 2**64 - 1
        elif change == "ino-zero":
            a[0] = 0
        elif change == "ino-duplicate":
            a[0] = d[0]
        elif change == "next-ino-low":
            s[0] = 2
        elif change == "runs-overlap":
            a[8] = [0, 2, a[8][2], 0, 1, 2, a[8][2] + 5, 0]
        elif change == "run-past-data":
            a[8][2] = info["layout"].data_blocks - 1
        elif change == "written-past-size":
            a[4] = 1
        elif change == "entry-to-missing":
            root[9][root[9].index("a") + 1] = 10**6
        elif change == "dir-cycle":
            sub_ino = d[9][d[9].index("sub") + 1]
            sub = next(r for r in rows if r[0] == sub_ino)
            sub[9] += ["loop", d[0]]            # d is in the root and in sub
        elif change == "root-a-file":
            root[1] = st.S_IFREG | 0o644
        elif change == "extents-on-dir":
            d[8] = [0, 1, 0, 0]
        elif change == "entries-on-file":
            a[9] = []
        elif change == "name-twice":
            root[9] += ["a", d[0]]
        elif change == "row-short":
            rows[rows.index(a)] = a[:9]
        elif change == "bool-size":
            a[4] = True
        elif change == "name-bytes":
            root[9][root[9].index("a")] = b"a"
        elif change == "mode-symlink":
            a[1] = st.S_IFLNK | 0o777
        return s

    damaged = _with_checkpoint(image, info, mutate, wipe_older=True)
    assert damaged is not None
    with pytest.raises(daxfs.CorruptVolumeError) as err:
        _mount(damaged)
    assert "checkpoint" in err.value.what
    # with the older checkpoint there, it is used instead and nothing is lost
    damaged = _with_checkpoint(image, info, mutate, wipe_older=False)
    vol = _mount(damaged)
    try:
        assert vol.damaged is None and vol.fsck() == [] and snapshot(vol) == info["snapshot"]
    finally:
        vol.close()


# ---------------------------------------------------------------------------- log record fuzz

def _encode(code: int, body: object, volume_id: int, seq: int) -> bytes:
    """A record frame of type ``code`` around any msgpack body, with a valid checksum
    (what a writer's bug, or damage the checksum cannot see, would leave)."""
    return _frame(volume_id, seq, code, msgpack.packb(body, use_bin_type=True, unicode_errors="surrogateescape"))


def _log_records(image: bytes, info: dict) -> list[tuple[int, int, Record]]:
    """``(virtual position, seq, record)`` of every record after the newest checkpoint."""
    lay = info["layout"]
    slot = lay.checkpoint_offsets[info["generation"] % 2]
    ckpt = decode_checkpoint(image[slot:slot + lay.checkpoint_size], slot)
    log = image[lay.log_offset:lay.log_offset + lay.log_size]
    pos, seq, out = ckpt.log_pos, ckpt.last_seq + 1, []
    while pos < info["head"]:
        found = decode_record(log, pos % lay.log_size, info["volume_id"], seq)
        assert found is not None and found[0] is not None
        out.append((pos, seq, found[0]))
        pos += found[1]
        seq += 1
    assert seq == info["next_seq"]
    return out


def _with_record(image: bytes, info: dict, index: int, body: object, code: int | None = None) -> bytearray | None:
    """``image`` with log record ``index`` (after the checkpoint) replaced by ``body`` (its
    fields; ``code`` its type, by default the same), the records after it encoded again
    behind it (its length may change)."""
    lay = info["layout"]
    records = _log_records(image, info)
    pos, seq, record = records[index]
    try:
        raws = [_encode(type(record).CODE if code is None else code, body, info["volume_id"], seq)]  # type: ignore[attr-defined]
    except (OverflowError, TypeError, ValueError):
        return None                     # msgpack cannot hold it (an int past 64 bits): no such pool
    raws += [encode_record(r, info["volume_id"], s) for _p, s, r in records[index + 1:]]
    data = b"".join(raws)
    end = max(pos + len(data), info["head"])
    if end // lay.log_size != pos // lay.log_size or end - pos > lay.log_size:
        return None                     # would wrap the ring: keep the fuzz simple
    out = bytearray(image)
    start = lay.log_offset + pos % lay.log_size
    out[start:start + (end - pos)] = data + bytes(end - pos - len(data))
    return out


def _state_before(image: bytes, info: dict, index: int) -> dict:
    """What the volume holds through the record before ``index``: a pool whose log stops there."""
    lay = info["layout"]
    pos = _log_records(image, info)[index][0]
    out = bytearray(image)
    start = lay.log_offset + pos % lay.log_size
    out[start:start + (info["head"] - pos)] = bytes(info["head"] - pos)
    vol = _mount(out)
    try:
        return snapshot(vol)
    finally:
        vol.close()


def _fields_of(record: Record) -> list:
    return [list(f) if isinstance(f, list) else f for f in record]


def _record_positions(record: Record) -> list[tuple]:
    fields = copy.deepcopy(_fields_of(record))
    return [p for p in _slots(fields) if p]


def _log_cases(n: int, seed: int) -> list[tuple[int, tuple, object]]:
    image, info = _base(True)
    records = _log_records(image, info)
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        index = rng.randrange(len(records))
        record = records[index][2]
        fields = _fields_of(record)
        kind = rng.random()
        if kind < 0.08:
            cases.append((index, ("arity",), rng.choice([fields[:-1], fields + [0], []])))
            continue
        path = rng.choice(_record_positions(record))
        cases.append((index, path, rng.choice(_values_for(_get(fields, path)))))
    return cases


def test_log_records_cover_every_type() -> None:
    image, info = _base(True)
    kinds = {type(r) for _p, _s, r in _log_records(image, info)}
    assert kinds == set(RECORD_TYPES.values()), kinds


def test_log_record_fuzz_after_the_checksum() -> None:
    image, info = _base(True)
    records = _log_records(image, info)
    before = {i: _state_before(image, info, i) for i in range(len(records))}
    outcomes = {"clean": 0, "readonly": 0, "corrupt": 0}
    for i, (index, path, value) in enumerate(_log_cases(320, seed=11)):
        fields = _fields_of(records[index][2])
        fields = value if path == ("arity",) else _set(fields, path, value)
        damaged = _with_record(image, info, index, fields)
        if damaged is None:
            continue
        what = f"case {i}: record {index} ({type(records[index][2]).__name__}) field {path} = {value!r}"
        outcomes[_outcome(damaged, what, bad_seq=records[index][1], expected_before_bad=before[index])] += 1
    assert sum(outcomes.values()) >= 250, outcomes
    assert outcomes["readonly"] >= 150 and outcomes["corrupt"] == 0, outcomes


@pytest.mark.parametrize("index_from_end", [1, 2, 5])
def test_unknown_type_bad_bodies_and_bad_batches_mount_read_only(index_from_end: int) -> None:
    image, info = _base(True)
    records = _log_records(image, info)
    index = len(records) - index_from_end
    pos, seq, record = records[index]
    expected = _state_before(image, info, index)
    for code, body in [(99, _fields_of(record)), (PAD_CODE + 100, []), (None, "not a list"), (None, {"ino": 1}),
                       (None, 7), (None, None), (Batch.CODE, [[[8, [[7, 2]]]]]), (Batch.CODE, [[[99, 1]]]),
                       (Batch.CODE, [[[Reclaim.CODE, 1.5]]]), (Batch.CODE, [[]]), (Batch.CODE, [[[]]]),
                       # well typed, but a name no directory may hold: only validate() says so
                       (Batch.CODE, [[[1, 10**6, 1, "a/b", st.S_IFREG | 0o644, 0, 0, 1]]])]:
        damaged = _with_record(image, info, index, body, code)
        assert damaged is not None
        assert _outcome(damaged, f"code {code} body {body!r}", bad_seq=seq, expected_before_bad=expected) == "readonly"


def test_decode_record_names_the_record_and_field() -> None:
    image, info = _base(True)
    pos, seq, record = _log_records(image, info)[0]
    fields = _fields_of(record)
    fields[0] = 1.5
    raw = _encode(type(record).CODE, fields, 77, seq)  # type: ignore[attr-defined]
    with pytest.raises(BadRecordError) as err:
        decode_record(raw, 0, 77, seq)
    assert err.value.seq == seq and err.value.kind == type(record).__name__
    assert f"log record {seq}" in err.value.what and "float" in err.value.what
    assert err.value.errno == errno.EUCLEAN


# ---------------------------------------------------------------------------- read-only mount and repair

def _damaged_pool(index_from_end: int = 3, *, malformed: bool = False) -> tuple[bytearray, dict, int, dict]:
    """The rich volume with a log record near the end made impossible: the record
    ``index_from_end`` from the end given a float for its first field (``malformed``), or
    the nearest one at or before it that names an existing inode given one that does not."""
    image, info = _base(True)
    records = _log_records(image, info)
    index = len(records) - index_from_end
    if not malformed:
        while type(records[index][2]).__name__ in ("Create", "Batch"):     # these make new inodes
            index -= 1
    fields = _fields_of(records[index][2])
    fields[0] = 1.5 if malformed else 10**9
    damaged = _with_record(image, info, index, fields)
    assert damaged is not None
    return damaged, info, records[index][1], _state_before(image, info, index)


def test_bad_record_mounts_read_only_and_says_which() -> None:
    damaged, info, seq, expected = _damaged_pool()
    with pytest.warns(daxfs.DamagedVolumeWarning, match=f"log record {seq} "):
        vol = Volume.mount(MemoryPool(bytes(damaged)))
    try:
        assert vol.readonly and vol.damaged is not None
        assert f"log record {seq} " in vol.damaged and "fsck --repair" in vol.damaged
        assert snapshot(vol) == expected and vol.fsck() == []
        with pytest.raises(OSError) as info_:
            with vol.open("/x", "wb", buffering=0):
                pass
        assert info_.value.errno == errno.EROFS and f"log record {seq}" in info_.value.strerror
        assert info_.value.filename == "/x"
        with pytest.raises(OSError) as info_:
            vol.checkpoint()
        assert info_.value.errno == errno.EROFS
    finally:
        vol.close()
    # closing wrote nothing: the same pool mounts the same way again
    again = _mount(damaged)
    try:
        assert again.damaged is not None and snapshot(again) == expected
    finally:
        again.close()


def test_load_stops_before_a_chosen_record() -> None:
    from daxfs.volume.mount import load as _load
    image, info = _base(True)
    records = _log_records(image, info)
    for index in (0, len(records) // 2, len(records) - 1):
        loaded = _load(MemoryPool(image), check_damage=True, stop_before_seq=records[index][1])
        assert loaded.bad_record is None and loaded.ring.next_seq == records[index][1]
        assert loaded.ring.head == records[index][0]


@pytest.mark.parametrize("index_from_end,malformed", [(1, False), (4, False), (2, True), (6, True)])
def test_repair_keeps_the_state_before_and_nothing_after_comes_back(index_from_end: int, malformed: bool) -> None:
    damaged, info, seq, expected = _damaged_pool(index_from_end, malformed=malformed)
    pool = MemoryPool(bytes(damaged))
    actions = repair_pool(pool)
    assert actions and f"records {seq} to {info['next_seq'] - 1}" in actions[0]
    vol = Volume.mount(pool)
    assert not vol.readonly and vol.damaged is None
    assert snapshot(vol) == expected and vol.fsck() == []
    # new records land where the discarded ones were, with sequences none of them had
    assert vol._ring.next_seq > info["next_seq"] - 1
    vol.mkdir("/fresh")
    with vol.open("/fresh/f", "wb", buffering=0) as f:
        f.write(b"f" * 7000)
    vol.unlink("/fresh/f")
    vol.mkdir("/fresh2")
    expected = snapshot(vol)
    crashed = pool.image()             # as if the power failed: the new records only in the log
    vol.close()
    for image in (crashed, pool.image()):
        after = Volume.mount(MemoryPool(image))
        try:
            assert after.damaged is None and after.fsck() == []
            assert snapshot(after) == expected     # nothing from the discarded tail
        finally:
            after.close()
    assert repair_pool(MemoryPool(pool.image())) == []      # nothing left to repair


def test_a_live_commit_that_does_not_apply_is_the_last_record_at_the_next_mount() -> None:
    """A writer's bug: a record logged, then refused by apply.  The next mount stops before
    it (read-only), and repair makes the volume writable with everything before it."""
    pool = MemoryPool(POOL)
    Volume.format(pool)
    vol = Volume.mount(pool)
    _build(vol)
    expected = snapshot(vol)
    seq = vol._ring.next_seq
    with pytest.raises(daxfs.CorruptVolumeError):
        vol._journal.commit(Unlink(1, "no-such-name", 1, True))     # logged, then apply refuses it
    # The live volume stops taking changes and shows what the log holds before the record.
    assert vol.readonly and f"log record {seq} (Unlink)" in vol.damaged  # type: ignore[operator]
    assert snapshot(vol) == expected and vol.fsck() == []
    with pytest.raises(OSError) as refused:
        vol.mkdir("/after")
    assert refused.value.errno == errno.EROFS and f"log record {seq}" in str(refused.value)
    image = pool.image()                                    # the writer dies here
    vol.close()
    assert pool.image() == image                            # a read-only close writes nothing
    damaged = _mount(image)
    try:
        assert damaged.readonly and f"log record {seq} (Unlink)" in damaged.damaged  # type: ignore[operator]
        assert snapshot(damaged) == expected and damaged.fsck() == []
    finally:
        damaged.close()
    fixed = MemoryPool(image)
    assert repair_pool(fixed)
    vol = Volume.mount(fixed)
    try:
        assert not vol.readonly and snapshot(vol) == expected
        vol.mkdir("/again")
    finally:
        vol.close()


def test_repair_of_a_clean_pool_changes_nothing() -> None:
    image, _info = _base(True)
    pool = MemoryPool(image)
    assert repair_pool(pool) == []
    assert pool.image() == image


def test_repair_of_damage_in_the_middle_of_the_log() -> None:
    """A record whose bytes are damaged (bad checksum) with valid records after it: mount
    refuses, repair keeps what came before it."""
    image, info = _base(True)
    records = _log_records(image, info)
    index = len(records) // 2
    damaged = bytearray(image)
    damaged[info["layout"].log_offset + records[index][0] % info["layout"].log_size + HEADER.size] ^= 0xFF
    with pytest.raises(daxfs.CorruptVolumeError, match="later record"):
        _mount(damaged)
    expected = _state_before(image, info, index)
    pool = MemoryPool(bytes(damaged))
    actions = repair_pool(pool)
    assert actions and "unreadable" in actions[0]
    vol = Volume.mount(pool)
    try:
        assert snapshot(vol) == expected and vol.fsck() == []
        vol.mkdir("/ok")
    finally:
        vol.close()
    vol = Volume.mount(pool)
    try:
        assert vol.exists("/ok") and vol.fsck() == []
    finally:
        vol.close()


def test_repair_replaces_a_newest_checkpoint_that_does_not_form_a_volume() -> None:
    image, info = _base(True)
    damaged = _with_checkpoint(image, info, lambda s: [s[0], s[1] + [[1, 0, 0, 0, 0, 0, 0, 0, None, []]]],
                               wipe_older=False)
    assert damaged is not None
    pool = MemoryPool(bytes(damaged))
    expected = info["snapshot"]
    vol = Volume.mount(pool)          # the older checkpoint plus the log: nothing lost
    assert snapshot(vol) == expected and not vol.readonly
    vol.close()                       # its checkpoint goes over the bad slot
    pool2 = MemoryPool(bytes(damaged))
    actions = repair_pool(pool2)
    assert any("newest checkpoint" in a for a in actions)
    lay = info["layout"]
    # the mounted volume's checkpoint went over the bad slot, not over the one it loaded:
    # wiping that one (the older) still mounts
    raw = bytearray(pool.image())
    older = lay.checkpoint_offsets[(info["generation"] + 1) % 2]
    raw[older:older + 64] = bytes(64)
    vol = _mount(raw)
    try:
        assert snapshot(vol) == expected and vol.fsck() == []
    finally:
        vol.close()
    # repair wrote the state into both slots: wiping either still mounts
    for slot in lay.checkpoint_offsets:
        raw = bytearray(pool2.image())
        raw[slot:slot + 64] = bytes(64)
        vol = _mount(raw)
        try:
            assert snapshot(vol) == expected and vol.fsck() == []
        finally:
            vol.close()


def test_crash_at_every_persist_point_of_a_repair() -> None:
    """A repair interrupted anywhere leaves the damaged pool (read-only, same state) or the
    repaired one; never a pool that replays a discarded record or cannot mount."""
    damaged, info, seq, expected = _damaged_pool(2)
    pool = RecordingPool(bytes(damaged))
    start = pool.mark()
    repair_pool(pool)
    points = [e for e in pool.persist_points() if e >= start] + [len(pool.events)]
    seen = set()
    for e in points:
        for crash in pool.crash_images(e, seed=e, random_variants=1):
            vol = _mount(crash.image)
            try:
                assert snapshot(vol) == expected and vol.fsck() == [], (e, crash.variant)
                seen.add("readonly" if vol.damaged else "repaired")
                if vol.damaged is None:
                    vol.mkdir("/post")
                    img = vol.pool.image()
            finally:
                vol.close()
            if vol.damaged is None:
                again = _mount(img)
                try:
                    assert again.damaged is None and again.exists("/post") and again.fsck() == []
                finally:
                    again.close()
    assert seen == {"readonly", "repaired"}


def test_cli_fsck_reports_a_bad_record_and_repair_fixes_it(tmp_path: Any, capsys: Any) -> None:
    damaged, info, seq, expected = _damaged_pool()
    path = tmp_path / "damaged.pool"
    path.write_bytes(bytes(damaged))
    assert main(["fsck", str(path)]) == 1
    out, err = capsys.readouterr()
    assert f"log record {seq} " in out and "Traceback" not in out + err
    assert main(["ls", str(path)]) == 0            # still readable; the warning is one line
    out, err = capsys.readouterr()
    assert err.startswith("daxfs: warning: ") and err.count("\n") == 1
    assert main(["mkdir", f"{path}:/nope"]) == 1   # writes: EROFS, one line
    out, err = capsys.readouterr()
    assert "Read-only file system" in err and "Traceback" not in err
    assert main(["fsck", "--repair", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("repaired: discarded records") and out.rstrip().endswith("clean")
    assert main(["fsck", str(path)]) == 0
    with daxfs.open_volume(str(path)) as vol:
        assert snapshot(vol) == expected and not vol.readonly
    assert repair(str(path)) == []


def test_cli_fsck_of_unmountable_pool_is_one_line(tmp_path: Any, capsys: Any) -> None:
    image, info = _base(False)
    damaged = _with_checkpoint(image, info, lambda s: [s[0], "junk"], wipe_older=True)
    assert damaged is not None
    path = tmp_path / "broken.pool"
    path.write_bytes(bytes(damaged))
    for argv in (["fsck", str(path)], ["fsck", "--repair", str(path)]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert err.startswith("daxfs: ") and "corrupt volume" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- fsck never raises

def _live_core() -> Core:
    _image, _info = _base(True)
    vol = _mount(_image)
    try:
        return copy.deepcopy(vol._core)
    finally:
        vol.close()


def _breakages() -> list[tuple[str, Any]]:
    def node(core: Core, name: str) -> Any:
        return core.inodes[core.resolve(name)[2]]  # type: ignore[index]

    def runs_of(core: Core, name: str) -> list:
        return node(core, name).extents._runs  # type: ignore[union-attr]

    return [
        ("float size", lambda c: setattr(node(c, "/a"), "size", 1.5)),
        ("huge size", lambda c: setattr(node(c, "/a"), "size", 2**70)),
        ("mode -1", lambda c: setattr(node(c, "/a"), "mode", -1)),
        ("mode symlink", lambda c: setattr(node(c, "/a"), "mode", st.S_IFLNK | 0o777)),
        ("str uid", lambda c: setattr(node(c, "/a"), "uid", "root")),
        ("None mtime", lambda c: setattr(node(c, "/a"), "mtime_ns", None)),
        ("name ..", lambda c: c.inodes[1].entries.__setitem__("..", c.inodes[1].entries.pop("a"))),  # type: ignore[union-attr]
        ("name a/b", lambda c: c.inodes[1].entries.__setitem__("a/b", c.inodes[1].entries.pop("a"))),  # type: ignore[union-attr]
        ("int name", lambda c: c.inodes[1].entries.__setitem__(7, c.inodes[1].entries.pop("a"))),  # type: ignore[union-attr]
        ("str child", lambda c: c.inodes[1].entries.__setitem__("a", "x")),  # type: ignore[union-attr]
        ("list child", lambda c: c.inodes[1].entries.__setitem__("a", [1])),  # type: ignore[union-attr]
        ("missing child", lambda c: c.inodes[1].entries.__setitem__("a", 10**9)),  # type: ignore[union-attr]
        ("float run", lambda c: runs_of(c, "/a").__setitem__(0, (0, 1.5, 3, 0))),
        ("short run", lambda c: runs_of(c, "/a").__setitem__(0, (0, 1))),
        ("flag run", lambda c: runs_of(c, "/a").__setitem__(0, (*runs_of(c, "/a")[0][:3], 8))),
        ("negative run", lambda c: runs_of(c, "/a").__setitem__(0, (0, -3, 1, 0))),
        ("run past data", lambda c: runs_of(c, "/a").__setitem__(0, (0, 3, c.data_blocks, 0))),
        ("extents list", lambda c: setattr(node(c, "/a"), "extents", [(0, 1, 2, 0)])),
        ("dir with extents", lambda c: setattr(node(c, "/d"), "extents", ExtentMap())),
        ("file with entries", lambda c: setattr(node(c, "/a"), "entries", {})),
        ("entries list", lambda c: setattr(node(c, "/d"), "entries", ["b"])),
        ("inode is str", lambda c: c.inodes.__setitem__(node(c, "/a").ino, "inode")),
        # (a key that is not an int cannot be stored: ChunkedTable refuses it, test_core)
        ("inode under another number", lambda c: c.inodes.__setitem__(10**6, c.inodes.pop(node(c, "/a").ino))),
        ("no root", lambda c: c.inodes.pop(1)),
        ("root is file", lambda c: setattr(c.inodes[1], "entries", None)),
        ("dir cycle", lambda c: node(c, "/d/sub").entries.__setitem__("up", node(c, "/d").ino)),  # type: ignore[union-attr]
        ("rmap None", lambda c: setattr(c, "rmap", None)),
        ("space None", lambda c: setattr(c, "space", None)),
        ("busy None", lambda c: setattr(c, "busy", None)),
        ("inodes None", lambda c: setattr(c, "inodes", None)),
        ("block size 0", lambda c: setattr(c, "block_size", 0)),
        ("next_ino float", lambda c: setattr(c, "next_ino", 2.5)),
        ("nlink str", lambda c: setattr(node(c, "/a"), "nlink", "1")),
        ("parent None", lambda c: setattr(node(c, "/d"), "parent", None)),
    ]


@pytest.mark.parametrize("name,breakage", _breakages(), ids=[n for n, _b in _breakages()])
def test_fsck_lists_problems_and_never_raises(name: str, breakage: Any) -> None:
    core = _live_core()
    assert check(core) == []
    breakage(core)
    problems = check(core)
    assert isinstance(problems, list) and problems and all(isinstance(p, str) for p in problems), name


def test_fsck_never_raises_on_random_breakage() -> None:
    rng = random.Random(5)
    base = _live_core()
    values = _WRONG_TYPES + _BAD_INTS + _BAD_NAMES + [object()]
    attrs = ["ino", "mode", "uid", "gid", "size", "atime_ns", "mtime_ns", "ctime_ns", "nlink", "parent",
             "entries", "extents"]
    for _ in range(150):
        core = copy.deepcopy(base)
        for _k in range(rng.choice([1, 2, 3])):
            node = core.inodes[rng.choice(list(core.inodes))]
            setattr(node, rng.choice(attrs), rng.choice(values))
        problems = check(core)
        assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
