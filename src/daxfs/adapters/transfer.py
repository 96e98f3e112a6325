"""Moving bytes in, out of and between pools: ``put``, ``get``, ``cat``, ``cp``.

Copies go in ``COPY_CHUNK`` pieces with a progress bar on a terminal; a copy
inside one pool shares blocks (``clone_file``) unless asked not to.  A file
written into a pool is written under a temporary name beside it and renamed
over the destination at the end (``replacing``), so a failed or interrupted
copy leaves the destination as it was and nothing half-written.

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
import secrets
import stat as stat_mode
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol

from tqdm import tqdm

from daxfs.adapters.poolpaths import is_dir, open_pool, pool_spec, same_file, split_pool_path, target_in_dir
from daxfs.errors import describe_bytes

if TYPE_CHECKING:
    from daxfs._types import Stat

__all__ = ["COPY_CHUNK", "CLONE_IMPOSSIBLE", "STDIO", "TEMP_MARK", "Progress", "TerminalProgress", "copy_stream",
           "replacing", "temp_name", "check_room", "put_file", "get_file", "copy", "need_directory",
           "cmd_put", "cmd_get", "cmd_cat", "cmd_cp"]

# Large enough that per-call overhead vanishes against the copy, small enough
# that the progress bar moves and memory stays flat.
COPY_CHUNK = 4 * 1024 * 1024
EXIT_OK = 0
STDIO = "-"                 # a LOCAL of "-" is stdin or stdout


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


# ---------------------------------------------------------------- writing a file whole

TEMP_MARK = ".daxfs-tmp-"


def temp_name(path: str) -> str:
    """A name beside ``path`` for its new contents: ``.NAME.daxfs-tmp-<16 hex digits>``
    (random, so it cannot meet another's; NAME shortened to keep it a legal name)."""
    directory, name = posixpath.split(path)
    stem = name.encode("utf-8", "surrogateescape")[:200].decode("utf-8", "ignore")
    return posixpath.join(directory, f".{stem}{TEMP_MARK}{secrets.token_hex(8)}")


@contextmanager
def replacing(vol: Any, path: str) -> Iterator[str]:
    """Make a new ``path`` in ``vol`` whole or not at all: yields a temporary name beside it
    to write, then renames it over ``path`` (keeping the mode of the file it replaces).
    On any failure, Ctrl-C included, the temporary is removed and ``path`` is as it was."""
    temp = temp_name(path)
    try:
        yield temp
        try:
            old = vol.stat(path)
        except (OSError, ValueError):
            old = None
        if old is not None and old.is_file():
            vol.chmod(temp, stat_mode.S_IMODE(old.st_mode))
        vol.rename(temp, path)
    except BaseException as error:
        try:
            vol.unlink(temp)
        except (OSError, ValueError):
            pass                        # never made, or the volume is gone with the error
        if isinstance(error, OSError) and error.filename == temp:
            error.filename = path       # the user named path, not the temporary
            if error.filename2 == path:
                error.filename2 = None
        raise



def check_room(vol: Any, path: str, total: int | None) -> None:
    """ENOSPC before anything is written when ``total`` bytes cannot fit in the pool's free space."""
    if total is None:
        return
    fs = vol.statfs()
    need = -(-total // fs.block_size) * fs.block_size
    if need > fs.free:
        raise OSError(errno.ENOSPC, f"no space left in the pool: asked for {describe_bytes(need)}, "
                      f"{describe_bytes(fs.free)} free", path)


# ---------------------------------------------------------------- one file


@contextmanager
def _local_source(local: str) -> Iterator[tuple[IO[bytes], int | None]]:
    """A local file to read (``-``: stdin), and its size when it has one."""
    if local == STDIO:
        stdin = sys.stdin.buffer
        yield stdin, _regular_size(stdin)
        return
    with open(local, "rb") as source:
        yield source, _regular_size(source)


def _regular_size(source: IO[bytes]) -> int | None:
    try:
        st = os.fstat(source.fileno())
        return st.st_size - source.tell() if stat_mode.S_ISREG(st.st_mode) else None
    except (OSError, ValueError):
        return None                     # a pipe, or no descriptor (stdin replaced in tests)


def put_file(vol: Any, local: str, path: str) -> None:
    """Copy the local file ``local`` (``-``: stdin) to ``path`` in ``vol``, whole or not at all."""
    with _local_source(local) as (source, total):
        check_room(vol, path, total)
        with replacing(vol, path) as temp, vol.open(temp, "xb", buffering=0) as sink:
            _copy_stream(source, sink, total, f"put {path}")


def get_file(vol: Any, pool: str, path: str, local: str) -> None:
    """Copy ``path`` in ``vol`` to the local file ``local`` (``-``: stdout; a directory: into it)."""
    with vol.open(path, "rb", buffering=0) as source:
        total = source.stat().st_size
        if local == STDIO:
            _copy_stream(source, sys.stdout.buffer, total, f"get {path}")
            sys.stdout.buffer.flush()
            return
        if os.path.isdir(local):
            local = os.path.join(local, posixpath.basename(path.rstrip("/")))
        if os.path.exists(local) and same_file(local, pool):
            raise OSError(errno.EINVAL, "refusing to overwrite the pool with a file from it", local)
        # Opened only once the source is known good, so a bad source leaves no empty local file.
        existed = os.path.exists(local)
        try:
            with open(local, "wb") as sink:
                _copy_stream(source, sink, total, f"get {path}")
        except BaseException:
            # e.g. a poisoned range (EIO), Ctrl-C: no partial copy is left to pass for the file
            if not existed:
                with suppress(OSError):
                    os.unlink(local)
            raise


# Errors that say "this pair cannot share blocks" (so copy the bytes), not "this copy fails".
CLONE_IMPOSSIBLE = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV,
                              errno.EBUSY, errno.ENOSYS, errno.ENOTTY, errno.ETXTBSY})


