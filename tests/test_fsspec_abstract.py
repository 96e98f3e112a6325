"""fsspec's own abstract test suites on ``daxfs://``.

fsspec ships the behaviour every implementation must show for copy, get, put,
open and pipe as abstract classes in ``fsspec.tests.abstract``; each is run
here with the fixtures they require, on an embedded volume and on a pool served
by an arbiter.  Suites a later fsspec adds are picked up by name.
"""

from __future__ import annotations

import os
import posixpath
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import fsspec.tests.abstract as abstract
import pytest

import daxfs
from daxfs.adapters.fsspec_fs import DaxFileSystem
from daxfs.adapters.server import Server

pytestmark = pytest.mark.usefixtures("daxfs_protocol")

SUITES = sorted(name for name in dir(abstract) if name.startswith("Abstract") and name.endswith("Tests"))


def test_the_suites_fsspec_ships_are_all_run() -> None:
    # A rename in fsspec must not quietly leave a suite out.
    assert {"AbstractCopyTests", "AbstractGetTests", "AbstractPutTests", "AbstractOpenTests",
            "AbstractPipeTests"} <= set(SUITES)
    assert all(f"TestEmbedded{name[len('Abstract'):-len('Tests')]}" in globals() for name in SUITES)


class _Fixtures(abstract.AbstractFixtures):  # type: ignore[misc]
    """The fixtures the abstract suites leave to the implementation."""

    served = False

    @pytest.fixture(scope="class")
    @classmethod
    def pool(cls) -> Iterator[str]:
        path = f"/dev/shm/daxfs-fsspec-suite-{os.getpid()}-{uuid.uuid4().hex}.pool"
        daxfs.mkfs(path, 64 << 20).close()
        server = None
        if cls.served:
            server = Server(path, log=None)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
        yield path
        DaxFileSystem.clear_instance_cache()
        if server is not None:
            assert server.stop(), "the arbiter refused to stop"
            thread.join(5)
        for leftover in (path, path + ".sock", path + ".holders"):
            if os.path.exists(leftover):
                os.unlink(leftover)

    @pytest.fixture
    def fs(self, pool: str) -> Any:
        fs = fsspec.filesystem("daxfs", pool=pool)
        kind = daxfs.Client if self.served else daxfs.Volume
        assert isinstance(fs.volume, kind)
        return fs

    @pytest.fixture
    def fs_join(self) -> Any:
        return posixpath.join

    @pytest.fixture
    def fs_path(self, fs: Any) -> Iterator[str]:
        path = f"/suite-{uuid.uuid4().hex[:8]}"
        yield path
        if fs.exists(path):
            fs.rm(path, recursive=True)


class _Served(_Fixtures):
    served = True


for _name in SUITES:
    _short = _name[len("Abstract"):-len("Tests")]
    for _prefix, _base in (("Embedded", _Fixtures), ("Served", _Served)):
        _cls = type(f"Test{_prefix}{_short}", (_base, getattr(abstract, _name)), {})
        globals()[_cls.__name__] = _cls
