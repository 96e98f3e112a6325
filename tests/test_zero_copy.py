"""Zero-copy loading: Arrow IPC / Feather tables and .npy arrays straight over the pool.

A table or array from ``daxfs.arrow``/``daxfs.numpy`` points into a mapping of the file
(no byte copied), keeps that mapping open while anything made from it lives, and the
mapping follows the volume's pin policy like any other.  Each test runs on an embedded
volume and on a client of an arbiter.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import daxfs


@pytest.fixture(params=["embedded", "served"])
def vol(request: pytest.FixtureRequest, shm_pool: str) -> Iterator[Any]:
    if request.param == "served":
        request.getfixturevalue("served_pool")
        volume = daxfs.connect(shm_pool)
    else:
        volume = daxfs.open_volume(shm_pool)
    yield volume
    gc.collect()
    volume.close(force=True, timeout=5)


def _table(rows: int = 100_000) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table({"id": np.arange(rows, dtype=np.int64), "x": rng.random(rows),
                     "name": pa.array([f"n{i % 97}" for i in range(rows)])})


def _write_feather(vol: Any, path: str, table: pa.Table) -> None:
    with vol.open(path, "wb", buffering=0) as f:
        feather.write_feather(table, f, compression="uncompressed")


def _mappings(vol: Any, path: str) -> list[Any]:
    return [info for info in vol.pins() if info.path == path and info.kind == "mapping"]


# ---------------------------------------------------------------- Arrow


def test_feather_table_is_read_in_place_without_allocating(vol: Any) -> None:
    table = _table()
    _write_feather(vol, "/t.feather", table)
    gc.collect()
    allocated = pa.total_allocated_bytes()
    loaded = daxfs.arrow.read_table(vol, "/t.feather")
    assert pa.total_allocated_bytes() == allocated          # not one byte copied
    assert loaded.equals(table)


def test_table_buffers_point_into_the_mapping(vol: Any) -> None:
    table = _table(10_000)
    _write_feather(vol, "/p.feather", table)
    source = daxfs.arrow.buffer(vol, "/p.feather")
    assert source.size == vol.stat("/p.feather").st_size
    loaded = pa.ipc.open_file(source).read_all()
    start, end = source.address, source.address + source.size
    buffers = [buf for column in loaded.columns for chunk in column.chunks
               for buf in chunk.buffers() if buf is not None and buf.size]
    assert buffers and all(start <= buf.address and buf.address + buf.size <= end for buf in buffers)


def test_stream_format_and_column_selection(vol: Any) -> None:
    table = _table(5_000)
    with vol.open("/s.arrows", "wb", buffering=0) as f, pa.ipc.new_stream(f, table.schema) as writer:
        writer.write_table(table, max_chunksize=1_000)
    gc.collect()
    allocated = pa.total_allocated_bytes()
    loaded = daxfs.arrow.read_table(vol, "/s.arrows", columns=["x"])
    assert pa.total_allocated_bytes() == allocated
    assert loaded.column_names == ["x"] and loaded.column("x").equals(table.column("x"))
    with pytest.raises(pa.ArrowInvalid):          # the file reader needs the file format
        daxfs.arrow.open_file(vol, "/s.arrows")


def test_the_table_holds_the_mapping_until_it_is_gone(vol: Any) -> None:
    _write_feather(vol, "/h.feather", _table(20_000))
    loaded = daxfs.arrow.read_table(vol, "/h.feather")
    column = loaded.column("x")                  # a piece of it, kept alone below
    del loaded
    gc.collect()
    assert len(_mappings(vol, "/h.feather")) == 1
    total = pa.compute.sum(column).as_py()
    del column
    gc.collect()
    assert total > 0 and _mappings(vol, "/h.feather") == []


def test_unlink_under_a_live_table_keeps_the_file_until_it_is_gone(vol: Any) -> None:
    table = _table(50_000)
    _write_feather(vol, "/d.feather", table)
    size = vol.stat("/d.feather").st_size
    loaded = daxfs.arrow.read_table(vol, "/d.feather")
    used = vol.statfs().used
    vol.unlink("/d.feather")
    # The name is gone; the inode lives on as an orphan while the table maps it ...
    assert not vol.exists("/d.feather") and vol.statfs().used == used
    assert loaded.equals(table)                   # ... and the table still reads its bytes
    del loaded
    gc.collect()
    assert vol.statfs().used <= used - size       # the last reference freed the blocks


def test_policy_refuse_applies_while_a_table_lives(shm_pool: str) -> None:
    with daxfs.open_volume(shm_pool, policy="refuse") as vol:
        _write_feather(vol, "/r.feather", _table(10_000))
        loaded = daxfs.arrow.read_table(vol, "/r.feather")
        with vol.open("/r.feather", "r+b", buffering=0) as f, pytest.raises(daxfs.BusyError):
            f.truncate(0)
        del loaded
        gc.collect()
        with vol.open("/r.feather", "r+b", buffering=0) as f:
            f.truncate(0)                          # nothing maps it any more
        assert vol.stat("/r.feather").st_size == 0


def test_parquet_parsed_straight_from_the_pool(vol: Any) -> None:
    table = _table(30_000)
    with vol.open("/t.parquet", "wb", buffering=0) as f:
        pq.write_table(table, f)
    assert pq.read_table(daxfs.arrow.buffer(vol, "/t.parquet")).equals(table)


def test_feather_v1_is_refused_with_a_reason(vol: Any) -> None:
    with vol.open("/old.feather", "wb", buffering=0) as f:
        f.write(b"FEA1" + bytes(60))
    with pytest.raises(ValueError, match="Feather v1"):
        daxfs.arrow.read_table(vol, "/old.feather")


def test_compressed_ipc_still_reads(vol: Any) -> None:
    table = _table(5_000)
    with vol.open("/z.feather", "wb", buffering=0) as f:
        feather.write_feather(table, f, compression="zstd")
    assert daxfs.arrow.read_table(vol, "/z.feather").equals(table)


# ---------------------------------------------------------------- NumPy


@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_loads_as_a_read_only_array_over_the_mapping(vol: Any, order: str) -> None:
    data = np.asarray(np.arange(60, dtype="<f4").reshape(3, 4, 5), order=order)
    daxfs.numpy.save(vol, "/a.npy", data)
    loaded = daxfs.numpy.load(vol, "/a.npy")
    assert np.array_equal(loaded, data) and loaded.dtype == data.dtype
    assert loaded.flags.f_contiguous == (order == "F") and not loaded.flags.writeable
    with pytest.raises(ValueError):
        loaded[0, 0, 0] = 1
    mapping = daxfs.numpy.mapping_of(loaded)
    assert mapping is not None and not mapping.writable
    # The array is the file's bytes: its memory is the mapping's, past the header.
    mapped = np.frombuffer(mapping.buffer, dtype=np.uint8)
    assert loaded.__array_interface__["data"][0] == mapped.__array_interface__["data"][0]
    assert mapping.length == data.nbytes
    del mapped


def test_npy_r_plus_writes_through_to_the_file(vol: Any) -> None:
    daxfs.numpy.save(vol, "/w.npy", np.zeros(1000, dtype=np.int32))
    array = daxfs.numpy.load(vol, "/w.npy", mode="r+")
    array[10:20] = 7
    daxfs.numpy.mapping_of(array).persist()
    with vol.open("/w.npy", "rb", buffering=0) as f:
        assert np.array_equal(np.load(f)[10:20], np.full(10, 7, dtype=np.int32))


def test_npy_create_fills_a_new_file_in_place(vol: Any) -> None:
    array = daxfs.numpy.create(vol, "/new.npy", (100, 3), "<u2")
    assert array.flags.writeable and not array.any()
    array[:, 1] = np.arange(100)
    daxfs.numpy.mapping_of(array).persist()
    with vol.open("/new.npy", "rb", buffering=0) as f:
        back = np.load(f)
    assert back.shape == (100, 3) and np.array_equal(back[:, 1], np.arange(100))
    with pytest.raises(FileExistsError):
        daxfs.numpy.create(vol, "/new.npy", 4)


def test_npy_array_and_views_hold_the_mapping(vol: Any) -> None:
    daxfs.numpy.save(vol, "/v.npy", np.arange(4096, dtype=np.float64))
    view = daxfs.numpy.load(vol, "/v.npy")[::2]
    gc.collect()
    assert len(_mappings(vol, "/v.npy")) == 1     # the base array is gone, its view holds on
    with vol.open("/v.npy", "r+b", buffering=0) as f:
        f.truncate(0)                             # policy defer: the file shrinks now ...
    assert view[-1] == 4094.0 and vol.statfs().busy >= 4096 * 8   # ... its blocks wait
    del view
    gc.collect()
    assert vol.statfs().busy == 0 and vol.pins() == []


def test_npy_edge_cases(vol: Any) -> None:
    daxfs.numpy.save(vol, "/empty.npy", np.zeros((0, 4)))
    assert daxfs.numpy.load(vol, "/empty.npy").shape == (0, 4)
    daxfs.numpy.save(vol, "/scalar.npy", np.float32(2.5))
    assert daxfs.numpy.load(vol, "/scalar.npy")[()] == 2.5
    with vol.open("/obj.npy", "wb", buffering=0) as f:
        np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects"):
        daxfs.numpy.load(vol, "/obj.npy")
    with vol.open("/short.npy", "wb", buffering=0) as f:
        np.save(f, np.arange(100))
        f.truncate(f.tell() - 8)
    with pytest.raises(ValueError, match="header says"):
        daxfs.numpy.load(vol, "/short.npy")
    with vol.open("/not.npy", "wb", buffering=0) as f:
        f.write(os.urandom(64))
    with pytest.raises(ValueError, match="not a .npy"):
        daxfs.numpy.load(vol, "/not.npy")
    with pytest.raises(ValueError, match="mode"):
        daxfs.numpy.load(vol, "/scalar.npy", mode="w")


def test_a_leased_array_hears_the_break_and_stays_valid(shm_pool: str) -> None:
    with daxfs.open_volume(shm_pool, policy="break", lease_break_s=0) as vol:
        daxfs.numpy.save(vol, "/l.npy", np.arange(1000, dtype=np.float64))
        heard: list[Any] = []
        array = daxfs.numpy.load(vol, "/l.npy", lease=True, on_break=heard.append)
        mapping = daxfs.numpy.mapping_of(array)
        with vol.open("/l.npy", "r+b", buffering=0) as f:
            f.truncate(0)
        # told, then revoked: the bytes moved to private memory, the array still reads them
        assert heard == [mapping] and mapping.revoked and array[999] == 999.0
        del array, mapping
        gc.collect()