def _source_file(vol: Any, path: str) -> Stat:
    st: Stat = vol.stat(path)
    if st.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory (only files are copied)", path)
    return st


def copy(source_spec: str, destination_spec: str, reflink: str = "auto") -> None:
    """``daxfs cp SRC DST`` for one SRC: inside a pool (a reflink unless ``reflink`` is
    "never"), between pools, or in or out of one."""
    source, destination = pool_spec(source_spec), pool_spec(destination_spec)
    if source is None and destination is None:
        raise OSError(errno.EINVAL, "neither SRC nor DST is POOL:PATH: daxfs cp copies inside, "
                      "between, into or out of pools", destination_spec)
    if source is not None and destination is not None:
        if source[0] == destination[0] or same_file(source[0], destination[0]):
            _copy_in_pool(source[0], source[1], destination[1], reflink)
            return
        if reflink == "always":
            raise OSError(errno.EXDEV, "cannot reflink between pools", source_spec, None, destination_spec)
        _copy_between_pools(source, destination)
        return
    if reflink == "always":
        raise OSError(errno.EXDEV, "cannot reflink to or from a local file: --reflink=always "
                      "needs SRC and DST in one pool", source_spec, None, destination_spec)
    if source is None:
        assert destination is not None
        if same_file(source_spec, destination[0]):
            raise OSError(errno.EINVAL, "cannot copy a pool into itself", source_spec)
        if source_spec != STDIO:
            with open(source_spec, "rb"):
                pass                    # a typo in SRC is reported before the pool is opened
        with open_pool(destination[0]) as vol:
            put_file(vol, source_spec, target_in_dir(vol, destination[1], _local_name(source_spec)))
        return
    local = destination_spec
    if os.path.isdir(local):
        local = os.path.join(local, posixpath.basename(source[1].rstrip("/")))
    if same_file(local, source[0]):
        # Opening it for writing would truncate the pool under its own mapping.
        raise OSError(errno.EINVAL, "is the pool itself; write POOL:PATH to copy inside it", local)
    with open_pool(source[0], readonly=True) as vol:
        get_file(vol, source[0], source[1], destination_spec)


def _local_name(local: str) -> str:
    if local == STDIO:
        raise OSError(errno.EINVAL, "stdin has no name: give the destination a file name", local)
    return os.path.basename(os.path.normpath(local))


def _copy_in_pool(pool: str, source: str, destination: str, reflink: str) -> None:
    with open_pool(pool) as vol:
        st = _source_file(vol, source)
        destination = target_in_dir(vol, destination, posixpath.basename(source.rstrip("/")))
        if vol.exists(destination) and vol.stat(destination).st_ino == st.st_ino:
            raise OSError(errno.EINVAL, f"is the same file as {destination}", source)
        if reflink != "never":
            try:
                with replacing(vol, destination) as temp:
                    vol.clone_file(source, temp)
                return
            except OSError as error:
                if reflink == "always" or error.errno not in CLONE_IMPOSSIBLE:
                    raise
        check_room(vol, destination, st.st_size)
        with replacing(vol, destination) as temp, vol.open(source, "rb", buffering=0) as reader, \
                vol.open(temp, "xb", buffering=0) as writer:
            _copy_stream(reader, writer, st.st_size, f"cp {destination}")


