"""One volume per pool per process, shared by every front end object that names the pool.

A pool has one writer: an embedded read-write open takes the pool's lock, and a
second open of the same pool, even in the same process, gets ``BusyError``.
Libraries that reach storage by URL (fsspec, and pandas, zarr, dask through it)
build file system objects freely — fsspec caches them per thread and per
storage options — so each of them opening the pool itself would fail from the
second one on.  They ``acquire`` the pool here instead: the first user opens it
(through its arbiter when ``daxfs serve`` runs for it, else embedded), later
users share that volume, and the last ``release`` closes it.

What is left open at interpreter exit is closed then, forcibly if arrays or
tables still point into it (their mappings are migrated to private memory).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Any

import daxfs
from daxfs.adapters.client import connect
from daxfs.adapters.wire import ServerLost, default_socket

__all__ = ["PoolKey", "acquire", "release", "shared_count"]

# (st_dev, st_ino) of the pool file, and whether it is open read-only: the same pool named
# by two spellings of its path is one pool.
PoolKey = tuple[int, int, bool]


@dataclass
class _Shared:
    volume: Any             # a daxfs.Volume, or a daxfs.Client when an arbiter serves the pool
    users: int


_lock = threading.Lock()
_open: dict[PoolKey, _Shared] = {}
# The process the entries belong to.  A forked child inherits them but must not use them
# (two processes writing through one volume's in-memory state) nor close them at exit.
_pid = os.getpid()


def _entries() -> dict[PoolKey, _Shared]:
    global _pid
    if _pid != os.getpid():
        _open.clear()
        _pid = os.getpid()
    return _open


def _key(pool: str, readonly: bool) -> PoolKey:
    st = os.stat(pool)      # FileNotFoundError for a pool that does not exist, as open_volume
    return (st.st_dev, st.st_ino, bool(readonly))


def _usable(volume: Any) -> bool:
    # A client whose arbiter went away stays lost; a new user must reach the new arbiter.
    return not (getattr(volume, "closed", False) or getattr(volume, "lost", False))


def _served(pool: str, name: str) -> Any:
    """A client of the arbiter serving ``pool``, or None when none listens."""
    sock = default_socket(pool)
    if not os.path.exists(sock):
        return None
    try:
        return connect(sock, name=name)
    except ServerLost:
        return None             # a socket left behind by an arbiter that died


def _open_pool(pool: str, readonly: bool, name: str, options: dict[str, Any]) -> Any:
    served = _served(pool, name)
    if served is not None:
        return served
    try:
        return daxfs.open_volume(pool, readonly=readonly, **options)
    except daxfs.BusyError as error:
        if os.getpid() in error.holders:
            error.strerror = (f"{error.strerror}: this process opened it itself; pass that "
                              "volume (volume=vol) instead of the pool, or serve the pool "
                              "(daxfs serve POOL)")
        raise


def acquire(pool: str, *, readonly: bool = False, name: str | None = None,
            options: dict[str, Any] | None = None) -> tuple[PoolKey, Any]:
    """The volume in ``pool`` for one more user: ``(key, volume)``; give ``key`` to ``release``.

    ``options`` (policy, durability, lease_break_s) apply when this call opens the pool
    embedded; a pool already open here, or served, keeps the options it has.
    """
    key = _key(pool, readonly)
    with _lock:
        entries = _entries()
        shared = entries.get(key)
        if shared is not None:
            if _usable(shared.volume):
                shared.users += 1
                return key, shared.volume
            with contextlib.suppress(Exception):   # lost: its users get ServerLost anyway
                shared.volume.close(force=True, timeout=0)
        volume = _open_pool(pool, readonly, name or f"daxfs front end (pid {os.getpid()})",
                            dict(options or {}))
        entries[key] = _Shared(volume, 1)
        return key, volume


def release(key: PoolKey, volume: Any) -> None:
    """One user fewer of ``volume``; the last one closes it.

    A volume with mappings still alive (arrays or tables from it) stays open; it is
    closed at exit.
    """
    with _lock:
        entries = _entries()
        shared = entries.get(key)
        if shared is None or shared.volume is not volume:
            return              # replaced after its arbiter was lost, or another process's
        shared.users -= 1
        if shared.users > 0:
            return
        try:
            volume.close()
        except daxfs.BusyError:
            shared.users = 0    # kept for exit, or for the next user
            return
        del entries[key]


def shared_count(pool: str, readonly: bool = False) -> int:
    """How many users share ``pool`` now (0: not open through here)."""
    try:
        key = _key(pool, readonly)
    except OSError:
        return 0
    with _lock:
        shared = _entries().get(key)
        return 0 if shared is None else shared.users


@atexit.register
def _close_all() -> None:
    with _lock:
        for shared in _entries().values():
            with contextlib.suppress(Exception):
                shared.volume.close(force=True, timeout=0)
        _open.clear()
