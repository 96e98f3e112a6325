"""The shipped VolumeSuite on a client of the arbiter: every behaviour the embedded volume
shows, through ``daxfs.connect`` (the server runs in this process on its own threads).

``reopen`` stops the arbiter cleanly, starts a new one on the same pool and connects
again, so what survives a reopen has been through the pool, not the server's memory.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import daxfs
from daxfs.adapters.client import connect
from daxfs.adapters.server import Server
from daxfs.testing.suite import VolumeSuite

SUITE_POOL = 16 << 20


class Arbiter:
    """An arbiter on its own threads in this process."""

    def __init__(self, pool: str, **options: Any) -> None:
        self.pool = pool
        self.options = options
        self.server: Server | None = None
        self.start()

    def start(self) -> None:
        self.server = Server(self.pool, log=None, **self.options)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        assert self.server is not None
        assert self.server.stop(), "the arbiter refused to stop"
        self.thread.join(5)
        self.server = None

    def connect(self, name: str | None = None) -> Any:
        return connect(self.pool, name=name)


@pytest.fixture
def pool_path() -> Iterator[str]:
    path = f"/dev/shm/daxfs-client-{os.getpid()}-{uuid.uuid4().hex}.pool"
    daxfs.mkfs(path, SUITE_POOL).close()
    yield path
    for leftover in (path, path + ".sock", path + ".holders"):
        if os.path.exists(leftover):
            os.unlink(leftover)


@pytest.fixture
def arbiter(pool_path: str) -> Iterator[Arbiter]:
    running = Arbiter(pool_path)
    yield running
    if running.server is not None:
        running.stop()


class TestClientVolume(VolumeSuite):
    """The suite through a connected client."""

    @pytest.fixture
    def mounted(self, arbiter: Arbiter) -> Iterator[dict[str, Any]]:
        held = {"vol": arbiter.connect("suite")}
        yield held
        held["vol"].close()

    @pytest.fixture
    def volume(self, mounted: dict[str, Any]) -> Any:
        return mounted["vol"]

    @pytest.fixture
    def reopen(self, mounted: dict[str, Any], arbiter: Arbiter) -> Callable[[Any], Any]:
        def reopen(vol: Any) -> Any:
            vol.close()
            arbiter.stop()
            arbiter.start()
            mounted["vol"] = arbiter.connect("suite")
            return mounted["vol"]
        return reopen
