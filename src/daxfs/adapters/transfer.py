"""Moving bytes in, out of and between pools: ``put``, ``get``, ``cat``, ``cp``.

Copies go in ``COPY_CHUNK`` pieces with a progress bar on a terminal; a copy
inside one pool shares blocks (``clone_file``) unless asked not to.

Progress is reported through one small interface, fsspec's ``Callback``
(``set_size``, ``relative_update``): ``copy_stream`` takes any object with it.
The command line passes a ``TerminalProgress`` (a tqdm bar on a terminal); the
fsspec front end passes the caller's callback (``TqdmCallback`` and friends)
as it is, so both move bytes through the same loop.
"""

from __future__ import annotations

import argparse
import errno
import os
import posixpath
import sys
from types import TracebackType
from typing import IO, TYPE_CHECKING, Protocol

from tqdm import tqdm

import daxfs
from daxfs.adapters.poolpaths import open_pool, pool_spec, same_file, split_pool_path, target_in_dir

if TYPE_CHECKING:
    from daxfs._types import Stat

__all__ = ["COPY_CHUNK", "CLONE_IMPOSSIBLE", "Progress", "TerminalProgress", "copy_stream",
           "cmd_put", "cmd_get", "cmd_cat", "cmd_cp"]

# Large enough that per-call overhead vanishes against the copy, small enough
# that the progress bar moves and memory stays flat.
COPY_CHUNK = 4 * 1024 * 1024
EXIT_OK = 0


class Progress(Protocol):
    """What a copy reports to: the two methods of ``fsspec.callbacks.Callback`` it calls."""

    def set_size(self, size: int | None) -> None: ...

    def relative_update(self, inc: int = 1) -> None: ...


class TerminalProgress:
    """The command line's bar: a ``Progress`` drawn by tqdm on stderr, when that is a terminal."""

    def __init__(self, description: str, stream: IO[str] | None = None) -> None:
        self.description = description
        self.stream = sys.stderr if stream is None else stream
        self.bar: tqdm | None = None        # drawn once the size is known, so drawn once

    def set_size(self, size: int | None) -> None:
        if self.bar is None:
            # A bar on a pipe or in a log file is noise, so it only appears on a terminal.
            self.bar = tqdm(total=size, desc=self.description, unit="B", unit_scale=True,
                            unit_divisor=1024, file=self.stream, leave=False,
                            disable=not self.stream.isatty())
        else:
            self.bar.total = size
            self.bar.refresh()

    def relative_update(self, inc: int = 1) -> None:
        if self.bar is None:
            self.set_size(None)
        assert self.bar is not None
        self.bar.update(inc)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def _write_all(sink: IO[bytes], data: memoryview) -> None:
    # RawIOBase.write may store fewer bytes than asked; the rest must follow.
    while data:
        written = sink.write(data)
        if not written:
            raise OSError(errno.EIO, "write stored no bytes")
        data = data[written:]


def copy_stream(source: IO[bytes], sink: IO[bytes], *, total: int | None,
                progress: Progress | None = None) -> int:
    """Copy ``source`` to EOF into ``sink`` in COPY_CHUNK pieces; returns bytes copied.

    ``progress`` hears the expected ``total`` first, then every chunk as it lands.
    """
    buffer = bytearray(COPY_CHUNK)
    view = memoryview(buffer)
    copied = 0
    if progress is not None:
        progress.set_size(total)
    while True:
        count = source.readinto(view)
        if not count:
            break
        _write_all(sink, view[:count])
        copied += count
        if progress is not None:
            progress.relative_update(count)
    return copied


def _copy_stream(source: IO[bytes], sink: IO[bytes], total: int | None, description: str) -> int:
    with TerminalProgress(description) as bar:
        return copy_stream(source, sink, total=total, progress=bar)


def cmd_put(args: argparse.Namespace) -> int:
    pool, path = split_pool_path(args.target)
    # Open the local file first: a typo there must not create an empty file in the pool.
    with open(args.local, "rb") as source:
        total = os.fstat(source.fileno()).st_size
        with open_pool(pool) as vol:
            path = target_in_dir(vol, path, os.path.basename(os.path.normpath(args.local)))
            with vol.open(path, "wb", buffering=0) as sink:
                _copy_stream(source, sink, total, f"put {path}")
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    pool, path = split_pool_path(args.source)
    with open_pool(pool, readonly=True) as vol, vol.open(path, "rb", buffering=0) as source:
        total = source.stat().st_size
        local = args.local
        if os.path.isdir(local):
            local = os.path.join(local, posixpath.basename(path.rstrip("/")))
        if os.path.exists(local) and same_file(local, pool):
            raise OSError(errno.EINVAL, "refusing to overwrite the pool with a file from it", local)
        # Opened only once the source is known good, so a bad source leaves no empty local file.
        existed = os.path.exists(local)
        try:
            with open(local, "wb") as sink:
                _copy_stream(source, sink, total, f"get {path}")
        except OSError:
            # e.g. a poisoned range (EIO): no partial copy is left to pass for the file
            if not existed:
                os.unlink(local)
            raise
    return EXIT_OK


