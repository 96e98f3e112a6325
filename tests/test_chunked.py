"""ChunkedTable, ChunkedSet and ChunkedList (core/chunked.py): a dict, a set and a sorted
list of ints, in chunks.

They must behave as the dict, set and sorted list they replace — lookups of anything (None, negative,
a str, a number far past the rest) find nothing rather than raise, iteration is in key
order across chunks — and a volume whose inode numbers span many chunks must checkpoint
and mount as any other (test_checkpoint_writer runs every test with chunks of 4 numbers,
and test_core's reverse-map model test draws that mode too).
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right

import pytest

import daxfs
from daxfs.core import Core, chunked
from daxfs.core.chunked import ChunkedList, ChunkedTable, ChunkedSet
from daxfs.core.rmap import OwnerMap
from daxfs.core.records import Create, Unlink

BS = 4096


@pytest.fixture(params=[chunked.CHUNK_BITS, 2], ids=["chunks-64Ki", "chunks-4"])
def chunk_bits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(chunked, "CHUNK_BITS", request.param)
    if request.param == 2:
        monkeypatch.setattr(chunked, "CHUNKED_FROM", 8)
        monkeypatch.setattr(chunked, "LIST_CHUNK", 2)
    return int(request.param)


def test_the_table_behaves_as_the_dict_it_replaces(chunk_bits: int) -> None:
    rng = random.Random(chunk_bits)
    table: ChunkedTable[str] = ChunkedTable()
    model: dict[int, str] = {}
    next_ino = 1
    for step in range(3000):
        if rng.random() < 0.6 or not model:
            next_ino += rng.choice([1, 1, 2, 7, 1 << chunk_bits])      # ascending, as inodes are made
            table[next_ino] = model[next_ino] = f"v{step}"
        elif rng.random() < 0.5:
            ino = rng.choice(list(model))
            table[ino] = model[ino] = f"again{step}"                  # a value replaced keeps its place
        elif rng.random() < 0.5:
            ino = rng.choice(list(model))
            del table[ino]
            del model[ino]
        else:
            ino = rng.choice(list(model))
            assert table.pop(ino) == model.pop(ino)
        assert len(table) == len(model) and bool(table) == bool(model)
    assert list(table) == list(model) == sorted(model)
    assert list(table.items()) == list(model.items()) and list(table.values()) == list(model.values())
    assert list(table.keys()) == list(model)
    for ino in list(model)[:50]:
        assert table[ino] == model[ino] and table.get(ino) == model[ino] and ino in table


@pytest.mark.parametrize("key", [None, -1, -(1 << 40), "9", 2.0, 10**30, 0, 3, (1 << 16) + 3])
def test_a_missing_or_impossible_key_is_not_found(key: object) -> None:
    table: ChunkedTable[str] = ChunkedTable([(1, "root"), (2, "a"), ((1 << 16) + 2, "far")])
    assert table.get(key) is None and table.get(key, "d") == "d" and key not in table
    with pytest.raises(KeyError):
        table[key]      # type: ignore[index]
    with pytest.raises(KeyError):
        del table[key]  # type: ignore[arg-type]
    assert table.pop(key, "gone") == "gone"     # type: ignore[arg-type]
    assert list(table) == [1, 2, (1 << 16) + 2]


def test_a_key_that_is_not_an_int_is_never_stored() -> None:
    table: ChunkedTable[str] = ChunkedTable([(1, "root")])
    for key in ("9", 9.0, None):
        with pytest.raises(TypeError):
            table[key] = "x"        # type: ignore[index]
    with pytest.raises(TypeError):
        ChunkedSet().add("9")           # type: ignore[arg-type]
    assert list(table.items()) == [(1, "root")] and len(table) == 1


def test_a_number_far_above_the_rest_costs_one_chunk() -> None:
    # (a record may name any inode number up to INO_MAX: chunks are not a list to index)
    table: ChunkedTable[str] = ChunkedTable([(1, "root")])
    table[(1 << 63) - 5] = "far"
    assert len(table._chunks) == 2 and list(table) == [1, (1 << 63) - 5]
    del table[(1 << 63) - 5]
    assert len(table._chunks) == 1 and len(table) == 1     # an emptied chunk goes
    table.clear()
    assert len(table) == 0 and list(table) == [] and not table


def test_the_set_behaves_as_the_set_it_replaces(chunk_bits: int) -> None:
    rng = random.Random(chunk_bits + 1)
    universe = range(1, 1 << (chunk_bits + 6))      # 64 chunks
    inos = ChunkedSet()
    model: set[int] = set()
    for _ in range(40):
        batch = [rng.choice(universe) for _ in range(rng.randrange(1, 4))]
        if rng.random() < 0.5:
            inos.update(batch)
        else:
            inos |= batch
        model.update(batch)
    assert len(inos) == len(model) and sorted(inos) == sorted(model)
    for probe in [*model, *rng.sample(universe, 60)]:
        assert (probe in inos) == (probe in model)
    # Ascending stretches, as a checkpoint's keys come, over one chunk or several: each
    # member last behind numbers that are not, and stretches of non-members only.
    absent = sorted(set(rng.sample(universe, min(400, len(universe)))) - model)
    for member in model:
        before = [k for k in absent if k < member][-rng.randrange(1, 5):]
        assert not inos.isdisjoint(before + [member]), before + [member]
    for start in range(0, len(absent) - 8, 5):
        assert inos.isdisjoint(absent[start:start + 8])
    assert inos.isdisjoint([]) and None not in inos and "3" not in inos and -1 not in inos


def test_adopting_a_dict_keeps_every_entry_in_inode_order(chunk_bits: int) -> None:
    rng = random.Random(11)
    keys = sorted(rng.sample(range(1, 1 << (chunk_bits + 5)), 100))
    ascending = {k: str(k) for k in keys}
    table = ChunkedTable.adopt(ascending)
    assert list(table.items()) == list(ascending.items()) and len(table) == 100
    assert ChunkedTable.adopt(table) is table
    shuffled = dict(rng.sample(list(ascending.items()), 100))      # (not as Core keeps it)
    assert list(ChunkedTable.adopt(shuffled).items()) == list(ascending.items())
    assert len(ChunkedTable.adopt({})) == 0


def _chunks_hold_their_own(table: ChunkedTable[str], bits: int) -> bool:
    return all(chunk and all(k >> bits == c for k in chunk) for c, chunk in table._chunks.items())


@pytest.mark.parametrize("ascending", [True, False], ids=["ascending", "shuffled"])
def test_adopting_a_dict_mostly_in_one_chunk(chunk_bits: int, ascending: bool) -> None:
    # (as Core.inodes is when it reaches CHUNKED_FROM: all of chunk 0 but one, and the
    # chunk that holds most is a copy of the dict less the others; shuffled, it is not)
    rng = random.Random(5)
    size = 1 << chunk_bits
    keys = [*range(1, size), size + 3, 7 * size + 1]
    ascending_table = {k: str(k) for k in keys}
    if not ascending:
        keys = rng.sample(keys, len(keys))
    table = ChunkedTable.adopt({k: str(k) for k in keys})
    assert list(table.items()) == list(ascending_table.items()) and len(table) == len(keys)
    assert sorted(table._chunks) == [0, 1, 7] and _chunks_hold_their_own(table, chunk_bits)
    table[2 * size] = "new"                         # and it takes changes as any other
    del table[1]
    assert list(table)[:2] == [2, 3] and list(table)[-2:] == [2 * size, 7 * size + 1]
    assert len(table) == len(keys) and _chunks_hold_their_own(table, chunk_bits)


def test_a_core_reaching_chunked_from_in_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked, "CHUNKED_FROM", 8)     # chunks of 65,536: all in chunk 0
    core = Core.new(BS, 256, time_ns=1, uid=0, gid=0)
    for i in range(20):
        core.apply(Create(core.next_ino, 1, f"f{i}", 0o100644, 0, 0, 2))
    assert type(core.inodes) is ChunkedTable and len(core.inodes) == 21
    assert list(core.inodes) == sorted(core.inodes) and list(core.inodes._chunks) == [0]
    assert [core.inodes[ino].ino for ino in core.inodes] == list(core.inodes)


def test_adding_to_the_set_one_at_a_time() -> None:
    inos = ChunkedSet()
    for ino in (5, 1 << 20, 5, 3):
        inos.add(ino)
    assert len(inos) == 3 and sorted(inos) == [3, 5, 1 << 20] and 3 in inos and 4 not in inos


def test_a_core_with_inodes_over_many_chunks_round_trips_in_inode_order(chunk_bits: int) -> None:
    core = Core.new(BS, 256, time_ns=1, uid=0, gid=0)
    rng = random.Random(3)
    for i in range(200):        # numbers with gaps, some a whole chunk wide
        core.apply(Create(core.next_ino + rng.choice([0, 0, 3, 1 << chunk_bits]), 1, f"f{i}", 0o100644, 0, 0, 2))
    for i in rng.sample(range(200), 50):
        core.apply(Unlink(1, f"f{i}", 3, True))
    assert len(core.inodes) == 151 and list(core.inodes) == sorted(core.inodes)
    # a dict until CHUNKED_FROM inodes (the real one, 65,536, here: the test is small), chunks after
    assert type(core.inodes) is (ChunkedTable if chunk_bits == 2 else dict)
    back = Core.from_checkpoint(core.to_checkpoint(), BS, 256)
    assert type(back.inodes) is type(core.inodes)
    assert list(back.inodes.items()) != [] and list(back.inodes) == list(core.inodes)
    assert [(n.ino, n.nlink, n.mode) for n in back.inodes.values()] == \
        [(n.ino, n.nlink, n.mode) for n in core.inodes.values()]


def test_a_volume_over_many_chunks_checkpoints_and_mounts(shm_pool: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked, "CHUNK_BITS", 2)
    monkeypatch.setattr(chunked, "CHUNKED_FROM", 8)
    monkeypatch.setattr(chunked, "LIST_CHUNK", 2)
    expected: dict[str, bytes] = {}
    with daxfs.open_volume(shm_pool) as vol:
        for d in range(6):
            vol.mkdir(f"/d{d}")
            for i in range(12):
                path = f"/d{d}/f{i}"
                with vol.open(path, "xb") as f:
                    f.write(path.encode())
                expected[path] = path.encode()
        vol.checkpoint()
        for d in range(6):                      # old inodes changed, some gone: the next
            vol.unlink(f"/d{d}/f{d}")           # checkpoint copies the rest from this one
            del expected[f"/d{d}/f{d}"]
            with vol.open(f"/d{d}/f{d + 1}", "r+b") as f:
                f.write(b"changed")
            expected[f"/d{d}/f{d + 1}"] = b"changed" + expected[f"/d{d}/f{d + 1}"][7:]
        vol.checkpoint()
        assert type(vol._core.inodes) is ChunkedTable and type(vol._core.rmap._starts) is ChunkedList
        assert list(vol._core.inodes) == sorted(vol._core.inodes)
    with daxfs.open_volume(shm_pool) as vol:
        found = {f"/d{d}/{name}": _read(vol, f"/d{d}/{name}") for d in range(6) for name in vol.listdir(f"/d{d}")}
        assert found == expected and vol.fsck() == []


def _read(vol: daxfs.Volume, path: str) -> bytes:
    with vol.open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------- ChunkedList


@pytest.mark.parametrize("list_chunk", [1, 2, 3, 4, 16, chunked.LIST_CHUNK])
def test_the_chunked_list_behaves_as_the_sorted_list_it_replaces(list_chunk: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Random inserts where a bisection puts them, deletes at any position (negative ones
    too), bisections of numbers in the list, between and beyond; the chunks stay within
    their bounds, so they split and join all along."""
    monkeypatch.setattr(chunked, "LIST_CHUNK", list_chunk)
    for seed in range(8):
        rng = random.Random(seed)
        model = sorted(rng.sample(range(0, 2000, 2), rng.choice([0, 1, 5, 60, 300])))
        chunks = ChunkedList(model)
        for step in range(1500):
            roll = rng.random()
            if roll < 0.45 or not model:
                x = rng.randrange(-10, 2010)
                if x not in model:
                    i = bisect_left(model, x)
                    model.insert(i, x)
                    chunks.insert(i, x)
            elif roll < 0.9:
                i = rng.randrange(-len(model), len(model))
                del model[i]
                del chunks[i]
            x = rng.randrange(-10, 2010)
            assert chunks.bisect_left(x) == bisect_left(model, x)
            assert chunks.bisect_right(x) == bisect_right(model, x)
            assert len(chunks) == len(model) and bool(chunks) == bool(model)
            if model:
                i = rng.randrange(len(model))
                assert chunks[i] == model[i] and chunks[-1 - i] == model[-1 - i]
            if step % 50 == 0:
                assert list(chunks) == model and [chunks[i] for i in range(len(model))] == model
                assert [chunks.bisect_left(v) for v in model] == list(range(len(model)))
                assert all(0 < len(c) <= 2 * list_chunk for c in chunks._chunks)
                assert chunks._firsts == [c[0] for c in chunks._chunks]


