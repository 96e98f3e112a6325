"""A mount for the FUSE tests: ``daxfs serve POOL --mount DIR`` in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import daxfs
from daxfs.adapters.fuse_mount import fuse_available

#: Why no FUSE mount can exist here (None: one can).
WHY = fuse_available()
SUITE_POOL = 16 << 20


class Mounted:
    """``daxfs serve POOL --mount ROOT`` in a process of its own (as users run it: this process
    only makes syscalls on the mount, and reads what only the volume can say through a client
    of the same arbiter)."""

    def __init__(self, pool: str, root: str, *args: str) -> None:
        self.pool = pool
        self.root = root
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.client: Any = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "daxfs", "serve", self.pool, "--mount", self.root,
                                         *self.args], stderr=subprocess.PIPE)
        for _ in range(6000):                   # a hang detector bounded by a count, not by the clock
            if os.path.ismount(self.root) and os.path.exists(self.pool + ".sock"):
                break
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        if not (os.path.ismount(self.root) and os.path.exists(self.pool + ".sock")):
            self.process.kill()
            raise AssertionError(f"daxfs serve --mount did not come up: {self.process.communicate()[1]!r}")
        self.client = daxfs.connect(self.pool, name="test")

    def stop(self) -> None:
        assert self.process is not None
        self.client.close()
        self.process.terminate()
        try:
            _out, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            subprocess.run([sys.executable, "-m", "daxfs", "umount", "-l", self.root], check=False)
            raise AssertionError("daxfs serve --mount did not stop on SIGTERM") from None
        assert self.process.returncode == 0, err
        assert not os.path.ismount(self.root)
        self.process = None


@pytest.fixture
def pool_path(request: pytest.FixtureRequest) -> Iterator[str]:
    path = f"/dev/shm/daxfs-fuse-{os.getpid()}-{uuid.uuid4().hex}.pool"
    daxfs.mkfs(path, getattr(request, "param", SUITE_POOL)).close()
    yield path
    for leftover in (path, path + ".sock", path + ".holders"):
        if os.path.exists(leftover):
            os.unlink(leftover)


@pytest.fixture
def mount_dir() -> Iterator[str]:
    """An empty directory every user can reach (pytest's own are root's alone)."""
    import shutil
    import tempfile
    parent = tempfile.mkdtemp(prefix="daxfs-fuse-")
    os.chmod(parent, 0o755)
    os.mkdir(f"{parent}/mnt")
    yield f"{parent}/mnt"
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def mounted(pool_path: str, mount_dir: str) -> Iterator[Mounted]:
    running = Mounted(pool_path, mount_dir)
    yield running
    if running.process is not None:
        running.stop()
