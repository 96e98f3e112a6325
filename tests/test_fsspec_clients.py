"""The libraries daxfs's users live in, on ``daxfs://`` URLs, each as its users write it.

pandas (Parquet and CSV), pyarrow.dataset, zarr v3, dask and universal_pathlib reach the
volume only through fsspec: a URL and ``storage_options={"pool": POOL}``.  What they
write is checked through the volume itself, so a client that wrote somewhere else, or
wrote nothing, fails.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import daxfs
from daxfs.adapters.fsspec_fs import DaxFileSystem

pytestmark = pytest.mark.usefixtures("daxfs_protocol")


@pytest.fixture(params=["embedded", "served"])
def pool(request: pytest.FixtureRequest, shm_pool: str) -> Iterator[str]:
    if request.param == "served":
        request.getfixturevalue("served_pool")
    yield shm_pool
    # The clients made their own instances (dask, one per thread); once dropped and
    # collected, each lets go of the pool, before it is removed.
    DaxFileSystem.clear_instance_cache()
    gc.collect()


@pytest.fixture
def fs(pool: str) -> Iterator[Any]:
    fs = fsspec.filesystem("daxfs", pool=pool)
    yield fs
    fs.close()


def _frame(rows: int = 2_000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"id": np.arange(rows), "x": rng.random(rows),
                         "group": [f"g{i % 4}" for i in range(rows)]})


def test_pandas_parquet_round_trip(pool: str, fs: Any) -> None:
    frame = _frame()
    options = {"pool": pool}
    frame.to_parquet("daxfs:///pandas/frame.parquet", storage_options=options)
    assert fs.info("/pandas/frame.parquet")["size"] > 0
    back = pd.read_parquet("daxfs:///pandas/frame.parquet", storage_options=options)
    pd.testing.assert_frame_equal(back, frame)
    # The bytes in the volume are a Parquet file, readable without fsspec too.
    assert pq.read_table(daxfs.arrow.buffer(fs.volume, "/pandas/frame.parquet")).num_rows == len(frame)


def test_pandas_csv_round_trip(pool: str, fs: Any) -> None:
    frame = _frame(500)
    options = {"pool": pool}
    frame.to_csv("daxfs:///pandas/frame.csv", index=False, storage_options=options)
    assert fs.cat("/pandas/frame.csv").startswith(b"id,x,group\n0,")
    back = pd.read_csv("daxfs:///pandas/frame.csv", storage_options=options)
    pd.testing.assert_frame_equal(back, frame)
    frame.to_csv("daxfs:///pandas/frame.csv.gz", index=False, storage_options=options)
    assert fs.cat("/pandas/frame.csv.gz")[:2] == b"\x1f\x8b"              # gzip, by suffix
    pd.testing.assert_frame_equal(pd.read_csv("daxfs:///pandas/frame.csv.gz",
                                              storage_options=options), frame)


def test_pyarrow_dataset_over_a_directory_of_parquet_files(fs: Any) -> None:
    frames = [_frame(300).assign(part=i) for i in range(4)]
    for i, frame in enumerate(frames):
        with fs.open(f"/ds/part-{i}.parquet", "wb", buffering=0) as f:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), f)
    dataset = pads.dataset("/ds", filesystem=fs, format="parquet")
    assert sorted(dataset.files) == [f"/ds/part-{i}.parquet" for i in range(4)]
    table = dataset.to_table(filter=pads.field("group") == "g1", columns=["id", "part"])
    expected = pd.concat(frames)
    expected = expected[expected.group == "g1"][["id", "part"]]
    assert sorted(zip(table.column("id").to_pylist(), table.column("part").to_pylist())) == \
        sorted(zip(expected.id, expected.part))
    # and written the other way: a partitioned dataset laid out by pyarrow in the volume
    pads.write_dataset(pa.Table.from_pandas(pd.concat(frames), preserve_index=False), "/hive",
                       filesystem=fs, format="parquet", partitioning=["group"],
                       partitioning_flavor="hive")
    assert sorted(fs.ls("/hive", detail=False)) == [f"/hive/group=g{i}" for i in range(4)]
    assert pads.dataset("/hive", filesystem=fs, partitioning="hive").count_rows() == 1200


def test_zarr_v3_array_through_a_daxfs_store(pool: str, fs: Any) -> None:
    zarr = pytest.importorskip("zarr")
    assert int(zarr.__version__.split(".")[0]) >= 3
    data = np.arange(120 * 80, dtype="f4").reshape(120, 80)
    options = {"pool": pool}
    array = zarr.create_array("daxfs:///zarr/a.zarr", shape=data.shape, chunks=(32, 32),
                              dtype="f4", storage_options=options)
    array[:] = data
    assert fs.isfile("/zarr/a.zarr/zarr.json")
    chunks = [path for path in fs.find("/zarr/a.zarr") if "/c/" in path]
    assert len(chunks) == 4 * 3                       # one object per chunk, in the volume
    again = zarr.open_array("daxfs:///zarr/a.zarr", mode="r", storage_options=options)
    assert np.array_equal(again[:], data) and again[100, 7] == data[100, 7]
    group = zarr.open_group("daxfs:///zarr/g.zarr", mode="w", storage_options=options)
    group.create_array("b", shape=(10,), dtype="i8")[:] = np.arange(10)
    assert np.array_equal(zarr.open_group("daxfs:///zarr/g.zarr", mode="r",
                                          storage_options=options)["b"][:], np.arange(10))


def test_dask_read_parquet(pool: str, fs: Any) -> None:
    dd = pytest.importorskip("dask.dataframe")
    frames = [_frame(250).assign(part=i) for i in range(3)]
    for i, frame in enumerate(frames):
        frame.to_parquet(f"daxfs:///dask/part.{i}.parquet", storage_options={"pool": pool})
    ddf = dd.read_parquet("daxfs:///dask", storage_options={"pool": pool})
    assert ddf.npartitions >= 1
    # threads of dask's scheduler each get their fsspec instance; all share the one volume
    total = ddf.groupby("group").x.sum().compute(scheduler="threads")
    expected = pd.concat(frames).groupby("group").x.sum()
    assert total.to_dict() == pytest.approx(expected.to_dict())     # string dtypes may differ
    ddf.assign(y=ddf.x * 2).to_parquet("daxfs:///dask-out", storage_options={"pool": pool})
    assert fs.glob("/dask-out/*.parquet")
    out = dd.read_parquet("daxfs:///dask-out", storage_options={"pool": pool}).compute()
    assert np.allclose(out.sort_values("id").y.to_numpy(),
                       pd.concat(frames).sort_values("id").x.to_numpy() * 2)


def test_universal_pathlib_over_daxfs(pool: str, fs: Any) -> None:
    upath = pytest.importorskip("upath")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # no "not explicitly implemented" fallback
        root = upath.UPath("daxfs:///", pool=pool)
    assert type(root).__name__ == "DaxfsPath" and root.path == "/"
    notes = root / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("alpha")
    (notes / "b.bin").write_bytes(b"\x00\x01")
    assert sorted(p.name for p in notes.iterdir()) == ["a.txt", "b.bin"]
    assert [str(p) for p in root.glob("**/*.txt")] == ["daxfs:///notes/a.txt"]
    assert (notes / "a.txt").read_text() == "alpha" and (notes / "b.bin").stat().st_size == 2
    (notes / "a.txt").rename(notes / "c.txt")
    assert fs.cat("/notes/c.txt") == b"alpha" and not (notes / "a.txt").exists()
    (notes / "c.txt").unlink()
    assert fs.ls("/notes", detail=False) == ["/notes/b.bin"]