def cmd_cat(args: argparse.Namespace) -> int:
    pool, path = split_pool_path(args.source)
    with open_pool(pool, readonly=True) as vol, vol.open(path, "rb", buffering=0) as source:
        stdout = sys.stdout.buffer
        buffer = bytearray(COPY_CHUNK)
        view = memoryview(buffer)
        while count := source.readinto(view):
            stdout.write(view[:count])
        stdout.flush()
    return EXIT_OK


# Errors that say "this pair cannot share blocks" (so copy the bytes), not "this copy fails".
CLONE_IMPOSSIBLE = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV,
                              errno.EBUSY, errno.ENOSYS, errno.ENOTTY, errno.ETXTBSY})


def _source_file(vol: daxfs.Volume, path: str) -> Stat:
    st = vol.stat(path)
    if st.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory (cp copies files)", path)
    return st


def cmd_cp(args: argparse.Namespace) -> int:
    """Copy a file inside a pool (a reflink by default), between pools, or in or out of one."""
    source, destination = pool_spec(args.source), pool_spec(args.destination)
    if source is None and destination is None:
        raise OSError(errno.EINVAL, "neither SRC nor DST is POOL:PATH: daxfs cp copies inside, "
                      "between, into or out of pools")
    if source is not None and destination is not None:
        if source[0] == destination[0] or same_file(source[0], destination[0]):
            return _copy_in_pool(source[0], source[1], destination[1], args.reflink)
        if args.reflink == "always":
            raise OSError(errno.EXDEV, "cannot reflink between pools", args.source, None,
                          args.destination)
        return _copy_between_pools(source, destination)
    if args.reflink == "always":
        raise OSError(errno.EXDEV, "cannot reflink to or from a local file: --reflink=always "
                      "needs SRC and DST in one pool", args.source, None, args.destination)
    if source is None:
        assert destination is not None
        if same_file(args.source, destination[0]):
            raise OSError(errno.EINVAL, "cannot copy a pool into itself", args.source)
        return cmd_put(argparse.Namespace(local=args.source, target=args.destination))
    local = args.destination
    if os.path.isdir(local):
        local = os.path.join(local, posixpath.basename(source[1].rstrip("/")))
    if same_file(local, source[0]):
        # Opening it for writing would truncate the pool under its own mapping.
        raise OSError(errno.EINVAL, "is the pool itself; write POOL:PATH to copy inside it", local)
    return cmd_get(argparse.Namespace(source=args.source, local=args.destination))


def _copy_in_pool(pool: str, source: str, destination: str, reflink: str) -> int:
    with open_pool(pool) as vol:
        st = _source_file(vol, source)
        destination = target_in_dir(vol, destination, posixpath.basename(source.rstrip("/")))
        existed = vol.exists(destination)
        if existed and vol.stat(destination).st_ino == st.st_ino:
            raise OSError(errno.EINVAL, f"{source} and {destination} are the same file")
        if reflink != "never":
            try:
                vol.clone_file(source, destination)
                return EXIT_OK
            except OSError as error:
                if reflink == "always" or error.errno not in CLONE_IMPOSSIBLE:
                    if reflink == "always" and not existed and vol.exists(destination):
                        vol.unlink(destination)      # leave no empty file behind a failed clone
                    raise
        try:
            with vol.open(source, "rb", buffering=0) as reader, vol.open(destination, "wb", buffering=0) as writer:
                _copy_stream(reader, writer, st.st_size, f"cp {destination}")
        except OSError:
            if not existed and vol.exists(destination):
                vol.unlink(destination)         # no partial copy (a poisoned source, a full pool)
            raise
    return EXIT_OK


def _copy_between_pools(source: tuple[str, str], destination: tuple[str, str]) -> int:
    # The source is opened first: a bad source must not create anything in the destination pool.
    with open_pool(source[0], readonly=True) as src_vol:
        st = _source_file(src_vol, source[1])
        with src_vol.open(source[1], "rb", buffering=0) as reader, open_pool(destination[0]) as dst_vol:
            path = target_in_dir(dst_vol, destination[1], posixpath.basename(source[1].rstrip("/")))
            existed = dst_vol.exists(path)
            try:
                with dst_vol.open(path, "wb", buffering=0) as writer:
                    _copy_stream(reader, writer, st.st_size, f"cp {path}")
            except OSError:
                if not existed and dst_vol.exists(path):
                    dst_vol.unlink(path)        # no partial copy (a poisoned source, a full pool)
                raise
    return EXIT_OK
