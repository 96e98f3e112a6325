"""Fixtures shared by the test modules of the fsspec front end and the real clients."""

from __future__ import annotations

import importlib.metadata
import os
import time
import uuid
from collections.abc import Iterator

import pytest

import daxfs


def entry_point_installed(group: str = "fsspec.specs") -> bool:
    """Whether the installed daxfs declares its entry point in ``group``."""
    return any(ep.name == "daxfs" for ep in importlib.metadata.entry_points(group=group))


@pytest.fixture(scope="session")
def daxfs_protocol() -> None:
    """``daxfs://`` known to fsspec (and to universal_pathlib).

    CI installs daxfs, so fsspec finds the protocol through the entry point, as users do.
    A checkout run against a daxfs installed from elsewhere (an editable install made
    before the entry points existed) registers the classes here so the other tests still
    run; ``test_fsspec.py::test_*entry_point*`` checks the real route.
    """
    import fsspec

    if not entry_point_installed():
        fsspec.register_implementation("daxfs", "daxfs.adapters.fsspec_fs.DaxFileSystem",
                                       clobber=True)
    if not entry_point_installed("universal_pathlib.implementations"):
        from upath.registry import register_implementation

        register_implementation("daxfs", "daxfs.adapters.upath_path.DaxfsPath", clobber=True)


@pytest.fixture
def shm_pool() -> Iterator[str]:
    """A fresh 64 MiB pool in /dev/shm, removed with whatever an arbiter left beside it."""
    path = f"/dev/shm/daxfs-fsspec-{os.getpid()}-{uuid.uuid4().hex}.pool"
    daxfs.mkfs(path, 64 << 20).close()
    yield path
    for leftover in (path, path + ".sock", path + ".holders"):
        if os.path.exists(leftover):
            os.unlink(leftover)


@pytest.fixture
def served_pool(shm_pool: str) -> Iterator[str]:
    """``shm_pool`` with an arbiter serving it (``daxfs serve``) on threads of this process."""
    import threading

    from daxfs.adapters.server import Server

    server = Server(shm_pool, log=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield shm_pool
    # A client that has just disconnected is let go of by the arbiter's session thread:
    # give it a moment before calling a refusal to stop a leak.
    for _ in range(100):
        if server.stop():
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the arbiter refused to stop: a client still holds a reference")
    thread.join(5)
