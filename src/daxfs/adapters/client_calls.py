"""VolumeCalls: the ``Volume`` API of a client, each call one request to the arbiter.

A mixin of ``Client`` (client.py), which owns the connection: every method here
converts and checks its arguments as ``Volume`` does (``os``'s rules: paths as str,
bytes or PathLike, offsets as integers in off_t's range), sends one request through
``call`` and turns the reply into the objects the embedded volume returns (``Stat``,
``PinInfo``, ``Owner``, a ``ClientFile`` wrapped as ``open()`` wraps files).  What
carries no state of its own lives here; mappings, pins, the holder slot and the
connection's lifetime stay in client.py and client_files.py.
"""

from __future__ import annotations

from typing import Any

from daxfs._types import Owner, PinInfo, Stat, StatFS
from daxfs.access import buffered
from daxfs.access.holder import Holder
from daxfs.adapters.client_files import ClientFile
from daxfs.core.namespace import fspath as _path
from daxfs.volume import arguments
from daxfs.volume.namespace import process_umask
from daxfs.volume.pathnames import names_like


class VolumeCalls:
    """The namespace, file and space calls of ``Volume``, as requests (see the module)."""

    closed: bool
    lost: bool
    path: str
    version: int

    def call(self, op: str, *args: Any) -> Any:
        raise NotImplementedError

    def stat(self, path: object) -> Stat:
        return Stat.from_fields(self.call("stat", _path(path)))

    def exists(self, path: object) -> bool:
        try:
            self.stat(path)
        except (OSError, ValueError):
            if self.closed or self.lost:
                raise
            return False
        return True

    def listdir(self, path: object = "/") -> list[Any]:
        return names_like(path, self.call("listdir", _path(path)))

    def _scan(self, path: object) -> list[tuple[str, Stat]]:
        return [(name, Stat.from_fields(fields)) for name, fields in self.call("scandir", _path(path))]

    def mkdir(self, path: object, mode: int = 0o755, *, parents: bool = False, exist_ok: bool = False) -> None:
        self.call("mkdir", _path(path), arguments.mode_bits(mode), bool(parents), bool(exist_ok), process_umask())

    def rmdir(self, path: object) -> None:
        self.call("rmdir", _path(path))

    def unlink(self, path: object, *, policy: str | None = None) -> None:
        from daxfs.volume import check_policy
        check_policy(policy)
        self.call("unlink", _path(path), policy)

    def rename(self, src: object, dst: object, *, replace: bool = True) -> None:
        self.call("rename", _path(src), _path(dst), bool(replace))

    def link(self, src: object, dst: object) -> None:
        self.call("link", _path(src), _path(dst))

    def chmod(self, path: object, mode: int) -> None:
        self.call("chmod", _path(path), arguments.mode_bits(mode))

    def chown(self, path: object, uid: int, gid: int) -> None:
        u, g = arguments.owner_id(uid, "uid"), arguments.owner_id(gid, "gid")
        self.call("chown", _path(path), -1 if u is None else u, -1 if g is None else g)

    def utime(self, path: object, ns: tuple[int, int] | None = None) -> None:
        self.call("utime", _path(path), None if ns is None else list(arguments.times_ns(ns)))

    def lstat(self, path: object) -> Stat:
        return Stat(*self.call("lstat", _path(path)))

    def readlink(self, path: object) -> str:
        return self.call("readlink", _path(path))

    def symlink(self, target: object, path: object) -> None:
        self.call("symlink", _path(target), _path(path))

    def mknod(self, path: object, mode: int = 0o600 | 0o010000, device: int = 0) -> None:
        self.call("mknod", _path(path), arguments.integer(mode), arguments.integer(device), process_umask())

    def statfs(self) -> StatFS:
        return StatFS(*self.call("statfs"))

    def fsck(self) -> list[str]:
        return self.call("fsck")

    def info(self) -> dict[str, Any]:
        return self.call("info")

    @property
    def damaged(self) -> str | None:
        """Why the served volume is read-only against the arbiter's wish, or None."""
        return self.info().get("damaged")

    def checkpoint(self) -> None:
        self.call("checkpoint")

    def trim(self) -> int:
        """The arbiter gives the memory of every free block back (``Volume.trim``); bytes."""
        return self.call("trim")

    def pins(self) -> list[PinInfo]:
        return [PinInfo(*row) for row in self.call("pins")]

    def owners(self, pool_offset: int, length: int = 1) -> list[Owner]:
        return [Owner(*row) for row in self.call("owners", arguments.integer(pool_offset),
                                                  arguments.integer(length))]

    def memory_failure(self, pool_offset: int, length: int) -> list[Owner]:
        """Report bad memory to the arbiter (root or the pool's owner); see ``Volume.memory_failure``."""
        return [Owner(*row) for row in self.call("memory_failure", arguments.integer(pool_offset),
                                                  arguments.integer(length))]

    def badblocks(self) -> list[tuple[int, int]]:
        return [tuple(run) for run in self.call("badblocks")]  # type: ignore[misc]

    def clear_badblocks(self, pool_offset: int, length: int) -> None:
        self.call("clear_badblocks", arguments.integer(pool_offset), arguments.integer(length))

    def open(self, path: object, mode: str = "rb", buffering: int = -1, encoding: str | None = None,
             errors: str | None = None, newline: str | None = None, *, holder: object = None,
             follow_symlinks: bool = True) -> Any:
        """Open a file as ``Volume.open`` does (buffered by default, text modes;
        ``follow_symlinks=False`` is O_NOFOLLOW)."""
        flags, text, binary = arguments.parse_mode(mode)
        buffering = buffered.check_options(text, buffering, encoding, errors, newline)
        name = None if holder is None else str(holder)
        p = _path(path)
        if self.version >= 2 and not flags.readable:
            # written only: the layout (stat, extents) is fetched if a call needs it
            reply = self.call("open", p, binary, name, process_umask(), bool(follow_symlinks), False)
        else:
            reply = self.call("open", p, binary, name, process_umask(), bool(follow_symlinks))
        f = ClientFile(self, reply, p, binary, flags, holder)
        with self.lock:
            self.files.add(f)
        return buffered.wrap(f, flags, text, mode, buffering, encoding, errors, newline)

    def holder(self, name: str) -> Holder:
        """A named owner: what is opened, mapped or pinned through it, its close() releases."""
        if self.closed:
            raise ValueError("I/O operation on closed volume")
        return Holder(self, str(name))  # type: ignore[arg-type]

    def clone_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        return self.call("clone_range", _target(src), _off(src_offset), _target(dst), _off(dst_offset), _off(length))

    def clone_file(self, src: object, dst: object) -> None:
        self.call("clone_file", _target(src), _target(dst), process_umask())

    def dedupe_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        return self.call("dedupe_range", _target(src), _off(src_offset), _target(dst), _off(dst_offset),
                         _off(length))

    def copy_file_range(self, src: object, src_offset: int, dst: object, dst_offset: int, length: int) -> int:
        return self.call("copy_file_range", _target(src), _off(src_offset), _target(dst), _off(dst_offset),
                         _off(length))


def _off(value: object) -> int:
    n = arguments.integer(value)
    if abs(n) > (1 << 63) - 1:
        raise OverflowError(f"{n} is too large to convert to C off_t")
    return n


def _target(arg: object) -> object:
    for _ in range(3):              # a text or buffered file: flushed, then its raw file
        if isinstance(arg, ClientFile):
            if arg.closed:
                raise ValueError("I/O operation on closed file")
            return {"h": arg.h}
        inner = getattr(arg, "buffer", None) or getattr(arg, "raw", None)
        if inner is None:
            break
        arg.flush()  # type: ignore[attr-defined]
        arg = inner
    return _path(arg)