def test_the_chunked_list_at_its_ends_and_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked, "LIST_CHUNK", 2)
    chunks = ChunkedList()
    assert len(chunks) == 0 and not chunks and list(chunks) == []
    assert chunks.bisect_left(5) == chunks.bisect_right(5) == 0
    for bad in (0, -1, 1):
        with pytest.raises(IndexError):
            chunks[bad]
        with pytest.raises(IndexError):
            del chunks[bad]
    with pytest.raises(IndexError):
        chunks.insert(1, 5)
    for i, x in [(0, 50), (1, 60), (0, 10), (3, 70), (1, 20), (2, 30), (6, 80), (0, 0)]:
        chunks.insert(i, x)         # at the front, the back and chunk boundaries
    assert list(chunks) == [0, 10, 20, 30, 50, 60, 70, 80] and len(chunks._chunks) > 1
    assert chunks[0] == 0 and chunks[7] == chunks[-1] == 80 and chunks[-8] == 0
    assert chunks.bisect_left(0) == 0 and chunks.bisect_right(80) == 8 and chunks.bisect_left(81) == 8
    with pytest.raises(IndexError):
        chunks[8]
    with pytest.raises(IndexError):
        chunks[-9]
    with pytest.raises(IndexError):
        chunks.insert(9, 90)
    del chunks[0], chunks[-1]
    assert list(chunks) == [10, 20, 30, 50, 60, 70] and chunks.bisect_right(10) == 1
    while chunks:
        del chunks[len(chunks) // 2]
    assert list(chunks) == [] and chunks._chunks == [] and chunks.bisect_right(50) == 0
    chunks.insert(0, 7)
    assert list(chunks) == [7] and chunks[0] == 7


def test_the_owner_map_turns_chunked_at_chunked_from_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain list (and ``bisect``'s functions) below CHUNKED_FROM runs, a ChunkedList from
    the first change at that size on, both tables together; the map answers the same."""
    monkeypatch.setattr(chunked, "CHUNKED_FROM", 8)
    monkeypatch.setattr(chunked, "LIST_CHUNK", 2)
    rmap = OwnerMap()
    for k in range(8):          # runs of 2 blocks with a gap: none merge
        assert type(rmap._starts) is list and type(rmap._runs) is dict
        rmap.add(3 * k, 2, 10 + k, 0)
    assert type(rmap._starts) is list and rmap._bisect_right is bisect_right    # 8 runs, not yet
    rmap.add(100, 1, 99, 0)
    assert type(rmap._starts) is ChunkedList and type(rmap._runs) is ChunkedTable
    assert rmap.covered() == [(3 * k, 2) for k in range(8)] + [(100, 1)]
    assert rmap.remove(3, 2, 11, 0) == [(3, 2)]
    rmap.add(2, 4, 50, 0)       # over a gap, a freed run and the next: merged into one
    assert rmap.runs()[:3] == [(0, 2, ((10, 0),)), (2, 6, ((50, -2),)), (6, 8, ((12, -6),))]
    assert rmap.owners(5, 2) == [(50, 3, 5, 1), (12, 0, 6, 1)]
    assert type(OwnerMap.build([(3 * k, 2, 10 + k, 0) for k in range(8)])._starts) is ChunkedList
    assert type(OwnerMap.build([(3 * k, 2, 10 + k, 0) for k in range(7)])._starts) is list


@pytest.mark.parametrize("list_chunk", [2, 5])
def test_a_chunked_owner_map_answers_as_a_plain_one(list_chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of runs, clones among them, added and given back in any order: the map
    chunked from 16 runs on keeps the runs, counts and answers of the one never chunked."""
    monkeypatch.setattr(chunked, "LIST_CHUNK", list_chunk)
    rng = random.Random(list_chunk)
    plain, chunky = OwnerMap(), OwnerMap()
    live: list[tuple[int, int, int, int]] = []

    def both(change: str, run: tuple[int, int, int, int]) -> list[object]:
        out = []
        for rmap, chunked_from in ((plain, 1 << 40), (chunky, 16)):
            monkeypatch.setattr(chunked, "CHUNKED_FROM", chunked_from)
            out.append(getattr(rmap, change)(*run))
        return out

    for step in range(3000):
        if rng.random() < 0.55 or not live:
            run = (rng.randrange(0, 8000), rng.randrange(1, 5), rng.randrange(2, 40), rng.randrange(0, 100))
            if any(run[2] == ino and run[3] - run[0] == f - p and p < run[0] + run[1] and run[0] < p + n
                   for p, n, ino, f in live):
                continue                # the same file block at the same place twice
            both("add", run)
            live.append(run)
        else:
            freed = both("remove", live.pop(rng.randrange(len(live))))
            assert freed[0] == freed[1]
        if step % 100 == 0:
            assert plain.runs() == chunky.runs() and plain.shared_blocks == chunky.shared_blocks
            for q in range(0, 8000, 397):
                assert plain.owners(q, 37) == chunky.owners(q, 37)
                assert plain.shared_parts(q, 37) == chunky.shared_parts(q, 37)
                assert plain.is_owned(q, 3) == chunky.is_owned(q, 3)
    assert type(plain._starts) is list and type(chunky._starts) is ChunkedList and len(chunky) > 200


@pytest.mark.parametrize("list_chunk", [1, 2, 3, 16])
def test_a_position_set_in_the_chunked_list_is_seen_by_every_later_call(list_chunk: int,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``FreeSpace._move_start``: ``starts[i] = new`` for a run whose start moved within its
    place in the order.  Set at any position (negative ones too), with the chunk last found
    being the one that holds it, another one, or none; a chunk's first number set is what
    the bisections see after it."""
    monkeypatch.setattr(chunked, "LIST_CHUNK", list_chunk)
    for seed in range(6):
        rng = random.Random(100 + seed)
        model = sorted(rng.sample(range(0, 40000, 20), 200))
        chunks = ChunkedList(model)
        for step in range(800):
            roll = rng.random()         # what the call before leaves as the chunk last found
            if roll < 0.3:
                chunks.bisect_left(rng.randrange(-10, 40010))
            elif roll < 0.5:
                chunks.bisect_right(rng.randrange(-10, 40010))
            elif roll < 0.7:
                chunks[rng.randrange(len(model))]
            elif roll < 0.8:
                i = rng.randrange(len(model) + 1)
                lo, hi = model[i - 1] + 1 if i else -100, model[i] if i < len(model) else 40100
                if lo < hi:
                    x = rng.randrange(lo, hi)
                    model.insert(i, x)
                    chunks.insert(i, x)
            elif roll < 0.9 and len(model) > 20:
                i = rng.randrange(len(model))
                del model[i]
                del chunks[i]
            i = rng.randrange(len(model))
            lo = model[i - 1] + 1 if i else model[i] - 15
            hi = model[i + 1] - 1 if i + 1 < len(model) else model[i] + 15
            x = rng.randrange(lo, hi + 1)
            at = i - len(model) if rng.random() < 0.3 else i
            model[at] = x
            chunks[at] = x
            assert chunks[i] == x and chunks.bisect_left(x) == i and chunks.bisect_right(x) == i + 1
            probe = rng.randrange(-20, 40020)
            assert chunks.bisect_left(probe) == bisect_left(model, probe)
            assert chunks.bisect_right(probe) == bisect_right(model, probe)
            if step % 40 == 0:
                assert list(chunks) == model and [chunks[j] for j in range(len(model))] == model
                assert chunks._firsts == [c[0] for c in chunks._chunks]
                assert [chunks.bisect_right(v) for v in model] == list(range(1, len(model) + 1))


def test_a_position_set_out_of_range_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked, "LIST_CHUNK", 2)
    chunks = ChunkedList([10, 20, 30, 40, 50, 60, 70])
    for bad in (7, 8, -8, -9):
        chunks.bisect_left(65)          # (the chunk last found: the last one)
        with pytest.raises(IndexError):
            chunks[bad] = 5
        with pytest.raises(IndexError):
            chunks[bad]
    assert list(chunks) == [10, 20, 30, 40, 50, 60, 70]
    fresh = ChunkedList([10, 20, 30, 40, 50, 60, 70])      # no chunk found yet
    fresh[0] = 5
    fresh[-1] = 75
    fresh[4] = 45
    assert list(fresh) == [5, 20, 30, 40, 45, 60, 75] and fresh._firsts == [c[0] for c in fresh._chunks]
    assert fresh.bisect_left(5) == 0 and fresh.bisect_right(45) == 5 and fresh.bisect_right(75) == 7
    empty = ChunkedList()
    for bad in (0, -1):
        with pytest.raises(IndexError):
            empty[bad] = 1


@pytest.mark.parametrize("list_chunk", [2, 4, 64])
def test_a_chunk_grown_past_twice_list_chunk_splits_in_halves(list_chunk: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A split leaves two chunks of about LIST_CHUNK each, as far from both bounds as can be
    (a third and two thirds would be split again sooner and joined sooner)."""
    monkeypatch.setattr(chunked, "LIST_CHUNK", list_chunk)
    chunks = ChunkedList()
    for x in range(2 * list_chunk + 1):
        chunks.insert(x, 100 * x)
    assert [len(c) for c in chunks._chunks] == [list_chunk, list_chunk + 1]
    assert chunks._firsts == [0, 100 * list_chunk] and list(chunks) == [100 * x for x in range(2 * list_chunk + 1)]
    for x in range(1, list_chunk + 2):                      # the first chunk, from the front
        chunks.insert(x, x)
    assert [len(c) for c in chunks._chunks] == [list_chunk, list_chunk + 1, list_chunk + 1]
    assert chunks._firsts == [c[0] for c in chunks._chunks] and chunks.bisect_right(list_chunk + 1) == list_chunk + 2
    assert chunks.bisect_left(100 * list_chunk) == 2 * list_chunk + 1 and chunks[-1] == 200 * list_chunk


def test_chunks_split_above_twice_list_chunk_and_join_below_half(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bounds, step by step (LIST_CHUNK 8): a chunk of 16 stays, of 17 splits; one of 4
    stays, of 3 joins the next chunk (the last one joins the one before), even where only two
    chunks are left; a join of 16 stays one chunk, of 19 splits in halves again."""
    monkeypatch.setattr(chunked, "LIST_CHUNK", 8)
    model = list(range(0, 2000, 100))
    chunks = ChunkedList(model)

    def sizes() -> list[int]:
        assert list(chunks) == model and chunks._firsts == [c[0] for c in chunks._chunks]
        assert [chunks.bisect_left(v) for v in model] == list(range(len(model)))
        return [len(c) for c in chunks._chunks]

    def add(x: int) -> None:
        i = bisect_left(model, x)
        model.insert(i, x)
        chunks.insert(i, x)

    def drop(i: int) -> None:
        del model[i]
        del chunks[i]

    assert sizes() == [8, 8, 4]
    for x in range(1, 9):
        add(x)
    assert sizes() == [16, 8, 4]                        # twice LIST_CHUNK: not split yet
    add(9)
    assert sizes() == [8, 9, 8, 4]
    seen = []
    for _ in range(5):
        drop(17)                                        # the third chunk, from its front
        seen.append(sizes())
    assert seen == [[8, 9, 7, 4], [8, 9, 6, 4], [8, 9, 5, 4], [8, 9, 4, 4], [8, 9, 7]]
    for x in range(10, 14):
        add(x)
    assert sizes() == [8, 13, 7]
    seen = []
    for _ in range(4):
        drop(21)                                        # the last chunk joins the one before
        seen.append(sizes())
    assert seen == [[8, 13, 6], [8, 13, 5], [8, 13, 4], [8, 16]]
    seen = []
    for _ in range(5):
        drop(0)                                         # two chunks left, the first joins
        seen.append(sizes())
    assert seen == [[7, 16], [6, 16], [5, 16], [4, 16], [9, 10]]
