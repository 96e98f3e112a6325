"""From a path to a mounted ``Volume``: ``open_volume`` and ``mkfs``.

Both check every argument before the pool is touched; ``mkfs`` never removes or
reformats a file it did not make unless told to (``force``), and removes a file it
made if formatting fails.
"""

from __future__ import annotations

import errno
import os
import stat as st

from daxfs.core.namespace import fspath
from daxfs.errors import describe_bytes, fs_error
from daxfs.format.layout import Layout
from daxfs.media import FilePool
from daxfs.volume import arguments
from daxfs.volume.holders import refuse_live_holders
from daxfs.volume.mount import held_elsewhere, open_pool
from daxfs.volume.references import POLICIES, check_policy
from daxfs.volume.volume import DURABILITIES, Volume


def open_volume(path: object, *, readonly: bool = False, policy: str = "defer", durability: str = "sync",
                lease_break_s: float = 45.0, discard: bool | None = None) -> Volume:
    """Mount the volume in the pool at ``path``.

    One process may open a pool read-write at a time (BusyError names the
    holder).  Read-only opens work beside it and follow it: each call first
    catches up with the records the writer has logged, so they see its changes
    as another process on the same mount would.  ``discard``: give freed blocks'
    memory back as they are freed (None: where the pool is memory — tmpfs,
    hugetlbfs; False: only at ``trim``).  A read-write open is refused (BusyError)
    while clients of an arbiter that stopped still hold blocks of the pool.
    """
    return _open(path, readonly, policy, durability, lease_break_s, discard, keeps_holders=False)


def open_keeping_holders(path: object, *, policy: str = "defer", durability: str = "sync",
                         lease_break_s: float = 45.0, discard: bool | None = None) -> Volume:
    """``open_volume`` read-write for the arbiter, which reads the holder table itself and
    keeps what its live slots hold (``Server._inherit``)."""
    return _open(path, False, policy, durability, lease_break_s, discard, keeps_holders=True)


def _open(path: object, readonly: bool, policy: str, durability: str, lease_break_s: float,
          discard: bool | None, *, keeps_holders: bool) -> Volume:
    check_policy(policy)
    if policy is None:
        raise ValueError("policy must be one of " + ", ".join(POLICIES))
    if durability not in DURABILITIES:
        raise ValueError(f"unknown durability {durability!r}; expected 'sync' or 'lazy'")
    if isinstance(lease_break_s, (str, bytes)) or lease_break_s is None:
        raise TypeError(f"lease_break_s must be a number of seconds, not {type(lease_break_s).__name__}")
    if not lease_break_s >= 0:
        raise ValueError("lease_break_s must be >= 0")
    p = fspath(path)
    pool = open_pool(p, readonly)
    try:
        if not readonly and not keeps_holders:
            refuse_live_holders(p)
        return Volume.mount(pool, readonly=readonly, policy=policy, durability=durability,
                            lease_break_s=float(lease_break_s), discard=discard)
    except BaseException:
        pool.close()
        raise


def mkfs(path: object, size: int | None = None, *, block_size: int = 4096, force: bool = False,
         sparse: bool = False, discard: bool | None = None) -> Volume:
    """Format a pool and return it opened read-write.

    A new path becomes a preallocated file of ``size`` bytes (``sparse``: only its
    metadata is; data blocks take memory as they are handed out, ENOSPC when the
    file system has none left).  An existing file or device is formatted in place
    (``size`` None: all of it); an existing daxfs volume, or a non-empty regular
    file, needs ``force=True``.  ``discard`` as for ``open_volume``.
    """
    p = fspath(path)
    if size is not None:
        size = arguments.integer(size)
        if size <= 0:
            raise fs_error(errno.EINVAL, p, "size must be a positive number of bytes")
    block_size = arguments.integer(block_size)
    try:
        existing = os.stat(p)
    except FileNotFoundError:
        existing = None
    if existing is None and size is None:
        raise fs_error(errno.EINVAL, p, "size is needed to create a new pool")
    regular = existing is None or st.S_ISREG(existing.st_mode)
    if existing is not None and not force:
        with open(p, "rb") as fh:
            head = fh.read(8)
        if head[:8] == b"DAXFS\x00SB":
            raise fs_error(errno.EEXIST, p, "already a daxfs volume (force=True formats it again)")
        if regular and existing.st_size > 0:
            raise fs_error(errno.EEXIST, p, "file exists and is not empty (force=True formats it)")
    if existing is not None and st.S_ISDIR(existing.st_mode):
        raise fs_error(errno.EISDIR, p)
    target = size if size is not None else existing.st_size  # type: ignore[union-attr]
    if sparse and not regular:
        raise fs_error(errno.EINVAL, p, "a sparse pool must be a regular file (tmpfs, hugetlbfs, a file system)")
    if regular:
        layout = Layout.compute(target, block_size)      # EINVAL before anything is created
    try:
        # A new file is made with O_EXCL, so the cleanup below can never remove one that
        # appeared meanwhile; FilePool removes it itself if it fails to map it.
        # (force reformats a volume, never memory a process still shows: checked under the lock,
        # so no arbiter can start and hand blocks out between the check and the format)
        pool = FilePool(p, create_size=target if regular else None, exclusive_create=existing is None,
                        lock=True, preallocate=not sparse,
                        locked_check=None if existing is None else lambda: refuse_live_holders(p))
    except BlockingIOError:
        raise held_elsewhere(p) from None
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise fs_error(errno.ENOSPC, p, f"no space left on device: asked for {describe_bytes(target)}, "
                       f"{describe_bytes(_fs_free(p))} free there") from None
    try:
        if sparse:
            pool.reserve(0, layout.data_offset)     # metadata is never a hole
        Volume.format(pool, block_size=block_size)
        return Volume.mount(pool, discard=discard)
    except BaseException:
        pool.close()
        if existing is None:
            os.unlink(p)
        raise


def _fs_free(path: str) -> int:
    """Bytes an unprivileged writer may still allocate on the file system holding ``path``."""
    try:
        fs = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return 0
    return fs.f_bavail * fs.f_frsize


__all__ = ["open_volume", "mkfs"]
