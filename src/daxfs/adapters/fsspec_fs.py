"""``daxfs://`` for fsspec: a volume as an fsspec file system.

fsspec finds this class through the ``fsspec.specs`` entry point, so
``fsspec.filesystem("daxfs", pool=POOL)``, ``fsspec.open("daxfs:///a/b",
pool=POOL)`` and every library that takes a URL with ``storage_options``
(pandas, pyarrow, zarr, dask, universal_pathlib) reach a volume the same way.
The pool may also be named in a chained URL, fsspec's way of naming the
container a path lives in: ``daxfs:///a/b::/dev/shm/data.pool``.

Where the volume comes from: ``volume=`` an open ``Volume`` or ``Client``
(used as it is, never closed here); or ``pool=`` a pool path, shared through
``pool_share`` with every other user of that pool in this process — through
its arbiter when ``daxfs serve`` runs for it, else opened embedded (one writer
per pool: a second process then gets ``BusyError`` unless it opens
``readonly=True`` or the pool is served).

Paths are volume paths, always absolute (``daxfs://a/b`` is ``/a/b``).
Writes create missing parent directories (``auto_mkdir=True``), as fsspec's
clients expect of a store; ``auto_mkdir=False`` makes them fail as ``os`` does.
Copies inside the volume share blocks (reflink); ``mv`` is a rename.
"""

from __future__ import annotations

import datetime
import errno
import os
import posixpath
import stat as stat_mode
import weakref
from glob import has_magic
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractFileSystem
from fsspec.utils import isfilelike, stringify_path

from daxfs.adapters import pool_share
from daxfs.adapters.fsspec_files import open_buffered
from daxfs.adapters.transfer import CLONE_IMPOSSIBLE, copy_stream

__all__ = ["DaxFileSystem"]

_LOCAL_PROTOCOLS = (None, "file", "local")
_VOLUME_OPTIONS = ("policy", "durability", "lease_break_s")


class _CachedUnlessGiven(type(AbstractFileSystem)):  # type: ignore[misc]
    """fsspec's instance cache keys instances by the repr of their options; two Volume
    objects of one pool print alike, so an instance made for a given volume is never
    cached, or the next caller could get the first one's (perhaps closed) volume."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("volume") is not None:
            kwargs["skip_instance_cache"] = True
        return super().__call__(*args, **kwargs)


def _entry(path: str, st: Any) -> dict[str, Any]:
    """fsspec's info dict for ``path`` from its ``Stat``."""
    mode = st.st_mode
    kind = ("directory" if stat_mode.S_ISDIR(mode) else "file" if stat_mode.S_ISREG(mode)
            else "other")
    return {"name": path, "size": st.st_size, "type": kind, "mtime": st.st_mtime_ns / 1e9,
            "created": st.st_ctime_ns / 1e9, "ino": st.st_ino, "mode": mode,
            "nlink": st.st_nlink, "uid": st.st_uid, "gid": st.st_gid, "islink": False}