def _copy_between_pools(source: tuple[str, str], destination: tuple[str, str]) -> None:
    # The source is opened first: a bad source must not touch the destination pool.
    with open_pool(source[0], readonly=True) as src_vol:
        st = _source_file(src_vol, source[1])
        with src_vol.open(source[1], "rb", buffering=0) as reader, open_pool(destination[0]) as dst_vol:
            path = target_in_dir(dst_vol, destination[1], posixpath.basename(source[1].rstrip("/")))
            check_room(dst_vol, path, st.st_size)
            with replacing(dst_vol, path) as temp, dst_vol.open(temp, "xb", buffering=0) as writer:
                _copy_stream(reader, writer, st.st_size, f"cp {path}")


# ---------------------------------------------------------------- commands


def _check_sources(sources: list[str]) -> None:
    """Every SRC of a copy names a file, checked before anything is copied."""
    if sources.count(STDIO) > 1:
        raise OSError(errno.EINVAL, "stdin can be read once", STDIO)
    for spec in sources:
        if spec == STDIO:
            continue
        where = pool_spec(spec)
        if where is None:
            if os.path.isdir(spec):
                raise IsADirectoryError(errno.EISDIR, "is a directory (only files are copied)", spec)
            with open(spec, "rb"):
                pass
        else:
            with open_pool(where[0], readonly=True) as vol:
                _source_file(vol, where[1])


def need_directory(spec: str, what: str) -> None:
    """ENOTDIR unless ``spec`` (POOL:PATH or local) is an existing directory: ``what`` goes in it."""
    where = pool_spec(spec)
    if where is None:
        found = os.path.isdir(spec)
    else:
        with open_pool(where[0], readonly=True) as vol:
            found = is_dir(vol, where[1])
    if not found:
        raise NotADirectoryError(errno.ENOTDIR, f"is not a directory ({what} go into a directory)", spec)


def cmd_put(args: argparse.Namespace) -> int:
    """``put LOCAL... POOL:PATH``: several LOCALs go into the directory PATH."""
    pool, path = split_pool_path(args.target)
    _check_sources(args.sources)        # a typo in any LOCAL creates nothing in the pool
    with open_pool(pool) as vol:
        if len(args.sources) > 1 and not is_dir(vol, path):
            raise NotADirectoryError(errno.ENOTDIR, "is not a directory (several files go into a "
                                     "directory)", args.target)
        for local in args.sources:
            destination = path
            if path.endswith("/") or is_dir(vol, path):
                destination = posixpath.join(path, _local_name(local))
            put_file(vol, local, destination)
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    """``get POOL:PATH... LOCAL``: several go into the local directory LOCAL (``-``: stdout)."""
    if len(args.sources) > 1:
        if args.local != STDIO:
            need_directory(args.local, "several files")
        for spec in args.sources:       # every source is checked before anything is written
            pool, path = split_pool_path(spec)
            with open_pool(pool, readonly=True) as vol:
                _source_file(vol, path)
    for spec in args.sources:
        pool, path = split_pool_path(spec)
        with open_pool(pool, readonly=True) as vol:
            get_file(vol, pool, path, args.local)
    return EXIT_OK


def cmd_cat(args: argparse.Namespace) -> int:
    """Each SRC's bytes to stdout in turn (``-``: stdin)."""
    stdout = sys.stdout.buffer
    for spec in args.sources:
        if spec == STDIO:
            copy_stream(sys.stdin.buffer, stdout, total=None)
            continue
        pool, path = split_pool_path(spec)
        with open_pool(pool, readonly=True) as vol, vol.open(path, "rb", buffering=0) as source:
            copy_stream(source, stdout, total=None)
    stdout.flush()
    return EXIT_OK


def cmd_cp(args: argparse.Namespace) -> int:
    """Copy files inside a pool (a reflink by default), between pools, or in or out of one."""
    if len(args.sources) > 1:
        need_directory(args.destination, "several files")
        _check_sources(args.sources)
    for source in args.sources:
        copy(source, args.destination, args.reflink)
    return EXIT_OK