class DaxFileSystem(AbstractFileSystem, metaclass=_CachedUnlessGiven):
    """A daxfs volume as an fsspec file system (protocol ``daxfs``)."""

    protocol = "daxfs"
    root_marker = "/"

    def __init__(self, pool: str | os.PathLike[str] | None = None, *, volume: Any = None,
                 readonly: bool = False, auto_mkdir: bool = True, name: str | None = None,
                 policy: str | None = None, durability: str | None = None,
                 lease_break_s: float | None = None, fo: str | None = None,
                 target_protocol: str | None = None, target_options: dict[str, Any] | None = None,
                 **storage_options: Any) -> None:
        super().__init__(**storage_options)
        if fo is not None:
            # daxfs:///path::POOL — fsspec hands the chained part over as ``fo``.
            if target_protocol not in _LOCAL_PROTOCOLS or target_options:
                raise ValueError(f"a daxfs pool is a local file or device, not {target_protocol}://")
            if pool is not None and os.fspath(pool) != fo:
                raise ValueError(f"two pools named: pool={pool!r} and {fo!r}")
            pool = fo
        self.auto_mkdir = bool(auto_mkdir)
        self._key: pool_share.PoolKey | None = None
        if volume is not None:
            if pool is not None:
                raise ValueError("give pool= or volume=, not both")
            self._volume = volume
            self.pool = getattr(volume, "path", None)
            return
        if pool is None:
            raise ValueError("daxfs needs the pool: fsspec.filesystem('daxfs', pool=POOL), "
                             "storage_options={'pool': POOL}, or daxfs:///path::POOL")
        options = {key: value for key, value in
                   (("policy", policy), ("durability", durability), ("lease_break_s", lease_break_s))
                   if value is not None}
        self.pool = os.fsdecode(os.fspath(pool))
        self._key, self._volume = pool_share.acquire(
            self.pool, readonly=readonly, name=name or f"fsspec (pid {os.getpid()})",
            options=options)
        # Dropped from fsspec's cache and collected, or closed: one user fewer of the pool.
        self._release = weakref.finalize(self, pool_share.release, self._key, self._volume)

    # ---------------------------------------------------------------- the volume

    @property
    def volume(self) -> Any:
        """The ``Volume`` (or ``Client``) behind this file system."""
        if self._volume is None:
            raise ValueError("this daxfs file system is closed")
        return self._volume

    def close(self) -> None:
        """Let go of the pool (the last user closes it) and leave fsspec's instance cache."""
        type(self)._cache.pop(self._fs_token, None)
        if self._key is not None:
            self._release()
        self._volume = None

    def __reduce__(self) -> Any:
        if self._key is None:
            # fsspec pickles an instance as the options that make it again; an open
            # Volume object is not such an option.
            raise TypeError("a daxfs:// file system made with volume= cannot be pickled; "
                            "make it with pool= (and serve the pool to share it between processes)")
        return super().__reduce__()

    @property
    def fsid(self) -> str:
        return f"daxfs-{self.volume.info()['uuid']}"

    # ---------------------------------------------------------------- paths

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        for prefix in ("daxfs://", "daxfs::"):
            if path.startswith(prefix):
                path = path[len(prefix):]
                break
        path = path.split("::", 1)[0]           # a chained pool is not part of the path
        return "/" + path.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        return "daxfs://" + self._strip_protocol(name)

    def _parents_for(self, path: str) -> None:
        if self.auto_mkdir:
            parent = self._parent(path)
            if parent != self.root_marker:
                self.volume.mkdir(parent, parents=True, exist_ok=True)

    # ---------------------------------------------------------------- metadata

    def info(self, path: Any, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        return _entry(path, self.volume.stat(path))

    def ls(self, path: Any, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        vol = self.volume
        st = vol.stat(path)
        if not stat_mode.S_ISDIR(st.st_mode):
            return [_entry(path, st) if detail else path]
        prefix = path.rstrip("/") + "/"
        names = [prefix + name for name in vol.listdir(path)]
        if not detail:
            return names
        entries = []
        for full in names:
            try:
                entries.append(_entry(full, vol.stat(full)))
            except FileNotFoundError:
                continue            # removed since the listing: as os.scandir would skip it
        return entries

    def exists(self, path: Any, **kwargs: Any) -> bool:
        try:
            self.volume.stat(self._strip_protocol(path))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    lexists = exists

    def isdir(self, path: Any) -> bool:
        try:
            return stat_mode.S_ISDIR(self.volume.stat(self._strip_protocol(path)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def isfile(self, path: Any) -> bool:
        try:
            return stat_mode.S_ISREG(self.volume.stat(self._strip_protocol(path)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def size(self, path: Any) -> int:
        return int(self.volume.stat(self._strip_protocol(path)).st_size)

    def modified(self, path: Any) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.info(path)["mtime"], tz=datetime.timezone.utc)

    def created(self, path: Any) -> datetime.datetime:
        # daxfs keeps no birth time: the inode change time is the nearest, as LocalFileSystem.
        return datetime.datetime.fromtimestamp(self.info(path)["created"], tz=datetime.timezone.utc)

    def _isfilestore(self) -> bool:
        return True             # directories are real: dask and pyarrow may rely on them

    # ---------------------------------------------------------------- directories

    def mkdir(self, path: Any, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        mode = int(kwargs.get("mode", 0o755))
        if create_parents:
            if self.exists(path):
                raise FileExistsError(errno.EEXIST, "file exists", path)
            self.volume.mkdir(path, mode, parents=True)
        else:
            self.volume.mkdir(path, mode)

    def makedirs(self, path: Any, exist_ok: bool = False) -> None:
        self.volume.mkdir(self._strip_protocol(path), parents=True, exist_ok=exist_ok)

    def rmdir(self, path: Any) -> None:
        self.volume.rmdir(self._strip_protocol(path))

    # ---------------------------------------------------------------- removing and moving

    def rm_file(self, path: Any) -> None:
        self.volume.unlink(self._strip_protocol(path))

    _rm = rm_file

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        if recursive and self.root_marker in paths:
            raise PermissionError(errno.EPERM, "refusing to remove the root directory", "/")
        vol = self.volume
        for p in reversed(paths):           # sorted: what is inside a directory comes after it
            if self.isdir(p):
                if not recursive:
                    raise IsADirectoryError(errno.EISDIR, "is a directory (rm needs recursive=True)", p)
                vol.rmdir(p)
            else:
                vol.unlink(p)

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
           **kwargs: Any) -> None:
        """A rename (atomic) for one path; what has globs or lists goes as fsspec copies."""
        single = isinstance(path1, (str, os.PathLike)) and isinstance(path2, (str, os.PathLike))
        if not single or has_magic(stringify_path(path1)) or maxdepth is not None:
            super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
            return
        into = stringify_path(path2).endswith("/")
        source, target = self._strip_protocol(path1), self._strip_protocol(path2)
        if source == target:
            return
        if into or self.isdir(target):
            # As mv and shutil.move: a directory target receives the source under its name.
            target = posixpath.join(target, posixpath.basename(source))
        self._parents_for(target)
        self.volume.rename(source, target)

    # ---------------------------------------------------------------- copying

    def cp_file(self, path1: Any, path2: Any, **kwargs: Any) -> None:
        """Copy one file inside the volume by sharing its blocks (reflink)."""
        source, target = self._strip_protocol(path1), self._strip_protocol(path2)
        vol = self.volume
        if self.isdir(source):
            self.makedirs(target, exist_ok=True)
            return
        self._parents_for(target)
        if self.exists(target) and vol.stat(target).st_ino == vol.stat(source).st_ino:
            # Checked here, not left to the clone's EINVAL: the byte copy below would
            # truncate the one file it reads from.
            raise OSError(errno.EINVAL, "source and destination are the same file", source,
                          None, target)
        try:
            vol.clone_file(source, target)
            return
        except OSError as error:
            if error.errno not in CLONE_IMPOSSIBLE:
                raise
        # Blocks that cannot be shared now (a write mapping on them): copy the bytes.
        with vol.open(source, "rb", buffering=0) as reader, vol.open(target, "wb", buffering=0) as writer:
            copy_stream(reader, writer, total=reader.stat().st_size)

    def put_file(self, lpath: Any, rpath: Any, callback: Any = DEFAULT_CALLBACK,
                 mode: str = "overwrite", **kwargs: Any) -> None:
        """Copy a local file in; ``callback`` hears the size, then every chunk."""
        target = self._strip_protocol(rpath)
        if os.path.isdir(lpath):
            self.makedirs(target, exist_ok=True)
            return
        # The local file first: a missing one must not leave an empty file in the volume.
        with open(lpath, "rb") as source:
            vol = self.volume
            parent = self._parent(target)
            if parent != self.root_marker:
                vol.mkdir(parent, parents=True, exist_ok=True)
            with vol.open(target, "xb" if mode == "create" else "wb", buffering=0) as sink:
                copy_stream(source, sink, total=os.fstat(source.fileno()).st_size,
                            progress=callback)

    def get_file(self, rpath: Any, lpath: Any, callback: Any = DEFAULT_CALLBACK,
                 outfile: Any = None, **kwargs: Any) -> None:
        """Copy a file out to a local path (or file object); ``callback`` as ``put_file``."""
        source = self._strip_protocol(rpath)
        if outfile is None and isfilelike(lpath):
            outfile = lpath
        if outfile is None and self.isdir(source):
            os.makedirs(lpath, exist_ok=True)
            return
        with self.volume.open(source, "rb", buffering=0) as reader:
            total = reader.stat().st_size
            if outfile is not None:
                copy_stream(reader, outfile, total=total, progress=callback)
                return
            lpath = os.fspath(lpath)
            os.makedirs(os.path.dirname(lpath) or ".", exist_ok=True)
            with open(lpath, "wb") as writer:
                copy_stream(reader, writer, total=total, progress=callback)

    # ---------------------------------------------------------------- bytes

    def cat_file(self, path: Any, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        with self.volume.open(self._strip_protocol(path), "rb", buffering=0) as f:
            if start is None and end is None:
                return bytes(f.readall())
            size = f.stat().st_size
            first = 0 if start is None else (max(0, size + start) if start < 0 else start)
            stop = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
            if stop <= first:
                return b""
            return bytes(f.pread(stop - first, first))

    def pipe_file(self, path: Any, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        self._parents_for(path)
        data = memoryview(value).cast("B")
        with self.volume.open(path, "xb" if mode == "create" else "wb", buffering=0) as f:
            while data:
                written = f.write(data)
                if not written:
                    raise OSError(errno.EIO, "write stored no bytes", path)
                data = data[written:]

    def touch(self, path: Any, truncate: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if truncate or not self.exists(path):
            self._parents_for(path)
            self.volume.open(path, "wb", buffering=0).close()
        else:
            self.volume.utime(path)

    def _open(self, path: Any, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> Any:
        """daxfs's own File behind an io buffer of ``block_size`` bytes (see fsspec_files)."""
        path = self._strip_protocol(path)
        if "r" not in mode:
            self._parents_for(path)
        return open_buffered(self, path, mode, buffer_size=block_size, autocommit=autocommit)
